"""The trained model on a real snapshot: labels, leakage, artifacts, applicability, intervals."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from data import queries
from data.build import build_snapshot
from data.store import Snapshot
from model import artifacts, features, predict
from model.artifacts import artifact_paths, sha256_file


@pytest.fixture(scope="module")
def model(snapshot, model_dir):
    return predict.load(str(snapshot.info()["snapshot_id"]), 12, model_dir)


def test_training_population_is_cohort_2_with_censoring_weighted_not_counted(snapshot):
    data = features.training_data(snapshot, 12)
    cohorts = snapshot.query("SELECT patient_id, cohort FROM patients").set_index("patient_id")["cohort"]
    assert (cohorts.loc[data.ids] == 2).all()
    censored_early = ~data.event & (data.time < 12)
    assert (data.weight[censored_early] == 0).all()  # never counted as progression-free
    events_early = data.event & (data.time <= 12)
    assert (data.y[events_early] == 0).all() and (data.y[data.time > 12] == 1).all()
    assert data.weight[data.weight > 0].min() >= 1.0
    assert data.weight.sum() == pytest.approx(len(data.ids), rel=0.05)  # IPCW keeps the sample's size


def test_manifest_describes_the_artifact(snapshot, model_dir, model):
    path, manifest_path = artifact_paths(model.snapshot_id, 12, model_dir)
    manifest = json.loads(manifest_path.read_text())
    assert manifest["sha256"] == sha256_file(path)
    assert manifest["snapshot_id"] == snapshot.info()["snapshot_id"] and manifest["horizon_months"] == 12
    assert manifest["features"] == features.FEATURE_NAMES
    assert manifest["n_boot"] >= 200 and len(model.boot_models) >= 200
    assert {"scikit-learn", "numpy", "joblib", "pandas", "python"} <= set(manifest["versions"])
    assert set(manifest["metrics_optimism_corrected"]) >= {"auroc", "brier", "calibration_slope", "ici"}
    assert model.candidates["chosen"].sum() == 1 and model.candidates["candidate"].str.contains("logistic").any()
    assert model.candidates["candidate"].str.contains("boosting").any()


def test_a_tampered_artifact_is_refused(model, model_dir, tmp_path):
    folder = tmp_path / "models"
    shutil.copytree(model_dir, folder)
    path, manifest_path = artifact_paths(model.snapshot_id, 12, folder)
    with open(path, "ab") as f:
        f.write(b"\0")
    with pytest.raises(predict.ModelUnavailable, match="sha256"):
        predict.load(model.snapshot_id, 12, folder)


def test_a_model_from_other_library_versions_is_refused(model, model_dir, tmp_path):
    folder = tmp_path / "models"
    shutil.copytree(model_dir, folder)
    _, manifest_path = artifact_paths(model.snapshot_id, 12, folder)
    manifest = json.loads(manifest_path.read_text())
    manifest["versions"]["scikit-learn"] = "0.24.2"
    manifest_path.write_text(json.dumps(manifest))
    artifacts.resign(manifest_path)  # signed by this deployment: the version check is what refuses it
    with pytest.raises(predict.ModelUnavailable, match="scikit-learn 0.24.2"):
        predict.load(model.snapshot_id, 12, folder)
    with pytest.raises(predict.ModelUnavailable, match="no model has been trained"):
        predict.load("another-snapshot", 12, folder)


def test_a_model_from_an_older_training_procedure_is_refused(model, model_dir, tmp_path):
    folder = tmp_path / "models"
    shutil.copytree(model_dir, folder)
    _, manifest_path = artifact_paths(model.snapshot_id, 12, folder)
    manifest = json.loads(manifest_path.read_text())
    manifest["model_version"] = "1"  # percentile intervals without the shrinkage term
    manifest_path.write_text(json.dumps(manifest))
    artifacts.resign(manifest_path)
    with pytest.raises(predict.ModelUnavailable, match="version 1 of the training procedure"):
        predict.load(model.snapshot_id, 12, folder)


def test_nothing_measured_after_day_0_changes_the_inputs_or_the_estimate(model, tmp_path):
    from data import synth

    tables = synth.generate(82, seed=20230419)
    before = tmp_path / "before.duckdb"
    build_snapshot(tables, source="synthetic", out=before, data_cutoff=synth.P["data_cutoff"])
    changed = {k: v.copy() for k, v in tables.items()}
    draws = changed["ctdna_draws"]
    index = Snapshot(before).query("SELECT patient_id, index_date FROM patient_index")
    later = draws.merge(index, on="patient_id", how="left")["drawn_on"].to_numpy() > \
        draws.merge(index, on="patient_id", how="left")["index_date"].to_numpy()
    draws.loc[later, ["detected", "value", "qc"]] = [True, 999.0, "pass"]  # every later draw strongly positive
    changed["lesion_measurements"]["diameter_mm"] = changed["lesion_measurements"]["diameter_mm"] * 3
    changed["pro_responses"]["response"] = 1.0
    after = tmp_path / "after.duckdb"
    build_snapshot(changed, source="synthetic", out=after, data_cutoff=synth.P["data_cutoff"])
    a = Snapshot(before).query("SELECT * FROM model_features ORDER BY patient_id")
    b = Snapshot(after).query("SELECT * FROM model_features ORDER BY patient_id")
    pd.testing.assert_frame_equal(a, b)
    np.testing.assert_array_equal(model.predict(features.as_matrix(a)), model.predict(features.as_matrix(b)))
    assert later.sum() > 100  # the change was real


def test_estimate_has_an_interval_inputs_and_contributions(snapshot, model):
    rows = snapshot.query("SELECT * FROM model_features_all WHERE basis = 'index' AND cohort = 2 "
                          "AND ctdna_detected_at_index IS NOT NULL AND progressed_on_or_before IS NULL")
    est = predict.estimate(model, rows.iloc[0], "index")
    assert est.applicable and 0 < est.low <= est.probability <= est.high < 1
    assert set(est.inputs["input"]) == {f.label for f in features.FEATURES}
    assert len(est.contributions) >= 5 and est.contributions["points"].abs().max() > 0


def test_interval_adds_the_shrinkage_bias_to_the_refits_spread(snapshot, model):
    from scipy.special import expit, logit

    X = features.training_data(snapshot, 12).X
    lo, hi = model.interval(X)
    p = model.predict(X)
    assert (lo < p).all() and (p < hi).all() and ((hi - lo) < 1).all()
    refits = np.column_stack([m.predict_proba(X)[:, 1] for m in model.boot_models])
    plo, phi = np.percentile(refits, [2.5, 97.5], axis=1)
    assert np.median(hi - lo) > np.median(phi - plo)  # the bias term widens what the refits alone say
    # Symmetric on the logit scale around the estimate.
    np.testing.assert_allclose(logit(hi) - logit(p), logit(p) - logit(lo), rtol=1e-6)
    assert 0 < expit(logit(p)).min()


def test_shrinkage_bias_plus_sampling_variance_is_the_laplace_posterior_variance(snapshot, model):
    """H^-1 = H^-1 X'WX H^-1 + H^-1 P H^-1: the expected squared bias is exactly what the posterior adds."""
    from scipy.special import expit

    from model.train import ShrinkageBias, _fit, candidates

    data = features.training_data(snapshot, 12)
    used = data.weight > 0
    X, y, w = data.X[used], data.y[used], data.weight[used]
    fitted = _fit(candidates()["logistic (L2, C=0.1)"], X, y, w)
    bias = ShrinkageBias.of(fitted, X, y, w)
    z = np.column_stack([np.ones(len(X)), fitted.pipeline_[:-1].transform(X)])
    lr = fitted.pipeline_[-1]
    p = expit(z @ np.r_[lr.intercept_, lr.coef_[0]])
    information = (z * (w * p * (1 - p))[:, None]).T @ z
    inverse = np.linalg.inv(information + np.diag(np.r_[0.0, np.full(z.shape[1] - 1, 10.0)]))
    sandwich = np.einsum("ij,jk,ik->i", z, inverse @ information @ inverse, z)
    posterior = np.einsum("ij,jk,ik->i", z, inverse, z)
    np.testing.assert_allclose(sandwich + bias.variance(X), posterior, rtol=1e-8)
    assert (bias.variance(X) > 0).all()


