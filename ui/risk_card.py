"""The risk card: the estimate as a number with its interval, an icon array and words; its inputs and drivers."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from data import queries
from data.store import Snapshot
from services import models
from ui import charts, components


def _fmt_date(value) -> str:
    return "—" if value is None or pd.isna(value) else f"{pd.Timestamp(value):%Y-%m-%d}"


def render(snap: Snapshot, rec: queries.PatientRecord, horizon: int) -> None:
    s = rec.summary
    basis = "index" if s["cohort"] == 2 else "now"
    when = (f"at stopping (day 0, {_fmt_date(s['index_date'])})" if basis == "index"
            else f"if anti-HER2 therapy stopped at the data cut-off "
                 f"({_fmt_date(components.snapshot_info(snap.key)['data_cutoff'])})")
    st.subheader(f"Chance of staying progression-free for {horizon} months off anti-HER2 therapy")
    model, problem = components.current_model(snap, horizon)
    if model is None:
        st.warning(problem + " The rest of this page does not depend on it.", icon="⚠️")
        return
    facts = model.facts
    est = components.patient_estimate(snap.key, str(s["patient_id"]), basis, horizon, facts.sha256)
    st.caption(f"Estimated {when}. Decision support from {facts.n_patients} patients "
               f"who stopped; see the model card for how it was made and validated.")
    if not est.applicable:
        st.info("**No estimate for this patient**: the model does not apply, because\n\n"
                + "\n".join(f"- {r}" for r in est.reasons), icon="🚫")
        with st.expander("Inputs"):
            st.dataframe(est.inputs, hide_index=True)
        st.page_link("pages/model_card.py", label="Model card: who the model is for")
        return
    pct, lo, hi = round(est.probability * 100), round(est.low * 100), round(est.high * 100)
    left, right = st.columns([2, 3])
    with left:
        st.markdown(f"### {pct}%  \n95% interval **{lo}% to {hi}%**")
        st.caption(models.coverage_note())
        st.markdown(f"About **{pct} in 100** patients like this stay progression-free for {horizon} months "
                    f"after stopping (somewhere between {lo} and {hi} in 100).")
        flagged = est.inputs[est.inputs["note"] != ""]
        for r in flagged.itertuples():
            st.warning(f"{r.input}: {r.note}", icon="⚠️")
        st.caption(f"Model {facts.name}, {facts.calibration} calibration, trained "
                   f"{facts.created_at[:10]} on snapshot `{facts.snapshot_id}`.")
        st.page_link("pages/model_card.py", label="Model card: how this estimate was made and validated")
    right.plotly_chart(charts.icon_array_figure(est.probability, est.low, est.high, horizon), key="icon_array")
    c1, c2 = st.columns([3, 2])
    c1.plotly_chart(charts.contributions_figure(est.contributions), key="contributions")
    c2.dataframe(est.inputs, hide_index=True)
