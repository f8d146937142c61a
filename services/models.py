"""Which model answers: one registry that finds, trains (with progress), verifies, loads and scores models.

Pages and ui/ modules use this module only; they never import model.train or read a model's
internals. Every estimator implements the small :class:`Estimator` protocol (compare scikit-learn's
estimator API): ``fit`` gives a fitted model whose ``predict(rows, horizons)`` returns estimate,
lower and upper, and whose ``applicability(row)`` returns None or the reason it does not apply.
Today's day-0 calibrated classifier is one implementation (:class:`DayZeroClassifier`).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import pandas as pd

from data import shared
from data.store import Snapshot, snapshot_dir
from model import artifacts, card, predict
from model.artifacts import ModelUnavailable
from model.train import N_BOOT, TrainedModel, save, train
from services import jobs

__all__ = ["Evidence", "Estimator", "FittedEstimator", "DayZeroClassifier", "FittedModel", "ModelFacts", "ModelUnavailable",
           "ESTIMATORS", "DEFAULT_ESTIMATOR", "find", "load", "ensure", "train_and_save", "versions",
           "coverage_note", "landmark_validation", "landmark_coverage_note"]

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

    def training_patient_estimate(self, patient_id: str) -> float | None:
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
    with shared.exclusive(f"train-{horizon}", snapshot_dir()):
        manifest = find(snapshot_id, horizon)
        if manifest is None:
            try:
                manifest = train_and_save(snap, horizon, progress)
            except ValueError as exc:  # too few patients or events: a sentence, not a traceback
                raise ModelUnavailable(str(exc)) from exc
            if on_trained is not None:
                on_trained(f"{horizon}-month model trained (none existed for this snapshot)")
    return manifest


def training_job(snap: Snapshot, snapshot_id: str, horizon: int,
                 on_trained: Callable[[str], None] | None = None) -> jobs.Job:
    """The server's job that trains the day-0 classifier for this snapshot and horizon (services/jobs.py):
    one per process whatever the number of sessions asking, on after the tab that started it closes, and
    kept to one across processes by `ensure`'s lock."""
    def work(progress: Progress) -> None:
        progress(0.0, "starting (or waiting for another process that is training the same model)")
        ensure(snap, snapshot_id, horizon, progress, on_trained)

    # asked only while there is no model: a finished job whose model is gone trains again
    return jobs.run_once(f"train:{artifacts.artifact_dir()}:{snapshot_id}:{horizon}", work, again_if_done=True)


def versions() -> pd.DataFrame:
    """Every trained model on this machine, newest first, from the manifests."""
    rows = [{"created": m.get("created_at"), "snapshot": m.get("snapshot_id"), "horizon": str(m.get("horizon_months")),
             "model": m.get("model"), "calibration": m.get("calibration"), "patients": m.get("n_training"),
             "events": m.get("events_by_horizon"),
             "AUROC (corrected)": round(float(m.get("metrics_optimism_corrected", {}).get("auroc", float("nan"))), 3),
             "sha256": str(m.get("sha256", ""))[:12]} for m in artifacts.manifests()]
    return pd.DataFrame(rows)


def coverage_note() -> str:
    """The sentence every 95% interval carries (how often the intervals held the truth, as measured)."""
    return predict.interval_coverage_note()


def landmark_validation() -> dict | None:
    """The stored synthetic check of the landmark procedure in use (None: not measured for this version)."""
    from model import landmark_check

    return landmark_check.current(LANDMARK_VERSION)


def landmark_coverage_note(ctdna_detected: bool | None = None) -> str:
    """The sentence every landmark interval carries, for the patient's ctDNA call when given."""
    from model import landmark_check

    return landmark_check.coverage_sentence(landmark_validation(), ctdna_detected)


# ------------------------------------------------------------------------ the estimate as of a date
LANDMARK = "landmark"  # the artifact's name beside the day-0 classifier's horizons


