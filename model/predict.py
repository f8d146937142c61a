"""Load a verified model and give one patient's estimate, or a refusal with the reason.

Never a bare number: every estimate carries its 95 % interval (from the stored bootstrap refits),
the inputs it used with missing, stale or unusual ones flagged, and what pushes it up or down.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from data.clinical import HER2_RULE, MIN_FIRST_LINE_YEARS
from model import artifacts
from model.artifacts import ModelUnavailable  # noqa: F401  (re-exported: callers catch predict.ModelUnavailable)
from model.features import CTDNA_STALE_DAYS, FEATURE_BY_NAME, FEATURES, as_matrix
from model.train import MODEL_VERSION, TrainedModel, library_versions
def interval_coverage_note() -> str:
    """The sentence every 95 % interval carries: what the synthetic check measured and stored
    (`python -m model evaluate --synthetic-check --estimator day-0` writes model/benchmarks/day0.json)."""
    from model import synthetic_check

    result = synthetic_check.current(MODEL_VERSION)
    if result is None:
        return ("Caution: how often these intervals hold the true chance has not been measured for this version "
                "of the model (`python -m model evaluate --synthetic-check --estimator day-0`).")
    measured = result["trial_size"]["coverage_new_patients"]
    where = f"on synthetic trial-size data ({result['trial_size']['repeats']} repetitions, {result['measured_on'][:10]})"
    if measured < 0.92:
        return (f"Caution: {where} these intervals held the true chance only {measured:.0%} of the time, not 95%: "
                "the real uncertainty is larger.")
    return f"{where[0].upper()}{where[1:]} these intervals held the true chance {measured:.0%} of the time."


def read_manifest(snapshot_id: str, horizon: int, folder: Path | None = None) -> dict:
    return artifacts.read_manifest(snapshot_id, horizon, folder)


def load(snapshot_id: str, horizon: int, folder: Path | None = None) -> TrainedModel:
    """Load the model for a snapshot and horizon after checking its sha256 and library versions."""
    return artifacts.load_verified(snapshot_id, horizon, procedure_version=MODEL_VERSION,
                                   library_versions=library_versions(), expected_type=TrainedModel, folder=folder)


@dataclass
class Estimate:
    applicable: bool
    basis: str  # "index" (at stopping) or "now" (if stopped at the data cut-off)
    horizon: int
    reasons: list[str] = field(default_factory=list)  # why it does not apply
    probability: float | None = None
    low: float | None = None
    high: float | None = None
    inputs: pd.DataFrame | None = None  # feature, value, note
    contributions: pd.DataFrame | None = None  # feature, points (percentage points vs typical patient)


def _fmt(feature: str, value) -> str:
    if value is None or pd.isna(value):  # None, NaN, NaT and pandas' NA
        return "missing"
    if FEATURE_BY_NAME[feature].kind == "binary":
        return "yes" if bool(value) else "no"
    return f"{float(value):.1f}"


def label(feature, basis: str) -> str:
    """The input's name as the risk card shows it: for "if stopped now", ctDNA is the latest result, not at stopping."""
    return feature.label.replace("at stopping", "(latest result)") if basis == "now" else feature.label


def applicability(model: TrainedModel, row: pd.Series | dict, basis: str) -> list[str]:
    """Reasons the model must not be used for this patient (empty when it applies)."""
    reasons = []
    her2 = row.get("her2_positive")
    if her2 is None or pd.isna(her2):
        reasons.append(f"HER2 status unknown: the model is for patients {HER2_RULE}")
    elif not bool(her2):
        reasons.append(f"not {HER2_RULE}")
    years = row.get("years_on_first_line_at_enrolment") if basis == "index" else row.get("years_on_first_line")
    if years is not None and pd.notna(years) and years < MIN_FIRST_LINE_YEARS:
        reasons.append(f"{years:.1f} years of first-line therapy: the model is for >= {MIN_FIRST_LINE_YEARS:g} years")
    if pd.notna(row.get("progressed_on_or_before")):
        when = "day 0" if basis == "index" else "the data cut-off"
        reasons.append(f"progressed on {pd.Timestamp(row['progressed_on_or_before']):%Y-%m-%d}, on or before {when}: "
                       "the model is for patients without progression")
    for f in FEATURES:
        value = row.get(f.name)
        missing = value is None or pd.isna(value)
        if f.required and missing:
            what = ("no ctDNA result on or before that date" if f.name.startswith("ctdna") else "not recorded")
            reasons.append(f"required input missing: {label(f, basis)} ({what})")
        elif not missing and f.kind == "numeric":
            lo, hi = model.feature_ranges[f.name]
            if not lo - 1e-9 <= float(value) <= hi + 1e-9:
                reasons.append(f"{label(f, basis)} {float(value):.1f} is outside the training range {lo:.1f} to {hi:.1f}")
    return list(dict.fromkeys(reasons))


