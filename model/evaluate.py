"""Validation metrics for a predicted probability: a reusable, documented public API.

All functions are pure (arrays in, numbers or DataFrames out) and accept observation weights, so
that inverse-probability-of-censoring weights (IPCW) carry through.

* ``binary_metrics(y, p, weights=None)``: discrimination and calibration of a probability p of
  the outcome y = 1.
* ``survival_at_horizon(time, event, risk, horizon)``: the same questions for censored data, where
  ``risk`` is the predicted probability of the event by the horizon (Austin, Harrell & van
  Klaveren, Stat Med 2020).
* ``net_benefit(y, risk, thresholds, weights=None)``: decision curves (Vickers & Elkin 2006).
* ``calibration_by_subgroup(y, p, groups, weights=None)``: observed vs expected per subgroup.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import optimize, stats
from scipy.special import expit

_EPS = 1e-9


def _arrays(y, p, weights):
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    w = np.ones_like(y) if weights is None else np.asarray(weights, dtype=float)
    if not (y.shape == p.shape == w.shape) or y.ndim != 1:
        raise ValueError("y, p and weights must be 1-d arrays of one length")
    if np.any((p < 0) | (p > 1)) or np.any(np.isnan(p)):
        raise ValueError("p must be probabilities in [0, 1]")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("y must be 0 or 1")
    if np.any(w < 0):
        raise ValueError("weights must be >= 0")
    return y, p, w


def logit(p):
    p = np.clip(np.asarray(p, dtype=float), _EPS, 1 - _EPS)
    return np.log(p / (1 - p))


def _weighted_logistic(X: np.ndarray, y: np.ndarray, w: np.ndarray, offset=None) -> np.ndarray:
    """Maximum-likelihood logistic regression (no penalty) by Newton's method; X includes the intercept."""
    offset = np.zeros(len(y)) if offset is None else offset
    beta = np.zeros(X.shape[1])

    def nll(b):
        eta = X @ b + offset
        return -np.sum(w * (y * eta - np.logaddexp(0, eta)))

    def grad(b):
        mu = expit(X @ b + offset)
        return -X.T @ (w * (y - mu))

    def hess(b):
        mu = expit(X @ b + offset)
        return X.T @ (X * (w * mu * (1 - mu))[:, None])

    res = optimize.minimize(nll, beta, jac=grad, hess=hess, method="trust-exact")
    return res.x


