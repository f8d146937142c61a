"""The risk card: the estimate AS OF a date (the landmark model), with its interval, an icon array and
words; the inputs it used with their dates; patients like this one; or, after an event, no number."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from data import queries
from data.store import Snapshot
from services import models
from ui import charts, components

#: A 95% interval at least this many percentage points wide says little beyond its direction: the card says so in
#: words instead of leaving a clinician to read the number on its own (half the scale). A reading policy of this
#: card, not a clinical rule, so it lives here.
WIDE_INTERVAL_POINTS = 50


def _fmt_date(value) -> str:
    return "—" if value is None or pd.isna(value) else f"{pd.Timestamp(value):%Y-%m-%d}"


def _detected(est) -> bool | None:
    """The ctDNA call the estimate used (its first input), for the coverage measured in that group."""
    return {"detected": True, "not detected": False}.get(str(est.inputs.iloc[0]["value"]))


def render(snap: Snapshot, rec: queries.PatientRecord, horizon: int) -> None:
    s = rec.summary
    pid = str(s["patient_id"])
    st.subheader(f"Chance of staying progression-free for the next {horizon} months")
    model, problem = components.landmark_model(snap)
    if model is None:
        st.warning(problem + " The rest of this page does not depend on it.", icon="⚠️")
        return
    cutoff = components.data_cutoff(snap.key)
    as_of = st.date_input("As of", value=cutoff, max_value=cutoff, key=f"as_of_{pid}",
                          help="The estimate uses only what was known on this date (default: the data cut-off).")
    as_of = cutoff if as_of is None else as_of
    both = components.patient_estimates(snap.key, pid, horizon, as_of, model.sha256)
    est = both.pfs
    if est.refusal is not None:
        # an event is news for the clinician (a warning), not an error of the application
        event = any(word in est.refusal for word in ("progressed on", "died on"))
        (st.warning if event else st.info)(f"**No estimate as of {as_of:%Y-%m-%d}**: {est.refusal}.",
                                           icon="⛔" if event else "🚫")
        with st.expander("Inputs"):
            st.dataframe(est.inputs, hide_index=True)
        return
    restarted = pd.notna(s["restarted_on"]) and pd.Timestamp(s["restarted_on"]).date() <= as_of
    if est.if_stopped_now:
        st.caption("**If anti-HER2 therapy stopped now**: an extrapolation from the patients who chose to stop "
                   "(cohort 2 is self-selected, not randomized). Read it beside the cohort-1 curve below.")
    elif restarted:
        st.warning(f"Anti-HER2 therapy was restarted on {_fmt_date(s['restarted_on'])}. The figure is the trial's "
                   "PFS (a restart does not count); no 'if they stay off' figure is given after a restart.", icon="🔁")
    pct, lo, hi = round(est.estimate * 100), round(est.lower * 100), round(est.upper * 100)
    left, right = st.columns([2, 3])
    with left:
        st.markdown(f"### {pct}%  \n95% interval **{lo}% to {hi}%**")
        st.caption(f"As of {est.as_of:%Y-%m-%d}, {est.landmark_months:.1f} months after day 0. Landmark model "
                   f"fitted {model.created_at[:10]} on snapshot `{model.snapshot_id}`. "
                   + models.landmark_coverage_note(_detected(est)))
        st.markdown(f"About **{pct} in 100** patients like this stay progression-free for the next {horizon} "
                    f"months (somewhere between {lo} and {hi} in 100).")
        if hi - lo >= WIDE_INTERVAL_POINTS:
            st.warning(f"**Do not lean on {pct}% alone.** The interval spans {hi - lo} points: patients with these "
                       "inputs differ widely in their own chance, and the model cannot tell them apart. Read it as "
                       f"'between {lo}% and {hi}%', beside the series of blood draws and the scans.", icon="⚠️")
        if not restarted and not est.if_stopped_now:
            off = both.off_therapy
            if off.refusal is None:
                st.caption(f"Still off therapy **and** progression-free after {horizon} months (a restart counts "
                           f"as an event): {off.estimate:.0%} ({off.lower:.0%} to {off.upper:.0%}).")
        for note in est.notes:
            st.warning(note, icon="⚠️")
        like = est.patients_like
        if like and like["km"] is not None:
            st.markdown(f"**Patients like this one** (ctDNA {est.inputs.iloc[0]['value']} at {like['landmark']} "
                        f"months, in the training data): {like['n']} patients, {like['events']} progressed or died "
                        f"within {horizon} months; Kaplan-Meier {like['km']:.0%} "
                        f"(95% CI {like['lower']:.0%} to {like['upper']:.0%})"
                        + ("" if like.get("followed_to_horizon") else ", not all followed that long") + ".")
        elif like:
            st.caption(f"Too few training patients like this one at {like['landmark']} months for a comparison "
                       f"({like['n']}).")
        st.page_link("pages/model_card.py", label="Model card: how this estimate was made and validated")
    with right:
        components.chart(charts.icon_array_figure, est.estimate, est.lower, est.upper, horizon, key="icon_array")
    st.dataframe(est.inputs, hide_index=True)
