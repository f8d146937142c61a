"""The services layer on a real snapshot: the model registry and Estimator protocol, the importer registry."""
import pandas as pd
import pytest

from data import importing, queries
from data.validate import Report
from services import importers, models


@pytest.fixture
def registry_model(live_model_env, snapshot):
    return models.load(str(snapshot.info()["snapshot_id"]), 12)


def test_the_registry_finds_loads_and_lists_the_verified_model(registry_model, snapshot):
    sid = str(snapshot.info()["snapshot_id"])
    assert models.find(sid, 12)["sha256"] == registry_model.facts.sha256
    assert models.find(sid, 24) is None and models.find("another-snapshot", 12) is None
    assert registry_model.facts.n_patients > 20 and registry_model.facts.n_events >= 5
    listed = models.versions()
    assert (listed["snapshot"] == sid).any() and listed["sha256"].str.len().eq(12).all()


def test_the_day0_classifier_implements_the_estimator_protocol(registry_model, snapshot):
    assert isinstance(registry_model, models.FittedEstimator)
    rows = queries.features_at(snapshot, "index")
    out = registry_model.predict(rows, [12])
    assert list(out[["estimate", "lower", "upper"]].columns) == ["estimate", "lower", "upper"] and len(out) == len(rows)
    ok = out["applicable"]
    assert ((out.loc[ok, "lower"] <= out.loc[ok, "estimate"]) & (out.loc[ok, "estimate"] <= out.loc[ok, "upper"])).all()
    assert out.loc[~ok, "estimate"].isna().all()
    for row, applies in zip(rows.to_dict("records"), ok, strict=True):
        reason = registry_model.applicability(row)
        assert (reason is None) == bool(applies) and (reason is None or isinstance(reason, str))
    with pytest.raises(ValueError, match="12 months only"):
        registry_model.predict(rows, [24])


def test_the_pages_lookup_equals_the_estimate_made_alone(registry_model, snapshot):
    table = registry_model.scores(snapshot, "index")
    pid = table.index[table["applicable"]][0]
    looked_up = registry_model.estimate_for(snapshot, pid, "index", table)
    alone = registry_model.estimate_for(snapshot, pid, "index")
    assert looked_up.probability == pytest.approx(alone.probability)
    assert (looked_up.low, looked_up.high) == pytest.approx((alone.low, alone.high))


def test_the_model_card_gets_public_evidence_not_the_internals(registry_model):
    ev = registry_model.evidence()
    assert ev.n_patients == registry_model.facts.n_patients and len(ev.predictions) == ev.n_patients
    assert {"p", "observed", "n"} <= set(ev.bins.columns) and ev.bins["n"].sum() == ev.n_patients
    assert set(ev.subgroups["subgroup"]) >= {"ctDNA at stopping", "HR status"}