def rcs_basis(x: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """Restricted cubic spline basis (Harrell): x plus k-2 non-linear terms, linear beyond the knots."""
    x = np.asarray(x, dtype=float)
    k = np.asarray(knots, dtype=float)
    t_last, t_pen = k[-1], k[-2]
    scale = (t_last - k[0]) ** 2
    cols = [x]
    for j in range(len(k) - 2):
        term = (np.maximum(x - k[j], 0) ** 3
                - np.maximum(x - t_pen, 0) ** 3 * (t_last - k[j]) / (t_last - t_pen)
                + np.maximum(x - t_last, 0) ** 3 * (t_pen - k[j]) / (t_last - t_pen))
        cols.append(term / scale)
    return np.column_stack(cols)


def _knots(x: np.ndarray, n: int = 3) -> np.ndarray:
    quantiles = {3: (10, 50, 90), 4: (5, 35, 65, 95), 5: (5, 27.5, 50, 72.5, 95)}[n]
    return np.percentile(x, quantiles)


def smoothed_calibration(y, p, weights=None, grid=None) -> tuple[np.ndarray, np.ndarray]:
    """Observed probability as a smooth function of p: logistic regression on an RCS of logit(p).

    Returns (points, observed) at `grid` (default: the p values themselves).
    """
    y, p, w = _arrays(y, p, weights)
    lp = logit(p)
    knots = _knots(lp, 3)
    if np.unique(knots).size < 3:  # too little spread for a spline: fall back to a straight line
        design = np.column_stack([np.ones_like(lp), lp])
        beta = _weighted_logistic(design, y, w)
        at = p if grid is None else np.asarray(grid, dtype=float)
        return at, expit(np.column_stack([np.ones_like(at), logit(at)]) @ beta)
    design = np.column_stack([np.ones_like(lp), rcs_basis(lp, knots)])
    beta = _weighted_logistic(design, y, w)
    at = p if grid is None else np.asarray(grid, dtype=float)
    basis = np.column_stack([np.ones(len(at)), rcs_basis(logit(at), knots)])
    return at, expit(basis @ beta)


def _weighted_auc(y, p, w) -> float:
    """Weighted AUROC (scikit-learn: tied scores count half); NaN when only one class is present."""
    from sklearn.metrics import roc_auc_score

    if np.sum(w * (y == 1)) == 0 or np.sum(w * (y == 0)) == 0:
        return float("nan")
    return float(roc_auc_score(y, p, sample_weight=w))


def _auc_ci(y, p, w, level=0.95, n_boot=1000, seed=0) -> tuple[float, float]:
    """Percentile bootstrap CI of the weighted AUROC (scipy.stats.bootstrap, patients resampled whole).

    A resample with one class only has no AUROC; its NaN is left out of the percentiles rather than
    making the whole interval NaN (scipy's own percentile would propagate it).
    """
    import warnings

    with warnings.catch_warnings():  # scipy warns of the one-class resamples' NaN, which are dropped below
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        res = stats.bootstrap((y, p, w), lambda yy, pp, ww: _weighted_auc(yy, pp, ww), paired=True,
                              vectorized=False, n_resamples=n_boot, method="percentile", confidence_level=level,
                              random_state=np.random.default_rng(seed))
    lo, hi = np.nanpercentile(res.bootstrap_distribution, [(1 - level) / 2 * 100, (1 + level) / 2 * 100])
    return float(lo), float(hi)


def binary_metrics(y, p, weights=None, *, ci_boot: int = 1000, seed: int = 0) -> dict:
    """Discrimination and calibration of probabilities p for binary outcomes y.

    Parameters
    ----------
    y : array of 0/1, shape (n,)
    p : array of predicted P(y = 1), shape (n,)
    weights : optional array of observation weights (e.g. IPCW), shape (n,)

    Returns
    -------
    dict with auroc and auroc_ci (bootstrap percentile, `ci_boot` resamples), brier, scaled_brier
    (1 - brier / brier of predicting the observed prevalence), calibration_intercept
    (calibration-in-the-large: logistic model y ~ 1 with offset logit(p); 0 is ideal),
    calibration_slope (y ~ a + b logit(p); 1 is ideal), oe_ratio (observed / expected events),
    ici, e50, e90 (mean, median and 90th percentile of |smoothed observed - p|; the smoother is a
    logistic regression on a restricted cubic spline of logit(p) with 3 knots), n and
    effective_events.
    """
    y, p, w = _arrays(y, p, weights)
    wsum = w.sum()
    prevalence = np.sum(w * y) / wsum
    brier = float(np.sum(w * (p - y) ** 2) / wsum)
    brier_null = float(prevalence * (1 - prevalence))
    lp = logit(p)
    ones = np.ones_like(lp)
    intercept = float(_weighted_logistic(ones[:, None], y, w, offset=lp)[0])
    slope = float(_weighted_logistic(np.column_stack([ones, lp]), y, w)[1])
    _, observed = smoothed_calibration(y, p, w)
    gap = np.abs(observed - p)
    auroc = _weighted_auc(y, p, w)
    return {
        "n": int(len(y)), "effective_events": float(np.sum(w * y)),
        "auroc": auroc, "auroc_ci": _auc_ci(y, p, w, n_boot=ci_boot, seed=seed) if ci_boot else (np.nan, np.nan),
        "brier": brier, "scaled_brier": float(1 - brier / brier_null) if brier_null > 0 else float("nan"),
        "calibration_intercept": intercept, "calibration_slope": slope,
        "oe_ratio": float(np.sum(w * y) / np.sum(w * p)),
        "ici": float(np.average(gap, weights=w)), "e50": float(_weighted_quantile(gap, w, 0.5)),
        "e90": float(_weighted_quantile(gap, w, 0.9)),
    }


def _weighted_quantile(x, w, q):
    order = np.argsort(x)
    x, w = x[order], w[order]
    cum = np.cumsum(w) / w.sum()
    return x[np.searchsorted(cum, q)]


# ----------------------------------------------------------------------------- censored data
def kaplan_meier(time, event) -> tuple[np.ndarray, np.ndarray]:
    """Kaplan-Meier survival (lifelines): (distinct event times, S just after each)."""
    from lifelines import KaplanMeierFitter

    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=bool)
    if not event.any():
        return np.array([]), np.array([])
    kmf = KaplanMeierFitter().fit(time, event)
    at_events = kmf.event_table.index[kmf.event_table["observed"] > 0]
    return at_events.to_numpy(dtype=float), kmf.survival_function_.loc[at_events].iloc[:, 0].to_numpy()