@dataclass(frozen=True)
class AsOfEstimate:
    """One patient's estimate as of a date (model/landmark.py), or the reason there is none."""

    patient_id: str
    as_of: pd.Timestamp
    landmark_months: float
    horizon: int
    estimand: str
    estimate: float | None
    lower: float | None
    upper: float | None
    refusal: str | None  # None when there is a number
    inputs: pd.DataFrame  # input, value, as of (date)
    notes: tuple[str, ...]  # stale, imputed, beyond the training data, extrapolated
    patients_like: dict | None  # Kaplan-Meier of training patients with the same ctDNA call at that landmark
    if_stopped_now: bool  # cohort 1: "if they stopped now" (an extrapolation from a self-selected cohort)


@dataclass(frozen=True)
class PatientEstimates:
    """What the patient page shows of the landmark model for one patient as of one date."""

    pfs: AsOfEstimate  # the trial's PFS (a restart does not count)
    off_therapy: AsOfEstimate  # still off therapy and progression-free (a restart counts)
    trajectory: pd.DataFrame  # date, estimate, lower, upper: PFS at each landmark and draw, ending at the cut-off


class FittedLandmark:
    """The verified landmark model of one snapshot: estimates as of any date, per patient or for everyone."""

    def __init__(self, model, sha256: str = ""):
        from model import landmark

        self._model, self._lm = model, landmark
        self.sha256 = sha256
        self.snapshot_id = model.snapshot_id
        self.created_at = model.created_at
        self._like: dict[tuple, dict] = {}  # patients_like answers: a few (landmark, ctDNA call, horizon, estimand)

    # the Estimator protocol: rows are landmark rows (model.landmark.landmark_rows)
    def predict(self, rows: pd.DataFrame, horizons: Sequence[int], estimand: str = "pfs") -> pd.DataFrame:
        return self._model.predict(rows, list(horizons), estimand)

    def applicability(self, row: Mapping, estimand: str = "pfs") -> str | None:
        return self._model.refusal(dict(row), estimand)

    def rows(self, snap: Snapshot, as_of=None, patient_id: str | None = None,
             landmark_months: float | None = None) -> pd.DataFrame:
        """Landmark rows as of a date (default: the data cut-off), or at S months after each patient's day 0.

        Cohort 1 has not stopped: its rows ask "if they stopped now" (landmark 0, inputs as of the date).
        """
        from data import queries

        patients, draws, outcomes = queries.landmark_inputs(snap, patient_id)
        if landmark_months is not None:
            rows = self._lm.landmark_rows(patients, draws, outcomes, landmarks=[landmark_months])
        else:
            as_of = pd.Timestamp(as_of if as_of is not None else snap.info()["data_cutoff"])
            rows = self._lm.landmark_rows(patients, draws, outcomes, as_of=as_of)
        return self._if_stopped_now(rows, patients)

    @staticmethod
    def _if_stopped_now(rows: pd.DataFrame, patients: pd.DataFrame) -> pd.DataFrame:
        rows = rows.merge(patients[["patient_id", "cohort"]], on="patient_id")
        continuing = rows["cohort"] == 1
        rows.loc[continuing, "landmark_years"] = 0.0
        # "if they stopped now": every draw so far was taken on therapy, so a negative call is one on therapy only
        rows.loc[continuing, "ctdna_negative_on_therapy_only"] = 1.0 - rows.loc[continuing, "ctdna_detected"]
        rows["if_stopped_now"] = continuing
        return rows

    def estimates(self, snap: Snapshot, horizons: Sequence[int], as_of=None, landmark_months: float | None = None,
                  estimand: str = "pfs", patient_ids: Sequence[str] | None = None) -> pd.DataFrame:
        """patient_id, as_of, landmark_months, horizon_months, estimate, lower, upper, refusal (the CLI's table)."""
        rows = self.rows(snap, as_of=as_of, landmark_months=landmark_months)
        if patient_ids is not None:
            rows = rows[rows["patient_id"].isin(list(patient_ids))].reset_index(drop=True)
        out = self.predict(rows, horizons, estimand)
        meta = rows[["landmark_date", "landmark"]].rename(columns={"landmark_date": "as_of", "landmark": "landmark_months"})
        meta = pd.concat([meta] * len(list(horizons)), ignore_index=True)
        out = pd.concat([out.reset_index(drop=True), meta], axis=1).rename(columns={"horizon": "horizon_months"})
        return out[["patient_id", "as_of", "landmark_months", "horizon_months", "estimate", "lower", "upper", "refusal"]]

    def review(self, snap: Snapshot, patient_id: str, horizon: int, as_of=None) -> PatientEstimates:
        """One patient's estimates as of a date (default: the data cut-off): see reviews. Raises LookupError."""
        found = self.reviews(snap, [patient_id], horizon, as_of)
        if patient_id not in found:
            raise LookupError(patient_id)
        return found[patient_id]

    def reviews(self, snap: Snapshot, patient_ids: Sequence[str], horizon: int, as_of=None
                ) -> dict[str, PatientEstimates]:
        """Patients' estimates as of a date (default: the data cut-off), both estimands, and each one's PFS
        estimate over time, from one query per input and one frame of landmark rows (ids not in the snapshot are
        left out). One patient at a time this was about 90 ms of pandas on twenty rows, nearly all of it the cost
        of each operation rather than of the rows: a hundred patients at once cost about as much as a few, so the
        patient page asks for a patient's neighbours with them (ui.components.patient_estimates)."""
        from data import queries

        patients, draws, outcomes = queries.landmark_inputs(snap, list(patient_ids))
        if patients.empty:
            return {}
        cutoff = pd.Timestamp(snap.info()["data_cutoff"])
        as_of = pd.Timestamp(as_of if as_of is not None else cutoff)
        passed = draws[draws["qc"] == "pass"]
        drawn_on = pd.to_datetime(passed["drawn_on"]).to_numpy()
        drawn = {pid: drawn_on[i] for pid, i in queries.rows_by(passed, "patient_id").items()}
        ids, dates, on_line = [], [], []
        for pid, day0 in zip(patients["patient_id"], pd.to_datetime(patients["index_date"]), strict=True):
            # every landmark (each 3 months) and every ctDNA draw from day 0, and the cut-off: the line ends at
            # the number the risk card gives as of the cut-off
            over_time = set(pd.date_range(day0, cutoff, freq="91D")) | set(pd.to_datetime(drawn.get(pid, []))) | {cutoff}
            over_time = {x for x in over_time if day0 <= x <= cutoff}
            for when in sorted(over_time | {as_of}):
                ids.append(pid)
                dates.append(when)
                on_line.append(when in over_time)
        grid = pd.DataFrame({"patient_id": ids, "landmark_date": dates})
        rows = self._if_stopped_now(self._lm.landmark_rows(patients, draws, outcomes, as_of=grid), patients)
        at = rows[(rows["landmark_date"] == as_of).to_numpy()].reset_index(drop=True)  # one row per patient
        line = rows.loc[on_line].reset_index(drop=True)
        p = self._model.predict(line, [horizon]).reset_index(drop=True)
        shown = ~p["refusal"].fillna("").astype(bool).to_numpy()
        trajectory = pd.DataFrame({"patient_id": line["patient_id"], "date": line["landmark_date"],
                                   "estimate": p["estimate"], "lower": p["lower"], "upper": p["upper"]})[shown]
        own_line = queries.rows_by(trajectory.reset_index(drop=True), "patient_id")
        trajectory = trajectory.drop(columns="patient_id").reset_index(drop=True)
        value = {e: self._model.predict(at, [horizon], e).to_dict("records") for e in ("pfs", "off_therapy")}
        out = {}
        for i, row in enumerate(at.to_dict("records")):
            pid = row["patient_id"]
            inputs = self._inputs(row)  # the same for both estimands
            out[pid] = PatientEstimates(
                self._estimate(row, inputs, value["pfs"][i], horizon, "pfs"),
                self._estimate(row, inputs, value["off_therapy"][i], horizon, "off_therapy"),
                trajectory.iloc[own_line.get(pid, [])].reset_index(drop=True))
        return out

    def _patients_like(self, landmark: float, detected: bool, horizon: int, estimand: str) -> dict:
        """The Kaplan-Meier of "patients like this one": one lifelines fit per landmark, call, horizon and
        estimand for the model's lifetime (the training rows do not change)."""
        key = (self._lm.landmark_at_or_before(landmark), detected, horizon, estimand)
        if key not in self._like:
            self._like[key] = self._lm.patients_like(self._model, key[0], detected, horizon, estimand)
        return self._like[key]

    def _inputs(self, row: dict) -> pd.DataFrame:
        """The inputs a landmark row gives the model, with their dates, as the risk card lists them."""
        when = pd.Timestamp(row["ctdna_drawn_on"]).strftime("%Y-%m-%d") if pd.notna(row.get("ctdna_drawn_on")) else "—"
        detected = row.get("ctdna_detected")
        return pd.DataFrame([
            {"input": "ctDNA on the last draw", "value": "—" if pd.isna(detected) else
             ("detected" if detected else "not detected"), "as of": when},
            {"input": "ctDNA level (log10 x limit)", "value": "—" if pd.isna(row.get("ctdna_level"))
             else f"{row['ctdna_level']:.1f}", "as of": when},
            {"input": self._lm.INPUT_LABELS["ctdna_negative_on_therapy_only"],
             "value": "—" if pd.isna(row.get("ctdna_negative_on_therapy_only"))
             else ("yes" if row["ctdna_negative_on_therapy_only"] else "no"), "as of": when},
            {"input": "consecutive positive draws", "value": "—" if pd.isna(row.get("consecutive_positive"))
             else f"{int(row['consecutive_positive'])}", "as of": when},
            # every input recorded at enrolment, from the model's own list: a new one cannot be left off the card
            *({"input": self._lm.INPUT_LABELS[c], "value": "—" if pd.isna(row.get(c)) else ("yes" if row[c] else "no"),
               "as of": "first line" if c == "complete_response" else "enrolment"} for c in self._lm.ENROLMENT_INPUTS),
            {"input": "months since stopping", "value": "0 (if stopped now)" if row["if_stopped_now"]
             else f"{row['landmark']:.1f}", "as of": pd.Timestamp(row["landmark_date"]).strftime("%Y-%m-%d")},
        ])

    def _estimate(self, row: dict, inputs: pd.DataFrame, value: dict, horizon: int, estimand: str) -> AsOfEstimate:
        """The estimate from a patient's landmark row and the model's answer for it, or the reason there is none."""
        refusal = value["refusal"] or None
        detected = row.get("ctdna_detected")
        like = None
        if refusal is None:
            like = self._patients_like(0 if row["if_stopped_now"] else row["landmark"], bool(detected), horizon,
                                       estimand)
        return AsOfEstimate(
            row["patient_id"], pd.Timestamp(row["landmark_date"]), float(row["landmark"]), horizon, estimand,
            None if refusal else float(value["estimate"]), None if refusal else float(value["lower"]),
            None if refusal else float(value["upper"]), refusal, inputs,
            tuple(self._model.notes(row, estimand)) if refusal is None else (), like, bool(row["if_stopped_now"]))

    def hazard_ratios(self, estimand: str = "pfs") -> pd.DataFrame:
        return self._model.hazard_ratios(estimand)

    def baseline_hazards(self, estimand: str = "pfs") -> pd.DataFrame:
        return self._lm.baseline_hazards(self._model.fits[estimand])

    def flow(self) -> pd.DataFrame:
        return self._model.flow.copy()

    def missingness(self) -> pd.DataFrame:
        return self._model.missingness.copy()

    def sample_size(self) -> dict:
        return dict(self._model.sample_size)

    def prior_sensitivity(self) -> pd.DataFrame:
        return self._model.prior_sensitivity.copy()

    def interval_calibration(self) -> tuple[dict | None, pd.DataFrame | None]:
        """The measured interval calibration this model uses (its facts, and one row per cell), or (None, None)."""
        interval = getattr(self._model, "interval", None)
        if not interval:
            return None, None
        rows = []
        for key, c in interval["cells"].items():
            detected, cr, first, horizon = key.split("|")
            rows.append({"ctDNA": "positive" if detected == "1" else "negative",
                         "complete response": "yes" if cr == "1" else "no",
                         "landmark": "first (before the 3-month draw)" if first == "1" else "later",
                         "horizon (months)": int(horizon), "estimates measured": c["rows"],
                         "extra spread tau": float(c["tau2"]) ** 0.5, "z lower": c["z_lower"], "z upper": c["z_upper"],
                         "pooled over complete response": c["pooled"]})
        facts = {k: interval[k] for k in ("measured_on", "repeats", "patients_per_cohort", "seeds", "level",
                                         "min_cell_rows", "generators") if k in interval}
        return facts, pd.DataFrame(rows).sort_values(["ctDNA", "complete response", "landmark", "horizon (months)"])

    def fit_facts(self) -> pd.DataFrame:
        return pd.DataFrame([{"estimand": e, "what": self._lm.ESTIMANDS[e], "landmark rows": f.n_rows,
                              "patients": f.n_patients, "events (stacked)": f.n_events}
                             for e, f in self._model.fits.items()])