def base_row(snapshot):
    rows = snapshot.query("SELECT * FROM model_features_all WHERE basis = 'index' AND cohort = 2 "
                          "AND ctdna_detected_at_index IS NOT NULL AND progressed_on_or_before IS NULL")
    return rows.iloc[0].copy()


@pytest.mark.parametrize("change,reason", [
    ({"her2_positive": False}, "not HER2-positive"),
    ({"her2_positive": None}, "HER2 status unknown"),
    ({"years_on_first_line_at_enrolment": 2.5}, "2.5 years of first-line therapy"),
    ({"progressed_on_or_before": pd.Timestamp("2024-01-01")}, "progressed on 2024-01-01"),
    ({"ctdna_detected_at_index": None}, "required input missing: ctDNA detected"),
    ({"ctdna_detected_at_index": pd.NA, "ctdna_log10_fold_over_lod": np.nan}, "required input missing: ctDNA"),
    ({"best_response_cr": None}, "required input missing: complete response"),
    ({"years_on_first_line": 40.0}, "outside the training range"),
    ({"age": 101.0}, "age (years) 101.0 is outside the training range"),
])
def test_each_applicability_refusal_names_its_reason(snapshot, model, change, reason):
    row = base_row(snapshot)
    for k, v in change.items():
        row[k] = v
    est = predict.estimate(model, row, "index")
    assert not est.applicable and est.probability is None
    assert any(reason in r for r in est.reasons), est.reasons


