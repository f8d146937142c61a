"""Cohort-level statistics for researchers (pure: DataFrames in, DataFrames out; no Streamlit).

Kaplan-Meier curves and log-rank tests come from lifelines; everything here is deterministic.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from lifelines import KaplanMeierFitter
from lifelines.statistics import multivariate_logrank_test
from lifelines.utils import median_survival_times, qth_survival_time

from data.clinical import DAYS_PER_MONTH  # noqa: E402

#: Table 1 rows: (label, column, kind) with kind "median" (median [IQR]) or "share" (n (%) of a value).
TABLE_ONE = (
    ("Age at enrolment, years", "age_at_enrolment", "median"),
    ("Female", ("sex", "F"), "share"),
    ("ER positive", ("er_status", "positive"), "share"),
    ("PR positive", ("pr_status", "positive"), "share"),
    ("HER2 IHC 3+", ("her2_ihc", "3+"), "share"),
    ("De novo metastatic", ("de_novo", True), "share"),
    ("Visceral disease", ("visceral", True), "share"),
    ("Brain metastases history", ("brain_mets_history", True), "share"),
    ("Metastatic sites", "n_metastatic_sites", "median"),
    ("Complete response to first line", ("best_response", "CR"), "share"),
    ("Years on first-line therapy at day 0", "years_on_first_line", "median"),
    ("ctDNA detected at day 0", ("ctdna_detected_at_index", True), "share"),
)
#: Table 1's time-to-event rows: the Kaplan-Meier median, not the median of observed times (which mixes
#: censored follow-up with events and understates both).
PFS_MEDIAN_ROW = "Progression-free survival, median months (95% CI), Kaplan-Meier"
FOLLOW_UP_ROW = "Follow-up, median months (IQR), reverse Kaplan-Meier"


def table_one(frame: pd.DataFrame, by: str = "cohort") -> pd.DataFrame:
    """Counts, medians with IQR and missing counts, one column per group (and overall)."""
    groups = [(f"cohort {g}", frame[frame[by] == g]) for g in sorted(frame[by].dropna().unique())]
    groups.append(("all", frame))
    rows = [{"": "Patients", **{name: f"{len(g)}" for name, g in groups}}]
    for label, column, kind in TABLE_ONE:
        row = {"": label}
        for name, g in groups:
            if kind == "median":
                x = pd.to_numeric(g[column], errors="coerce")
                q = x.quantile([0.25, 0.5, 0.75])
                text = f"{q[0.5]:.1f} [{q[0.25]:.1f}-{q[0.75]:.1f}]" if x.notna().any() else "—"
                missing = int(x.isna().sum())
            else:
                col, value = column
                x = g[col]
                known = x.notna()
                n = int((x[known] == value).sum())
                text = f"{n} ({100 * n / known.sum():.0f}%)" if known.any() else "—"
                missing = int((~known).sum())
            row[name] = text + (f"; {missing} missing" if missing else "")
        rows.append(row)
    rows.append({"": PFS_MEDIAN_ROW, **{name: _median_text(*km_median(g)) for name, g in groups}})
    rows.append({"": FOLLOW_UP_ROW, **{name: _follow_up_text(g) for name, g in groups}})
    return pd.DataFrame(rows)


def _months(value: float) -> str:
    return "not reached" if not np.isfinite(value) else f"{value:.1f}"


def _median_text(median: float, low: float, high: float, events: int) -> str:
    if np.isnan(median):
        return "—"
    if not np.isfinite(median):  # fewer than half progressed: the CI has at most a lower end
        return f"not reached{f' (CI from {low:.1f})' if np.isfinite(low) else ''}; {events} events"
    return f"{median:.1f} ({_months(low)} to {_months(high)}); {events} events"


def km_median(frame: pd.DataFrame, time: str = "pfs_months", event: str = "pfs_event") -> tuple[float, float, float, int]:
    """The Kaplan-Meier median time with its 95% CI (lifelines; inf: not reached) and the number of events."""
    d = frame[[time, event]].dropna()
    if d.empty:
        return float("nan"), float("nan"), float("nan"), 0
    kmf = KaplanMeierFitter().fit(d[time], d[event].astype(bool))
    ci = median_survival_times(kmf.confidence_interval_)
    return float(kmf.median_survival_time_), float(ci.iloc[0, 0]), float(ci.iloc[0, 1]), int(d[event].astype(bool).sum())


def follow_up(frame: pd.DataFrame, time: str = "pfs_months", event: str = "pfs_event") -> tuple[float, float, float]:
    """Median follow-up by reverse Kaplan-Meier (censoring is the 'event'), with its quartiles.

    The median of everyone's observed time would count a progression after a month as a month of
    follow-up; the reverse KM asks how long patients would have been followed had none progressed.
    """
    d = frame[[time, event]].dropna()
    if d.empty:
        return float("nan"), float("nan"), float("nan")
    sf = KaplanMeierFitter().fit(d[time], ~d[event].astype(bool)).survival_function_
    q = [float(qth_survival_time(p, sf)) for p in (0.75, 0.5, 0.25)]  # survival 0.75 = the first quartile of time
    return q[1], q[0], q[2]


def _follow_up_text(frame: pd.DataFrame) -> str:
    median, q1, q3 = follow_up(frame)
    return "—" if np.isnan(median) else f"{_months(median)} ({_months(q1)}-{_months(q3)})"


def km_curves(frame: pd.DataFrame, group: str, time: str = "pfs_months", event: str = "pfs_event",
              at_risk_times=(0, 6, 12, 18, 24, 30, 36)) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Kaplan-Meier per group with 95% CI (lifelines), numbers at risk, and a log-rank test.

    Returns (curves: group, time, survival, lower, upper, censored (how many were censored at that time)),
    (at_risk: group, time, n), and
    {"test_statistic", "p_value", "degrees_of_freedom"}.
    """
    data = frame[[group, time, event]].dropna()
    curves, risk = [], []
    for g, d in data.groupby(group, sort=True):
        kmf = KaplanMeierFitter().fit(d[time], d[event].astype(bool), label=str(g))
        sf = kmf.survival_function_.iloc[:, 0]
        ci = kmf.confidence_interval_survival_function_
        censored = kmf.event_table["censored"].reindex(sf.index, fill_value=0)
        curves.append(pd.DataFrame({"group": str(g), "time": sf.index.to_numpy(), "survival": sf.to_numpy(),
                                    "lower": ci.iloc[:, 0].to_numpy(), "upper": ci.iloc[:, 1].to_numpy(),
                                    "censored": censored.to_numpy().astype(int)}))
        for t in at_risk_times:
            risk.append({"group": str(g), "time": t, "n": int((d[time] >= t).sum())})
    test = {"test_statistic": float("nan"), "p_value": float("nan"), "degrees_of_freedom": 0}
    if data[group].nunique() > 1:
        r = multivariate_logrank_test(data[time], data[group].astype(str), data[event].astype(bool))
        test = {"test_statistic": float(r.test_statistic), "p_value": float(r.p_value),
                "degrees_of_freedom": int(r.degrees_of_freedom)}
    return pd.concat(curves, ignore_index=True), pd.DataFrame(risk), test


