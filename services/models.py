"""Which model answers: one registry that finds, trains (with progress), verifies, loads and scores models.

Pages and ui/ modules use this module only; they never import model.train or read a model's
internals. Every estimator implements the small :class:`Estimator` protocol (compare scikit-learn's
estimator API): ``fit`` gives a fitted model whose ``predict(rows, horizons)`` returns estimate,
lower and upper, and whose ``applicability(row)`` returns None or the reason it does not apply.
Today's day-0 calibrated classifier is one implementation (:class:`DayZeroClassifier`).
"""
from __future__ import annotations

import fcntl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import pandas as pd

from data.store import Snapshot, snapshot_dir
from model import artifacts, card, predict
from model.artifacts import ModelUnavailable
from model.train import N_BOOT, TrainedModel, save, train

__all__ = ["Evidence", "Estimator", "FittedEstimator", "DayZeroClassifier", "FittedModel", "ModelFacts", "ModelUnavailable",
           "ESTIMATORS", "DEFAULT_ESTIMATOR", "find", "load", "ensure", "train_and_save", "versions",
           "coverage_note"]

Progress = Callable[[float, str], None]
Evidence = card.Evidence  # what the model card shows (public values, no internals)


@runtime_checkable
class FittedEstimator(Protocol):
    def predict(self, rows: pd.DataFrame, horizons: Sequence[int]) -> pd.DataFrame:
        """One row per input row and horizon: patient_id, horizon, estimate, lower, upper (NaN when refused)."""

    def applicability(self, row: Mapping) -> str | None:
        """None when the model applies to this row, else the reason in words."""


class Estimator(Protocol):
    name: str

    def fit(self, snap: Snapshot, horizon: int, progress: Progress | None = None) -> FittedEstimator:
        """Learn from the snapshot's training population for one horizon."""


@dataclass(frozen=True)
class ModelFacts:
    """What a page may say about a model: never its internals."""

    snapshot_id: str
    horizon: int
    name: str
    calibration: str
    created_at: str
    n_patients: int
    n_events: int
    sha256: str


class FittedModel:
    """A verified, loaded day-0 classifier for one snapshot and horizon: the public face pages use."""

    def __init__(self, trained: TrainedModel, sha256: str = ""):
        self._trained = trained
        used = trained.training[trained.training["weight"] > 0]
        self.facts = ModelFacts(trained.snapshot_id, trained.horizon, trained.model_name, trained.calibration,
                                trained.created_at, len(used), int((used["y"] == 0).sum()), sha256)

    # ------------------------------------------------------------------ the Estimator protocol
    def predict(self, rows: pd.DataFrame, horizons: Sequence[int] | None = None, basis: str = "index") -> pd.DataFrame:
        horizons = list(horizons or [self.facts.horizon])
        if horizons != [self.facts.horizon]:
            raise ValueError(f"this model answers {self.facts.horizon} months only, not {horizons}")
        out = predict.batch(self._trained, rows, basis)
        return out.assign(horizon=self.facts.horizon).rename(
            columns={"probability": "estimate", "low": "lower", "high": "upper"})

    def applicability(self, row: Mapping, basis: str = "index") -> str | None:
        reasons = predict.applicability(self._trained, row, basis)
        return "; ".join(reasons) if reasons else None

    # --------------------------------------------------------------------- what pages need
    def scores(self, snap: Snapshot, basis: str) -> pd.DataFrame:
        """Every patient's estimate on a basis ('index' or 'now'), indexed by patient_id (stored at training)."""
        stored = self._trained.scores
        return stored[basis] if stored else predict.score_snapshot(self._trained, snap)[basis]

    def explain(self, row: pd.Series | None, basis: str, scored: tuple[float, float, float] | None = None
                ) -> predict.Estimate:
        """One patient's estimate with its inputs (flagged) and what pushes it up or down, or the refusal."""
        return predict.estimate(self._trained, row, basis, scored=scored)

    def estimate_for(self, snap: Snapshot, patient_id: str, basis: str, table: pd.DataFrame | None = None
                     ) -> predict.Estimate:
        """A patient's estimate from the snapshot's model inputs; the interval looked up in `table` (scores)."""
        from model.features import patient_features

        interval = None
        if table is not None and patient_id in table.index and bool(table.at[patient_id, "applicable"]):
            interval = tuple(table.loc[patient_id, ["probability", "low", "high"]])
        return self.explain(patient_features(snap, patient_id, basis), basis, scored=interval)

    def training_estimate(self, patient_id: str) -> float | None:
        """The estimate of a training patient (to mark on the calibration plot), else None."""
        t = self._trained.training
        row = t[t["patient_id"] == patient_id]
        return None if row.empty else float(row["p"].iloc[0])

    def evidence(self) -> card.Evidence:
        return card.evidence(self._trained)

    def truth_comparison(self, truth: pd.DataFrame) -> dict:
        return card.truth_comparison(self._trained, truth)


