"""Cohorts, for researchers: Table 1, Kaplan-Meier, swimmer plot, ctDNA lead time, PRO trajectories.

Researchers see pseudonymous ids and days or months from day 0, never dates (the display is
prepared for it now; sign-in will make it the only view for that role).
"""
from __future__ import annotations

import pandas as pd
import streamlit as st

from data import cohorts, queries
from data.csvsafe import safe_csv
from ui import access, charts, components, session

FILTERS = {  # label -> (column, options)
    "HR status": ("hr_status", ["positive", "negative"]),
    "De novo": ("de_novo", [True, False]),
    "Best response to first line": ("best_response", ["CR", "PR", "SD"]),
}
PRO_SCALES = [("QLQ-C30", "QL2"), ("QLQ-C30", "DI"), ("FCRI-SF", "TOTAL"), ("PROMIS-Anxiety", "TSCORE")]


@st.cache_data(show_spinner=False, max_entries=4)
def _data(key: tuple):
    snap = components._open(key)
    return queries.cohort_frame(snap), queries.cohort_draws(snap), queries.cohort_pros(snap)


def _filters(frame: pd.DataFrame) -> pd.DataFrame:
    with st.expander("Filters (apply to everything on this page)", expanded=True):
        cols = st.columns(len(FILTERS) + 1)
        keep = pd.Series(True, index=frame.index)
        for col, (label, (column, options)) in zip(cols, FILTERS.items(), strict=False):
            chosen = col.multiselect(label, options, default=options, key=f"cohort_filter_{column}",
                                     format_func=lambda v: {True: "yes", False: "no"}.get(v, v))
            keep &= frame[column].isin(chosen) | frame[column].isna()
        sites = sorted(frame["site"].dropna().unique())
        chosen_sites = cols[-1].multiselect("Site", sites, default=sites, key="cohort_filter_site")
        keep &= frame["site"].isin(chosen_sites)
    return frame[keep]


def render(snap) -> None:
    st.title("Cohorts")
    frame, draws, pros = _data(snap.key)
    if access.identified(session.current().roles):
        pseudonymous = st.toggle("Researcher view: pseudonymous ids, time from day 0 only", value=True,
                                 key="pseudonymous")
    else:  # researchers see pseudonyms and time from day 0 only, with no way to switch
        pseudonymous = True
        st.caption("Pseudonymous ids (keyed to this snapshot) and time from day 0 only.")
    info = components.snapshot_info(snap.key)
    frame = _filters(frame)
    if frame.empty:
        st.info("No patient matches these filters.")
        return
    ids = set(frame["patient_id"])
    draws, pros = draws[draws["patient_id"].isin(ids)], pros[pros["patient_id"].isin(ids)]
    st.caption(f"{len(frame)} patients after filters (cohort 1 continues anti-HER2 therapy, cohort 2 stops it).")

    st.subheader("Table 1")
    st.dataframe(cohorts.table_one(frame), hide_index=True)
    session.export_button("cohort_table", "Download the filtered patients (CSV: pseudonyms, no dates)",
                          safe_csv(cohorts.research_extract(frame, str(info["snapshot_id"]))),
                          "stop-her2-cohort.csv", "text/csv", key="cohort_export")

    st.subheader("Progression-free survival from day 0")
    c1, c2 = st.columns(2)
    curves, at_risk, test = cohorts.km_curves(frame, "cohort")
    c1.plotly_chart(charts.km_figure(curves, at_risk, test, "By cohort", {"1": "cohort 1 (continue)",
                                                                          "2": "cohort 2 (stop)"}), key="km_cohort")
    ct = frame.assign(ctdna=frame["ctdna_detected_at_index"].map({True: "detected", False: "not detected"}))
    curves2, at_risk2, test2 = cohorts.km_curves(ct, "ctdna")
    c2.plotly_chart(charts.km_figure(curves2, at_risk2, test2, "By ctDNA at day 0"), key="km_ctdna")
    at12 = pd.concat([cohorts.survival_at(curves, 12).assign(by="cohort"),
                      cohorts.survival_at(curves2, 12).assign(by="ctDNA at day 0")])
    st.dataframe(at12.round(3), hide_index=True)

    st.subheader("Swimmer plot")
    shown = frame.assign(label=[cohorts.pseudonym(p, str(info["snapshot_id"])) if pseudonymous else p
                                for p in frame["patient_id"]])
    st.plotly_chart(charts.swimmer_figure(shown, draws), key="swimmer")

    st.subheader("ctDNA lead time")
    leads, no_signal = cohorts.lead_times(draws, frame)
    st.plotly_chart(charts.lead_time_figure(leads, no_signal), key="lead_time")

    st.subheader("Patient-reported outcomes")
    catalogue = components.pro_catalogue(snap.key)
    mcid = {(r.instrument, r.scale): r.meaningful_change for r in catalogue.itertuples()}
    st.plotly_chart(charts.pro_change_figure(cohorts.pro_change(pros, frame), PRO_SCALES, mcid), key="pro_change")
