"""Model inputs and labels: read from the model_features and outcomes views (data/ produces them).

Inputs are as of the index date only (the view enforces it); labels come from outcomes with
inverse-probability-of-censoring weights, so that a patient censored before the horizon is never
counted as progression-free.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from data.clinical import CTDNA_STALE_DAYS, DEFAULT_HORIZON, HORIZONS  # noqa: E402,F401  (re-exported)
from data.store import Snapshot
from model.evaluate import ipcw_weights


@dataclass(frozen=True)
class Feature:
    name: str
    label: str
    kind: str  # "binary" or "numeric"
    required: bool  # refused when missing; optional ones are imputed inside the pipeline


FEATURES: tuple[Feature, ...] = (
    Feature("ctdna_detected_at_index", "ctDNA detected at stopping", "binary", True),
    Feature("ctdna_log10_fold_over_lod", "ctDNA level (log10 x detection limit)", "numeric", True),
    Feature("best_response_cr", "complete response to first line", "binary", True),
    Feature("visceral", "visceral disease", "binary", False),
    Feature("hr_positive", "hormone-receptor positive", "binary", False),
    Feature("de_novo", "de novo metastatic disease", "binary", False),
    Feature("brain_mets_history", "brain metastases history", "binary", False),
    Feature("years_on_first_line", "years on first-line therapy", "numeric", True),
    Feature("age", "age (years)", "numeric", False),
    Feature("n_metastatic_sites", "number of metastatic sites", "numeric", False),
    Feature("her2_ihc3", "HER2 IHC 3+", "binary", True),
)
FEATURE_NAMES = [f.name for f in FEATURES]
FEATURE_BY_NAME = {f.name: f for f in FEATURES}

FEATURES_SQL = "SELECT * FROM model_features_all WHERE basis = ? ORDER BY patient_id"
FEATURES_ONE_SQL = "SELECT * FROM model_features_all WHERE basis = ? AND patient_id = ?"
OUTCOMES_SQL = "SELECT patient_id, pfs_months, pfs_event FROM outcomes ORDER BY patient_id"


def as_matrix(frame: pd.DataFrame) -> pd.DataFrame:
    """The model's input matrix: one float column per feature (booleans as 0/1, missing as NaN)."""
    return frame[FEATURE_NAMES].astype("float64")


@dataclass
class TrainingData:
    ids: np.ndarray
    X: pd.DataFrame
    y: np.ndarray  # 1 = stayed progression-free (and alive) through the horizon
    weight: np.ndarray  # IPCW; 0 for patients censored before the horizon
    time: np.ndarray
    event: np.ndarray
    frame: pd.DataFrame  # features + outcomes of everyone in the training population
    excluded: dict  # reason -> number of patients left out


def training_data(snap: Snapshot, horizon: int = DEFAULT_HORIZON) -> TrainingData:
    """Cohort 2 (patients who stopped), inputs at day 0, label at `horizon` months with IPCW."""
    feats = snap.query(FEATURES_SQL, ["index"])
    out = snap.query(OUTCOMES_SQL)
    frame = feats[feats["cohort"] == 2].merge(out, on="patient_id")
    excluded = {}
    missing_required = frame[[f.name for f in FEATURES if f.required]].isna().any(axis=1)
    if missing_required.any():
        excluded["a required input missing at day 0"] = int(missing_required.sum())
    prior = frame["progressed_on_or_before"].notna()
    if prior.any():
        excluded["progressed on or before day 0"] = int(prior.sum())
    frame = frame[~missing_required & ~prior].reset_index(drop=True)
    event_by_h, weight = ipcw_weights(frame["pfs_months"], frame["pfs_event"], horizon)
    censored = int((weight == 0).sum())
    if censored:
        excluded["censored before the horizon (IPCW)"] = censored
    return TrainingData(ids=frame["patient_id"].to_numpy(), X=as_matrix(frame), y=1 - event_by_h, weight=weight,
                        time=frame["pfs_months"].to_numpy(float), event=frame["pfs_event"].to_numpy(bool),
                        frame=frame, excluded=excluded)


def patient_features(snap: Snapshot, patient_id: str, basis: str) -> pd.Series | None:
    rows = snap.query(FEATURES_ONE_SQL, [basis, patient_id])
    return None if rows.empty else rows.iloc[0]
