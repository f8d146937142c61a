"""The true chance at each landmark, given what was observable then: what the landmark model is measured against.

For a patient who stopped (cohort 2) and is progression-free and in follow-up at landmark s (months
after day 0), the truth is

    P(no progression and no death in (s, s + H] | everything observable at s)

where "observable" is what a clinician has on that date: the baseline characteristics, every ctDNA draw
up to s (its call and its level; QC failures say nothing) and a restart of therapy before s. The
generator's latent quantities are not known at s: the progression time, whether ctDNA was truly present
at stopping (a day-0 draw can miss it or fail QC), whether a progression sheds ctDNA, its lead time and
growth rate, whether a progression will be brain-only. The probability averages over them, drawn from
the generator's own distributions (conditioned on being progression-free at s) and weighted by the
likelihood of the ctDNA series actually observed: self-normalised importance sampling (Robert & Casella,
Monte Carlo Statistical Methods, 2004, ch. 3). Each value keeps its effective sample size (`ess`), so
a benchmark can say how precise its own yardstick is.

One approximation, stated: the rare isolated false-positive draw (about 4% of patients who never
progress) is modelled draw by draw, ignoring that the generator allows at most one per patient.
Death before progression is a constant hazard independent of everything else, so it enters as a factor.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.special import log_ndtr

from data.clinical import DAYS_PER_MONTH, HORIZONS, LANDMARK_MONTHS

#: Monte Carlo draws per patient and landmark (the ess column says how many effectively count).
DRAWS = 4000
#: Below this effective sample size the draws are repeated RETRY_FACTOR times as many.
MIN_ESS, RETRY_FACTOR = 400, 10


def landmark_truth(pt: dict, ev: dict, ct: pd.DataFrame, p: dict, ids, seed: int,
                   landmarks=LANDMARK_MONTHS, horizons=HORIZONS, draws: int = DRAWS) -> pd.DataFrame:
    """patient_id, landmark_months, horizon_months, p_progression_free, ess: one row per stopped patient
    at risk at each landmark and horizon. `pt`, `ev`, `ct` are the generator's own frames (data/synth.py)."""
    from data import synth

    rng = np.random.default_rng([int(seed), 20_231_107])
    beta = p["beta"]["ctdna_detected_at_index"]
    lp_known = ev["lp"] - beta * pt["ctdna0"]  # the part of the hazard from observed characteristics
    shape, death0 = p["weibull_shape"], p["death_rate_per_month_no_progression"]
    lam = synth.weibull_scale(p["reference_pfs_12m"], shape, death0)
    observed = ct[ct["qc"] == "pass"]
    by_patient = dict(tuple(observed.groupby("pidx")))
    n_draws = np.bincount(ct["pidx"], minlength=pt["n"])
    schedule = synth.scheduled_scan_days(p)
    scans_only = p["progression_found_at_scheduled_scans_only"]
    restart_rate = p["restart_without_progression_per_month"]
    own_restart = ev["restarted"] & ~ev["restart_after_progression"]
    rows = []
    for i in np.flatnonzero(pt["cohort"] == 2):
        series = by_patient.get(i, observed.iloc[:0])
        prior_ctdna0 = (p["ctdna_detected_at_index_if_cr"] if pt["best"][i] == "CR"
                        else p["ctdna_detected_at_index_if_not_cr"])
        for s in landmarks:
            day = float(round(s * DAYS_PER_MONTH))
            if not (ev["t_prog"][i] > day and ev["end"][i] > day):
                continue  # not at risk: progressed, died, withdrew or past the cut-off
            seen = series[series["day"] <= day]
            restart = (float(ev["t_restart"][i]) if own_restart[i] and ev["t_restart"][i] <= day
                       else day + rng.exponential(1 / restart_rate, draws) * DAYS_PER_MONTH)
            # at risk at s: latent progression after the last moment it would have been found by s
            found_by = schedule[schedule <= day].max(initial=0.0) if scans_only else day
            for m in (draws, draws * RETRY_FACTOR):  # a series the prior rarely explains gets more draws
                if not np.isscalar(restart):
                    restart = day + rng.exponential(1 / restart_rate, m) * DAYS_PER_MONTH
                sample = _latent(rng, m, pt, i, prior_ctdna0, lp_known[i], beta, lam, shape, restart, found_by, p)
                log_w = _log_likelihood(sample, seen, n_draws[i], ev["end_if_no_progression"][i], p)
                w = np.exp(log_w - log_w.max()) if np.isfinite(log_w.max()) else np.zeros(m)
                ess = w.sum() ** 2 / np.sum(w ** 2) if w.sum() > 0 else 0.0
                if ess >= MIN_ESS:
                    break
            if w.sum() == 0:
                continue  # the series is impossible under the generator: no truth rather than a wrong one
            t_found = synth.detected_on(sample["t"], p)
            for h in horizons:
                free = np.sum(w * (t_found > day + h * DAYS_PER_MONTH)) / w.sum()
                rows.append((ids[i], s, h, float(free * np.exp(-death0 * h)), float(ess)))
    return pd.DataFrame(rows, columns=["patient_id", "landmark_months", "horizon_months", "p_progression_free",
                                       "ess"])


