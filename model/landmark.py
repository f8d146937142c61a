"""The estimate as of a date: a landmark supermodel that learns from every ctDNA draw after stopping.

The estimand (van Houwelingen, Dynamic Prediction in Clinical Survival Analysis, 2012): for a patient
alive, progression-free and off anti-HER2 therapy at landmark s (months since day 0), the probability
of no radiological progression and no death in (s, s + H], H = 6, 12 or 24 months, given what is
known at s. Two figures from the same machinery:

* ``pfs`` (primary, treatment policy, the trial's PFS endpoint): a restart of therapy does not censor;
* ``off_therapy``: still off therapy AND progression-free (a restart counts as an event), the
  figure a patient asking "how long can I stay off?" wants.

Data: stacked landmark data sets, one row per patient at risk at each s = 0, 3, ..., 24 months, with
inputs known at s only (:func:`landmark_rows`): the ctDNA call of the last draw with a result at or
before s, its level (log10 multiple of the detection limit), whether a negative call comes only from the
draw at stopping (taken on therapy), complete response to first line, visceral disease and a history of
brain metastases. Outcome: the event in (s, s + 24], censored at the end of follow-up.

Model: proportional hazards with a piecewise-constant baseline over time since the landmark (0-6,
6-12, 12-24 months) and a term for s itself, fitted once on the stacked data (a Poisson likelihood
for the pieces' events and exposure), with normal priors (MAP): the ctDNA hazard ratio centred on
about 6 (published relapse studies report 4-10 in metastatic and 12-25 in early disease; wide), the
baseline from the published off-therapy remission figures (Steenbruggen 2019, Moilanen 2017, HER-OS
2014: ~87% at 12 months for a ctDNA-negative complete responder). The same patient appears at several
landmarks, so the curvature of the stacked likelihood overstates what is known: the posterior
covariance uses the Godambe (sandwich) information clustered by patient, plus the prior precision
(a Laplace approximation). Intervals are on the log cumulative hazard scale.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import numpy as np
import pandas as pd
from scipy import optimize
from scipy.stats import norm

from data.clinical import CTDNA_STALE_DAYS, DAYS_PER_MONTH, HORIZONS, LANDMARK_MONTHS

LANDMARKS = LANDMARK_MONTHS  # months since day 0
#: An estimate as of a date needs the patient seen (progression-free) within this many days before it.
FOLLOW_UP_GRACE_DAYS = 183
PIECES = (0.0, 6.0, 12.0, 24.0)  # baseline hazard pieces, months since the landmark
MAX_HORIZON = PIECES[-1]
ESTIMANDS = {"pfs": "progression-free and alive (a restart of therapy does not count: the trial's PFS)",
             "off_therapy": "still off anti-HER2 therapy and progression-free (a restart counts as an event)"}
#: The inputs, pre-specified: the strongest signal after stopping, two published prognostic factors, and
#: brain metastases history: a worse outlook (clinical-facts.md) AND the relapse ctDNA misses (a brain-only
#: relapse sheds little into the blood), so it carries risk that a negative draw cannot rule out.
#: A negative call means less when it is the draw at stopping, taken on therapy: therapy holds the disease down, and a
#: relapse's ctDNA rises over months before it shows on a scan (lead time, clinical-facts.md), so only a negative
#: draw taken off therapy says that no relapse has begun. Measured: without this input the 12-month net benefit
#: fell below Kaplan-Meier by ctDNA (README, "The estimate as of today").
INPUTS = ("ctdna_detected", "ctdna_level", "ctdna_negative_on_therapy_only", "complete_response", "visceral",
          "brain_mets_history", "landmark_years")
#: Recorded once, at enrolment: when missing, set to the training patients' average (one way, said on the card).
ENROLMENT_INPUTS = ("complete_response", "visceral", "brain_mets_history")
INPUT_LABELS = {"ctdna_detected": "ctDNA positive on the latest draw", "ctdna_level": "ctDNA level (log10 x limit)",
                "ctdna_negative_on_therapy_only": "ctDNA negative, but no draw yet since stopping (only on therapy)",
                "complete_response": "complete response to first line", "visceral": "visceral disease",
                "brain_mets_history": "history of brain metastases",
                "landmark_years": "years since stopping"}
#: Normal priors on each coefficient (log hazard ratio): (mean, sd), with the reason.
PRIORS = {
    "ctdna_detected": (np.log(6.0), 0.6, "HR ~6 (95% prior range ~2-20): relapse studies after stopping or "
                                         "surgery report 4-10 in metastatic and 12-25 in early disease"),
    "ctdna_level": (0.0, 0.5, "no published dose-response at these levels: centred on no effect"),
    "ctdna_negative_on_therapy_only": (0.0, 1.0, "no published comparison of a negative draw on therapy with one off "
                                                 "it: centred on no difference, wide"),
    "complete_response": (np.log(0.6), 0.5, "HER-OS 2014 and Steenbruggen 2019: CR goes with longer remission"),
    "visceral": (np.log(1.3), 0.5, "visceral disease: a worse outlook (clinical-facts.md)"),
    "brain_mets_history": (np.log(1.5), 0.5, "a worse outlook (clinical-facts.md), no published size; and "
                                             "brain-only relapses often escape ctDNA: centred on HR 1.5, wide"),
    "landmark_years": (0.0, 0.5, "no prior knowledge of how the hazard changes with time off therapy"),
}
#: Baseline hazard per month (every input 0: ctDNA not detected, no CR, non-visceral, no brain history, s = 0), centred on the
#: remission of a complete responder, wide (sd 1 on the log scale) so that the data move it:
#: 12-month remission ~87% off therapy (no published figure; the assumption in clinical-facts.md).
BASELINE_PRIOR = (np.log(-np.log(0.87) / 12), 1.0)


# ---------------------------------------------------------------------------------- the data
def landmark_rows(patients: pd.DataFrame, draws: pd.DataFrame, outcomes: pd.DataFrame,
                  landmarks=LANDMARKS, as_of=None) -> pd.DataFrame:
    """One row per patient at risk at each landmark, with inputs known at that landmark only.

    patients: patient_id, index_date, best_response, visceral, brain_mets_history; draws: patient_id, drawn_on, detected,
    value, lod, qc; outcomes: patient_id, progressed_on, died_on, restarted_on, last_followup_on.
    `landmarks` are months since each patient's day 0; with `as_of` (a date, or a list of dates) each patient
    gets the landmark of that date (of each date, in the order given) instead; `as_of` may also be a frame of
    patient_id and landmark_date: each patient's own dates, rows in the frame's order. A patient is at risk at s
    when alive, progression-free and still followed at s. Columns: patient_id, landmark (months), landmark_date,
    the INPUTS, ctdna_drawn_on, ctdna_days_before, months_since_first_positive, consecutive_positive,
    restarted_before, and the outcome columns time_pfs, event_pfs, time_off_therapy, event_off_therapy (months
    after the landmark).
    """
    p = patients[["patient_id", "index_date", "best_response", "visceral", "brain_mets_history"]].merge(
        outcomes[["patient_id", "progressed_on", "died_on", "restarted_on", "last_followup_on"]], on="patient_id")
    for c in ("index_date", "progressed_on", "died_on", "restarted_on", "last_followup_on"):
        p[c] = pd.to_datetime(p[c])
    if as_of is None:
        grid = p.merge(pd.DataFrame({"landmark": list(landmarks)}), how="cross")
        grid["landmark_date"] = grid["index_date"] + pd.to_timedelta(np.round(grid["landmark"] * DAYS_PER_MONTH), "D")
    elif isinstance(as_of, pd.DataFrame):  # each patient's own dates (several patients' estimates over time)
        grid = as_of[["patient_id", "landmark_date"]].merge(p, on="patient_id")[[*p.columns, "landmark_date"]]
        grid["landmark_date"] = grid["landmark_date"].astype("datetime64[ns]")
        grid["landmark"] = (grid["landmark_date"] - grid["index_date"]).dt.days / DAYS_PER_MONTH
    else:  # one date, or several at once (a patient's estimate over time: one pass, not one per date)
        dates = [as_of] if np.isscalar(as_of) or isinstance(as_of, date) else list(as_of)  # a Timestamp is a date
        grid = p.merge(pd.DataFrame({"landmark_date": pd.to_datetime(dates).astype("datetime64[ns]")}), how="cross")
        grid["landmark"] = (grid["landmark_date"] - grid["index_date"]).dt.days / DAYS_PER_MONTH
    ld = grid["landmark_date"]
    event_on = grid[["progressed_on", "died_on"]].min(axis=1)
    # Followed at s: seen on or after it (training), or, for an estimate as of a date, seen within
    # FOLLOW_UP_GRACE_DAYS before it (a patient seen last month is still in follow-up; a withdrawn one is not).
    grace = pd.Timedelta(days=0 if as_of is None else FOLLOW_UP_GRACE_DAYS)
    grid["last_seen_days"] = (ld - grid["last_followup_on"]).dt.days.clip(lower=0)
    grid["at_risk"] = (grid["landmark"] >= 0) & ~(event_on <= ld) & (grid["last_followup_on"] >= ld - grace)
    grid["restarted_before"] = grid["restarted_on"] <= ld
    # outcomes after the landmark (months), censored at the end of follow-up and at the longest horizon
    end = grid[["last_followup_on", "died_on"]].max(axis=1)
    t_event = (event_on - ld).dt.days / DAYS_PER_MONTH
    t_end = (end - ld).dt.days / DAYS_PER_MONTH
    grid["event_pfs"] = t_event.notna() & (t_event <= np.minimum(t_end, MAX_HORIZON))
    grid["time_pfs"] = np.where(grid["event_pfs"], t_event, np.minimum(t_end, MAX_HORIZON))
    t_restart = (grid["restarted_on"] - ld).dt.days / DAYS_PER_MONTH
    t_restart = t_restart.where(t_restart > 0)
    first = pd.concat([t_event, t_restart], axis=1).min(axis=1)
    grid["event_off_therapy"] = first.notna() & (first <= np.minimum(t_end, MAX_HORIZON))
    grid["time_off_therapy"] = np.where(grid["event_off_therapy"], first, np.minimum(t_end, MAX_HORIZON))
    grid["complete_response"] = grid["best_response"].map({"CR": 1.0}).fillna(0.0).where(grid["best_response"].notna())
    for c in ("visceral", "brain_mets_history"):
        grid[c] = grid[c].astype("float64")
    grid["landmark_years"] = grid["landmark"] / 12
    return _ctdna_at(grid, draws)


def _ctdna_at(grid: pd.DataFrame, draws: pd.DataFrame) -> pd.DataFrame:
    """The ctDNA inputs at each row's landmark date, from draws on or before it (nothing later leaks in)."""
    d = draws[draws["qc"] == "pass"][["patient_id", "drawn_on", "detected", "value", "lod"]].copy()
    d["drawn_on"] = pd.to_datetime(d["drawn_on"]).astype("datetime64[ns]")
    d["detected"] = d["detected"].astype(bool)
    d = d.sort_values(["patient_id", "drawn_on"])
    # run of consecutive positive draws ending at each draw, and the first positive draw so far
    run_id = (~d["detected"]).groupby(d["patient_id"]).cumsum()
    d["consecutive_positive"] = d["detected"].groupby([d["patient_id"], run_id]).cumsum().astype(int)
    first_pos = d["drawn_on"].where(d["detected"])
    d["first_positive_on"] = first_pos.groupby(d["patient_id"]).cummin()
    d["level"] = np.where(d["detected"], np.log10(np.maximum(d["value"] / d["lod"], 1.0)), 0.0)
    rows = grid.reset_index(drop=True).reset_index(names="_row")
    rows["landmark_date"] = rows["landmark_date"].astype("datetime64[ns]")
    rows = rows.sort_values("landmark_date")
    d = d.rename(columns={"drawn_on": "ctdna_drawn_on"}).sort_values("ctdna_drawn_on")
    m = pd.merge_asof(rows, d, left_on="landmark_date", right_on="ctdna_drawn_on", by="patient_id",
                      direction="backward")
    m = m.sort_values("_row").drop(columns="_row").reset_index(drop=True)
    has = m["ctdna_drawn_on"].notna()
    m["ctdna_detected"] = m["detected"].astype("float64").where(has)
    m["ctdna_level"] = m["level"].where(has)
    # a negative call whose draw was taken on or before day 0, while still on therapy (no draw off therapy yet)
    m["ctdna_negative_on_therapy_only"] = ((~m["detected"].astype(bool)) & (m["ctdna_drawn_on"] <= m["index_date"])
                                           ).astype("float64").where(has)
    m["ctdna_days_before"] = (m["landmark_date"] - m["ctdna_drawn_on"]).dt.days
    m["months_since_first_positive"] = ((m["landmark_date"] - m["first_positive_on"]).dt.days / DAYS_PER_MONTH)
    m["consecutive_positive"] = m["consecutive_positive"].where(has)
    return m.drop(columns=["detected", "value", "lod", "level", "first_positive_on"])


