"""`python -m model evaluate --synthetic-check`: the whole procedure measured against the truth.

A benchmark, not a test (it takes tens of minutes). It prints:

* on a large synthetic cohort (default 20,000 patients; the model trained on its cohort 2), evaluated
  on an independent cohort of the same size: the model's Brier score over the oracle's (the
  generator's true probabilities used as predictions; aim <= 1.05) and its calibration slope
  (aim 0.9-1.1);
* at trial size (82 patients, 52 who stop) repeated `repeats` times (default 200), each with the
  whole procedure (candidate choice, calibration, `boot` bootstrap refits): how often the 95%
  interval covers the true probability, for the training patients and for new patients (aim
  0.95 +/- 0.03).
"""
from __future__ import annotations

import json
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import joblib
import numpy as np
import pandas as pd

from data.build import build_synthetic
from data.store import Snapshot
from model import evaluate
from model.features import DEFAULT_HORIZON, training_data

#: The measured result, kept as data beside the code it measured (the card reads it; nothing is typed in).
BENCHMARK_FILE = Path(__file__).with_name("benchmarks") / "day0.json"


def _cohort(n: int, seed: int, folder: Path) -> Snapshot:
    path = folder / f"cohort-{n}-{seed}.duckdb"
    build_synthetic(n, seed=seed, out=path)
    return Snapshot(path)


def _truth(snap: Snapshot, horizon: int) -> pd.DataFrame:
    return snap.query("SELECT patient_id, p_progression_free_" + str(int(horizon)) + "m AS truth FROM synthetic_truth")


def _test_set(snap: Snapshot, horizon: int):
    data = training_data(snap, horizon)
    truth = _truth(snap, horizon).set_index("patient_id").loc[data.ids, "truth"].to_numpy()
    return data, truth


def large_check(n: int, horizon: int, folder: Path, say) -> dict:
    from model.train import train

    say(0.01, f"building two synthetic cohorts of {n:,}")
    train_snap, test_snap = _cohort(n, 101, folder), _cohort(n, 202, folder)
    say(0.05, "training on the first cohort's patients who stopped")
    model = train(train_snap, horizon, n_boot=20)
    data, truth = _test_set(test_snap, horizon)
    keep = data.weight > 0
    p = model.predict(data.X)
    m_model = evaluate.binary_metrics(data.y[keep], p[keep], data.weight[keep], ci_boot=0)
    m_oracle = evaluate.binary_metrics(data.y[keep], truth[keep], data.weight[keep], ci_boot=0)
    return {"patients_per_cohort": n, "trained_on": int((model.training["weight"] > 0).sum()),
            "tested_on": int(keep.sum()), "model": model.model_name, "calibration": model.calibration,
            "brier_model": m_model["brier"], "brier_oracle": m_oracle["brier"],
            "brier_ratio_model_over_oracle": m_model["brier"] / m_oracle["brier"],
            "calibration_slope": m_model["calibration_slope"],
            "calibration_intercept": m_model["calibration_intercept"],
            "auroc_model": m_model["auroc"], "auroc_oracle": m_oracle["auroc"],
            "mean_abs_error_vs_truth": float(np.mean(np.abs(p[keep] - truth[keep])))}


def _one_trial(seed: int, horizon: int, boot: int, folder: str) -> dict:
    from model.train import train

    folder = Path(folder)
    snap = _cohort(82, 10_000 + seed, folder)
    new = _cohort(82, 20_000 + seed, folder)
    try:
        model = train(snap, horizon, n_boot=boot, seed=seed, n_jobs=1)
    except ValueError:  # too few events in this draw to train at all
        return {"seed": seed, "trained": False}
    truth = _truth(snap, horizon).set_index("patient_id")["truth"]
    t = model.training[model.training["weight"] >= 0].set_index("patient_id")
    inside = (t["lo"] <= truth.loc[t.index]) & (truth.loc[t.index] <= t["hi"])
    data, new_truth = _test_set(new, horizon)
    lo, hi = model.interval(data.X)
    new_inside = (lo <= new_truth) & (new_truth <= hi)
    width = float(np.mean(t["hi"] - t["lo"]))
    for s in (snap, new):
        s.close()
        Path(s.path).unlink(missing_ok=True)
    return {"seed": seed, "trained": True, "covered_training": float(inside.mean()),
            "covered_new": float(np.mean(new_inside)), "n_training": len(t), "n_new": len(new_truth),
            "mean_width": width, "model": model.model_name}


def coverage_check(repeats: int, boot: int, horizon: int, jobs: int, folder: Path, say) -> dict:
    rows = []
    batch = max(jobs * 2, 2)
    with joblib.Parallel(n_jobs=jobs) as parallel:
        for start in range(0, repeats, batch):
            rows += parallel(joblib.delayed(_one_trial)(seed, horizon, boot, str(folder))
                             for seed in range(start, min(start + batch, repeats)))
            say(0.3 + 0.7 * len(rows) / repeats, f"trial-size repetition {len(rows)} of {repeats}")
    r = pd.DataFrame(rows)
    ok = r[r["trained"]]
    return {"repeats": repeats, "trained": int(len(ok)), "bootstrap_refits": boot,
            "coverage_training_patients": float(np.average(ok["covered_training"], weights=ok["n_training"])),
            "coverage_new_patients": float(np.average(ok["covered_new"], weights=ok["n_new"])),
            "mean_interval_width": float(ok["mean_width"].mean()),
            "models_chosen": ok["model"].value_counts().to_dict()}


def run(large: int = 20000, repeats: int = 200, boot: int = 200, jobs: int = 2, horizon: int = DEFAULT_HORIZON,
        progress=None, store: bool = True) -> dict:
    say = progress or (lambda f, m: None)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        out = {"horizon_months": horizon, "large": large_check(large, horizon, folder, say)}
        say(0.3, "large-cohort check done")
        out["trial_size"] = coverage_check(repeats, boot, horizon, jobs, folder, say)
    out["seconds"] = round(time.perf_counter() - started, 1)
    out["aims"] = {"brier_ratio": "<= 1.05", "calibration_slope": "0.9-1.1", "coverage": "0.95 +/- 0.03"}
    from model.train import MODEL_VERSION

    out["procedure_version"] = MODEL_VERSION
    out["measured_on"] = datetime.now(UTC).isoformat(timespec="seconds")
    if store:
        BENCHMARK_FILE.parent.mkdir(parents=True, exist_ok=True)
        BENCHMARK_FILE.write_text(json.dumps(out, indent=1, default=float) + "\n")
    return out


def current(procedure_version: str, path: Path | None = None) -> dict | None:
    """The stored result if it measured this version of the procedure, else None ("not measured")."""
    try:
        result = json.loads((path or BENCHMARK_FILE).read_text())
    except (OSError, ValueError):
        return None
    return result if str(result.get("procedure_version")) == str(procedure_version) else None