class LandmarkEstimator:
    """The estimate as of a date (model/landmark.py): one supermodel for every landmark and horizon."""

    name = "landmark supermodel (piecewise-exponential, MAP with published priors)"

    def fit(self, snap: Snapshot, horizon: int | None = None, progress: Progress | None = None) -> FittedLandmark:
        from data import queries
        from model import landmark, landmark_check

        patients, draws, outcomes = queries.landmark_inputs(snap)
        return FittedLandmark(landmark.train(patients, draws, outcomes, str(snap.info()["snapshot_id"]),
                                             interval=landmark_check.current_interval(LANDMARK_VERSION)))


ESTIMATORS[LANDMARK] = LandmarkEstimator


def load_landmark(snapshot_id: str) -> FittedLandmark:
    from model import landmark
    from model.train import library_versions

    manifest = artifacts.read_manifest(snapshot_id, LANDMARK)
    model = artifacts.load_verified(snapshot_id, LANDMARK, procedure_version=landmark_procedure(),
                                    library_versions=library_versions(), expected_type=landmark.LandmarkModel)
    return FittedLandmark(model, manifest["sha256"])


# 2: Riley's sample size and prior sensitivity stored with the model; 3: flow, missingness; 4: intervals calibrated
# on synthetic trials (model/benchmarks/landmark_interval.json); 5: brain metastases history as an input;
# 6: whether a negative call comes only from the draw at stopping, on therapy.
LANDMARK_VERSION = "6"