def estimate(model: TrainedModel, row: pd.Series | None, basis: str = "index",
             scored: tuple[float, float, float] | None = None) -> Estimate:
    """The patient's chance of staying progression-free for model.horizon months, or a refusal.

    `scored` is this row's (probability, low, high) from `batch` when the caller has it: the interval
    asks every bootstrap refit, and asking them once for all patients costs what one patient does.
    """
    if row is None:
        return Estimate(False, basis, model.horizon, ["no model inputs for this patient"])
    reasons = applicability(model, row, basis)
    inputs = []
    for f in FEATURES:
        value = row.get(f.name)
        note = ""
        if value is None or pd.isna(value):
            note = "missing: required" if f.required else "missing: imputed from the training patients"
        elif f.kind == "numeric":
            lo, hi = model.feature_ranges[f.name]
            if not lo - 1e-9 <= float(value) <= hi + 1e-9:
                note = f"outside training range {lo:.1f}-{hi:.1f}"
        if f.name.startswith("ctdna") and pd.notna(row.get("ctdna_days_before")) \
                and row["ctdna_days_before"] > CTDNA_STALE_DAYS:
            note = (note + "; " if note else "") + f"stale: drawn {int(row['ctdna_days_before'])} days before"
        inputs.append({"input": label(f, basis), "value": _fmt(f.name, value), "note": note})
    inputs = pd.DataFrame(inputs)
    if reasons:
        return Estimate(False, basis, model.horizon, reasons, inputs=inputs)
    X = as_matrix(pd.DataFrame([row]))
    # the patient, then the patient with one known input at a time set to the typical training patient's
    # value: one call to the model for all of them
    known = [f for f in FEATURES if not pd.isna(X[f.name].iloc[0])]
    variants = pd.concat([X] * (1 + len(known)), ignore_index=True)
    for i, f in enumerate(known, start=1):
        variants.loc[i, f.name] = model.reference[f.name]
    predicted = model.predict(as_matrix(variants))
    if scored is None:
        lo, hi = model.interval(X)
        p, low, high = float(predicted[0]), float(lo[0]), float(hi[0])
    else:
        p, low, high = (float(v) for v in scored)
    contrib = pd.DataFrame([{"input": label(f, basis), "value": _fmt(f.name, X[f.name].iloc[0]),
                             "points": 100 * (float(predicted[0]) - float(predicted[i]))}
                            for i, f in enumerate(known, start=1)], columns=["input", "value", "points"])
    contrib = contrib.sort_values("points", key=np.abs, ascending=False, ignore_index=True)
    return Estimate(True, basis, model.horizon, [], p, low, high, inputs, contrib)


def batch(model: TrainedModel, frame: pd.DataFrame, basis: str) -> pd.DataFrame:
    """Estimates for many patients at once (the tumour board): probability, interval, or the refusal.

    Applicability is checked by the same rules as one patient's estimate; the predictions and the
    bootstrap intervals are computed on the whole matrix.
    """
    frame = frame.reset_index(drop=True)
    # plain dicts, not iterrows(): building a Series per row was most of the time at 100,000 patients
    reasons = [applicability(model, row, basis) for row in frame.to_dict("records")]
    ok = np.array([not r for r in reasons], dtype=bool)
    out = pd.DataFrame({"patient_id": frame["patient_id"], "applicable": ok,
                        "not_applicable_because": ["; ".join(r) for r in reasons],
                        "probability": np.nan, "low": np.nan, "high": np.nan})
    if ok.any():
        X = as_matrix(frame[ok])
        out.loc[ok, "probability"] = model.predict(X)
        lo, hi = model.interval(X)
        out.loc[ok, "low"], out.loc[ok, "high"] = lo, hi
    return out


def score_snapshot(model: TrainedModel, snap) -> dict[str, pd.DataFrame]:
    """Every patient's estimate and interval on both bases (stored with the model: it belongs to this snapshot).

    An interval asks every bootstrap refit; asking them for all patients at once costs about what one
    patient costs (2 s with 200 refits at 82 patients, 5 s with 20 at 100,000), so pages look them up.
    """
    from data import queries

    return {basis: batch(model, queries.features_at(snap, basis), basis).set_index("patient_id")
            for basis in ("index", "now")}
