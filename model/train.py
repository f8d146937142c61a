"""Train the calibrated estimate: compare candidates, calibrate the winner, validate by bootstrap.

The procedure, in order (every step is repeated inside each bootstrap refit except the choice of
model family and calibration method, which are fixed once chosen):

1. Training population: cohort 2 (stopped), inputs at day 0, label = progression-free and alive
   through the horizon, with inverse-probability-of-censoring weights (model/features.py).
2. Candidates: penalized logistic regressions (L2, three strengths) and a shallow gradient-boosted
   tree model, compared by repeated stratified 5-fold cross-validation on the weighted Brier score
   and the calibration slope of the out-of-fold predictions.
3. The simplest candidate whose Brier score is within one standard error of the best wins (52
   patients is a small sample: complexity must earn its place).
4. The winner is calibrated with CalibratedClassifierCV (5-fold); sigmoid or isotonic, chosen by the
   same repeated cross-validation (isotonic only with >= 1,000 patients: below that it overfits).
5. Bootstrap (B >= 200 resamples of the patients): each refit of steps 1 and 4 gives (a) the
   optimism of every metric (Harrell's bootstrap optimism correction) and (b) a model whose
   predictions give the spread of each patient's estimate. The refits are stored with the model.
6. Each patient's 95 % interval, on the logit scale: the estimate +/- 1.96 x the square root of
   (the variance of the bootstrap refits' estimates + the expected squared shrinkage bias of the
   penalized logistic model). Why the second term: every refit is shrunk towards the average
   patient by the same penalty, so the refits cannot see that bias, and percentile intervals of
   the refits alone held the true probability only 76-80 % of the time on synthetic trial-size
   data. Read as a Bayesian prior (the L2 penalty 1/C is a normal prior with variance C on each
   standardized coefficient), the bias at inputs z is z' H^-1 P beta, whose expected square under
   that prior is z' H^-1 P H^-1 z (H: the penalized Hessian at the fit, P: the penalty matrix).
   A gradient-boosted winner has no penalty matrix of its own; it gets the term of the simplest
   candidate (the most penalized logistic regression) fitted to the same patients: at this sample
   size the shallow, slowly learning trees are smoothed towards the average patient at least as much.
"""
from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import scipy
import sklearn
from scipy.special import expit, logit
from scipy.stats import norm
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from data.store import Snapshot
from model import artifacts, evaluate
from model.features import DEFAULT_HORIZON, FEATURES, TrainingData, training_data

MODEL_VERSION = "2"  # 2: intervals carry the shrinkage-bias term
N_BOOT = 200
CV_REPEATS = 10
#: Isotonic calibration is a step function fitted to the data: with fewer patients than this it
#: overfits (scikit-learn's guide: "isotonic ... prone to overfitting" on small calibration sets),
#: so only sigmoid calibration is considered below it.
MIN_PATIENTS_FOR_ISOTONIC = 1000
METRICS = ("auroc", "brier", "scaled_brier", "calibration_intercept", "calibration_slope", "oe_ratio", "ici")


class WeightedPipeline(ClassifierMixin, BaseEstimator):
    """A Pipeline whose fit takes sample_weight and gives it to the final step.

    CalibratedClassifierCV passes sample_weight only to estimators whose fit names it; a plain
    Pipeline's fit does not, so IPCW would silently be dropped from the model itself.
    """

    def __init__(self, pipeline: Pipeline):
        self.pipeline = pipeline

    def fit(self, X, y, sample_weight=None):
        self.pipeline_ = clone(self.pipeline)
        params = {} if sample_weight is None else {f"{self.pipeline_.steps[-1][0]}__sample_weight": sample_weight}
        self.pipeline_.fit(X, y, **params)
        self.classes_ = self.pipeline_.classes_
        return self

    def predict_proba(self, X):
        return self.pipeline_.predict_proba(X)

    def predict(self, X):
        return self.pipeline_.predict(X)


def _preprocess() -> ColumnTransformer:
    binary = [f.name for f in FEATURES if f.kind == "binary"]
    numeric = [f.name for f in FEATURES if f.kind == "numeric"]
    return ColumnTransformer([
        ("binary", SimpleImputer(strategy="most_frequent"), binary),
        ("numeric", SimpleImputer(strategy="median"), numeric),
    ], verbose_feature_names_out=False)