def exposure(time: np.ndarray, event: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Months spent in each baseline piece and the piece of the event: (n x K exposure, n x K events)."""
    lo, hi = np.array(PIECES[:-1]), np.array(PIECES[1:])
    t = np.asarray(time, float)[:, None]
    exp_ = np.clip(t, lo, hi) - lo
    ev = (np.asarray(event, bool)[:, None] & (t > lo) & (t <= hi)).astype(float)
    return exp_, ev


# ---------------------------------------------------------------------------------- the model
@dataclass
class LandmarkFit:
    """One estimand's fitted supermodel: coefficients, log baseline hazards, posterior covariance."""

    estimand: str
    coef: np.ndarray  # len(INPUTS) log hazard ratios, then len(PIECES) - 1 log baseline hazards
    cov: np.ndarray
    center: dict  # imputation values for optional inputs (training means)
    n_rows: int
    n_patients: int
    n_events: int
    level_max: float  # the highest ctDNA level among the training rows

    def cumulative_hazard_terms(self, X: np.ndarray, horizon: float) -> tuple[np.ndarray, np.ndarray]:
        """log cumulative hazard at `horizon` months after the landmark, and its gradient in the parameters."""
        k = len(INPUTS)
        beta, log_lam = self.coef[:k], self.coef[k:]
        e, _ = exposure(np.full(1, float(horizon)), np.zeros(1, bool))
        base = np.exp(log_lam) * e[0]
        log_h = X @ beta + np.log(base.sum())
        grad = np.column_stack([X, np.tile(base / base.sum(), (len(X), 1))])
        return log_h, grad

    def log_cumulative_hazard(self, X: np.ndarray, horizon: float) -> tuple[np.ndarray, np.ndarray]:
        """log cumulative hazard at `horizon` and its standard error from the coefficients' uncertainty alone."""
        log_h, grad = self.cumulative_hazard_terms(X, horizon)
        return log_h, np.sqrt(np.einsum("ij,jk,ik->i", grad, self.cov, grad))

    def survival(self, X: np.ndarray, horizon: float, level: float = 0.95, interval: dict | None = None):
        """The estimate and its interval. Without `interval`, the interval reflects the coefficients'
        uncertainty only; with it (the measured calibration, see :func:`interval_terms`), it also holds how far
        a patient's own chance can be from what these few inputs say."""
        log_h, se = self.log_cumulative_hazard(X, horizon)
        if interval is None:
            z = norm.ppf((1 + level) / 2)
            lo_z, hi_z, spread = -z, z, se
        else:
            if abs(level - interval["level"]) > 1e-9:
                raise ValueError(f"the interval was calibrated at level {interval['level']}, not {level}")
            tau2, lo_z, hi_z = interval_terms(interval, X, horizon)
            spread = np.sqrt(se ** 2 + tau2)
        return np.exp(-np.exp(log_h)), np.exp(-np.exp(log_h + hi_z * spread)), np.exp(-np.exp(log_h + lo_z * spread))


def is_first_landmark(months):
    """Before the first 3-monthly draw: only the day-0 draw can be known (a calibration cell of its own)."""
    return months < LANDMARKS[1]


def interval_cell(detected: float, complete_response: float, first_landmark: bool, horizon: float) -> str:
    return f"{int(detected)}|{int(complete_response)}|{int(bool(first_landmark))}|{int(horizon)}"


def interval_terms(interval: dict, X: np.ndarray, horizon: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row of the design X: the extra variance (tau^2) and the two standardised quantiles of its cell.

    The calibration (model/landmark_check.py, stored as data) measured, on synthetic trials, how far the truth
    fell from the estimate on the log cumulative hazard scale, per cell: ctDNA call x complete response x first
    landmark (before the first 3-monthly draw) or later x horizon. A patient whose complete response is not
    recorded gets the wider of the two cells' intervals: that uncertainty is theirs too.
    """
    cells = interval["cells"]
    detected, cr = X[:, INPUTS.index("ctdna_detected")], X[:, INPUTS.index("complete_response")]
    first = is_first_landmark(X[:, INPUTS.index("landmark_years")] * 12)
    unknown_cr = ~np.isin(cr, (0.0, 1.0))
    tau2, lo, hi = np.full(len(X), -np.inf), np.full(len(X), np.inf), np.full(len(X), -np.inf)
    for d, c, f in ((d, c, f) for d in (0, 1) for c in (0, 1) for f in (False, True)):
        rows = (detected == d) & ((cr == c) | unknown_cr) & (first == f)
        if rows.any():  # the widest over the cells a row falls in: largest spread, most extreme quantiles
            cell = cells[interval_cell(d, c, f, horizon)]
            tau2[rows] = np.maximum(tau2[rows], cell["tau2"])
            lo[rows], hi[rows] = np.minimum(lo[rows], cell["z_lower"]), np.maximum(hi[rows], cell["z_upper"])
    return tau2, lo, hi


def design(rows: pd.DataFrame, center: dict) -> np.ndarray:
    """The input matrix: enrolment inputs missing are set to the training mean, one way."""
    X = rows[list(INPUTS)].astype("float64").copy()
    for c in ENROLMENT_INPUTS:
        X[c] = X[c].fillna(center[c])
    # beyond the last landmark the time trend is carried forward, not extrapolated (and the card says so)
    X["landmark_years"] = X["landmark_years"].clip(upper=LANDMARKS[-1] / 12)
    return X.to_numpy()


def fit(rows: pd.DataFrame, estimand: str = "pfs", prior_scale: float = 1.0) -> LandmarkFit:
    """MAP fit of the supermodel on stacked landmark rows (at risk, ctDNA known), with Godambe covariance.

    `prior_scale` multiplies every prior's standard deviation (the sensitivity analysis widens them).
    """
    if estimand not in ESTIMANDS:
        raise ValueError(f"unknown estimand {estimand!r}: one of {', '.join(ESTIMANDS)}")
    rows = rows[rows["at_risk"] & rows["ctdna_detected"].notna()]
    if estimand == "off_therapy":
        rows = rows[~rows["restarted_before"]]
    rows = rows.reset_index(drop=True)
    time, event = rows[f"time_{estimand}"].to_numpy(float), rows[f"event_{estimand}"].to_numpy(bool)
    if len(rows) < 10 or event.sum() < 3:
        raise ValueError(f"too few patients to fit the landmark model: {rows['patient_id'].nunique()} patients "
                         f"at risk, {int(event.sum())} events (need >= 3)")
    center = {c: float(rows[c].mean()) if rows[c].notna().any() else 0.0 for c in ENROLMENT_INPUTS}
    X = design(rows, center)
    E, D = exposure(time, event)
    k, K = X.shape[1], E.shape[1]
    prior_mean = np.r_[[PRIORS[c][0] for c in INPUTS], np.full(K, BASELINE_PRIOR[0])]
    prior_prec = 1 / (prior_scale * np.r_[[PRIORS[c][1] for c in INPUTS], np.full(K, BASELINE_PRIOR[1])]) ** 2

    def parts(theta):
        beta, log_lam = theta[:k], theta[k:]
        mu = np.exp(X @ beta)[:, None] * np.exp(log_lam)[None, :] * E  # expected events per row and piece
        ll = float((D * (X @ beta)[:, None] + D * log_lam[None, :] - mu).sum())
        return mu, ll

    def objective(theta):
        mu, ll = parts(theta)
        dev = theta - prior_mean
        score = np.r_[X.T @ (D - mu).sum(axis=1), (D - mu).sum(axis=0)]
        return -(ll - 0.5 * np.sum(prior_prec * dev ** 2)), -(score - prior_prec * dev)

    res = optimize.minimize(objective, prior_mean.copy(), jac=True, method="L-BFGS-B")
    theta = res.x
    mu, _ = parts(theta)
    resid = D - mu
    # per-row scores, summed per patient (the rows of one patient are not independent)
    row_scores = np.column_stack([X * resid.sum(axis=1)[:, None], resid])
    cluster = pd.factorize(rows["patient_id"])[0]
    G = np.zeros((cluster.max() + 1, k + K))
    np.add.at(G, cluster, row_scores)
    B = G.T @ G
    w = mu.sum(axis=1)
    H = np.zeros((k + K, k + K))
    H[:k, :k] = (X * w[:, None]).T @ X
    H[:k, k:] = X.T @ mu
    H[k:, :k] = H[:k, k:].T
    H[k:, k:] = np.diag(mu.sum(axis=0))
    godambe = H @ np.linalg.pinv(B + 1e-9 * np.eye(k + K)) @ H
    cov = np.linalg.inv(godambe + np.diag(prior_prec))
    return LandmarkFit(estimand, theta, cov, center, len(rows), rows["patient_id"].nunique(), int(event.sum()),
                       float(rows["ctdna_level"].max()))


@dataclass
class LandmarkModel:
    """Both estimands' fits for one snapshot, and what the risk card and the card need to explain them."""

    snapshot_id: str
    fits: dict  # estimand -> LandmarkFit
    training: pd.DataFrame  # the stacked rows it learned from (patient_id, landmark, ctDNA, outcomes)
    created_at: str = ""
    horizons: tuple = HORIZONS
    versions: dict = field(default_factory=dict)
    sample_size: dict = field(default_factory=dict)  # Riley's minimum sample size for this snapshot
    prior_sensitivity: pd.DataFrame | None = None  # the ctDNA hazard ratio and a typical estimate, priors widened
    flow: pd.DataFrame | None = None  # participant flow per landmark (TRIPOD+AI): patients, at risk, used
    missingness: pd.DataFrame | None = None  # per input among the at-risk rows: missing, and how it is handled
    interval: dict | None = None  # the measured interval calibration used (None: the coefficients' uncertainty only)

    def predict(self, rows: pd.DataFrame, horizons=None, estimand: str = "pfs") -> pd.DataFrame:
        """Per row and horizon: estimate, lower, upper, or NaN and the refusal."""
        fit_ = self.fits[estimand]
        out = []
        reasons = [self.refusal(r, estimand) for r in rows.to_dict("records")]
        ok = np.array([r is None for r in reasons])
        for h in horizons or self.horizons:
            frame = pd.DataFrame({"patient_id": rows["patient_id"].to_numpy(), "horizon": h, "estimate": np.nan,
                                  "lower": np.nan, "upper": np.nan, "refusal": [r or "" for r in reasons]})
            if ok.any():
                s, lo, hi = fit_.survival(design(rows[ok], fit_.center), h, interval=self.interval)
                frame.loc[ok, "estimate"], frame.loc[ok, "lower"], frame.loc[ok, "upper"] = s, lo, hi
            out.append(frame)
        return pd.concat(out, ignore_index=True)

    def refusal(self, row: dict, estimand: str = "pfs") -> str | None:
        """Why there is no number for this row, in words (None: the model applies). Only inputs it uses."""
        when = pd.Timestamp(row["landmark_date"]).strftime("%Y-%m-%d")
        if row.get("landmark", 0) < 0:
            return f"{when} is before day 0"
        if not row.get("at_risk", True):
            for key, what in (("progressed_on", "progressed"), ("died_on", "died")):
                if pd.notna(row.get(key)) and pd.Timestamp(row[key]) <= pd.Timestamp(row["landmark_date"]):
                    return f"{what} on {pd.Timestamp(row[key]):%Y-%m-%d}: the estimate is for patients still progression-free"
            seen = row.get("last_followup_on")
            return (f"last followed on {pd.Timestamp(seen):%Y-%m-%d}, more than {FOLLOW_UP_GRACE_DAYS} days before "
                    f"{when}: whether the patient is still progression-free is not known" if pd.notna(seen)
                    else f"not in follow-up on {when}")
        if estimand == "off_therapy" and row.get("restarted_before"):
            return f"anti-HER2 therapy restarted before {when}"
        if row.get("ctdna_detected") is None or pd.isna(row.get("ctdna_detected")):
            return f"no ctDNA result on or before {when} (the model needs the latest ctDNA call)"
        return None

    def notes(self, row: dict, estimand: str = "pfs") -> list[str]:
        """What a clinician should know about the inputs: stale, imputed, beyond the training data."""
        out = []
        seen = row.get("last_seen_days")
        if seen is not None and pd.notna(seen) and seen > 0:
            out.append(f"last followed {int(seen)} days before this date: progression-free then")
        days = row.get("ctdna_days_before")
        if days is not None and pd.notna(days) and days > CTDNA_STALE_DAYS:
            out.append(f"the last ctDNA result is {int(days)} days old (stale after {CTDNA_STALE_DAYS})")
        for c in ENROLMENT_INPUTS:
            if row.get(c) is None or pd.isna(row.get(c)):
                out.append(f"{INPUT_LABELS[c]} not recorded: set to the training patients' average")
        level = row.get("ctdna_level")
        if level is not None and pd.notna(level) and level > self.fits[estimand].level_max + 1e-9:
            out.append("ctDNA level higher than in any patient the model learned from: higher risk than any "
                       "patient the model learned from, and the number is an extrapolation")
        if row.get("landmark", 0) > LANDMARKS[-1]:
            out.append(f"{row['landmark']:.0f} months since stopping: beyond the last landmark the model learned "
                       f"from ({LANDMARKS[-1]} months)")
        return out

    def hazard_ratios(self, estimand: str = "pfs") -> pd.DataFrame:
        f = self.fits[estimand]
        k = len(INPUTS)
        se = np.sqrt(np.diag(f.cov))[:k]
        return pd.DataFrame({"input": [INPUT_LABELS[c] for c in INPUTS], "hazard_ratio": np.exp(f.coef[:k]),
                             "lower": np.exp(f.coef[:k] - 1.96 * se), "upper": np.exp(f.coef[:k] + 1.96 * se),
                             "prior_hr": [np.exp(PRIORS[c][0]) for c in INPUTS],
                             "prior": [PRIORS[c][2] for c in INPUTS]})


def baseline_hazards(fit_: LandmarkFit) -> pd.DataFrame:
    """The baseline hazard of each piece (per month, for the reference patient: ctDNA not detected on a draw off
    therapy, level 0, no CR, not visceral, no brain history, at day 0) with its 95% interval: with the hazard ratios, the whole equation."""
    k = len(INPUTS)
    log_lam, se = fit_.coef[k:], np.sqrt(np.diag(fit_.cov))[k:]
    return pd.DataFrame({"months after the landmark": [f"{a:g}-{b:g}" for a, b in zip(PIECES[:-1], PIECES[1:], strict=True)],
                         "hazard per month": np.exp(log_lam), "lower": np.exp(log_lam - 1.96 * se),
                         "upper": np.exp(log_lam + 1.96 * se)})


def train(patients: pd.DataFrame, draws: pd.DataFrame, outcomes: pd.DataFrame, snapshot_id: str,
          interval: dict | None = None) -> LandmarkModel:
    """Fit both estimands on cohort 2 (the patients who stopped), landmarks every 3 months to 24. `interval`:
    the measured interval calibration to use (model/landmark_check.py); None: coefficients' uncertainty only."""
    stopped = patients[patients["cohort"] == 2]
    rows = landmark_rows(stopped, draws, outcomes)
    fits = {e: fit(rows, e) for e in ESTIMANDS}
    sensitivity = prior_sensitivity(rows, fits["pfs"])
    kept = rows[rows["at_risk"] & rows["ctdna_detected"].notna()][
        ["patient_id", "landmark", "ctdna_detected", "time_pfs", "event_pfs", "time_off_therapy",
         "event_off_therapy", "restarted_before"]].reset_index(drop=True)
    return LandmarkModel(snapshot_id, fits, kept, created_at=datetime.now(UTC).isoformat(timespec="seconds"),
                         sample_size=riley_sample_size(rows), prior_sensitivity=sensitivity,
                         flow=participant_flow(rows), missingness=input_missingness(rows), interval=interval)


def participant_flow(rows: pd.DataFrame) -> pd.DataFrame:
    """Per landmark: the patients who stopped, those still at risk (alive, progression-free, followed), those
    with a ctDNA result by then (the rows the model learns from), and their events within 24 months."""
    g = rows.groupby("landmark")
    used = rows["at_risk"] & rows["ctdna_detected"].notna()
    return pd.DataFrame({
        "months since stopping": sorted(rows["landmark"].unique()),
        "patients who stopped": g["patient_id"].nunique().to_numpy(),
        "at risk": g["at_risk"].sum().astype(int).to_numpy(),
        "with a ctDNA result (used)": used.groupby(rows["landmark"]).sum().astype(int).to_numpy(),
        "progressions or deaths within 24 months": (used & rows["event_pfs"]).groupby(rows["landmark"]).sum()
        .astype(int).to_numpy(),
        "first and last day 0": [f"{d.min():%Y-%m-%d} to {d.max():%Y-%m-%d}" for _, d in g["index_date"]]})


def input_missingness(rows: pd.DataFrame) -> pd.DataFrame:
    at_risk = rows[rows["at_risk"]]
    handled = {"ctdna_detected": "required: no estimate without it", "ctdna_level": "required (0 when the call is negative)",
               "ctdna_negative_on_therapy_only": "from the latest draw's date: known whenever the call is",
               "landmark_years": "never missing"} | {c: "set to the training average, said on the card"
                                                      for c in ENROLMENT_INPUTS}
    return pd.DataFrame([{"input": INPUT_LABELS[c], "missing (at-risk rows)": int(at_risk[c].isna().sum()),
                          "of": len(at_risk), "handled": handled[c]} for c in INPUTS])


def riley_sample_size(rows: pd.DataFrame, shrinkage: float = 0.9, max_r2_share: float = 0.15) -> dict:
    """Riley et al. (BMJ 2020, criterion i): the patients needed for `len(INPUTS)` parameters to need no
    more than 10% shrinkage, with the anticipated Cox-Snell R2 taken as 15% of its maximum (their advice
    when no previous model exists). The maximum comes from an exponential null model of the training
    patients from day 0 (events E in person-time T: ln L0 = E ln(E/T) - E).
    """
    day0 = rows[(rows["landmark"] == 0) & rows["at_risk"]]
    n, events = len(day0), float(day0["event_pfs"].sum())
    person_time = float(day0["time_pfs"].sum())
    if n == 0 or events == 0 or person_time <= 0:
        return {"parameters": len(INPUTS), "patients": n, "events": int(events), "minimum": None}
    ln_l0 = events * np.log(events / person_time) - events
    max_r2 = 1 - np.exp(2 * ln_l0 / n)
    r2 = max_r2_share * max_r2
    minimum = len(INPUTS) / ((shrinkage - 1) * np.log(1 - r2 / shrinkage))
    return {"parameters": len(INPUTS), "patients": n, "events": int(events), "max_r2_cs": float(max_r2),
            "anticipated_r2_cs": float(r2), "minimum": int(np.ceil(minimum)),
            "supported_parameters": float(n * (shrinkage - 1) * np.log(1 - r2 / shrinkage))}


def prior_sensitivity(rows: pd.DataFrame, primary: LandmarkFit) -> pd.DataFrame:
    """How much the priors move the answer: the fit again with every prior's sd x 3 and x 10."""
    # at day 0 a negative call can only come from the draw at stopping, taken on therapy
    reference = pd.DataFrame([{c: 0.0 for c in INPUTS} | {"complete_response": 1.0, "ctdna_negative_on_therapy_only": 1.0}])
    out = []
    for label, scale, f in (("as published (primary)", 1.0, primary), ("priors 3 x wider", 3.0, None),
                            ("priors 10 x wider", 10.0, None)):
        f = f or fit(rows, "pfs", prior_scale=scale)
        se = np.sqrt(f.cov[0, 0])
        s, _, _ = f.survival(design(reference, f.center), 12)
        positive = reference.assign(ctdna_detected=1.0, ctdna_negative_on_therapy_only=0.0)
        sp, _, _ = f.survival(design(positive, f.center), 12)
        out.append({"priors": label, "ctDNA hazard ratio": float(np.exp(f.coef[0])),
                    "lower": float(np.exp(f.coef[0] - 1.96 * se)), "upper": float(np.exp(f.coef[0] + 1.96 * se)),
                    "12-month chance, ctDNA negative CR at day 0": float(s[0]),
                    "12-month chance, ctDNA positive CR at day 0": float(sp[0])})
    return pd.DataFrame(out)


def landmark_at_or_before(months: float) -> float:
    """The training landmark a patient at `months` after day 0 is compared with (the last one not after it)."""
    return max(x for x in LANDMARKS if x <= max(months, 0))


def patients_like(model: LandmarkModel, landmark: float, detected: bool, horizon: int,
                  estimand: str = "pfs") -> dict:
    """Kaplan-Meier of the training patients at the nearest landmark at or before `landmark` with the same
    ctDNA call: n, events by the horizon, the KM chance at the horizon with its 95% CI ("patients like this")."""
    from lifelines import KaplanMeierFitter

    s = landmark_at_or_before(landmark)
    t = model.training
    if estimand == "off_therapy":
        t = t[~t["restarted_before"]]
    g = t[(t["landmark"] == s) & (t["ctdna_detected"] == float(detected))]
    if len(g) < 2:
        return {"landmark": s, "n": len(g), "events": 0, "km": None, "lower": None, "upper": None}
    km = KaplanMeierFitter().fit(g[f"time_{estimand}"], g[f"event_{estimand}"])
    ci = km.confidence_interval_survival_function_
    at = km.survival_function_.index[km.survival_function_.index <= horizon].max()
    events = int((g[f"event_{estimand}"] & (g[f"time_{estimand}"] <= horizon)).sum())
    lower, upper = float(ci.loc[at].iloc[0]), float(ci.loc[at].iloc[1])
    if events == 0:
        # With no event the log-log interval collapses to 100%-100%, as if 18 patients proved certainty. The
        # exact (Clopper-Pearson) bound for 0 events among the n still at risk at the last time before the
        # horizon: lower = 0.025 ** (1 / n).
        at_risk = int(km.event_table["at_risk"].loc[:at].iloc[-1])
        lower, upper = 0.025 ** (1 / max(at_risk, 1)), 1.0
    return {"landmark": s, "n": len(g), "events": events, "km": float(km.survival_function_.loc[at].iloc[0]),
            "lower": lower, "upper": upper,
            "followed_to_horizon": bool(g[f"time_{estimand}"].max() >= horizon)}
