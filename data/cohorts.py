"""Cohort-level statistics for researchers (pure: DataFrames in, DataFrames out; no Streamlit).

Kaplan-Meier curves and log-rank tests come from lifelines; everything here is deterministic.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from lifelines import KaplanMeierFitter
from lifelines.statistics import multivariate_logrank_test

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
    ("PFS time, months (to progression, death or censoring)", "pfs_months", "median"),
)


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
    return pd.DataFrame(rows)


def km_curves(frame: pd.DataFrame, group: str, time: str = "pfs_months", event: str = "pfs_event",
              at_risk_times=(0, 6, 12, 18, 24, 30, 36)) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Kaplan-Meier per group with 95% CI (lifelines), numbers at risk, and a log-rank test.

    Returns (curves: group, time, survival, lower, upper), (at_risk: group, time, n), and
    {"test_statistic", "p_value", "degrees_of_freedom"}.
    """
    data = frame[[group, time, event]].dropna()
    curves, risk = [], []
    for g, d in data.groupby(group, sort=True):
        kmf = KaplanMeierFitter().fit(d[time], d[event].astype(bool), label=str(g))
        sf = kmf.survival_function_.iloc[:, 0]
        ci = kmf.confidence_interval_survival_function_
        curves.append(pd.DataFrame({"group": str(g), "time": sf.index.to_numpy(), "survival": sf.to_numpy(),
                                    "lower": ci.iloc[:, 0].to_numpy(), "upper": ci.iloc[:, 1].to_numpy()}))
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


def pro_change(sums: pd.DataFrame) -> pd.DataFrame:
    """Mean change from baseline per scale, cohort and visit month with a 95% CI (t interval).

    `sums` holds n, total and total_sq (queries.pro_change_sums), possibly split by other columns: they
    are added up here, so filtering patients first and summing after gives the same mean and SD as the
    scores themselves (tests compare the two).
    """
    from scipy import stats

    keys = ["instrument", "scale", "label", "cohort", "month"]
    out = sums.groupby(keys, as_index=False)[["n", "total", "total_sq"]].sum()
    out = out[out["n"] >= 3].reset_index(drop=True)
    n = out["n"].astype(float)
    out["mean"] = out["total"] / n
    out["sd"] = np.sqrt(np.maximum(out["total_sq"] - n * out["mean"] ** 2, 0.0) / (n - 1))
    half = stats.t.ppf(0.975, n - 1) * out["sd"] / np.sqrt(n)
    out["lower"], out["upper"] = out["mean"] - half, out["mean"] + half
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