def km_at(times, surv, t, left=False) -> np.ndarray:
    """S(t) from a KM step function (S(t-) when left=True)."""
    t = np.atleast_1d(np.asarray(t, dtype=float))
    if len(surv) == 0:  # no event at all: nobody has left the curve
        return np.ones_like(t)
    idx = np.searchsorted(times, t, side="left" if left else "right") - 1
    return np.where(idx >= 0, surv[np.clip(idx, 0, None)], 1.0)


def ipcw_weights(time, event, horizon) -> tuple[np.ndarray, np.ndarray]:
    """Binary labels at the horizon and their inverse-probability-of-censoring weights.

    Returns (y_event_by_horizon, weight). A patient censored before the horizon gets weight 0 (and
    is neither a success nor a failure); an event before the horizon is weighted 1 / G(T-), a
    patient followed past the horizon 1 / G(horizon), with G the Kaplan-Meier estimate of staying
    uncensored.
    """
    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=bool)
    g_times, g_surv = kaplan_meier(time, ~event)
    had_event = event & (time <= horizon)
    followed = time > horizon
    w = np.zeros(len(time))
    w[had_event] = 1 / np.maximum(km_at(g_times, g_surv, time[had_event], left=True), _EPS)
    w[followed] = 1 / max(float(km_at(g_times, g_surv, horizon)[0]), _EPS)
    return had_event.astype(float), w


def harrell_c(time, event, risk) -> float:
    """Harrell's C (lifelines' concordance_index): among usable pairs, how often the higher risk fails first
    (ties in risk count half; a pair tied in time counts when exactly one had the event)."""
    from lifelines.utils import concordance_index

    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=bool)
    if not event.any():
        return float("nan")
    try:  # lifelines scores "higher predicts longer survival": the risk enters negated
        return float(concordance_index(time, -np.asarray(risk, dtype=float), event))
    except ZeroDivisionError:  # no usable pair
        return float("nan")


def _cox(columns: dict[str, np.ndarray], time: np.ndarray, event: np.ndarray):
    """A Cox model (Efron ties, as R's coxph and rms::cph) fitted with lifelines."""
    from lifelines import CoxPHFitter

    frame = pd.DataFrame({**columns, "_time": time, "_event": event.astype(int)})
    return CoxPHFitter().fit(frame, duration_col="_time", event_col="_event")


