"""A seeded synthetic STOP-HER2 cohort that reads like real trial data (vectorized: 100k+ patients).

Every distribution is a named parameter in PARAMETERS with its value and its source (a publication
from clinical-facts.md, or "assumption" where no public figure exists). ``generate(n, seed)``
returns the canonical tables (see data/sql/schema.sql) plus ``synthetic_truth``: each patient's TRUE
probability of staying progression-free 6, 12 and 24 months after the index date under the hazard
model below. The truth is for measuring the model; it is never shown on patient pages.

Progression follows a Weibull proportional-hazards model in months from the index date::

    H(t) = lambda * t**shape * exp(lp),   lp = sum(beta_k * x_k)

with x = ctDNA detected at index, best response not CR, visceral disease, hormone-receptor
negative, brain metastases history, >= 3 metastatic sites, de novo disease and continuing therapy
(cohort 1). lambda is set so that the reference patient (ctDNA-negative complete responder, no
visceral disease, HR-positive, no brain history, recurrent disease, stopped) stays progression-free
at 12 months with probability REFERENCE_PFS_12M. Death without progression is a constant hazard,
so P(progression-free at t) = exp(-H(t) - death_rate * t).

A progression is dated on the scan that shows it (scheduled, or brought forward by symptoms), and
the lesion measurements are generated so that our RECIST engine derives PD at exactly that scan.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from data import pro, recist
from data.clinical import DAYS_PER_MONTH, DAYS_PER_YEAR  # noqa: E402


@dataclass(frozen=True)
class Param:
    name: str
    value: object
    source: str


PARAMETERS: tuple[Param, ...] = (
    # --- trial frame
    Param("n_patients", 82, "NCT05721248: 82 enrolled"),
    Param("share_cohort2", 52 / 82, "NCT05721248: 52 stop (cohort 2), 30 continue (cohort 1)"),
    Param("n_sites", 13, "NCT05721248: 13 US sites"),
    Param("enrolment_start", "2023-05-01", "NCT05721248 started 2023-04-19"),
    Param("enrolment_end", "2025-02-28", "assumption: accrual ends 1 year before primary completion 2026-02"),
    Param("data_cutoff", "2026-10-31", "assumption: the snapshot's data cut-off"),
    Param("stop_delay_days_max", 21, "assumption: therapy stops at the next cycle after enrolment"),
    # --- baseline
    Param("age_mean", 54.0, "DFCI exceptional responders: median age ~47-51 at MBC, + >= 3 y"),
    Param("age_sd", 10.0, "assumption"),
    Param("share_male", 0.01, "male breast cancer ~1%"),
    Param("share_er_positive", 0.46, "DFCI exceptional responders (SABCS 2023): ER+ ~46%"),
    Param("pr_positive_if_er_positive", 0.65, "assumption"),
    Param("pr_positive_if_er_negative", 0.05, "assumption"),
    Param("share_her2_ihc3", 0.94, "DFCI exceptional responders: HER2 IHC 3+ 94%"),
    Param("ish_done_if_ihc3", 0.30, "assumption: ISH reported for some IHC 3+ tumours"),
    Param("share_de_novo", 0.52, "DFCI exceptional responders: de novo 52%"),
    Param("extra_years_first_line_gamma", (1.5, 1.6), "assumption: >= 3 y by eligibility, median ~5 y"),
    Param("best_response", {"CR": 0.50, "PR": 0.38, "SD": 0.12},
          "assumption: exceptional responders, many CR (Steenbruggen 2019: CR 10% of all HER2+ MBC)"),
    Param("organ_involvement", {"bone": 0.45, "lymph node": 0.45, "liver": 0.20, "lung": 0.18,
                                "brain": 0.08, "chest wall": 0.08},
          "assumption; brain history kept low (worse outlook, fewer exceptional responders)"),
    Param("first_line_regimen", {"THP": 0.70, "HP + paclitaxel": 0.15, "TH": 0.12, "T-DM1": 0.03},
          "assumption: CLEOPATRA-era first line"),
    Param("pik3ca", {"wild-type": 0.50, "mutated": 0.20, "unknown": 0.30}, "assumption"),
    Param("ecog", {0: 0.75, 1: 0.23, 2: 0.02}, "HER-OS 2014: ECOG 0 common among long responders"),
    # --- ctDNA at stopping and the hazard model
    Param("ctdna_detected_at_index_if_cr", 0.06, "assumption"),
    Param("ctdna_detected_at_index_if_not_cr", 0.20, "assumption"),
    Param("reference_pfs_12m", 0.90, "clinical-facts: ~85-90% for ctDNA-negative complete responders"),
    Param("weibull_shape", 0.9, "assumption: hazard highest early after stopping"),
    Param("beta", {"ctdna_detected_at_index": 1.4, "best_response_not_cr": 0.5, "visceral": 0.35,
                   "hr_negative": 0.3, "brain_mets_history": 0.6, "three_plus_sites": 0.25,
                   "de_novo": -0.2, "continuing_therapy": -0.8},
          "assumption, directions from HER-OS 2014, Steenbruggen 2019, DFCI 2023; tuned so that "
          "cohort 2 ~80% and cohort 1 ~90% at 12 months (clinical-facts)"),
    Param("death_rate_per_month_no_progression", 0.008 / 12, "assumption: background mortality"),
    Param("death_rate_per_month_after_progression", 1 / 48, "assumption: median OS ~4 y after progression"),
    Param("withdrawal_rate_per_month", 0.03 / 12, "assumption"),
    Param("restart_without_progression_per_month", 0.05 / 12, "assumption: patient choice"),
    Param("restart_after_progression", 0.90, "assumption; cohort 2 may restart at any time"),
    Param("restart_hazard_ratio", 1.0, "assumption: a restart without progression leaves the progression hazard "
          "unchanged (variant restarts_lower_hazard: see VARIANTS)"),
    Param("progression_found_at_scheduled_scans_only", False,
          "assumption: symptoms bring a scan forward, so progression is dated when it happens (variant "
          "scan_interval_censoring: see VARIANTS)"),
    # --- ctDNA series
    Param("ctdna_draw_interval_days", 91, "clinical-facts: at stopping then every 3 months (HEROES)"),
    Param("ctdna_lead_time_months_median", 20.0,
          "latent lead; the OBSERVED median (first positive draw to PD, limited by the 3-monthly draws "
          "and by early progressions) comes out ~9-11 months as in Shaw 2024 (10.5), Coombes 2019 "
          "(8.9), Garcia-Murillas 2019 (10.7)"),
    Param("ctdna_lead_time_months_range", (0.5, 38.0), "Shaw 2024: range 0-38"),
    Param("ctdna_lead_time_log_sd", 0.55, "assumption: spread of the latent lead (log scale), giving Shaw 2024's range"),
    Param("ctdna_residual_onset_days", 90, "assumption: detected at index means a signal that began up to 90 days before"),
    Param("ctdna_fold_at_index_max", 5.0, "assumption: residual disease at index sits 1-5 x the detection limit"),
    Param("ctdna_fold_at_progression", (20.0, 3000.0), "assumption: 20-3000 x the limit at progression "
          "(log-uniform; Signatera MTM/mL at relapse spans ~1-1000s)"),
    Param("ctdna_level_noise_log_sd", 0.25, "assumption: assay variability of a level (log scale)"),
    Param("ctdna_near_limit_call_rate", 0.7, "assumption: a true signal under 2 x the limit is called positive 70%"),
    Param("ctdna_false_positive_fold", (1.0, 3.0), "assumption: an isolated false positive sits 1-3 x the limit"),
    Param("ctdna_sensitivity", 0.99, "latent; OBSERVED ~88% after QC failures, calls near the detection "
          "limit and brain-only relapses (clinical-facts: ~88-89%)"),
    Param("ctdna_sensitivity_brain_only", 0.20, "clinical-facts: brain-only relapses often missed"),
    Param("ctdna_isolated_false_positive", 0.04, "Shaw 2024: ~4% of never-relapsing patients"),
    Param("ctdna_qc_qns", 0.03, "assumption: quantity not sufficient"),
    Param("ctdna_qc_failed", 0.01, "assumption"),
    Param("assays", {"Signatera": ("MTM/mL", 0.3), "MAESTRO": ("tumor fraction", 1e-5)},
          "clinical-facts: Signatera MTM/mL LOD ~0.3; MAESTRO tumor fraction (sites 12-13)"),
    # --- scans
    Param("scan_days_year1", (91, 182, 273, 365), "clinical-facts: every 3 months in year 1"),
    Param("scan_interval_days_after_year1", 182, "clinical-facts: then every 6 months"),
    Param("scan_target_not_measured", 0.015, "assumption: a target lesion not measured -> NE"),
    Param("progression_by_new_lesion", 0.45, "assumption"),
    Param("progression_brain_only_if_brain_history", 0.5, "assumption"),
    Param("first_line_brain_progression_if_brain_history", 0.6,
          "assumption: enrolled under the brain-only exception (treated locally, >= 24 months since CNS therapy)"),
    Param("first_line_oligoprogression", 0.05,
          "assumption: enrolled under the single-lesion extracranial oligoprogression exception"),
    # --- PROs
    Param("pro_missed", 0.08, "assumption: missed questionnaires"),
    Param("pro_item_missing", 0.015, "assumption: skipped items (exercises the half-items rule)"),
    Param("pro_months_after_progression", 12, "assumption: questionnaires continue 12 months"),
    Param("drs_months", (3, 6, 12, 24, 36), "assumption: Decision Regret after the decision"),
)
P = {p.name: p.value for p in PARAMETERS}

#: Generator variants for the landmark model's benchmark (`python -m model evaluate --synthetic-check`):
#: the parameters each one changes, and why the model should still hold under it.
VARIANTS: dict[str, tuple[dict, str]] = {
    "ctdna_hr_10": ({"beta": {**P["beta"], "ctdna_detected_at_index": float(np.log(10.0))}},
                    "ctDNA detected at stopping with a hazard ratio of 10 (the top of the 4-10 reported in "
                    "metastatic disease; clinical-facts.md) instead of ~4"),
    "restarts_lower_hazard": ({"restart_hazard_ratio": float(np.exp(P["beta"]["continuing_therapy"]))},
                              "a restart without progression lowers the progression hazard as continuing "
                              "does (hazard ratio exp(-0.8) = 0.45, the cohort-1 effect above)"),
    "scan_interval_censoring": ({"progression_found_at_scheduled_scans_only": True},
                                "progression found only at the scheduled scans (every 3 months in year 1, "
                                "then 6-monthly; clinical-facts.md), so its date is interval-censored"),
}


def parameters(variant: str | None = None) -> dict:
    """The generator's parameters, with a variant's changes (None: the default cohort)."""
    if variant is None:
        return dict(P)
    if variant not in VARIANTS:
        raise ValueError(f"unknown generator variant {variant!r}: one of {', '.join(VARIANTS)}")
    return {**P, **VARIANTS[variant][0]}

# QLQ-C30 scale means at index for patients on maintenance therapy (assumption, close to EORTC
# reference values for metastatic breast cancer), and the effects clinical-facts.md describes.
QLQ_BASELINE = {"QL2": 72, "PF2": 86, "RF2": 82, "EF": 76, "CF": 84, "SF": 81, "FA": 27, "NV": 5,
                "PA": 19, "DY": 12, "SL": 27, "AP": 8, "CO": 10, "DI": 18, "FI": 14}
QLQ_STOP_EFFECT = {"DI": -11, "FA": -5, "QL2": 4, "RF2": 3}  # stopping eases diarrhoea and burden
QLQ_PROGRESSION_EFFECT = {"QL2": -16, "PF2": -10, "RF2": -15, "EF": -9, "SF": -8, "FA": 13,
                          "PA": 11, "SL": 8, "AP": 6}

MEASURABLE_ORGANS = ("liver", "lung", "lymph node", "chest wall")
ORGANS = tuple(P["organ_involvement"])


def parameter_table(values: dict | None = None) -> pd.DataFrame:
    """Every generator parameter with its value (a variant's, when given) and source (README and app)."""
    values = values or P
    return pd.DataFrame([{"name": p.name, "value": repr(values[p.name]), "source": p.source}
                         for p in PARAMETERS])


def _choice(rng, n, mapping):
    keys = list(mapping)
    probs = np.array([mapping[k] for k in keys], dtype=float)
    return np.array(keys, dtype=object)[rng.choice(len(keys), size=n, p=probs / probs.sum())]


def _nullable_bool(values: np.ndarray, known: np.ndarray) -> pd.Series:
    return pd.Series(np.where(known, values, False), dtype="boolean").where(known, pd.NA)


def _days(dates: np.ndarray) -> np.ndarray:
    return dates.astype("datetime64[D]").astype(np.int64)


def _date(days) -> np.ndarray:
    return np.asarray(days, dtype=np.int64).astype("datetime64[D]")


def weibull_scale(reference_pfs_12m: float, shape: float, death_rate: float) -> float:
    """lambda such that the reference patient's P(progression-free at 12 months) is as given."""
    return (-np.log(reference_pfs_12m) - death_rate * 12) / 12 ** shape


def true_pfs(lp: np.ndarray, months: float, p: dict = P) -> np.ndarray:
    shape, death = p["weibull_shape"], p["death_rate_per_month_no_progression"]
    lam = weibull_scale(p["reference_pfs_12m"], shape, death)
    return np.exp(-lam * months ** shape * np.exp(lp) - death * months)


# ------------------------------------------------------------------------------------ patients
def _patients(rng, n: int, p: dict) -> dict:
    n2 = int(round(n * p["share_cohort2"]))
    cohort = rng.permutation(np.r_[np.full(n2, 2), np.full(n - n2, 1)])
    start, end = _days(np.datetime64(p["enrolment_start"])), _days(np.datetime64(p["enrolment_end"]))
    enrolled = rng.integers(start, end + 1, n)
    index = enrolled + np.where(cohort == 2, rng.integers(0, p["stop_delay_days_max"] + 1, n), 0)
    er = rng.random(n) < p["share_er_positive"]
    pr = np.where(er, rng.random(n) < p["pr_positive_if_er_positive"],
                  rng.random(n) < p["pr_positive_if_er_negative"])
    ihc3 = rng.random(n) < p["share_her2_ihc3"]
    ish = np.where(ihc3, np.where(rng.random(n) < p["ish_done_if_ihc3"], 1.0, np.nan), 1.0)
    k, theta = p["extra_years_first_line_gamma"]
    years_fl = 3 + np.minimum(rng.gamma(k, theta, n), 11)
    # eligibility counts >= 3 years of first-line therapy before ENROLMENT
    first_line_start = enrolled - np.round(years_fl * DAYS_PER_YEAR).astype(np.int64)
    metastatic_on = first_line_start - rng.integers(7, 60, n)
    organs = np.column_stack([rng.random(n) < share for share in p["organ_involvement"].values()])
    none = ~organs.any(axis=1)
    organs[none, ORGANS.index("bone")] = True
    involved = {o: organs[:, i] for i, o in enumerate(ORGANS)}
    best = _choice(rng, n, p["best_response"])
    ctdna0 = rng.random(n) < np.where(best == "CR", p["ctdna_detected_at_index_if_cr"],
                                      p["ctdna_detected_at_index_if_not_cr"])
    return dict(
        n=n, cohort=cohort, site=rng.integers(1, p["n_sites"] + 1, n), enrolled=enrolled, index=index,
        age=np.clip(np.round(rng.normal(p["age_mean"], p["age_sd"], n)), 28, 88).astype(int),
        sex=np.where(rng.random(n) < p["share_male"], "M", "F"), er=er, pr=pr,
        her2_ihc=np.where(ihc3, "3+", "2+"), ish=ish, de_novo=rng.random(n) < p["share_de_novo"],
        years_fl=years_fl, first_line_start=first_line_start, metastatic_on=metastatic_on,
        regimen=_choice(rng, n, p["first_line_regimen"]), best=best, involved=involved,
        visceral=involved["liver"] | involved["lung"], brain=involved["brain"],
        n_sites=organs.sum(axis=1), pik3ca=_choice(rng, n, p["pik3ca"]),
        ecog=_choice(rng, n, p["ecog"]).astype(int), ctdna0=ctdna0)


def _hazard_lp(pt: dict, p: dict) -> np.ndarray:
    b = p["beta"]
    return (b["ctdna_detected_at_index"] * pt["ctdna0"] + b["best_response_not_cr"] * (pt["best"] != "CR")
            + b["visceral"] * pt["visceral"] + b["hr_negative"] * (~pt["er"] & ~pt["pr"])
            + b["brain_mets_history"] * pt["brain"] + b["three_plus_sites"] * (pt["n_sites"] >= 3)
            + b["de_novo"] * pt["de_novo"] + b["continuing_therapy"] * (pt["cohort"] == 1))


# -------------------------------------------------------------------------------------- events
def _events(rng, pt: dict, p: dict) -> dict:
    """Latent times (days from index) and what the data cut-off lets us see of them."""
    n = pt["n"]
    lp = _hazard_lp(pt, p)
    shape, death0 = p["weibull_shape"], p["death_rate_per_month_no_progression"]
    lam = weibull_scale(p["reference_pfs_12m"], shape, death0)
    # every random draw first, in one fixed order, so that a variant changes the rules, not the draws
    unit_hazard = rng.exponential(1, n)
    t_death_pre = np.round(rng.exponential(1 / death0, n) * DAYS_PER_MONTH)
    t_withdraw = np.round(rng.exponential(1 / p["withdrawal_rate_per_month"], n) * DAYS_PER_MONTH)
    after_progression = np.round(rng.exponential(1 / p["death_rate_per_month_after_progression"], n) * DAYS_PER_MONTH)
    restart_choice = np.round(rng.exponential(1 / p["restart_without_progression_per_month"], n) * DAYS_PER_MONTH)
    restart_roll = rng.random(n)
    restart_delay = rng.integers(14, 43, n)
    stop = pt["cohort"] == 2
    # a restart without progression multiplies the hazard from then on (1: no effect, the default)
    restart = np.where(stop, restart_choice, np.inf)
    t_latent = invert_cumulative_hazard(unit_hazard, lam * np.exp(lp), shape, restart,
                                        p["restart_hazard_ratio"])
    t_prog = np.maximum(np.round(detected_on(t_latent, p)), 14)  # no progression on the day therapy stops
    cutoff = _days(np.datetime64(p["data_cutoff"])) - pt["index"]
    progressed = (t_prog <= np.minimum(np.minimum(t_death_pre, t_withdraw), cutoff))
    t_death = np.where(progressed, t_prog + after_progression, t_death_pre)
    died = t_death <= np.minimum(t_withdraw, cutoff)
    withdrew = ~died & (t_withdraw < cutoff)
    end = np.where(died, t_death, np.where(withdrew, t_withdraw, cutoff)).astype(np.int64)
    restart_no_prog = stop & (restart_choice < np.where(progressed, t_prog, end))
    restart_after = stop & progressed & ~restart_no_prog & (restart_roll < p["restart_after_progression"])
    t_restart = np.where(restart_no_prog, restart_choice,
                         np.where(restart_after, t_prog + restart_delay, np.nan))
    restarted = ~np.isnan(t_restart) & (t_restart <= end)
    return dict(lp=lp, t_prog=t_prog.astype(np.int64), t_latent=t_latent, progressed=progressed, died=died,
                t_death=t_death, withdrew=withdrew, end=end, restarted=restarted, t_restart=t_restart,
                restart_after_progression=restarted & restart_after,
                end_if_no_progression=np.minimum(np.minimum(t_death_pre, t_withdraw), cutoff))


def invert_cumulative_hazard(target, scale, shape, restart_day, restart_hr):
    """The day at which the Weibull cumulative hazard scale * months**shape, multiplied by `restart_hr`
    from `restart_day` on, reaches `target` (an Exp(1) draw gives a progression time)."""
    target, scale = np.asarray(target, float), np.asarray(scale, float)
    at_restart = scale * (np.asarray(restart_day, float) / DAYS_PER_MONTH) ** shape
    # no restart (an infinite restart day) leaves the plain Weibull: min(target, inf) + 0
    effective = np.minimum(target, at_restart) + np.maximum(target - at_restart, 0) / restart_hr
    return (effective / scale) ** (1 / shape) * DAYS_PER_MONTH


def cumulative_hazard(day, scale, shape, restart_day, restart_hr):
    """The inverse of invert_cumulative_hazard: the cumulative hazard reached by `day`."""
    base = scale * (np.asarray(day, float) / DAYS_PER_MONTH) ** shape
    at_restart = scale * (np.asarray(restart_day, float) / DAYS_PER_MONTH) ** shape
    return np.minimum(base, at_restart) + restart_hr * np.maximum(base - at_restart, 0)


def scheduled_scan_days(p: dict) -> np.ndarray:
    y1 = np.array(p["scan_days_year1"])
    return np.r_[y1, np.arange(y1[-1] + p["scan_interval_days_after_year1"], 365 * 15,
                               p["scan_interval_days_after_year1"])]


def detected_on(t_latent, p: dict):
    """The day a progression is found: when it happens (symptoms bring a scan forward, the default), or
    with `progression_found_at_scheduled_scans_only`, at the first scheduled scan on or after it."""
    if not p["progression_found_at_scheduled_scans_only"]:
        return t_latent
    schedule = scheduled_scan_days(p)
    return schedule[np.minimum(np.searchsorted(schedule, t_latent, side="left"), len(schedule) - 1)]


# ---------------------------------------------------------------------------------- visit grid
def _visit_days(n_patients: int, last_day: np.ndarray, interval: int, rng, jitter: int = 7):
    """Every `interval` days from day 0 to last_day per patient: (patient index, visit number, day)."""
    n_visits = np.floor(np.maximum(last_day, 0) / interval).astype(np.int64) + 1
    pidx = np.repeat(np.arange(n_patients), n_visits)
    visit = np.arange(pidx.size) - np.repeat(np.cumsum(n_visits) - n_visits, n_visits)
    day = visit * interval + np.where(visit > 0, rng.integers(-jitter, jitter + 1, pidx.size), 0)
    keep = day <= last_day[pidx]
    return pidx[keep], visit[keep], day[keep]


# --------------------------------------------------------------------------------------- ctDNA
def _ctdna(rng, pt, ev, p) -> pd.DataFrame:
    n = pt["n"]
    last = np.where(ev["progressed"], ev["t_prog"], ev["end"])  # the correlative stops at progression
    pidx, _, day = _visit_days(n, last, p["ctdna_draw_interval_days"], rng)
    # Which progressions shed ctDNA, and from when (a lead time before the progression scan).
    brain_only = ev["brain_only"]
    sheds = rng.random(n) < np.where(brain_only, p["ctdna_sensitivity_brain_only"], p["ctdna_sensitivity"])
    lo, hi = p["ctdna_lead_time_months_range"]
    lead = np.clip(rng.lognormal(np.log(p["ctdna_lead_time_months_median"]), p["ctdna_lead_time_log_sd"], n),
                   lo, hi) * DAYS_PER_MONTH
    # the signal runs ahead of the progression itself (found later when only scheduled scans find it)
    t_biology = ev["t_latent"] if p["progression_found_at_scheduled_scans_only"] else ev["t_prog"]
    onset = t_biology - lead
    # Detected at index means residual disease now: the signal is there from day 0. Not detected at
    # index means the signal cannot start before the first draw after it.
    onset = np.where(pt["ctdna0"], -rng.uniform(0, p["ctdna_residual_onset_days"], n), np.maximum(onset, 1))
    sheds = sheds | pt["ctdna0"]
    f_lo, f_hi = p["ctdna_fold_at_progression"]
    fold_at_progression = np.exp(rng.uniform(np.log(f_lo), np.log(f_hi), n))
    fold0 = np.exp(rng.uniform(0, np.log(p["ctdna_fold_at_index_max"]), n))
    span = np.maximum(t_biology - onset, 30)
    rate = np.log(fold_at_progression / np.where(pt["ctdna0"], fold0, 1)) / span
    fold = np.where(pt["ctdna0"], fold0, 1.0)[pidx] * np.exp(rate[pidx] * (day - np.maximum(onset[pidx], 0)))
    fold *= rng.lognormal(0, p["ctdna_level_noise_log_sd"], pidx.size)
    positive_phase = sheds[pidx] & (day >= onset[pidx])
    # Near the detection limit a tumour-informed assay calls some true signals negative.
    detected = positive_phase & (fold >= 1) & ((fold >= 2) | (rng.random(pidx.size) < p["ctdna_near_limit_call_rate"]))
    # ~4% of patients who never progress (in follow-up) have one isolated low positive draw.
    any_true = np.bincount(pidx, weights=detected, minlength=n) > 0
    fp_patient = ~ev["progressed"] & ~any_true & (rng.random(n) < p["ctdna_isolated_false_positive"])
    draw_rank = rng.random(pidx.size)
    first_pick = pd.Series(draw_rank).groupby(pidx).transform("max").to_numpy() == draw_rank
    fp = fp_patient[pidx] & first_pick & (day > 0)
    detected |= fp
    fold = np.where(fp, rng.uniform(*p["ctdna_false_positive_fold"], pidx.size), fold)
    assay = np.where(pt["site"] >= 12, "MAESTRO", "Signatera")[pidx]
    lod = np.where(assay == "MAESTRO", p["assays"]["MAESTRO"][1], p["assays"]["Signatera"][1])
    unit = np.where(assay == "MAESTRO", p["assays"]["MAESTRO"][0], p["assays"]["Signatera"][0])
    qc_roll = rng.random(pidx.size)
    qc = np.where(qc_roll < p["ctdna_qc_qns"], "QNS",
                  np.where(qc_roll < p["ctdna_qc_qns"] + p["ctdna_qc_failed"], "failed", "pass"))
    ok = qc == "pass"
    value = np.where(ok & detected, np.round(lod * fold, 6), np.nan)
    return pd.DataFrame({"pidx": pidx, "day": day, "assay": assay, "value": value, "unit": unit,
                         "lod": lod, "detected": _nullable_bool(detected, ok), "qc": qc})


# ---------------------------------------------------------------------------------------- scans
def _scan_days(rng, pt, ev, p) -> pd.DataFrame:
    n = pt["n"]
    schedule = scheduled_scan_days(p)
    last = np.where(ev["progressed"], ev["t_prog"] - 1, ev["end"])  # scheduled scans before PD
    counts = np.searchsorted(schedule, last, side="right")
    pidx = np.repeat(np.arange(n), counts)
    k = np.arange(pidx.size) - np.repeat(np.cumsum(counts) - counts, counts)
    day = schedule[k] + rng.integers(-10, 11, pidx.size)
    keep = day < np.where(ev["progressed"], ev["t_prog"] - 14, ev["end"] + 1)[pidx]
    baseline_day = -rng.integers(0, 29, n)
    parts = [pd.DataFrame({"pidx": np.arange(n), "day": baseline_day, "scan_kind": "baseline"}),
             pd.DataFrame({"pidx": pidx[keep], "day": day[keep], "scan_kind": "follow-up"})]
    prog = np.flatnonzero(ev["progressed"])
    parts.append(pd.DataFrame({"pidx": prog, "day": ev["t_prog"][prog], "scan_kind": "progression"}))
    confirm = prog[ev["equivocal_first"][prog]]
    parts.append(pd.DataFrame({"pidx": confirm, "day": ev["t_prog"][confirm] + rng.integers(35, 57, confirm.size),
                               "scan_kind": "confirmation"}))
    scans = pd.concat(parts, ignore_index=True)
    scans = scans[scans["day"] <= np.maximum(ev["end"], ev["t_prog"] * ev["progressed"])[scans["pidx"]]]
    scans = scans.sort_values(["pidx", "day"], kind="stable", ignore_index=True)
    scans["seq"] = scans.groupby("pidx").cumcount()
    return scans


def _lesions(rng, pt, ev, scans: pd.DataFrame, p) -> pd.DataFrame:
    """Baseline lesions, then every lesion at every scan, then the lesions that make progression."""
    n = pt["n"]
    not_cr = pt["best"] != "CR"
    # --- baseline target lesions: 1-2 per involved measurable organ, at most 5 (RECIST)
    blocks = []
    for organ in MEASURABLE_ORGANS:
        has = pt["involved"][organ] & not_cr
        count = np.where(has, 1 + (rng.random(n) < 0.3), 0)
        rows = np.repeat(np.arange(n), count)
        blocks.append(pd.DataFrame({"pidx": rows, "organ": organ}))
    tg = pd.concat(blocks, ignore_index=True).sort_values("pidx", kind="stable", ignore_index=True)
    tg["k"] = tg.groupby("pidx").cumcount()
    tg = tg[tg["k"] < 5].copy()
    tg["lesion_id"] = "T" + (tg["k"] + 1).astype(str)
    tg["is_node"] = tg["organ"] == "lymph node"
    size = np.where(pt["best"] == "SD", 24.0, 16.0)[tg["pidx"]]
    tg["d0"] = np.where(tg["is_node"], rng.uniform(15, 24, len(tg)),
                        np.maximum(10, rng.lognormal(np.log(size), 0.35, len(tg)))).round()
    tg["kind"] = "target"
    # --- baseline non-target lesions: residual bone disease, small nodes
    nt_bone = np.flatnonzero(pt["involved"]["bone"] & not_cr)
    nt_node = np.flatnonzero(pt["involved"]["lymph node"] & not_cr & (rng.random(n) < 0.3))
    nt = pd.concat([pd.DataFrame({"pidx": nt_bone, "organ": "bone", "is_node": False, "d0": np.nan}),
                    pd.DataFrame({"pidx": nt_node, "organ": "lymph node", "is_node": True,
                                  "d0": rng.uniform(10, 14, nt_node.size).round()})], ignore_index=True)
    nt = nt.sort_values("pidx", kind="stable", ignore_index=True)
    nt["lesion_id"] = "NT" + (nt.groupby("pidx").cumcount() + 1).astype(str)
    nt["kind"] = "non_target"
    base = pd.concat([tg.drop(columns="k"), nt], ignore_index=True)

    # --- how each progression shows itself
    has_t = np.bincount(tg["pidx"], minlength=n) > 0
    has_nt = np.bincount(nt["pidx"], minlength=n) > 0
    roll = rng.random(n)
    mode = np.where(ev["brain_only"], "brain",
                    np.where(has_t & (roll >= p["progression_by_new_lesion"]), "target",
                             np.where(has_nt & ~has_t & (roll > 0.8), "non_target", "new")))
    ev["mode"] = mode

    # --- every baseline lesion at every scan
    grid = scans.drop(columns="scan_kind").merge(base, on="pidx")
    tprog = ev["t_prog"][grid["pidx"]]
    prog_pt = ev["progressed"][grid["pidx"]]
    is_t = (grid["kind"] == "target").to_numpy()
    # stable disease with bounded measurement noise (never enough for PD on its own)
    noise = 1 + rng.uniform(-0.03, 0.03, len(grid))
    d = grid["d0"].to_numpy() * noise + rng.uniform(-1, 1, len(grid))
    # target-growth progressions: growth starts 3-9 months before the progression scan and reaches
    # 135-160 % of baseline at it (earlier scans may come close to PD: "within reach" alerts)
    growth_months = rng.uniform(3, 9, n)[grid["pidx"]]
    g_start = tprog - growth_months * DAYS_PER_MONTH
    g_to = rng.uniform(0.35, 0.6, n)[grid["pidx"]]
    frac = np.clip((grid["day"].to_numpy() - g_start) / (tprog - g_start), 0, 1)
    grows = is_t & prog_pt & (mode[grid["pidx"]] == "target")
    d0 = grid["d0"].to_numpy()
    d = np.where(grows, d0 + np.maximum(g_to * d0, 7) * frac ** 2, d)
    d = np.where(grid["seq"].to_numpy() == 0, grid["d0"].to_numpy(), d)
    d = np.maximum(np.round(d), 0)
    missing = (grid["seq"].to_numpy() > 0) & is_t & (rng.random(len(grid)) < p["scan_target_not_measured"])
    missing &= ~(prog_pt & (grid["day"].to_numpy() >= tprog))
    grid["diameter_mm"] = np.where(is_t, np.where(missing, np.nan, d),
                                   np.where(grid["is_node"], d, np.nan))
    nt_pd = ~is_t & prog_pt & (mode[grid["pidx"]] == "non_target") & (grid["day"].to_numpy() >= tprog)
    grid["status"] = np.where(is_t, None, np.where(nt_pd, "unequivocal_progression", "present"))

    # --- new lesions at (and after) the progression scan
    pr_scans = scans.drop(columns="scan_kind")[ev["progressed"][scans["pidx"]] & (scans["day"] >= ev["t_prog"][scans["pidx"]])]
    nm = mode[pr_scans["pidx"]]
    newl = pr_scans[(nm == "new") | (nm == "brain") | ((nm == "target") & (ev["extra_new"][pr_scans["pidx"]]))]
    newl = newl.assign(lesion_id="N1", kind="new", is_node=False, d0=np.nan,
                       organ=np.where(mode[newl["pidx"]] == "brain", "brain",
                                      ev["new_organ"][newl["pidx"]]))
    newl["diameter_mm"] = rng.uniform(8, 22, len(newl)).round()
    first_eq = ev["equivocal_first"][newl["pidx"]] & (newl["kind"].notna()) & (
        newl["day"].to_numpy() == ev["t_prog"][newl["pidx"]])
    newl["status"] = np.where(first_eq, "equivocal", "present")
    newl["diameter_mm"] = np.where(first_eq, np.nan, newl["diameter_mm"])
    cols = ["pidx", "seq", "day", "lesion_id", "kind", "organ", "is_node", "diameter_mm", "status"]
    # --- scans with no lesion at all (no evidence of disease) keep one empty row
    out = pd.concat([grid[cols], newl[cols]], ignore_index=True)
    empty = scans.drop(columns="scan_kind")
    empty = empty[~empty.set_index(["pidx", "seq"]).index.isin(out.set_index(["pidx", "seq"]).index)]
    out = pd.concat([out, empty.assign(lesion_id=None, kind=None, organ=None, is_node=False,
                                       diameter_mm=np.nan, status=None)[cols]], ignore_index=True)
    return out.sort_values(["pidx", "seq", "kind", "lesion_id"], kind="stable", ignore_index=True)


def _make_recist_consistent(les: pd.DataFrame, ev) -> pd.DataFrame:
    """Guarantee that RECIST finds PD exactly at the progression scan and nowhere before it.

    Bounded noise makes a false PD almost impossible; this removes the last chance of one (a
    stable patient's follow-up targets are set back to baseline), so the events table and the
    derived responses never disagree.
    """
    def assess(rows):
        m = rows.rename(columns={"pidx": "patient_id", "seq": "scan_id", "day": "scanned_on"})
        m["scanned_on"] = _date(m["scanned_on"])
        return recist.assess(m)

    a = assess(les)
    for _ in range(3):
        pd_scan = a[a["overall_response"] == "PD"]
        prog_day = ev["t_prog"][pd_scan["patient_id"]]
        early = pd_scan[(_days(pd_scan["scanned_on"].to_numpy()) < prog_day) | ~ev["progressed"][pd_scan["patient_id"]]]
        if early.empty:
            at_prog = a[a["overall_response"] == "PD"].groupby("patient_id")["scanned_on"].min()
            expected = pd.Series(_date(ev["t_prog"]), index=range(len(ev["t_prog"])))[ev["progressed"]]
            seen = at_prog.reindex(expected.index)
            if not (seen.to_numpy() == expected.to_numpy().astype(seen.dtype)).all():
                raise AssertionError("generator bug: RECIST does not find PD at every progression scan")
            return les
        bad = early[["patient_id", "scan_id"]].rename(columns={"patient_id": "pidx", "scan_id": "seq"})
        fix = les.merge(bad.assign(_bad=True), on=["pidx", "seq"], how="left")["_bad"].eq(True).to_numpy()
        base_d = les[les["seq"] == 0].set_index(["pidx", "lesion_id"])["diameter_mm"]
        idx = pd.MultiIndex.from_arrays([les["pidx"], les["lesion_id"]])
        baseline_value = base_d.reindex(idx).to_numpy()
        target = (les["kind"] == "target").to_numpy()
        les.loc[fix & target, "diameter_mm"] = baseline_value[fix & target]
        # RECIST reads each patient alone: only the patients just changed need assessing again
        changed = early["patient_id"].unique()
        a = pd.concat([a[~a["patient_id"].isin(changed)], assess(les[les["pidx"].isin(changed)])])
    return les


# ----------------------------------------------------------------------------------------- PROs
def _pros(rng, pt, ev, p) -> pd.DataFrame:
    n = pt["n"]
    last = np.where(ev["progressed"], np.minimum(ev["end"], ev["t_prog"]
                                                 + p["pro_months_after_progression"] * DAYS_PER_MONTH),
                    ev["end"])
    pidx, visit, day = _visit_days(n, last, p["ctdna_draw_interval_days"], rng)
    taken = rng.random(pidx.size) >= np.where(visit == 0, 0.03, p["pro_missed"])
    pidx, visit, day = pidx[taken], visit[taken], day[taken]
    m = day / DAYS_PER_MONTH
    stop = (pt["cohort"] == 2)[pidx]
    after_prog = ev["progressed"][pidx] & (day >= ev["t_prog"][pidx])
    wellbeing = rng.normal(0, 1, n)[pidx]  # one patient-level factor shared by all scales
    ease = 1 - np.exp(-m / 2.5)  # effects of stopping settle over ~6 months
    scales = list(pro.QLQ_C30_SCALES)
    latent = np.empty((pidx.size, len(scales)))
    for j, code in enumerate(scales):
        kind = pro.QLQ_C30_SCALES[code][1]
        sign = -1 if kind == "symptom" else 1
        pat = rng.normal(0, 9, n)[pidx] + sign * 8 * wellbeing
        effect = QLQ_STOP_EFFECT.get(code, 0) * ease * stop + QLQ_PROGRESSION_EFFECT.get(code, 0) * after_prog
        latent[:, j] = np.clip(QLQ_BASELINE[code] + pat + effect + rng.normal(0, 4, pidx.size), 0, 100)
    # items from scale scores: a raw score per scale, then each item near it
    item_cols, item_vals = [], []
    for j, code in enumerate(scales):
        items, kind = pro.QLQ_C30_SCALES[code]
        for item in items:
            rng_ = pro.QLQ_C30_ITEM_MAX[item] - 1
            raw = 1 + (1 - latent[:, j] / 100) * rng_ if kind == "function" else 1 + latent[:, j] / 100 * rng_
            item_cols.append(item)
            item_vals.append(np.clip(np.round(raw + rng.normal(0, 0.3, pidx.size)), 1, rng_ + 1))
    qlq = np.column_stack(item_vals)
    fcr_mean = np.where(stop, 17 - 4 * np.minimum(m, 12) / 12, 13.0) + 6 * after_prog - 3 * wellbeing
    fcr = np.clip(np.round(fcr_mean[:, None] / 9 + rng.normal(0, 0.6, (pidx.size, 9))), 0, 4)
    anx = np.clip(np.where(stop, 54 - 3 * np.minimum(m, 12) / 12, 51.0) + 6 * after_prog - 3 * wellbeing
                  + rng.normal(0, 4, pidx.size), 33, 83).round(1)
    frames = []
    qlq_item = np.tile(np.array(item_cols), pidx.size)
    frames.append(pd.DataFrame({"row": np.repeat(np.arange(pidx.size), 30), "instrument": pro.QLQ_C30,
                                "item": qlq_item, "response": qlq.ravel()}))
    frames.append(pd.DataFrame({"row": np.repeat(np.arange(pidx.size), 9), "instrument": pro.FCRI_SF,
                                "item": np.tile(np.arange(1, 10), pidx.size), "response": fcr.ravel()}))
    frames.append(pd.DataFrame({"row": np.arange(pidx.size), "instrument": pro.PROMIS_ANXIETY,
                                "item": pro.PROMIS_TSCORE_ITEM, "response": anx}))
    drs_visits = np.isin(visit, np.round(np.array(p["drs_months"]) * DAYS_PER_MONTH
                                         / p["ctdna_draw_interval_days"]).astype(int)) & stop
    rows = np.flatnonzero(drs_visits)
    regret = np.clip(12 + 22 * after_prog[rows] - 6 * wellbeing[rows] + rng.normal(0, 10, rows.size), 0, 100)
    agree = 1 + regret / 25  # 1 = strongly agree .. 5 = strongly disagree, on the regret side
    drs = np.column_stack([agree, 6 - agree, agree, 6 - agree, agree])  # items 2 and 4 are reversed
    drs = np.clip(np.round(drs + rng.normal(0, 0.4, drs.shape)), 1, 5)
    frames.append(pd.DataFrame({"row": np.repeat(rows, 5), "instrument": pro.DRS,
                                "item": np.tile(np.arange(1, 6), rows.size), "response": drs.ravel()}))
    long = pd.concat(frames, ignore_index=True)
    long["item"] = long["item"].astype(str)
    long = long[rng.random(len(long)) >= np.where(long["instrument"] == pro.PROMIS_ANXIETY, 0,
                                                  p["pro_item_missing"])]
    long["pidx"] = pidx[long["row"].to_numpy()]
    long["day"] = day[long["row"].to_numpy()]
    return long.drop(columns="row").reset_index(drop=True)


# ------------------------------------------------------------------------------ canonical tables
def generate(n_patients: int = 82, seed: int = 20230419, progress=None, variant: str | None = None,
             landmark_truth: bool = False, first_id: int = 1, id_width: int | None = None) -> dict[str, pd.DataFrame]:
    """The canonical tables of a synthetic cohort, plus ``synthetic_truth`` and ``synthetic_parameters``.

    `variant` names one of VARIANTS. `landmark_truth` adds ``synthetic_landmark_truth``: each stopped
    patient's true chance at every landmark given what was observable then (data/synth_truth.py; ~40 ms
    per stopped patient, so only the benchmark asks for it). `first_id` and `id_width` number the patients
    of one part of a larger cohort (generate_parts).
    """
    p = parameters(variant)
    if n_patients < 2:
        raise ValueError("a synthetic cohort needs at least 2 patients")
    say = progress or (lambda *_: None)
    rng = np.random.default_rng(seed)
    say("patients and baseline characteristics")
    pt = _patients(rng, n_patients, p)
    ev = _events(rng, pt, p)
    brain_only = pt["brain"] & (rng.random(pt["n"]) < p["progression_brain_only_if_brain_history"])
    ev["brain_only"] = brain_only
    # an equivocal new lesion first, confirmed 5-8 weeks later (only when follow-up allows it)
    ev["equivocal_first"] = (ev["progressed"] & ~brain_only & (rng.random(pt["n"]) < 0.12)
                             & (ev["t_prog"] + 57 <= ev["end"]))
    ev["extra_new"] = rng.random(pt["n"]) < 0.3
    ev["new_organ"] = _choice(rng, pt["n"], {"liver": 0.35, "lung": 0.25, "bone": 0.25, "lymph node": 0.15})
    width = id_width or max(4, len(str(n_patients)))
    ids = np.array([f"STH-{i:0{width}d}" for i in range(first_id, first_id + n_patients)], dtype=object)
    pid = pd.Categorical.from_codes  # compact ids for the big tables (30M PRO rows at 100k)
    cat = pd.CategoricalDtype(ids)

    def ids_of(pidx):
        return pid(np.asarray(pidx), dtype=cat)

    def dates(pidx, day):
        return _date(pt["index"][np.asarray(pidx)] + np.asarray(day))

    say("treatments and events")
    index, cohort = pt["index"], pt["cohort"]
    patients = pd.DataFrame({
        "patient_id": ids, "site": "S" + pd.Series(pt["site"]).astype(str).str.zfill(2),
        "cohort": cohort, "enrolled_on": _date(pt["enrolled"]), "age_at_enrolment": pt["age"],
        "sex": pt["sex"], "er_status": np.where(pt["er"], "positive", "negative"),
        "pr_status": np.where(pt["pr"], "positive", "negative"), "her2_ihc": pt["her2_ihc"],
        "her2_ish_amplified": _nullable_bool(pt["ish"] == 1, ~np.isnan(pt["ish"])),
        "de_novo": pt["de_novo"], "metastatic_on": _date(pt["metastatic_on"]),
        "first_line_start": _date(pt["first_line_start"]), "first_line_regimen": pt["regimen"],
        "best_response": pt["best"], "visceral": pt["visceral"], "brain_mets_history": pt["brain"],
        "n_metastatic_sites": pt["n_sites"], "pik3ca": np.where(pt["pik3ca"] == "unknown", None, pt["pik3ca"]),
        "ecog": pt["ecog"],
    })
    treatments = _treatments(rng, pt, ev, ids)
    first_line_progressions = _first_line_progressions(rng, pt, ids, p)

    say("ctDNA draws")
    ct = _ctdna(rng, pt, ev, p)
    ctdna = pd.DataFrame({"patient_id": ids_of(ct["pidx"]), "drawn_on": dates(ct["pidx"], ct["day"]),
                          **{c: ct[c] for c in ("assay", "value", "unit", "lod", "detected", "qc")}})

    say("scans and lesion measurements")
    sc = _scan_days(rng, pt, ev, p)
    les = _lesions(rng, pt, ev, sc, p)
    les = _make_recist_consistent(les, ev)
    scan_ids = (pd.Series(ids[sc["pidx"]]) + "-S" + sc["seq"].astype(str).str.zfill(2)).to_numpy()
    brain_scan = sc["scan_kind"].eq("progression").to_numpy() & ev["brain_only"][sc["pidx"]]
    scans = pd.DataFrame({"patient_id": ids_of(sc["pidx"]), "scan_id": scan_ids,
                          "scanned_on": dates(sc["pidx"], sc["day"]),
                          "modality": np.where(brain_scan, "CT chest/abdomen/pelvis + MRI brain",
                                               "CT chest/abdomen/pelvis")})
    sid = pd.Series(scan_ids, index=pd.MultiIndex.from_arrays([sc["pidx"], sc["seq"]]))
    les_sid = sid.reindex(pd.MultiIndex.from_arrays([les["pidx"], les["seq"]])).to_numpy()
    lesions = pd.DataFrame({"patient_id": ids_of(les["pidx"]), "scan_id": les_sid,
                            **{c: les[c] for c in ("lesion_id", "kind", "organ", "is_node", "diameter_mm", "status")}})
    lesions = lesions[lesions["lesion_id"].notna()].reset_index(drop=True)

    say("questionnaires")
    pr = _pros(rng, pt, ev, p)
    pro_responses = pd.DataFrame({"patient_id": ids_of(pr["pidx"]), "completed_on": dates(pr["pidx"], pr["day"]),
                                  "instrument": pr["instrument"].astype("category"), "item": pr["item"],
                                  "response": pr["response"].astype(float)})
    last_seen = np.full(pt["n"], -10**6)
    for frame in (ct, sc, pr):
        np.maximum.at(last_seen, frame["pidx"].to_numpy(), frame["day"].to_numpy())
    events = _event_rows(pt, ev, ids, np.minimum(last_seen, ev["end"]))
    truth = pd.DataFrame({"patient_id": ids, "linear_predictor": ev["lp"],
                          "p_progression_free_6m": true_pfs(ev["lp"], 6.0, p),
                          "p_progression_free_12m": true_pfs(ev["lp"], 12.0, p),
                          "p_progression_free_24m": true_pfs(ev["lp"], 24.0, p),
                          "ctdna_detected_at_index": pt["ctdna0"],
                          "latent_progression_on": _date(index + ev["t_prog"])})
    out = {"patients": patients, "treatments": treatments, "ctdna_draws": ctdna, "scans": scans,
           "lesion_measurements": lesions, "pro_responses": pro_responses, "events": events,
           "first_line_progressions": first_line_progressions,
           "synthetic_truth": truth, "synthetic_parameters": parameter_table(p)}
    if landmark_truth:
        from data import synth_truth

        say("the true chance at each landmark")
        out["synthetic_landmark_truth"] = synth_truth.landmark_truth(pt, ev, ct, p, ids, seed)
    return out


def generate_parts(n_patients: int, seed: int = 20230419, progress=None, variant: str | None = None,
                   part_size: int | None = None):
    """A cohort of `n_patients` as successive parts of at most `part_size` patients, in patient order.

    Patients are drawn independently, so a cohort in parts follows the same distribution as one drawn
    whole. The first part uses `seed` itself: a cohort no larger than one part is exactly `generate(n, seed)`.
    Each later part k draws from its own stream, seeded by (seed, k).
    """
    from data import build

    if n_patients < 2:
        raise ValueError("a synthetic cohort needs at least 2 patients")
    part_size = part_size or build.part_size(n_patients)
    width = max(4, len(str(n_patients)))
    starts = range(0, n_patients, part_size)
    for k, start in enumerate(starts):
        size = min(part_size, n_patients - start)
        if size < 2:  # a last part of one patient: fold it into its own stream of two and keep one
            size = 2
        # the first part tells its steps; later parts are told by whoever writes them ("writing part k"),
        # so that one progress bar only moves forward
        part = generate(size, seed if k == 0 else [seed, k], progress=progress if k == 0 else None,
                        variant=variant, first_id=start + 1, id_width=width)
        if start + size > n_patients:
            part = _first(part, n_patients - start)
        yield part


def _first(tables: dict[str, pd.DataFrame], n: int) -> dict[str, pd.DataFrame]:
    """The tables of a part's first n patients only."""
    keep = set(tables["patients"]["patient_id"].iloc[:n])
    return {name: (frame if "patient_id" not in frame.columns
                   else frame[frame["patient_id"].astype(str).isin(keep)].reset_index(drop=True))
            for name, frame in tables.items()}


_REGIMEN_AGENTS = {  # first-line regimen -> (anti-HER2 agents, chemotherapy partner)
    "THP": (("trastuzumab", "pertuzumab"), "docetaxel"),
    "HP + paclitaxel": (("trastuzumab", "pertuzumab"), "paclitaxel"),
    "TH": (("trastuzumab",), "docetaxel"),
    "T-DM1": (("trastuzumab emtansine",), None),
}


def _treatments(rng, pt, ev, ids) -> pd.DataFrame:
    n, index = pt["n"], pt["index"]
    stop = pt["cohort"] == 2
    prog_day = np.where(ev["progressed"], index + ev["t_prog"], np.iinfo(np.int64).min)
    rows = []

    def add(mask, agent, cls, start, end, reason):
        idx = np.flatnonzero(mask)
        rows.append(pd.DataFrame({"patient_id": ids[idx], "agent": agent, "agent_class": cls,
                                  "started_on": _date(np.broadcast_to(start, n)[idx]),
                                  "stopped_on": pd.array(np.broadcast_to(end, n)[idx], dtype="Int64"),
                                  "stop_reason": np.broadcast_to(np.asarray(reason, dtype=object), n)[idx]}))

    chemo_end = pt["first_line_start"] + rng.integers(120, 200, n)
    on1_end = np.where(stop, index, np.where(ev["progressed"], prog_day, -1))
    on1_reason = np.where(stop, "elective stop (STOP-HER2 cohort 2)",
                          np.where(ev["progressed"], "progression", None))
    for regimen, (agents, chemo) in _REGIMEN_AGENTS.items():
        has = pt["regimen"] == regimen
        for agent in agents:
            add(has, agent, "anti-HER2", pt["first_line_start"], on1_end, on1_reason)
        if chemo:
            add(has, chemo, "chemotherapy", pt["first_line_start"], chemo_end, "planned course completed")
    hr_pos = pt["er"] | pt["pr"]
    endo = np.where(pt["age"] >= 52, "letrozole", "tamoxifen")
    for agent in ("letrozole", "tamoxifen"):
        add(hr_pos & (endo == agent), agent, "endocrine", chemo_end,
            np.where(ev["progressed"], prog_day, -1), np.where(ev["progressed"], "progression", None))
    restart = np.where(ev["restarted"], index + np.nan_to_num(ev["t_restart"]).astype(np.int64), 0)
    after = ev["restart_after_progression"]
    add(ev["restarted"] & ~after, "trastuzumab", "anti-HER2", restart, -1, None)
    add(ev["restarted"] & ~after, "pertuzumab", "anti-HER2", restart, -1, None)
    add(ev["restarted"] & after, "trastuzumab deruxtecan", "anti-HER2", restart, -1, None)
    second = (pt["cohort"] == 1) & ev["progressed"]
    second_start = prog_day + rng.integers(14, 43, n)
    add(second & (second_start - index <= ev["end"]), "trastuzumab deruxtecan", "anti-HER2",
        second_start, -1, None)
    out = pd.concat(rows, ignore_index=True)
    stopped = out["stopped_on"]
    out["stopped_on"] = _date(stopped.fillna(0).to_numpy()).astype("datetime64[ns]")
    out.loc[stopped.isna() | (stopped < 0), "stopped_on"] = pd.NaT
    out["stop_reason"] = out["stop_reason"].where(out["stopped_on"].notna(), None)
    return out.sort_values(["patient_id", "started_on", "agent"], ignore_index=True)


def _first_line_progressions(rng, pt, ids, p) -> pd.DataFrame:
    """Progressions during first-line therapy that the eligibility exceptions allow (all enrolled)."""
    n = pt["n"]
    latest = pt["enrolled"] - 760  # CNS therapy >= 24 months before enrolment, and no progression since
    earliest = pt["first_line_start"] + 180
    room = latest - earliest
    brain = pt["brain"] & (rng.random(n) < p["first_line_brain_progression_if_brain_history"]) & (room > 30)
    oligo = ~brain & (rng.random(n) < p["first_line_oligoprogression"]) & (room > 30)
    day = earliest + (rng.random(n) * np.maximum(room, 1)).astype(np.int64)
    rows = pd.DataFrame({
        "patient_id": ids, "progressed_on": _date(day),
        "site": np.where(brain, "brain_only", "extracranial"),
        "n_lesions": np.where(brain, rng.integers(1, 3, n), 1),
        "treated_with": np.where(brain, "local", np.where(rng.random(n) < 0.6, "local", "endocrine_change")),
        "symptomatic": False, "on_steroids": False, "on_anticonvulsants": False,
        "cns_therapy_on": pd.Series(_date(day + rng.integers(7, 30, n))).where(brain, pd.NaT)})
    return rows[brain | oligo].reset_index(drop=True)


def _event_rows(pt, ev, ids, last_seen) -> pd.DataFrame:
    index = pt["index"]
    frames = []

    def add(mask, kind, day, detail):
        idx = np.flatnonzero(mask)
        frames.append(pd.DataFrame({"patient_id": ids[idx], "event": kind,
                                    "occurred_on": _date(index[idx] + np.asarray(day)[idx].astype(np.int64)),
                                    "detail": np.broadcast_to(np.asarray(detail, dtype=object), pt["n"])[idx]}))

    mode_text = {"target": "target lesions grew (RECIST PD)", "new": "new lesion (RECIST PD)",
                 "non_target": "unequivocal non-target progression (RECIST PD)",
                 "brain": "new brain lesion on MRI (RECIST PD)"}
    detail = np.array([mode_text.get(m, "RECIST PD") for m in ev["mode"]], dtype=object)
    add(ev["progressed"], "progression", ev["t_prog"], detail)
    add(ev["restarted"], "restart", np.nan_to_num(ev["t_restart"]),
        np.where(ev["restart_after_progression"], "restarted after progression", "restarted by choice, no progression"))
    add(ev["died"], "death", ev["t_death"], None)
    add(ev["withdrew"], "withdrawal", ev["end"], "withdrew consent")
    last = np.maximum(last_seen, np.where(ev["progressed"], ev["t_prog"], 0))
    last = np.maximum(last, np.where(ev["restarted"], np.nan_to_num(ev["t_restart"]), 0))
    add(~ev["died"], "last_contact", np.where(ev["withdrew"], ev["end"], last),
        np.where(ev["withdrew"], "last contact at withdrawal", "last visit before the data cut-off"))
    return pd.concat(frames, ignore_index=True).sort_values(["patient_id", "occurred_on"], ignore_index=True)