def test_optional_missing_input_is_imputed_and_flagged(snapshot, model):
    row = base_row(snapshot)
    row["visceral"] = None
    est = predict.estimate(model, row, "index")
    assert est.applicable
    note = est.inputs.set_index("input").loc["visceral disease", "note"]
    assert "imputed" in note


def test_stale_ctdna_is_flagged(snapshot, model):
    row = base_row(snapshot)
    row["ctdna_days_before"] = 200
    est = predict.estimate(model, row, "index")
    assert "stale" in est.inputs.set_index("input").loc["ctDNA detected at stopping", "note"]


def test_for_a_patient_still_on_therapy_ctdna_is_labelled_as_the_latest_result(snapshot, model):
    rows = snapshot.query("SELECT * FROM model_features_all WHERE basis = 'now' AND cohort = 1 "
                          "AND ctdna_detected_at_index IS NOT NULL AND progressed_on_or_before IS NULL")
    est = predict.estimate(model, rows.iloc[0], "now")
    assert "ctDNA detected (latest result)" in set(est.inputs["input"])
    assert not est.inputs["input"].str.contains("at stopping").any()


def test_an_estimate_from_the_batch_equals_the_estimate_made_alone(snapshot, model):
    """The pages look the interval up in predict.batch's table; it must be what estimate() computes."""
    for basis in ("index", "now"):
        table = predict.batch(model, queries.features_at(snapshot, basis), basis).set_index("patient_id")
        ids = table.index[table["applicable"]][:4]
        assert len(ids) == 4
        for pid in ids:
            row = features.patient_features(snapshot, pid, basis)
            alone = predict.estimate(model, row, basis)
            looked_up = predict.estimate(model, row, basis, scored=tuple(table.loc[pid, ["probability", "low", "high"]]))
            assert (alone.probability, alone.low, alone.high) == pytest.approx(
                (looked_up.probability, looked_up.low, looked_up.high), abs=1e-12)
            pd.testing.assert_frame_equal(alone.contributions, looked_up.contributions)
            # each contribution is the change from setting that input to the typical patient's value
            X = features.as_matrix(pd.DataFrame([row]))
            first = alone.contributions.iloc[0]
            name = next(f.name for f in features.FEATURES if predict.label(f, basis) == first["input"])
            X[name] = model.reference[name]
            assert first["points"] == pytest.approx(100 * (alone.probability - model.predict(X)[0]), abs=1e-9)


