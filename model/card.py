"""The evidence on the model card, computed from a trained model (pure: no Streamlit)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from dataclasses import dataclass

from model import evaluate
from model.features import FEATURES
from model.train import TrainedModel

SUBGROUPS = {  # label -> training column
    "HR status": ("hr_positive", {True: "positive", False: "negative"}),
    "de novo": ("de_novo", {True: "de novo", False: "recurrent"}),
    "visceral disease": ("visceral", {True: "visceral", False: "non-visceral"}),
    "ctDNA at stopping": ("ctdna_detected_at_index", {True: "detected", False: "not detected"}),
    "response to first line": ("best_response_cr", {True: "CR", False: "not CR"}),
}


def used(model: TrainedModel) -> pd.DataFrame:
    return model.training[model.training["weight"] > 0].reset_index(drop=True)


def smooth_calibration(model: TrainedModel, n_boot: int = 200, seed: int = 0) -> pd.DataFrame:
    """Smoothed observed-vs-predicted on a grid, with a bootstrap 95 % band."""
    t = used(model)
    y, p, w = t["y"].to_numpy(), np.clip(t["p"].to_numpy(), 1e-4, 1 - 1e-4), t["weight"].to_numpy()
    grid = np.linspace(p.min(), p.max(), 40)
    _, observed = evaluate.smoothed_calibration(y, p, w, grid=grid)
    rng = np.random.default_rng(seed)
    curves = []
    for _ in range(n_boot):
        i = rng.integers(0, len(y), len(y))
        if y[i].min() == y[i].max():
            continue
        try:
            curves.append(evaluate.smoothed_calibration(y[i], p[i], w[i], grid=grid)[1])
        except (ValueError, np.linalg.LinAlgError):
            continue
    lo, hi = np.percentile(np.vstack(curves), [2.5, 97.5], axis=0)
    return pd.DataFrame({"p": grid, "observed": observed, "lo": lo, "hi": hi})


def roc_points(model: TrainedModel) -> tuple[np.ndarray, np.ndarray]:
    """ROC for the outcome 'stayed progression-free', weighted by IPCW (scikit-learn: tied scores are one
    point, so the curve does not depend on the order in which tied patients happen to be listed)."""
    from sklearn.metrics import roc_curve

    t = used(model)
    fpr, tpr, _ = roc_curve(t["y"].to_numpy(), t["p"].to_numpy(), sample_weight=t["weight"].to_numpy(),
                            drop_intermediate=False)
    return fpr, tpr


def decision_curve(model: TrainedModel) -> pd.DataFrame:
    t = used(model)
    return evaluate.net_benefit(1 - t["y"], 1 - t["p"], np.arange(0.05, 0.61, 0.01), t["weight"])


def subgroups(model: TrainedModel) -> pd.DataFrame:
    t = used(model)
    parts = []
    for label, (column, names) in SUBGROUPS.items():
        groups = t[column].map(lambda v, names=names: names.get(bool(v), "missing") if pd.notna(v) else "missing")
        table = evaluate.calibration_by_subgroup(t["y"], t["p"], groups, t["weight"])
        parts.append(table.assign(subgroup=label))
    return pd.concat(parts, ignore_index=True)


def truth_comparison(model: TrainedModel, truth: pd.DataFrame) -> dict:
    """On synthetic data: the model's predictions against the generator's true probabilities."""
    column = f"p_progression_free_{model.horizon}m"
    m = model.training.merge(truth[["patient_id", column]], on="patient_id")
    covered = (m["lo"] <= m[column]) & (m[column] <= m["hi"])
    return {"n": len(m), "correlation": float(np.corrcoef(m["p"], m[column])[0, 1]),
            "mean_abs_error": float(np.mean(np.abs(m["p"] - m[column]))),
            "interval_covers_truth": float(covered.mean()), "frame": m[["patient_id", "p", "lo", "hi", column]]}


def calibration_bins(model: TrainedModel, groups: int = 5) -> pd.DataFrame:
    """Observed (IPCW-weighted) against mean predicted chance in fifths of the predictions: p, observed, n."""
    t = used(model)
    q = pd.qcut(t["p"].rank(method="first"), q=min(groups, len(t) // 8 or 1), labels=False)
    return (t.groupby(q).apply(lambda g: pd.Series({"p": g["p"].mean(), "observed": np.average(g["y"], weights=g["weight"]),
                                                    "n": len(g)}), include_groups=False).reset_index(drop=True))


@dataclass(frozen=True)
class Evidence:
    """Everything the model card shows, as public values (pages never read a model's internals)."""

    horizon: int
    snapshot_id: str
    model_name: str
    calibration: str
    created_at: str
    versions: dict
    n_boot: int
    n_patients: int  # training patients with a known outcome at the horizon
    n_events: int  # progressions or deaths by the horizon among them
    n_inputs: int
    input_labels: tuple[str, ...]
    excluded: dict  # reason -> patients left out
    metrics: pd.DataFrame  # metric, apparent, optimism, corrected, ci_low, ci_high
    candidates: pd.DataFrame
    calibration_choice: pd.DataFrame
    chosen_cv_auroc: float
    chosen_cv_slope: float
    survival: dict  # c_index, oe_ratio, brier (censored-data view)
    predictions: np.ndarray  # each training patient's estimate (the calibration plot's rug)
    bins: pd.DataFrame
    smooth: pd.DataFrame
    roc: tuple[np.ndarray, np.ndarray]
    decision_curve: pd.DataFrame
    subgroups: pd.DataFrame


def evidence(model: TrainedModel) -> Evidence:
    t = used(model)
    chosen = model.candidates[model.candidates["chosen"]].iloc[0]
    return Evidence(
        horizon=model.horizon, snapshot_id=model.snapshot_id, model_name=model.model_name,
        calibration=model.calibration, created_at=model.created_at, versions=dict(model.versions),
        n_boot=len(model.boot_models), n_patients=len(t), n_events=int((t["y"] == 0).sum()),
        n_inputs=len(FEATURES), input_labels=tuple(f.label for f in FEATURES), excluded=dict(model.excluded),
        metrics=model.metrics.copy(), candidates=model.candidates.copy(),
        calibration_choice=model.calibration_choice.copy(), chosen_cv_auroc=float(chosen["auroc"]),
        chosen_cv_slope=float(chosen["calibration_slope"]), survival=dict(model.survival),
        predictions=t["p"].to_numpy(), bins=calibration_bins(model), smooth=smooth_calibration(model),
        roc=roc_points(model), decision_curve=decision_curve(model), subgroups=subgroups(model))