def candidates() -> dict[str, WeightedPipeline]:
    """From simplest to most flexible (the order breaks ties towards simplicity)."""
    out = {}
    for c in (0.1, 0.3, 1.0):
        out[f"logistic (L2, C={c:g})"] = WeightedPipeline(Pipeline([
            ("impute", _preprocess()), ("scale", StandardScaler()),
            ("model", LogisticRegression(C=c, max_iter=2000))]))
    out["gradient boosting (depth 2)"] = WeightedPipeline(Pipeline([
        ("impute", _preprocess()),
        ("model", HistGradientBoostingClassifier(max_depth=2, max_iter=60, learning_rate=0.05,
                                                 min_samples_leaf=5, random_state=0))]))
    return out


def calibrated(estimator, method: str) -> CalibratedClassifierCV:
    return CalibratedClassifierCV(clone(estimator), method=method,
                                  cv=StratifiedKFold(5, shuffle=True, random_state=0))


def _fit(estimator, X, y, w):
    return clone(estimator).fit(X, y, sample_weight=w)


def _positive(model, X) -> np.ndarray:
    return model.predict_proba(X)[:, list(model.classes_).index(1)]


def repeated_cv(estimator, X: pd.DataFrame, y: np.ndarray, w: np.ndarray, repeats: int = CV_REPEATS,
                seed: int = 0) -> dict:
    """Weighted Brier score and calibration slope of out-of-fold predictions, over `repeats` 5-fold splits."""
    keep = w > 0
    X, y, w = X[keep].reset_index(drop=True), y[keep], w[keep]
    briers, slopes, aucs = [], [], []
    for r in range(repeats):
        oof = np.zeros(len(y))
        for train, test in StratifiedKFold(5, shuffle=True, random_state=seed + r).split(X, y):
            model = _fit(estimator, X.iloc[train], y[train], w[train])
            oof[test] = _positive(model, X.iloc[test])
        m = evaluate.binary_metrics(y, np.clip(oof, 1e-4, 1 - 1e-4), w, ci_boot=0)
        briers.append(m["brier"])
        slopes.append(m["calibration_slope"])
        aucs.append(m["auroc"])
    return {"brier": float(np.mean(briers)), "brier_se": float(np.std(briers, ddof=1) / np.sqrt(repeats)),
            "calibration_slope": float(np.mean(slopes)), "auroc": float(np.mean(aucs))}


@dataclass
class ShrinkageBias:
    """The expected squared shrinkage bias of a penalized logistic model's linear predictor (see step 6)."""

    transform: object  # the fitted imputation + scaling steps in front of the logistic regression
    matrix: np.ndarray  # H^-1 P H^-1, intercept first

    @classmethod
    def of(cls, fitted: WeightedPipeline, X: pd.DataFrame, y: np.ndarray, w: np.ndarray) -> ShrinkageBias | None:
        steps = fitted.pipeline_
        lr = steps[-1]
        if not isinstance(lr, LogisticRegression):
            return None
        transform = steps[:-1]
        z = np.column_stack([np.ones(len(X)), transform.transform(X)])
        beta = np.concatenate([lr.intercept_, lr.coef_[0]])
        p = expit(z @ beta)
        # scikit-learn minimizes C * sum(w * loss) + ||coef||^2 / 2: a prior precision of 1/C, intercept free
        penalty = np.diag(np.r_[0.0, np.full(z.shape[1] - 1, 1.0 / lr.C)])
        hessian = (z * (w * p * (1 - p))[:, None]).T @ z + penalty
        inverse = np.linalg.inv(hessian)
        return cls(transform, inverse @ penalty @ inverse)

    def variance(self, X: pd.DataFrame) -> np.ndarray:
        z = np.column_stack([np.ones(len(X)), self.transform.transform(X)])
        return np.einsum("ij,jk,ik->i", z, self.matrix, z)


def _logit(p: np.ndarray) -> np.ndarray:
    return logit(np.clip(p, 1e-6, 1 - 1e-6))


