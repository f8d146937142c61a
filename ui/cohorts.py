"""Cohorts, for researchers: Table 1, Kaplan-Meier, swimmer plot, ctDNA lead time, PRO trajectories.

Researchers see pseudonymous ids (HMAC with the deployment's secret key, services/access.py) and
days or months from day 0, never dates.
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from data import cohorts, queries
from data.clinical import RESPONSE_CODES
from data.csvsafe import safe_csv
from services import access
from ui import charts, components, session

FILTERS = {  # label -> (patient_summary column, options)
    "HR status": ("hr_status", ["positive", "negative"]),
    "De novo": ("de_novo", [True, False]),
    "Best response to first line": ("best_response", list(RESPONSE_CODES[:3])),  # CR, PR, SD
}
PRO_SCALES = [("QLQ-C30", "QL2"), ("QLQ-C30", "DI"), ("FCRI-SF", "TOTAL"), ("PROMIS-Anxiety", "TSCORE")]
PRO_WINDOW_MONTHS = 3
#: Lanes in the swimmer plot: beyond a hundred or so nobody can read one.
SWIMMER_LANES = 100
BY = tuple(column for column, _ in FILTERS.values()) + ("site",)


# Cached once per snapshot and shared read-only (cache_resource: no copy per rerun). The page filters these
# small frames; no rerun reads the millions of draws and scores behind them.
@st.cache_resource(show_spinner="Summarising the cohort (once per snapshot)…", max_entries=2)
def _data(key: tuple, pseudonym_key: bytes):
    snap = components.open_snapshot(key)
    frame = queries.cohort_frame(snap)
    frame["pseudonym"] = [access.pseudonym(p, pseudonym_key) for p in frame["patient_id"]]
    sums = queries.pro_change_sums(snap, PRO_SCALES, BY, PRO_WINDOW_MONTHS, cohorts.DAYS_PER_MONTH)
    return frame, queries.cohort_positive_draws(snap), sums


def _filters(frame: pd.DataFrame) -> dict:
    """The filter widgets; returns column -> chosen values."""
    chosen = {}
    with st.expander("Filters (apply to everything on this page)", expanded=True):
        cols = st.columns(len(FILTERS) + 1)
        for col, (label, (column, options)) in zip(cols, FILTERS.items(), strict=False):
            chosen[column] = col.multiselect(label, options, default=options, key=f"cohort_filter_{column}",
                                             format_func=lambda v: {True: "yes", False: "no"}.get(v, v))
        sites = sorted(frame["site"].dropna().unique())
        chosen["site"] = cols[-1].multiselect("Site", sites, default=sites, key="cohort_filter_site")
    return chosen


def render(snap) -> None:
    st.title("Cohorts")
    viewer = session.viewer()
    if viewer.key is None:
        st.error(session.pseudonym_problem() or "Pseudonyms cannot be made in this deployment.", icon="🔒")
        return
    everyone, positive_draws, pro_sums = _data(snap.key, viewer.key)
    if viewer.identified:
        pseudonymous = st.toggle("Researcher view: pseudonymous ids, time from day 0 only", value=True,
                                 key="pseudonymous")
    else:  # researchers see pseudonyms and time from day 0 only, with no way to switch
        pseudonymous = True
        st.caption("Pseudonymous ids (keyed with this deployment's secret) and time from day 0 only.")
    chosen = _filters(everyone)
    frame = everyone[cohorts.keep(everyone, chosen)]
    if frame.empty:
        st.info("No patient matches these filters.")
        return
    st.caption(f"{len(frame):,} patients after filters (cohort 1 continues anti-HER2 therapy, cohort 2 stops it).")

    st.subheader("Table 1")
    st.dataframe(cohorts.table_one(frame), hide_index=True)
    session.export_button("cohort_table", "Download the filtered patients (CSV: pseudonyms, no dates)",
                          lambda: safe_csv(viewer.research_extract(frame)),  # made on click only
                          "stop-her2-cohort.csv", "text/csv", key="cohort_export")

    st.subheader("Progression-free survival from day 0")
    c1, c2 = st.columns(2)
    curves, at_risk, test = cohorts.km_curves(frame, "cohort")
    c1.plotly_chart(charts.km_figure(curves, at_risk, test, "By cohort", {"1": "cohort 1 (continue)",
                                                                          "2": "cohort 2 (stop)"}), key="km_cohort")
    at12 = [cohorts.survival_at(curves, 12).assign(by="cohort")]
    if viewer.sees_ctdna:
        ct = frame.assign(ctdna=frame["ctdna_detected_at_index"].map({True: "detected", False: "not detected"}))
        curves2, at_risk2, test2 = cohorts.km_curves(ct, "ctdna")
        c2.plotly_chart(charts.km_figure(curves2, at_risk2, test2, "By ctDNA at day 0"), key="km_ctdna")
        at12.append(cohorts.survival_at(curves2, 12).assign(by="ctDNA at day 0"))
    else:
        positive_draws = positive_draws.iloc[0:0]
        c2.info(access.CTDNA_BLINDED, icon="🙈")
    st.dataframe(pd.concat(at12).round(3), hide_index=True)

    st.subheader("Swimmer plot")
    lanes = cohorts.swimmer_sample(frame, SWIMMER_LANES)
    if len(lanes) < len(frame):
        st.caption(f"{len(lanes)} of {len(frame):,} patients: a random sample, the same on every visit. "
                   "Narrow the filters to see particular patients.")
    shown, draws = cohorts.swimmer_lanes(lanes.assign(label=lanes["pseudonym"] if pseudonymous else lanes["patient_id"]),
                                         positive_draws)
    st.plotly_chart(charts.swimmer_figure(shown, draws), key="swimmer")

    if viewer.sees_ctdna:
        st.subheader("ctDNA lead time")
        leads, no_signal = cohorts.lead_times(positive_draws[positive_draws["patient_id"].isin(frame["patient_id"])], frame)
        st.plotly_chart(charts.lead_time_figure(leads, no_signal), key="lead_time")

    st.subheader("Patient-reported outcomes")
    catalogue = components.pro_catalogue(snap.key)
    mcid = {(r.instrument, r.scale): r.meaningful_change for r in catalogue.itertuples()}
    change = cohorts.pro_change(pro_sums[cohorts.keep(pro_sums, chosen)])
    st.plotly_chart(charts.pro_change_figure(change, PRO_SCALES, mcid), key="pro_change")
