"""The evidence on the model card, computed from a trained model (pure: no Streamlit)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from model import evaluate
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
    """ROC for the outcome 'stayed progression-free', weighted by IPCW."""
    t = used(model)
    order = np.argsort(-t["p"].to_numpy())
    y, w = t["y"].to_numpy()[order], t["weight"].to_numpy()[order]
    tpr = np.r_[0, np.cumsum(w * y) / np.sum(w * y)]
    fpr = np.r_[0, np.cumsum(w * (1 - y)) / np.sum(w * (1 - y))]
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