@dataclass
class TrainedModel:
    """Everything a prediction and the model card need; saved with joblib beside a JSON manifest."""

    horizon: int
    snapshot_id: str
    model_name: str
    calibration: str
    final: object
    boot_models: list
    feature_ranges: dict
    reference: dict  # the typical training patient, for "what pushes it up or down"
    candidates: pd.DataFrame
    calibration_choice: pd.DataFrame
    metrics: pd.DataFrame  # apparent, optimism, corrected, CI per metric
    survival: dict
    training: pd.DataFrame  # id, y, weight, time, event, p, lo, hi (+ features)
    excluded: dict
    shrinkage: ShrinkageBias | None = None
    scores: dict = field(default_factory=dict)  # basis -> predict.batch table (filled by services/models.py)
    created_at: str = ""
    versions: dict = field(default_factory=dict)

    def interval(self, X: pd.DataFrame, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        """Step 6 of the procedure: refits' variance plus expected squared shrinkage bias, on the logit scale."""
        refits = _logit(np.column_stack([_positive(m, X) for m in self.boot_models]))
        variance = refits.var(axis=1, ddof=1)
        if self.shrinkage is not None:
            variance = variance + self.shrinkage.variance(X)
        centre, half = _logit(self.predict(X)), norm.ppf((1 + level) / 2) * np.sqrt(variance)
        return expit(centre - half), expit(centre + half)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return _positive(self.final, X)


def library_versions() -> dict:
    return {"python": platform.python_version(), "scikit-learn": sklearn.__version__, "numpy": np.__version__,
            "pandas": pd.__version__, "scipy": scipy.__version__, "joblib": joblib.__version__}


#: Idle worker processes end after this many seconds (joblib's default is 300: a killed trainer's
#: workers, 4 processes and 472 MiB in the attack, stayed alive for minutes).
WORKER_IDLE_SECONDS = 5
_watching = False


def _end_with_owner(owner: int) -> None:
    """In a worker process: end it as soon as `owner`, the trainer that started it, is gone (killed,
    crashed). loky's workers only notice at their idle timeout; a daemon thread checks every second.
    In the trainer itself (one job: no workers) nothing is watched."""
    global _watching
    import threading

    if _watching or os.getpid() == owner:
        return

    def watch():
        while os.getppid() == owner:
            time.sleep(1)
        os._exit(0)

    threading.Thread(target=watch, name="end-with-parent", daemon=True).start()
    _watching = True


def _one_refit(estimator, method, X, y, w, idx, keep, owner):
    _end_with_owner(owner)
    model = _fit(calibrated(estimator, method), X.iloc[idx], y[idx], w[idx])
    apparent = evaluate.binary_metrics(y[idx], _positive(model, X.iloc[idx]), w[idx], ci_boot=0)
    test = evaluate.binary_metrics(y[keep], _positive(model, X.iloc[keep]), w[keep], ci_boot=0)
    return model, {**{f"apparent_{k}": apparent[k] for k in METRICS}, **{f"test_{k}": test[k] for k in METRICS}}


def _bootstrap(estimator, method, data: TrainingData, n_boot: int, seed: int, say,
               n_jobs: int = 2) -> tuple[list, pd.DataFrame]:
    """n_boot refits on resampled patients, run in batches on `n_jobs` processes (progress per batch)."""
    rng = np.random.default_rng(seed)
    X, y, w = data.X, data.y, data.weight
    keep = np.flatnonzero(w > 0)
    samples = []
    while len(samples) < n_boot:
        idx = rng.choice(keep, size=keep.size, replace=True)
        if len(np.unique(y[idx])) == 2 and min(np.bincount(y[idx].astype(int))) >= 5:
            samples.append(idx)  # both outcomes, enough of each for 5-fold calibration
    models, rows = [], []
    batch = 40
    with joblib.Parallel(n_jobs=n_jobs, idle_worker_timeout=WORKER_IDLE_SECONDS) as parallel:
        for start in range(0, n_boot, batch):
            done = parallel(joblib.delayed(_one_refit)(estimator, method, X, y, w, idx, keep, os.getpid())
                            for idx in samples[start:start + batch])
            models += [m for m, _ in done]
            rows += [r for _, r in done]
            say(0.55 + 0.4 * len(models) / n_boot, f"bootstrap refit {len(models)} of {n_boot}")
    return models, pd.DataFrame(rows)


def train(snap: Snapshot, horizon: int = DEFAULT_HORIZON, n_boot: int = N_BOOT, seed: int = 0,
          progress=None, n_jobs: int = 2) -> TrainedModel:
    say = progress or (lambda fraction, message: None)
    started = time.perf_counter()
    say(0.02, "reading model inputs and outcomes")
    data = training_data(snap, horizon)
    X, y, w = data.X, data.y, data.weight
    used = w > 0
    if used.sum() < 20 or len(np.unique(y[used])) < 2 or min(np.bincount(y[used].astype(int))) < 5:
        raise ValueError(f"too few patients to train at {horizon} months: {int(used.sum())} usable, "
                         f"{int((y[used] == 0).sum())} with progression or death by the horizon (need >= 5 of each)")

    rows = []
    cands = candidates()
    for i, (name, est) in enumerate(cands.items()):
        say(0.05 + 0.3 * i / len(cands), f"cross-validating {name}")
        rows.append({"candidate": name, **repeated_cv(est, X, y, w, seed=seed)})
    table = pd.DataFrame(rows)
    best = table["brier"].idxmin()
    adequate = table[table["brier"] <= table.loc[best, "brier"] + table.loc[best, "brier_se"]]
    winner = adequate.index[0]  # candidates are listed simplest first
    table["chosen"] = table.index == winner
    name = table.loc[winner, "candidate"]

    say(0.38, "choosing the calibration method")
    cal_rows = []
    methods = ("sigmoid", "isotonic") if used.sum() >= MIN_PATIENTS_FOR_ISOTONIC else ("sigmoid",)
    for method in methods:
        cal_rows.append({"method": method, **repeated_cv(calibrated(cands[name], method), X, y, w,
                                                         repeats=max(3, CV_REPEATS // 2), seed=seed + 100)})
    cal = pd.DataFrame(cal_rows)
    method = cal.loc[cal["brier"].idxmin(), "method"]
    cal["chosen"] = cal["method"] == method

    say(0.5, f"fitting {name}, {method} calibration")
    final = _fit(calibrated(cands[name], method), X[used], y[used], w[used])
    boot_models, boot = _bootstrap(cands[name], method, data, n_boot, seed + 1000, say, n_jobs)

    p = _positive(final, X)
    apparent = evaluate.binary_metrics(y[used], p[used], w[used], ci_boot=1000, seed=seed)
    metric_rows = []
    for k in METRICS:
        optimism = float((boot[f"apparent_{k}"] - boot[f"test_{k}"]).mean())
        lo, hi = np.percentile(boot[f"apparent_{k}"], [2.5, 97.5]) - optimism
        metric_rows.append({"metric": k, "apparent": apparent[k], "optimism": optimism,
                            "corrected": apparent[k] - optimism, "ci_low": lo, "ci_high": hi})
    metrics = pd.DataFrame(metric_rows)
    survival = evaluate.survival_at_horizon(data.time, data.event, 1 - p, horizon)
    shrinkage = ShrinkageBias.of(_fit(cands[name], X[used], y[used], w[used]), X[used], y[used], w[used])
    if shrinkage is None:  # a non-linear winner: the simplest candidate's term (step 6)
        simplest = next(iter(cands))
        shrinkage = ShrinkageBias.of(_fit(cands[simplest], X[used], y[used], w[used]), X[used], y[used], w[used])
    model = TrainedModel(horizon=horizon, snapshot_id=str(snap.info()["snapshot_id"]), model_name=name,
                         calibration=method, final=final, boot_models=boot_models, feature_ranges={},
                         reference={}, candidates=table, calibration_choice=cal, metrics=metrics,
                         survival=survival, training=pd.DataFrame(), excluded=data.excluded, shrinkage=shrinkage,
                         created_at=datetime.now(UTC).isoformat(timespec="seconds"), versions=library_versions())
    lo, hi = model.interval(X)
    training = data.frame[["patient_id"]].assign(y=y, weight=w, time=data.time, event=data.event, p=p, lo=lo, hi=hi)
    training = pd.concat([training, X.add_prefix("x_")], axis=1)
    for col in ("hr_positive", "de_novo", "visceral", "ctdna_detected_at_index", "best_response_cr"):
        training[col] = data.frame[col].to_numpy()
    model.training = training
    model.feature_ranges = {f.name: (float(np.nanmin(X[f.name])), float(np.nanmax(X[f.name]))) for f in FEATURES}
    model.reference = {f.name: float(np.nanmedian(X[f.name])) for f in FEATURES}
    say(1.0, f"trained in {time.perf_counter() - started:.0f} s")
    return model


# ------------------------------------------------------------------------------------ artifacts
def save(model: TrainedModel, folder: Path | None = None) -> tuple[Path, Path]:
    """Write the model and its manifest (versions, features, headline figures) through model/artifacts.py."""
    corrected = model.metrics.set_index("metric")["corrected"].to_dict()
    manifest = {
        "model_version": MODEL_VERSION, "created_at": model.created_at, "versions": model.versions,
        "features": [f.name for f in FEATURES], "model": model.model_name,
        "calibration": model.calibration, "n_boot": len(model.boot_models),
        "n_training": int((model.training["weight"] > 0).sum()),
        "events_by_horizon": int(((model.training["y"] == 0) & (model.training["weight"] > 0)).sum()),
        "metrics_optimism_corrected": corrected,
    }
    return artifacts.write(model, manifest, model.snapshot_id, model.horizon, folder)