def survival_at(curves: pd.DataFrame, months: float) -> pd.DataFrame:
    """Each group's KM estimate (with CI) at a time point."""
    rows = []
    for g, c in curves.groupby("group"):
        last = c[c["time"] <= months].iloc[-1]
        rows.append({"group": g, "months": months, "survival": last["survival"], "lower": last["lower"],
                     "upper": last["upper"]})
    return pd.DataFrame(rows)


def lead_times(draws: pd.DataFrame, outcomes: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """For each progression, months from the first positive ctDNA draw to radiological progression.

    Returns (one row per progression with a signal before it: patient_id, lead_months), and the
    number of progressions with no positive draw on or before the progression.
    """
    prog = outcomes.loc[outcomes["progressed"], ["patient_id", "progressed_on"]]
    pos = draws[draws["detected"] == True][["patient_id", "drawn_on"]]  # noqa: E712 (nullable boolean)
    m = prog.merge(pos, on="patient_id", how="left")
    m = m[m["drawn_on"].isna() | (pd.to_datetime(m["drawn_on"]) <= pd.to_datetime(m["progressed_on"]))]
    first = m.groupby("patient_id", as_index=False).agg(progressed_on=("progressed_on", "first"),
                                                        first_positive=("drawn_on", "min"))
    first = prog[["patient_id"]].merge(first, on="patient_id", how="left")
    with_signal = first[first["first_positive"].notna()].copy()
    with_signal["lead_months"] = (pd.to_datetime(with_signal["progressed_on"])
                                  - pd.to_datetime(with_signal["first_positive"])).dt.days / DAYS_PER_MONTH
    return with_signal[["patient_id", "lead_months"]], int(first["first_positive"].isna().sum())


#: A visit window's mean gets a confidence interval only from this many patients on.
MIN_N_FOR_CI = 5


def pro_change(sums: pd.DataFrame) -> pd.DataFrame:
    """Mean change from baseline per scale, cohort and visit month with n and a 95% CI (t interval; none
    below MIN_N_FOR_CI patients).

    `sums` holds n, total and total_sq (queries.pro_change_sums), possibly split by other columns: they
    are added up here, so filtering patients first and summing after gives the same mean and SD as the
    scores themselves (tests compare the two).
    """
    from scipy import stats

    keys = ["instrument", "scale", "label", "cohort", "month"]
    out = sums.groupby(keys, as_index=False)[["n", "total", "total_sq"]].sum()
    out = out[out["n"] >= 1].reset_index(drop=True)
    n = out["n"].astype(float)
    out["mean"] = out["total"] / n
    out["sd"] = np.sqrt(np.maximum(out["total_sq"] - n * out["mean"] ** 2, 0.0) / (n - 1).where(n > 1))
    half = stats.t.ppf(0.975, (n - 1).where(n > 1)) * out["sd"] / np.sqrt(n)
    enough = n >= MIN_N_FOR_CI  # below it a t interval on a handful of people is drawn as if it meant something
    out["lower"], out["upper"] = (out["mean"] - half).where(enough), (out["mean"] + half).where(enough)
    return out[[*keys, "mean", "sd", "n", "lower", "upper"]]


def keep(frame: pd.DataFrame, chosen: dict) -> pd.Series:
    """Rows whose value is among the chosen ones for every filtered column (a missing value stays in)."""
    mask = pd.Series(True, index=frame.index)
    for column, values in chosen.items():
        mask &= frame[column].isin(values) | frame[column].isna()
    return mask


def swimmer_sample(frame: pd.DataFrame, lanes: int) -> pd.DataFrame:
    """At most `lanes` patients for the swimmer plot: all of them, or the first by pseudonym.

    Pseudonyms are keyed hashes, so that is a random sample, the same one on every visit to a snapshot.
    """
    return frame if len(frame) <= lanes else frame.sort_values("pseudonym").head(lanes)


def patient_lead_time(ctdna: pd.DataFrame, progressed_on) -> dict | None:
    """One patient's ctDNA lead time: the first positive draw (QC passed) on or before progression.

    Returns {"first_positive_on", "months"} or None (no progression, or no positive draw before it).
    """
    if progressed_on is None or pd.isna(progressed_on) or ctdna.empty:
        return None
    positive = ctdna[(ctdna["qc"] == "pass") & (ctdna["detected"] == True)  # noqa: E712 (nullable boolean)
                     & (pd.to_datetime(ctdna["drawn_on"]) <= pd.Timestamp(progressed_on))]
    if positive.empty:
        return None
    first = pd.to_datetime(positive["drawn_on"]).min()
    return {"first_positive_on": first, "months": (pd.Timestamp(progressed_on) - first).days / DAYS_PER_MONTH}


def swimmer_lanes(frame: pd.DataFrame, draws: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The swimmer plot's rows: months from day 0 to progression, restart and death; positive draws in months."""
    out = frame.copy()
    for column in ("progressed", "restarted", "died"):
        out[f"{column}_months"] = (pd.to_datetime(out[f"{column}_on"])
                                   - pd.to_datetime(out["index_date"])).dt.days / DAYS_PER_MONTH
    positive = draws[(draws["detected"] == True) & draws["patient_id"].isin(out["patient_id"])]  # noqa: E712
    return out, positive.assign(months_from_index=positive["days_from_index"] / DAYS_PER_MONTH)


# ------------------------------------------------------------------------------ hazard ratios (Cox)
#: Adjustment covariates, fixed before looking at any result (pre-specified): the prognostic factors the
#: trial's own literature names. Few on purpose: with about twenty events, more would overfit.
COX_ADJUSTED_FOR = {"age_at_enrolment": "age (per 10 years)", "er_positive": "ER positive",
                    "visceral": "visceral disease", "de_novo": "de novo metastatic"}
#: The comparisons: name -> (column made by _cox_data, what 1 means, what 0 means, extra adjustment).
COX_COMPARISONS = {
    "cohort": ("stopped", "cohort 2 (stopped)", "cohort 1 (continued)", ()),
    "ctDNA at day 0": ("ctdna_detected", "detected", "not detected", ("stopped",)),
}
SELF_SELECTED = ("The cohorts are self-selected: patients and their oncologists chose to stop or to continue (no "
                 "randomization), so a difference between the cohorts may reflect who chose to stop rather than "
                 "the effect of stopping. Read hazard ratios and log-rank tests as descriptions, not effects.")


def _cox_data(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "T": frame["pfs_months"], "E": frame["pfs_event"].astype(float),
        "stopped": (frame["cohort"] == 2).astype(float),
        "ctdna_detected": frame["ctdna_detected_at_index"].map({True: 1.0, False: 0.0}),
        "age_at_enrolment": pd.to_numeric(frame["age_at_enrolment"], errors="coerce") / 10,
        "er_positive": frame["er_status"].map({"positive": 1.0, "negative": 0.0}),
        "visceral": frame["visceral"].map({True: 1.0, False: 0.0}),
        "de_novo": frame["de_novo"].map({True: 1.0, False: 0.0})})


def cox_models(frame: pd.DataFrame) -> pd.DataFrame:
    """Hazard ratios for progression or death: each comparison unadjusted and adjusted (CoxPHFitter).

    One row per (comparison, model, term) with HR, its 95% CI, Wald p, complete-case n and events, and the
    proportional-hazards test of that term (Schoenfeld residuals against rank of time; a small p says the
    hazard ratio changes over time and one number misdescribes it). A model that cannot be fitted (no
    events in a group, no variation) gives one row saying why instead of a number.
    """
    import warnings

    from lifelines import CoxPHFitter
    from lifelines.exceptions import ConvergenceWarning
    from lifelines.statistics import proportional_hazard_test

    data = _cox_data(frame)
    rows = []
    for comparison, (column, one, zero, extra) in COX_COMPARISONS.items():
        for model, covariates in (("unadjusted", [column]), ("adjusted", [column, *extra, *COX_ADJUSTED_FOR])):
            d = data[["T", "E", *covariates]].dropna()
            # an adjustment covariate with one value in these rows (a filter chose it) adjusts for nothing
            constant = [c for c in covariates[1:] if d[c].nunique() < 2]
            d = d.drop(columns=constant)
            covariates = [c for c in covariates if c not in constant]
            base = {"comparison": comparison, "model": model, "n": len(d), "events": int(d["E"].sum())}
            why, unstable = None, ""
            if d["E"].sum() < 2 or d[column].nunique() < 2:
                why = "too few patients or events in one group"
            elif d.groupby(column)["E"].sum().min() == 0:
                why = "no event in one group: the hazard ratio is not estimable"
            if why is None:
                try:
                    with warnings.catch_warnings(record=True) as caught:
                        warnings.simplefilter("always")
                        cph = CoxPHFitter().fit(d, "T", "E")
                        ph = proportional_hazard_test(cph, d, time_transform="rank").summary["p"]
                except Exception as exc:  # noqa: BLE001 - lifelines' convergence and singularity errors
                    why = ("the model could not be fitted: the estimate runs off to infinity, as when every or no "
                           "patient of one group had an event (complete separation)" if type(exc).__name__ ==
                           "ConvergenceError" else f"the model could not be fitted ({type(exc).__name__})")
                else:
                    if any(issubclass(w.category, (ConvergenceWarning, RuntimeWarning)) for w in caught):
                        unstable = ("unstable: the fit warned of poor convergence (few events, or a group where "
                                    "every or no patient had an event); do not lean on this estimate")
            if why is not None:
                rows.append({**base, "term": one, "hr": np.nan, "lower": np.nan, "upper": np.nan, "p": np.nan,
                             "ph_p": np.nan, "note": why})
                continue
            s = cph.summary
            for term in covariates:
                label = {column: f"{one} vs {zero}", "stopped": "cohort 2 (stopped) vs 1",
                         **COX_ADJUSTED_FOR}[term]
                rows.append({**base, "term": label, "hr": float(s.loc[term, "exp(coef)"]),
                             "lower": float(s.loc[term, "exp(coef) lower 95%"]),
                             "upper": float(s.loc[term, "exp(coef) upper 95%"]), "p": float(s.loc[term, "p"]),
                             "ph_p": float(ph.loc[term]),
                             "note": "; ".join(filter(None, [unstable, ("not adjusted for " + ", ".join(
                                 COX_ADJUSTED_FOR.get(c, c) for c in constant) + ": one value only") if constant
                                 and term == column else ""]))})
    return pd.DataFrame(rows)


def cox_table(models: pd.DataFrame) -> pd.DataFrame:
    """The models as a reader scans them: HR (95% CI), p, the PH test, n and events, and any note."""
    def hr(r):
        return "—" if np.isnan(r.hr) else f"{r.hr:.2f} ({r.lower:.2f} to {r.upper:.2f})"

    return pd.DataFrame({
        "comparison": models["comparison"] + ", " + models["model"], "term": models["term"],
        "HR (95% CI)": [hr(r) for r in models.itertuples()],
        "p": [("—" if np.isnan(p) else f"{p:.2g}") for p in models["p"]],
        "PH test p": [("—" if np.isnan(p) else f"{p:.2g}") for p in models["ph_p"]],
        "n (events)": [f"{n} ({e})" for n, e in zip(models["n"], models["events"], strict=True)],
        "note": models["note"]}).set_index("comparison")


# ------------------------------------------------------------------------------ competing events
#: Event codes for the cumulative incidence curves: the first of these after day 0 ends the patient's time.
COMPETING_EVENTS = {1: "progression", 2: "restart without progression", 3: "death before progression"}


def competing_events(frame: pd.DataFrame) -> pd.DataFrame:
    """Months from day 0 to the first event and its code (0: censored at last follow-up; COMPETING_EVENTS).

    A restart after progression is treatment of the progression, not a competing event; a restart before
    it ends the time off therapy and is one. Ties on one day: progression first, then death, then restart.
    """
    index = pd.to_datetime(frame["index_date"])

    def months(column):
        return (pd.to_datetime(frame[column]) - index).dt.days / DAYS_PER_MONTH

    candidates = pd.DataFrame({1: months("progressed_on"), 3: months("died_on"), 2: months("restarted_on")})
    first = candidates.min(axis=1)
    code = candidates.eq(first, axis=0).idxmax(axis=1).where(first.notna(), 0).astype(int)
    return pd.DataFrame({"patient_id": frame["patient_id"], "cohort": frame["cohort"],
                         "months": first.fillna(frame["pfs_months"]).clip(lower=0), "event": code})


def cumulative_incidence(events: pd.DataFrame, by: str = "cohort", seed: int = 0) -> pd.DataFrame:
    """Aalen-Johansen cumulative incidence of each competing event per group, with 95% CI (lifelines).

    lifelines breaks tied event times by a small random jitter (the estimator needs distinct times); `seed`
    makes that repeatable. Returns group, event, months, incidence, lower, upper.
    """
    import warnings

    from lifelines import AalenJohansenFitter

    out = []
    for g, d in events.groupby(by, sort=True):
        for code, name in COMPETING_EVENTS.items():
            if not (d["event"] == code).any():
                continue
            with warnings.catch_warnings():  # "tied event times were detected": jittered, as documented above
                warnings.simplefilter("ignore")
                ajf = AalenJohansenFitter(seed=seed).fit(d["months"], d["event"], event_of_interest=code)
            cif = ajf.cumulative_density_.iloc[:, 0]
            ci = ajf.confidence_interval_cumulative_density_
            out.append(pd.DataFrame({"group": str(g), "event": name, "months": cif.index.to_numpy(),
                                     "incidence": cif.to_numpy(), "lower": ci.iloc[:, 0].to_numpy(),
                                     "upper": ci.iloc[:, 1].to_numpy()}))
    if not out:
        return pd.DataFrame(columns=["group", "event", "months", "incidence", "lower", "upper"])
    return pd.concat(out, ignore_index=True)