def landmark_procedure() -> str:
    """What a fitted landmark model must have been made by to be used: the procedure version and the interval
    calibration it was fitted with (a new calibration refits the models, so no card quotes a check of another)."""
    from model import landmark_check

    digest = landmark_check.interval_digest(landmark_check.current_interval(LANDMARK_VERSION))
    return f"{LANDMARK_VERSION}+{digest or 'uncalibrated'}"


def find_landmark(snapshot_id: str) -> dict | None:
    """The manifest of this snapshot's landmark model if this procedure made it; None (fit it) otherwise. A model
    of an older procedure is not an error for the person waiting: it is refitted, in about a second."""
    manifest = find(snapshot_id, LANDMARK)
    return manifest if manifest is not None and manifest.get("model_version") == landmark_procedure() else None


def ensure_landmark(snap: Snapshot, snapshot_id: str, on_trained: Callable[[str], None] | None = None) -> dict:
    """The landmark model's manifest for this snapshot, fitting it first (once, under a lock) when missing or
    made by another procedure."""
    from model.train import library_versions

    manifest = find_landmark(snapshot_id)
    if manifest is not None:
        return manifest
    with shared.exclusive("train-landmark", snapshot_dir()):
        manifest = find_landmark(snapshot_id)
        if manifest is None:
            try:
                fitted = LandmarkEstimator().fit(snap)
            except ValueError as exc:
                raise ModelUnavailable(str(exc)) from exc
            model = fitted._model
            model.versions = library_versions()
            artifacts.write(model, {"model_version": landmark_procedure(), "created_at": model.created_at,
                                    "versions": model.versions, "model": LandmarkEstimator.name,
                                    "estimands": list(model.fits)}, snapshot_id, LANDMARK)
            manifest = find_landmark(snapshot_id)
            if on_trained is not None:
                on_trained("landmark model fitted (none of this procedure existed for this snapshot)")
    return manifest