def _latent(rng, m, pt, i, prior_ctdna0, lp_known, beta, lam, shape, restart, found_by, p) -> dict:
    """m draws of the latent quantities from the generator's distributions, given progression-free at s."""
    from data import synth

    ctdna0 = rng.random(m) < prior_ctdna0
    scale = lam * np.exp(lp_known + beta * ctdna0)
    hr = p["restart_hazard_ratio"]
    reached = synth.cumulative_hazard(found_by, scale, shape, restart, hr)
    t = synth.invert_cumulative_hazard(reached + rng.exponential(1, m), scale, shape, restart, hr)
    brain_only = pt["brain"][i] & (rng.random(m) < p["progression_brain_only_if_brain_history"])
    sheds = (rng.random(m) < np.where(brain_only, p["ctdna_sensitivity_brain_only"], p["ctdna_sensitivity"])) | ctdna0
    lo, hi = p["ctdna_lead_time_months_range"]
    lead = np.clip(rng.lognormal(np.log(p["ctdna_lead_time_months_median"]), p["ctdna_lead_time_log_sd"], m),
                   lo, hi) * DAYS_PER_MONTH
    onset = np.where(ctdna0, -rng.uniform(0, p["ctdna_residual_onset_days"], m), np.maximum(t - lead, 1))
    f_lo, f_hi = p["ctdna_fold_at_progression"]
    at_progression = np.exp(rng.uniform(np.log(f_lo), np.log(f_hi), m))
    start = np.where(ctdna0, np.exp(rng.uniform(0, np.log(p["ctdna_fold_at_index_max"]), m)), 1.0)
    rate = np.log(at_progression / start) / np.maximum(t - onset, 30)
    return {"t": t, "sheds": sheds, "onset": onset, "log_start": np.log(start), "rate": rate}


def _log_likelihood(sample: dict, seen: pd.DataFrame, n_draws: int, end_if_no_progression: float, p: dict):
    """log P(the observed ctDNA calls and levels | each latent draw)."""
    from data import synth

    sd, near = p["ctdna_level_noise_log_sd"], p["ctdna_near_limit_call_rate"]
    fp_lo, fp_hi = p["ctdna_false_positive_fold"]
    log2 = np.log(2.0)
    never_progresses = synth.detected_on(sample["t"], p) > end_if_no_progression
    ll = np.zeros(sample["t"].size)
    for day, detected, value, lod in seen[["day", "detected", "value", "lod"]].itertuples(index=False):
        phase = sample["sheds"] & (day >= sample["onset"])
        mu = sample["log_start"] + sample["rate"] * (day - np.maximum(sample["onset"], 0))
        if bool(detected):
            y = np.log(value / lod)
            true = np.where(phase, np.exp(-0.5 * ((y - mu) / sd) ** 2) / (sd * np.sqrt(2 * np.pi)), 0.0)
            true *= 1.0 if y >= log2 else near
            # an isolated false positive: possible only outside a true signal, after day 0, in a patient
            # who does not progress during follow-up; its level is uniform over fp_lo-fp_hi x the limit
            fp_density = np.exp(y) / (fp_hi - fp_lo) if np.log(fp_lo) <= y <= np.log(fp_hi) else 0.0
            fp = np.where(~phase & never_progresses & (day > 0),
                          p["ctdna_isolated_false_positive"] / max(n_draws, 1) * fp_density, 0.0)
            with np.errstate(divide="ignore"):
                ll += np.log(true + fp)
        else:
            below_limit = np.exp(log_ndtr((0 - mu) / sd))
            below_twice = np.exp(log_ndtr((log2 - mu) / sd))
            called = (1 - below_twice) + near * (below_twice - below_limit)
            with np.errstate(divide="ignore"):
                ll += np.log(np.where(phase, 1 - called, 1.0))
    return ll