def survival_at_horizon(time, event, risk, horizon) -> dict:
    """Validation of predicted risks by a horizon on censored data.

    Parameters
    ----------
    time : follow-up times (any unit, the same as `horizon`)
    event : 1 = event observed at `time`, 0 = censored
    risk : predicted probability of the event by `horizon`
    horizon : the prediction horizon

    Returns
    -------
    dict with c_index (Harrell, risk against time), oe_ratio (observed Kaplan-Meier risk at the
    horizon / mean predicted risk), calibration_slope (coefficient of cloglog(risk) in a Cox model
    on the data censored at the horizon), ici, e50, e90 (Austin et al. 2020: observed risk from a
    Cox model on a restricted cubic spline of cloglog(risk) with 3 knots at its 10th, 50th and
    90th percentiles, compared with risk), brier (IPCW Brier score at the horizon, Graf 1999),
    observed_risk (KM) and mean_predicted_risk.
    """
    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=bool)
    risk = np.clip(np.asarray(risk, dtype=float), 1e-6, 1 - 1e-6)
    if not (len(time) == len(event) == len(risk)):
        raise ValueError("time, event and risk must have one length")
    km_t, km_s = kaplan_meier(time, event)
    observed = 1 - float(km_at(km_t, km_s, horizon)[0])
    # censor at the horizon for the calibration models
    t_h = np.minimum(time, horizon)
    e_h = event & (time <= horizon)
    cll = np.log(-np.log(1 - risk))
    knots = _knots(cll, 3)
    if np.unique(np.round(knots, 9)).size < 3:  # no spread in the predictions: no curve to fit
        slope = float("nan")
        observed_i = np.full(len(risk), observed)
    else:
        slope = float(_cox({"cll": cll}, t_h, e_h).params_["cll"])
        basis = rcs_basis(cll, knots)
        columns = {f"s{j}": basis[:, j] for j in range(basis.shape[1])}
        cal = _cox(columns, t_h, e_h)
        observed_i = 1 - cal.predict_survival_function(pd.DataFrame(columns), times=[horizon]).to_numpy()[0]
    gap = np.abs(observed_i - risk)
    y, w = ipcw_weights(time, event, horizon)
    brier = float(np.sum(w * (y - risk) ** 2) / len(time))
    return {
        "n": int(len(time)), "events_by_horizon": int(e_h.sum()),
        "c_index": harrell_c(time, event, risk), "oe_ratio": observed / float(np.mean(risk)),
        "observed_risk": observed, "mean_predicted_risk": float(np.mean(risk)),
        "calibration_slope": slope, "ici": float(np.mean(gap)), "e50": float(np.median(gap)),
        "e90": float(np.percentile(gap, 90)), "brier": brier,
    }


# --------------------------------------------------------------------- decisions and subgroups
def net_benefit(y, risk, thresholds, weights=None) -> pd.DataFrame:
    """Decision curve: net benefit of acting when risk >= threshold, vs acting for all and none.

    y = 1 when the event happened; net benefit = TP/n - FP/n * t / (1 - t).
    """
    y, risk, w = _arrays(y, risk, weights)
    n = w.sum()
    prevalence = np.sum(w * y) / n
    rows = []
    for t in np.asarray(thresholds, dtype=float):
        act = risk >= t
        tp = np.sum(w * (act & (y == 1))) / n
        fp = np.sum(w * (act & (y == 0))) / n
        odds = t / (1 - t)
        rows.append({"threshold": t, "model": tp - fp * odds,
                     "act_for_all": prevalence - (1 - prevalence) * odds, "act_for_none": 0.0})
    return pd.DataFrame(rows)


def calibration_by_subgroup(y, p, groups, weights=None, level=0.95) -> pd.DataFrame:
    """Observed vs expected per subgroup: n, observed (weighted) with a Wilson interval, expected, O/E."""
    y, p, w = _arrays(y, p, weights)
    groups = pd.Series(np.asarray(groups, dtype=object)).fillna("missing").to_numpy()
    z = stats.norm.ppf((1 + level) / 2)
    rows = []
    for g in pd.unique(groups):
        m = groups == g
        n_eff = w[m].sum() ** 2 / np.sum(w[m] ** 2)
        obs = np.sum(w[m] * y[m]) / w[m].sum()
        exp = float(np.mean(p[m]))
        centre = (obs + z * z / (2 * n_eff)) / (1 + z * z / n_eff)
        half = z * np.sqrt(obs * (1 - obs) / n_eff + z * z / (4 * n_eff ** 2)) / (1 + z * z / n_eff)
        rows.append({"group": g, "n": int(m.sum()), "observed": obs, "observed_lo": centre - half,
                     "observed_hi": centre + half, "expected": exp, "oe_ratio": obs / exp if exp > 0 else np.nan})
    return pd.DataFrame(rows)