def test_training_stores_every_patients_estimate_for_the_pages(snapshot, model):
    for basis in ("index", "now"):
        stored = model.scores[basis]
        fresh = predict.batch(model, queries.features_at(snapshot, basis), basis).set_index("patient_id")
        pd.testing.assert_frame_equal(stored, fresh)
        assert len(stored) == 82


# ------------------------------------------------------------------------- artifacts under attack
class _Payload:
    """A pickle that writes a marker file when it is loaded: it must never be loaded."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _copy(model_dir, tmp_path):
    folder = tmp_path / "models"
    shutil.copytree(model_dir, folder)
    return folder


def test_a_malicious_pickle_with_a_recomputed_sha256_is_refused_before_it_is_opened(model, model_dir, tmp_path):
    import joblib

    folder = _copy(model_dir, tmp_path)
    marker = tmp_path / "pwned"
    path, manifest_path = artifact_paths(model.snapshot_id, 12, folder)
    joblib.dump(_Payload(marker), path)
    manifest = json.loads(manifest_path.read_text())
    manifest["sha256"] = sha256_file(path)  # the attacker recomputes the checksum, but cannot sign
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(predict.ModelUnavailable, match="not signed by this deployment"):
        predict.load(model.snapshot_id, 12, folder)
    assert not marker.exists()


@pytest.mark.parametrize("damage, said", [
    ("cut", "cannot be read"), ("no_sha", "is incomplete (no sha256"), ("not_a_dict", "is incomplete"),
    ("truncated_resigned_elsewhere", "not signed by this deployment"), ("relabelled", "names another snapshot"),
    ("missing_file", "is missing")])
def test_every_kind_of_damaged_artifact_is_one_sentence(model, model_dir, tmp_path, damage, said):
    folder = _copy(model_dir, tmp_path)
    path, manifest_path = artifact_paths(model.snapshot_id, 12, folder)
    manifest = json.loads(manifest_path.read_text())
    if damage == "cut":
        manifest_path.write_text(manifest_path.read_text()[:40])
    elif damage == "no_sha":
        manifest_path.write_text(json.dumps({k: v for k, v in manifest.items() if k != "sha256"}))
    elif damage == "not_a_dict":
        manifest_path.write_text("[1, 2, 3]")
    elif damage == "truncated_resigned_elsewhere":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        manifest_path.write_text(json.dumps({**manifest, "sha256": sha256_file(path)}))
    elif damage == "relabelled":
        other = folder / manifest_path.name.replace(model.snapshot_id, "another-snapshot")
        manifest_path.rename(other)
        manifest_path.write_text(other.read_text())
        data = json.loads(manifest_path.read_text())
        manifest_path.write_text(json.dumps({**data, "snapshot_id": "another-snapshot"}))
    elif damage == "missing_file":
        path.unlink()
    with pytest.raises(predict.ModelUnavailable, match=said.replace("(", "\\(")):
        predict.load(model.snapshot_id, 12, folder)


def test_saving_again_swaps_the_manifest_last_and_removes_the_old_file(model, tmp_path):
    from model.train import save

    folder = tmp_path / "models"
    save(model, folder)
    first, manifest_path = artifact_paths(model.snapshot_id, 12, folder)
    import copy

    changed = copy.copy(model)
    changed.created_at = "2026-01-01T00:00:00+00:00"  # a different file
    save(changed, folder)
    second, _ = artifact_paths(model.snapshot_id, 12, folder)
    assert first != second and not first.exists() and second.exists()
    assert [p.name for p in folder.glob("*.joblib")] == [second.name]
    assert predict.load(model.snapshot_id, 12, folder).snapshot_id == model.snapshot_id
