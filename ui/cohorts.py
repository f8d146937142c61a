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
from ui import charts, components, exports, session

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


# Table 1, the Cox models and the competing events took 0.7 s at 82 patients on every rerun (a toggle, a
# popover opened): computed once per filtered cohort instead (the key is the filtered frame's hash).
@st.cache_data(show_spinner="Fitting the cohort statistics (once per filter)…", max_entries=16)
def _statistics(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    return (cohorts.table_one(frame), cohorts.cox_models(frame),
            cohorts.cumulative_incidence(cohorts.competing_events(frame)))


def _filters(frame: pd.DataFrame) -> dict:
    """The filter widgets; returns column -> chosen values."""
    chosen = {}
    with st.expander("Filters (apply to everything on this page)", expanded=True):
        # two per row: four in a row cut the chosen values to "p." at 1024 px
        cols = [c for _ in range((len(FILTERS) + 2) // 2) for c in st.columns(2)]
        for col, (label, (column, options)) in zip(cols, FILTERS.items(), strict=False):
            chosen[column] = col.multiselect(label, options, default=options, key=f"cohort_filter_{column}",
                                             format_func=lambda v: {True: "yes", False: "no"}.get(v, v))
        sites = sorted(frame["site"].dropna().unique())
        chosen["site"] = cols[len(FILTERS)].multiselect("Site", sites, default=sites, key="cohort_filter_site")
    return chosen


def _provenance(snap, chosen: dict, n: int, pseudonymous: bool) -> dict:
    """What every exported figure and table says about itself: snapshot, cut-off, filters, patients, when."""
    info = components.snapshot_info(snap.key)
    filters = "; ".join(f"{label}: " + ", ".join({True: "yes", False: "no"}.get(v, str(v)) for v in chosen[column])
                        for label, (column, _) in FILTERS.items())
    return {"snapshot_id": str(info["snapshot_id"]), "data_cutoff": f"{pd.Timestamp(info['data_cutoff']):%Y-%m-%d}",
            "filters": filters + f"; sites: {len(chosen['site'])}", "patients": n,
            "ids": "pseudonymous" if pseudonymous else "identified",
            "made_at": pd.Timestamp.now(tz="UTC").strftime("%Y-%m-%d %H:%M UTC")}


def _exports(name: str, fig, data: pd.DataFrame, provenance: dict, key: str) -> None:
    """PNG, SVG and CSV of one figure, each with the snapshot and filters written into the file; made on click."""
    line = ("STOP-HER2 · snapshot {snapshot_id} (cut-off {data_cutoff}) · {patients} patients, {ids} · "
            "filters: {filters} · made {made_at}").format(**provenance)
    problem = exports.static_images_problem()
    with st.popover("Export this figure (PNG, SVG, CSV)"):
        st.caption(line)
        for fmt, mime in (("png", "image/png"), ("svg", "image/svg+xml")):
            if problem is None:
                session.export_button("cohort_figure", f"{fmt.upper()} image",
                                      lambda fmt=fmt: exports.figure_file(fig, fmt, line),
                                      f"stop-her2-{name}.{fmt}", mime, key=f"{key}_{fmt}")
        session.export_button("cohort_figure", "CSV of the data drawn",
                              lambda: safe_csv(exports.with_provenance_columns(data, provenance)),
                              f"stop-her2-{name}.csv", "text/csv", key=f"{key}_csv")
        if problem is not None:
            st.caption(problem)


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
    prov = _provenance(snap, chosen, len(frame), pseudonymous)
    st.warning(cohorts.SELF_SELECTED, icon="⚖️")  # beside every comparison of the cohorts: they chose their arm

    st.subheader("Table 1")
    table_one, models, cif = _statistics(frame.drop(columns=["pseudonym"]))
    st.dataframe(table_one, hide_index=True)
    st.caption("Progression-free survival is the Kaplan-Meier median (with its 95% CI; 'not reached' while fewer "
               "than half have progressed); follow-up is the reverse Kaplan-Meier median.")
    session.export_button("cohort_table", "Download the filtered patients (CSV: pseudonyms, no dates)",
                          lambda: safe_csv(viewer.research_extract(frame)),  # made on click only
                          "stop-her2-cohort.csv", "text/csv", key="cohort_export")

    st.subheader("Progression-free survival from day 0")
    c1, c2 = st.columns(2)
    curves, at_risk, test = cohorts.km_curves(frame, "cohort")
    km_cohort = charts.km_figure(curves, at_risk, test, "By cohort", charts.COHORT_NAMES, charts.COHORT_COLORS,
                                 risk_labels={"1": "cohort 1", "2": "cohort 2"})
    c1.plotly_chart(km_cohort, key="km_cohort")
    with c1:
        _exports("km-by-cohort", km_cohort, curves, prov, "km_cohort")
    c1.caption("Log-rank p between self-selected cohorts: a description, not the effect of stopping.")
    at12 = [cohorts.survival_at(curves, 12).assign(by="cohort", group=lambda d: d["group"].map(charts.COHORT_NAMES))]
    if viewer.sees_ctdna:
        ct = frame.assign(ctdna=frame["ctdna_detected_at_index"].map({True: "detected", False: "not detected"}))
        curves2, at_risk2, test2 = cohorts.km_curves(ct, "ctdna")
        km_ctdna = charts.km_figure(curves2, at_risk2, test2, "By ctDNA at day 0", colors=charts.CTDNA_COLORS)
        c2.plotly_chart(km_ctdna, key="km_ctdna")
        with c2:
            _exports("km-by-ctdna", km_ctdna, curves2, prov, "km_ctdna")
        at12.append(cohorts.survival_at(curves2, 12).assign(by="ctDNA at day 0"))
    else:
        positive_draws = positive_draws.iloc[0:0]
        c2.info(access.CTDNA_BLINDED, icon="🙈")
    st.dataframe(pd.concat(at12).round(3), hide_index=True)

    st.subheader("Hazard ratios")
    if not viewer.sees_ctdna:  # a blinded person sees no ctDNA comparison
        models = models[models["comparison"] != "ctDNA at day 0"]
    st.caption("Cox proportional-hazards models for progression or death, unadjusted and adjusted for covariates "
               "fixed in advance (" + ", ".join(cohorts.COX_ADJUSTED_FOR.values()) + "), complete cases. 'PH test "
               "p' is the Schoenfeld-residual test of proportional hazards for that term: below 0.05, the hazard "
               "ratio changes over time and one number misdescribes it. The cohorts are self-selected: a hazard ratio between "
               "them describes who chose to stop, not the effect of stopping.")
    forest = charts.forest_figure(models)
    st.plotly_chart(forest, key="forest")
    # a static table: it wraps into the page's width (a grid of ten columns scrolled the CIs out of view)
    st.table(cohorts.cox_table(models))
    weak = models[(models["ph_p"] < 0.05)]
    for r in weak.itertuples():
        st.warning(f"{r.comparison}, {r.model}: the proportional-hazards test for {r.term} gives p = {r.ph_p:.2g}; "
                   "its hazard ratio is an average over time that may not hold at any one time.", icon="⚠️")
    _exports("hazard-ratios", forest, models, prov, "forest")

    st.subheader("Competing events")
    st.caption("What ended each patient's time first: progression, restarting therapy without progression, or death "
               "before progression. Aalen-Johansen cumulative incidence: unlike 1 - Kaplan-Meier, it does not treat a "
               "restart or a death as if the patient could still progress later. Between self-selected cohorts, a description, "
               "not an effect.")
    incidence = charts.cumulative_incidence_figure(cif)
    st.plotly_chart(incidence, key="competing")
    _exports("competing-events", incidence, cif, prov, "competing")

    st.subheader("Swimmer plot")
    lanes = cohorts.swimmer_sample(frame, SWIMMER_LANES)
    if len(lanes) < len(frame):
        st.caption(f"{len(lanes)} of {len(frame):,} patients: a random sample, the same on every visit. "
                   "Narrow the filters to see particular patients.")
    shown, draws = cohorts.swimmer_lanes(lanes.assign(label=lanes["pseudonym"] if pseudonymous else lanes["patient_id"]),
                                         positive_draws)
    swimmer = charts.swimmer_figure(shown, draws)
    st.plotly_chart(swimmer, key="swimmer")
    _exports("swimmer", swimmer, shown[["label", "cohort", "os_months", "progressed_months", "restarted_months",
                                        "died_months"]], prov, "swimmer")

    if viewer.sees_ctdna:
        st.subheader("ctDNA lead time")
        leads, no_signal = cohorts.lead_times(positive_draws[positive_draws["patient_id"].isin(frame["patient_id"])], frame)
        lead = charts.lead_time_figure(leads, no_signal)
        st.plotly_chart(lead, key="lead_time")
        _exports("ctdna-lead-time", lead, leads[["lead_months"]], prov, "lead")

    st.subheader("Patient-reported outcomes")
    catalogue = components.pro_catalogue(snap.key)
    mcid = {(r.instrument, r.scale): r.meaningful_change for r in catalogue.itertuples()}
    change = cohorts.pro_change(pro_sums[cohorts.keep(pro_sums, chosen)])
    pro = charts.pro_change_figure(change, PRO_SCALES, mcid)
    st.plotly_chart(pro, key="pro_change")
    st.caption(f"Each point is labelled with its number of patients (n); an open point has fewer than "
               f"{cohorts.MIN_N_FOR_CI} and no interval. Grey: within the scale's meaningful change.")
    _exports("pro-change", pro, change, prov, "pro")