class DayZeroClassifier:
    """Today's estimator: a calibrated classifier of the inputs at day 0 (model/train.py)."""

    name = "day-0 calibrated classifier"

    def __init__(self, n_boot: int = N_BOOT, n_jobs: int = 2):
        self.n_boot, self.n_jobs = n_boot, n_jobs

    def fit(self, snap: Snapshot, horizon: int, progress: Progress | None = None) -> FittedModel:
        return FittedModel(train(snap, horizon=horizon, n_boot=self.n_boot, progress=progress, n_jobs=self.n_jobs))


ESTIMATORS: dict[str, type] = {"day0": DayZeroClassifier}
DEFAULT_ESTIMATOR = "day0"


# ------------------------------------------------------------------------------- the registry
def find(snapshot_id: str, horizon: int) -> dict | None:
    """The manifest of the model trained on this snapshot for this horizon, or None."""
    try:
        return artifacts.read_manifest(snapshot_id, horizon)
    except ModelUnavailable:
        return None


def load(snapshot_id: str, horizon: int) -> FittedModel:
    """The verified model (sha256, procedure and library versions) or ModelUnavailable with the reason."""
    manifest = artifacts.read_manifest(snapshot_id, horizon)
    return FittedModel(predict.load(snapshot_id, horizon), manifest["sha256"])


def train_and_save(snap: Snapshot, horizon: int, progress: Progress | None = None,
                   estimator: str = DEFAULT_ESTIMATOR, n_boot: int = N_BOOT, folder=None) -> dict:
    """Train, score every patient of the snapshot (stored with the model), save; returns the manifest."""
    say = progress or (lambda fraction, message: None)
    fitted = ESTIMATORS[estimator](n_boot=n_boot).fit(snap, horizon, progress=lambda f, m: say(0.95 * f, m))
    trained = fitted._trained
    say(0.96, "scoring every patient of the snapshot")
    trained.scores = predict.score_snapshot(trained, snap)
    save(trained, folder)
    say(1.0, "saved")
    return artifacts.read_manifest(trained.snapshot_id, horizon, folder)


def ensure(snap: Snapshot, snapshot_id: str, horizon: int, progress: Progress | None = None,
           on_trained: Callable[[str], None] | None = None) -> dict:
    """The manifest of this snapshot's model, training it first (once, under a lock) when there is none.

    Several processes starting together train once: the others wait on the lock and find the model.
    Raises ModelUnavailable with the reason when the snapshot cannot support a model.
    """
    manifest = find(snapshot_id, horizon)
    if manifest is not None:
        return manifest
    folder = snapshot_dir()
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f".train-{horizon}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        manifest = find(snapshot_id, horizon)
        if manifest is None:
            try:
                manifest = train_and_save(snap, horizon, progress)
            except ValueError as exc:  # too few patients or events: a sentence, not a traceback
                raise ModelUnavailable(str(exc)) from exc
            if on_trained is not None:
                on_trained(f"{horizon}-month model trained (none existed for this snapshot)")
    return manifest


def versions() -> pd.DataFrame:
    """Every trained model on this machine, newest first, from the manifests."""
    rows = [{"created": m.get("created_at"), "snapshot": m.get("snapshot_id"), "horizon": m.get("horizon_months"),
             "model": m.get("model"), "calibration": m.get("calibration"), "patients": m.get("n_training"),
             "events": m.get("events_by_horizon"),
             "AUROC (corrected)": round(float(m.get("metrics_optimism_corrected", {}).get("auroc", float("nan"))), 3),
             "sha256": str(m.get("sha256", ""))[:12]} for m in artifacts.manifests()]
    return pd.DataFrame(rows)


def coverage_note() -> str:
    """The sentence every 95% interval carries (how often the intervals held the truth, as measured)."""
    return predict.interval_coverage_note()