def test_a_snapshot_that_cannot_support_a_model_gets_a_sentence(tmp_path, monkeypatch, snapshot_file):
    from data.bundle import export_bundle
    from data.store import Snapshot

    export_bundle(Snapshot(snapshot_file), tmp_path / "bundle")
    patients = pd.read_csv(tmp_path / "bundle" / "patients.csv")
    keep = set(patients["patient_id"].head(6))
    for f in (tmp_path / "bundle").glob("*.csv"):
        frame = pd.read_csv(f, dtype=str, keep_default_na=False)
        if "patient_id" in frame.columns:
            frame[frame["patient_id"].isin(keep)].to_csv(f, index=False)
    info = importing.run_import("csv", tmp_path / "bundle", out=tmp_path / "tiny.duckdb")
    monkeypatch.setenv("STOPHER2_MODEL_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("STOPHER2_SNAPSHOT_DIR", str(tmp_path / "snapshots"))
    tiny = Snapshot(info["path"])
    with pytest.raises(models.ModelUnavailable, match="too few patients"):
        models.ensure(tiny, str(tiny.info()["snapshot_id"]), 12)


def test_one_importer_registry_serves_the_cli_the_pipeline_and_the_page(tmp_path, monkeypatch, capsys):
    """Adding a source is one registry entry: the CLI offers it and the pipeline reads through it."""
    from data.__main__ import main

    seen = []

    def read(source, **options):
        seen.append((source, options))
        report = Report()
        report.add("error", "fake.txt", 3, "x", "bad", "a located finding from the new source")
        return {}, {}, {}, report

    monkeypatch.setitem(importers.REGISTRY, "fake", importers.Importer("fake", "A new source", ("txt",), "test", read,
                                                                         ("arm_map",)))
    assert "fake" in importers.names()
    tables, report = importing.check("fake", tmp_path, options={"arm_map": "A=1"})
    assert seen == [(tmp_path, {"arm_map": "A=1"})] and not report.ok
    assert main(["check", "--source", "fake", str(tmp_path)]) == 2
    assert "a located finding from the new source" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown source 'nope'"):
        importers.get("nope")
    with pytest.raises(ValueError, match="takes no option"):
        importers.read("csv", tmp_path, {"arm_map": "A=1"})


def test_the_landmark_model_is_fitted_with_the_stored_interval_calibration_of_its_version(snapshot):
    """The intervals a clinician sees carry the measured calibration, not only the coefficients' uncertainty."""
    from model import landmark, landmark_check

    stored = landmark_check.current_interval(models.LANDMARK_VERSION)
    assert stored is not None, "the shipped procedure version has a measured interval calibration"
    fitted = models.LandmarkEstimator().fit(snapshot)
    assert fitted._model.interval == stored
    facts, cells = fitted.interval_calibration()
    assert facts["repeats"] == stored["repeats"] and len(cells) == len(stored["cells"])
    # the same fit with the coefficients' uncertainty only gives the same numbers and narrower intervals
    patients, draws, outcomes = queries.landmark_inputs(snapshot)
    plain = landmark.train(patients, draws, outcomes, "plain")
    rows = landmark.landmark_rows(patients[patients["cohort"] == 2], draws, outcomes, landmarks=[12])
    rows = rows[rows["at_risk"] & rows["ctdna_detected"].notna()]
    ours, theirs = fitted._model.predict(rows, [12]), plain.predict(rows, [12])
    assert ours["estimate"].to_numpy() == pytest.approx(theirs["estimate"].to_numpy())
    assert ((ours["upper"] - ours["lower"]) > (theirs["upper"] - theirs["lower"])).all()


def test_a_landmark_model_of_another_procedure_is_refitted_not_a_dead_end(snapshot, tmp_path, monkeypatch):
    """After an upgrade (a new version or interval calibration) the page said "the estimate is not available ...
    retrain with `python -m model train`", a command that does not fit this model. Now it is refitted."""
    monkeypatch.setenv("STOPHER2_MODEL_DIR", str(tmp_path))
    snapshot_id = str(snapshot.info()["snapshot_id"])
    current = models.landmark_procedure()
    monkeypatch.setattr(models, "landmark_procedure", lambda: "3+old")
    old = models.ensure_landmark(snapshot, snapshot_id)
    assert old["model_version"] == "3+old"
    monkeypatch.setattr(models, "landmark_procedure", lambda: current)
    assert models.find_landmark(snapshot_id) is None, "a model of another procedure is not this one"
    fitted = []
    new = models.ensure_landmark(snapshot, snapshot_id, on_trained=fitted.append)
    assert new["model_version"] == current and fitted  # (the same data may fit to the same bytes in the same second)
    assert models.load_landmark(snapshot_id).sha256 == new["sha256"]
    assert models.ensure_landmark(snapshot, snapshot_id)["sha256"] == new["sha256"], "fitted once, then kept"


def _alone(snapshot, patient_id: str) -> dict:
    """One patient's rows by one-patient SQL, written out here: the reference the batched reader must equal."""
    one = {"summary": "SELECT * FROM patient_summary WHERE patient_id = ?",
           "outcome": "SELECT * FROM outcomes WHERE patient_id = ?",
           "timeline": "SELECT * FROM patient_timeline WHERE patient_id = ? ORDER BY starts_on, track, label, detail",
           "ctdna": "SELECT * FROM ctdna_series WHERE patient_id = ? ORDER BY drawn_on",
           "scans": "SELECT * FROM scan_history WHERE patient_id = ? ORDER BY scanned_on, scan_id",
           "lesions": """SELECT s.scanned_on, l.scan_id, l.lesion_id, l.kind, l.organ, l.is_node, l.diameter_mm, l.status
                         FROM lesion_measurements l JOIN scans s USING (patient_id, scan_id)
                         WHERE l.patient_id = ? ORDER BY s.scanned_on, l.kind, l.lesion_id""",
           "pros": "SELECT * FROM pro_scores WHERE patient_id = ? ORDER BY instrument, scale, completed_on"}
    return {name: snapshot.query(sql, [patient_id]) for name, sql in one.items()}


def test_a_groups_records_equal_each_patients_own_query(snapshot):
    """The patient page fetches a patient's neighbours with them (seven queries cost the same for a hundred
    patients as for one). Each record cut out of the group has the rows, order and dtypes of its own query: a
    column with no NULL for this patient is bool or int32 even when another patient's NULL made the group's
    column nullable."""
    ids = queries.patient_list(snapshot)["patient_id"].tolist()
    group = queries.PatientRows(snapshot, [*ids, "STH-NOBODY"])
    assert "STH-NOBODY" not in group and all(pid in group for pid in ids)
    nullable_in_group = False
    for pid in ids:
        rec, own = group.record(pid), _alone(snapshot, pid)
        pd.testing.assert_series_equal(rec.summary, own["summary"].iloc[0])
        pd.testing.assert_series_equal(rec.outcome, own["outcome"].iloc[0])
        for name in ("timeline", "ctdna", "scans", "lesions", "pros"):
            pd.testing.assert_frame_equal(getattr(rec, name), own[name], obj=f"{pid} {name}")
        nullable_in_group |= str(group._frames["ctdna"]["detected"].dtype) == "boolean" and \
            own["ctdna"]["detected"].dtype == bool
    assert nullable_in_group, "the snapshot has a patient whose draws all passed QC among patients with a failed one"
    with pytest.raises(queries.UnknownPatient):
        group.record("STH-NOBODY")


def test_a_groups_estimates_equal_each_patients_own(snapshot):
    """The patient page estimates a patient's neighbours with them, as of the cut-off: each patient's numbers,
    inputs, notes and estimate over time are those of the patient estimated alone."""
    import dataclasses

    fitted = models.LandmarkEstimator().fit(snapshot)
    ids = queries.patient_list(snapshot)["patient_id"].tolist()
    group = fitted.reviews(snapshot, ids, 12)
    assert sorted(group) == sorted(ids)
    refused = 0
    for pid in ids[::4]:
        alone = fitted.review(snapshot, pid, 12)
        for estimand in ("pfs", "off_therapy"):
            a, b = getattr(alone, estimand), getattr(group[pid], estimand)
            for f in dataclasses.fields(a):
                x, y = getattr(a, f.name), getattr(b, f.name)
                if isinstance(x, pd.DataFrame):
                    pd.testing.assert_frame_equal(x, y)
                elif isinstance(x, float):
                    assert x == pytest.approx(y, abs=1e-12), (pid, estimand, f.name)
                else:
                    assert x == y, (pid, estimand, f.name)
            refused += a.refusal is not None
        pd.testing.assert_frame_equal(alone.trajectory, group[pid].trajectory, check_exact=False, rtol=1e-12)
    assert refused, "some of these patients have progressed: their refusal is checked too"
    with pytest.raises(LookupError):
        fitted.review(snapshot, "STH-NOBODY", 12)


def test_if_they_stopped_now_a_negative_call_counts_as_one_on_therapy(snapshot):
    """Cohort 1 is still on therapy: every draw it has was taken on therapy, so "if they stopped now" a negative
    call is one on therapy only, however long after enrolment it was drawn. Cohort 2 keeps the draw's own date."""
    fitted = models.LandmarkEstimator().fit(snapshot)
    rows = fitted.rows(snapshot)
    known = rows[rows["ctdna_detected"].notna()]
    continuing = known[known["cohort"] == 1]
    assert len(continuing) and (continuing["ctdna_detected"] == 0).any()
    assert (continuing["ctdna_negative_on_therapy_only"] == 1 - continuing["ctdna_detected"]).all()
    stopped = known[(known["cohort"] == 2) & (known["ctdna_detected"] == 0)]
    drawn_off_therapy = pd.to_datetime(stopped["ctdna_drawn_on"]) > stopped["index_date"]
    assert drawn_off_therapy.any()
    assert (stopped["ctdna_negative_on_therapy_only"] == (~drawn_off_therapy).astype(float)).all()
