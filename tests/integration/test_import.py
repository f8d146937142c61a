"""Real data in: the CSV bundle, SDTM and FHIR importers, validation, atomic swap, history and rollback."""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from data import importing
from data.bundle import export_bundle, read_bundle, templates
from data.build import build_synthetic
from data.canonical import TABLES
from data.store import Snapshot, snapshot_path
from data.validate import ImportRejected, validate
from tests.integration.conftest import assert_same_views

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
REPO = Path(__file__).resolve().parents[2]
PHARMAVERSE_ARMS = {"arm_map": "Pbo=1,Xan_Lo=2,Xan_Hi=2"}  # the pilot study's arms, only to test the mechanics


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def mutated(bundle_dir: Path, tmp_path: Path, table: str, change) -> Path:
    folder = tmp_path / "mutated"
    shutil.copytree(bundle_dir, folder)
    frame = pd.read_csv(folder / f"{table}.csv", dtype=str, keep_default_na=False)
    frame = change(frame)
    (folder / f"{table}.csv").write_text(frame.to_csv(index=False))
    return folder


# ------------------------------------------------------------------------------- CSV bundle
def test_round_trip_synthetic_to_bundle_to_snapshot_gives_identical_views(snapshot, bundle_dir, tmp_path):
    cutoff = pd.Timestamp(snapshot.info()["data_cutoff"]).strftime("%Y-%m-%d")
    info = importing.run_import("csv", bundle_dir, out=tmp_path / "again.duckdb", data_cutoff=cutoff)
    assert info["warnings"] == 0 and info["n_patients"] == 82
    assert_same_views(snapshot, Snapshot(tmp_path / "again.duckdb"))
    assert Path(info["report"]).exists()  # kept beside the snapshot, even when empty


def test_a_zip_bundle_and_an_upload_read_the_same(bundle_dir):
    from data.bundle import zip_bytes

    members = {p.name: p.read_bytes() for p in bundle_dir.glob("*.csv")}
    from_folder, _, _, r1 = read_bundle(bundle_dir)
    from_zip, _, _, r2 = read_bundle({"upload.zip": zip_bytes(members)})
    assert r1.ok and r2.ok and set(from_folder) == set(from_zip) == set(TABLES)
    for name in TABLES:
        pd.testing.assert_frame_equal(from_folder[name], from_zip[name])


@pytest.mark.parametrize("table,change,column,message", [
    ("patients", lambda f: f.assign(enrolled_on=f["enrolled_on"].where(f.index != 3, "2021-13-40")),
     "enrolled_on", "not a date as YYYY-MM-DD"),
    ("patients", lambda f: f.assign(enrolled_on=f["enrolled_on"].where(f.index != 3, "2099-01-01")),
     "enrolled_on", "in the future"),
    ("patients", lambda f: f.assign(cohort=f["cohort"].where(f.index != 5, "3")), "cohort", "not one of 1, 2"),
    ("patients", lambda f: f.drop(columns=["cohort"]), "cohort", "required column missing"),
    ("patients", lambda f: pd.concat([f, f.iloc[[0]]]), "patient_id", "duplicate patient_id"),
    ("ctdna_draws", lambda f: f.assign(value=f["value"].where(f.index != 2, "-4.0")), "value", "out of range"),
    ("ctdna_draws", lambda f: f.assign(patient_id=f["patient_id"].where(f.index != 2, "STH-9999")),
     "patient_id", "not found in patients"),
    ("scans", lambda f: f.assign(scanned_on=f["scanned_on"].where(f.index != 0, "1931-01-01")),
     "scanned_on", "before the patient was born"),
    ("treatments", lambda f: f.assign(stopped_on=f["stopped_on"].where(f.index != 0, "2000-01-01")),
     "stopped_on", "before started_on"),
    ("lesion_measurements", lambda f: f.assign(kind=f["kind"].where(f.index != 0, "tumour")), "kind", "not one of"),
    ("pro_responses", lambda f: f.assign(response=f["response"].where(f.index != 0, "9.0")), "response",
     "out of its scale"),
    ("events", lambda f: f.assign(occurred_on=f["occurred_on"].where(f.index != 0, "")), "occurred_on",
     "required value missing"),
])
def test_each_kind_of_bad_row_is_refused_with_where_and_nothing_changes(bundle_dir, tmp_path, live_folder,
                                                                       table, change, column, message):
    live = snapshot_path()
    before, files_before = sha256(live), sorted(p.name for p in live_folder.iterdir())
    folder = mutated(bundle_dir, tmp_path, table, change)
    with pytest.raises(ImportRejected) as caught:
        importing.run_import("csv", folder)
    errors = caught.value.report.frame().query("severity == 'error'")
    hit = errors[errors["message"].str.contains(message, regex=False) & (errors["column"].str.contains(column))]
    assert not hit.empty, errors.to_string()
    assert (hit["file"] == f"{table}.csv").all()
    if "missing" not in message or "value" in message:
        assert hit["row"].notna().all() and (hit["row"] >= 2).all()  # a line in the file, the header being 1
    assert sha256(snapshot_path()) == before and snapshot_path() == live
    assert sorted(p.name for p in live_folder.iterdir()) == files_before  # no temporary file left behind


def test_warnings_import_and_the_report_is_kept_beside_the_snapshot(bundle_dir, tmp_path, live_folder):
    def contradict(f):
        i = f.index[(f["qc"] == "pass") & (f["detected"] == "true")][0]
        f.loc[i, "value"] = "0.0"  # called detected, yet below its own limit of detection
        return f

    folder = mutated(bundle_dir, tmp_path, "ctdna_draws", contradict)
    info = importing.run_import("csv", folder)
    assert info["warnings"] >= 1 and snapshot_path() == Path(info["path"])
    report = pd.read_csv(info["report"])
    assert report["message"].str.contains("detected does not match").any()


def test_a_baseline_target_too_small_to_measure_is_a_located_warning(bundle_dir, tmp_path):
    scans = pd.read_csv(bundle_dir / "scans.csv", dtype=str).sort_values(["patient_id", "scanned_on"])
    baseline = scans.drop_duplicates("patient_id")["scan_id"]
    at = {}

    def shrink(f):
        i = f.index[f["scan_id"].isin(baseline) & (f["kind"] == "target") & (f["is_node"] != "true")][0]
        f.loc[i, "diameter_mm"] = "7"
        at["line"] = int(i) + 2
        return f

    folder = mutated(bundle_dir, tmp_path, "lesion_measurements", shrink)
    _, report = importing.check("csv", folder)
    hit = report.frame().query("severity == 'warning' and column == 'diameter_mm'")
    hit = hit[hit["message"].str.contains(">= 10 mm at baseline")]
    assert report.ok and len(hit) == 1 and hit["row"].iloc[0] == at["line"], hit


@pytest.mark.parametrize("how", ["folder", "upload"])
def test_a_finding_names_the_line_in_the_file_after_a_blank_line_and_a_quoted_line_break(bundle_dir, tmp_path, how):
    """A blank line and a note with a line break in it put every later record a line or two below its row number:
    the finding named the row number (two lines early here), so the person looked at the wrong line."""
    folder = tmp_path / "bundle"
    shutil.copytree(bundle_dir, folder)
    events = pd.read_csv(folder / "events.csv", dtype=str, keep_default_na=False)
    events.loc[0, "detail"] = "seen in clinic,\nsecond line of the note"
    events.loc[5, "occurred_on"] = "2024-13-45"
    lines = events.to_csv(index=False).split("\n")
    text = "\n".join(lines[:2] + [""] + lines[2:])  # a blank line after the first record
    (folder / "events.csv").write_text(text)
    at = text.split("\n").index(next(x for x in text.split("\n") if "2024-13-45" in x)) + 1
    assert at == 5 + 2 + 2  # row 5 is on line 7 by its number, on line 9 in the file
    source = folder if how == "folder" else {p.name: p.read_bytes() for p in folder.glob("*.csv")}
    _, report = importing.check("csv", source)
    hit = report.frame().query("severity == 'error' and column == 'occurred_on'")
    assert len(hit) == 1 and hit["file"].iloc[0] == "events.csv" and hit["row"].iloc[0] == at, hit


def test_an_empty_is_node_means_not_a_node(bundle_dir, tmp_path):
    folder = mutated(bundle_dir, tmp_path, "lesion_measurements", lambda f: f.assign(is_node=""))
    tables, report = importing.check("csv", folder)
    assert report.ok and not tables["lesion_measurements"]["is_node"].any()


def test_hostile_text_is_stored_as_text_and_exported_neutralized(bundle_dir, tmp_path):
    hostile = "=HYPERLINK(\"http://evil\",\"x\"); DROP TABLE patients;--<script>alert(1)</script>"
    folder = mutated(bundle_dir, tmp_path, "events", lambda f: f.assign(detail=f["detail"].where(f.index != 0, hostile)))
    info = importing.run_import("csv", folder, out=tmp_path / "hostile.duckdb")
    snap = Snapshot(info["path"])
    assert hostile in set(snap.query("SELECT detail FROM events")["detail"])
    assert snap.query("SELECT count(*) AS n FROM patients")["n"].iloc[0] == 82
    out = tmp_path / "exported"
    export_bundle(snap, out)
    text = (out / "events.csv").read_text()
    assert "'=HYPERLINK" in text and "\n=HYPERLINK" not in text and ",=HYPERLINK" not in text
    back, _, _, report = read_bundle(out)
    assert report.ok and hostile in set(back["events"]["detail"])  # the apostrophe is undone on import


def test_templates_name_every_column_and_read_back_as_empty_valid_tables():
    files = templates()
    assert set(files) == {f"{t}.csv" for t in TABLES} | {"COLUMNS.csv"}
    described = pd.read_csv(io.BytesIO(files["COLUMNS.csv"]))
    assert len(described) == sum(len(t.columns) for t in TABLES.values())
    raw, names, _, report = read_bundle({k: v for k, v in files.items() if k != "COLUMNS.csv"})
    typed, report = validate(raw, names, report=report)
    assert report.ok and set(typed) == set(TABLES) and all(len(f) == 0 for f in typed.values())
    assert all(list(typed[t].columns) == TABLES[t].column_names for t in TABLES)


# --------------------------------------------------------------------- malformed input never crashes
CELL = st.one_of(st.text(max_size=12), st.sampled_from(["", "NaN", "-1", "1e309", "2024-02-30", "=1+1", "\x00",
                                                         "true", "3+", "9999-12-31", "'"]))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(table=st.sampled_from(sorted(TABLES)), row=st.integers(0, 5), column=st.integers(0, 9), value=CELL,
       garbage=st.one_of(st.none(), st.binary(min_size=1, max_size=40)))
def test_malformed_bundles_never_crash_and_never_touch_the_live_snapshot(bundle_dir, live_folder, tmp_path_factory,
                                                                         table, row, column, value, garbage):
    live = snapshot_path()
    before = sha256(live)
    folder = tmp_path_factory.mktemp("fuzz")
    for p in bundle_dir.glob("*.csv"):
        shutil.copy(p, folder / p.name)
    target = folder / f"{table}.csv"
    if garbage is not None:
        target.write_bytes(garbage)
    else:
        frame = pd.read_csv(target, dtype=str, keep_default_na=False)
        frame.iloc[min(row, len(frame) - 1), min(column, frame.shape[1] - 1)] = value
        target.write_text(frame.to_csv(index=False))
    try:
        info = importing.run_import("csv", folder)
    except ImportRejected as exc:
        assert exc.report.errors and all(f.message for f in exc.report.errors)
        assert snapshot_path() == live and sha256(live) == before
    else:  # a harmless change: a new, complete snapshot went live
        assert Snapshot(info["path"]).query("SELECT count(*) AS n FROM patient_summary")["n"].iloc[0] == 82
        from data.store import publish

        publish(live)  # back to the original for the next example


# ------------------------------------------------------------------------------- SDTM
@pytest.fixture(scope="module")
def sdtm_import(tmp_path_factory):
    out = tmp_path_factory.mktemp("sdtm") / "sdtm.duckdb"
    info = importing.run_import("sdtm", FIXTURES / "sdtm-pharmaverse", out=out, options=PHARMAVERSE_ARMS)
    return info, Snapshot(out), pd.read_csv(info["report"])


def test_sdtm_pharmaverse_loads_whole_and_says_what_it_could_not_use(sdtm_import):
    info, snap, report = sdtm_import
    assert info["n_patients"] == 254
    assert snap.query("SELECT count(*) AS n FROM patient_summary")["n"].iloc[0] == 254
    screen = report[report["message"].str.contains("not enrolled")]
    assert len(screen) == 52 and (screen["file"] == "dm.csv.gz").all()  # the screen failures, by line in DM
    no_her2 = report[report["message"].str.contains("no HER2 status")]
    assert no_her2["value"].notna().sum() + int(no_her2["message"].str.extract(r"(\d+) more")[0].fillna(0).astype(int).sum()) == 254
    elig = snap.query("SELECT count(DISTINCT patient_id) AS n FROM eligibility WHERE criterion = 'her2_positive' AND met")
    assert elig["n"].iloc[0] == 0  # none of them is a HER2-positive trial patient
    assert report["message"].str.contains("no anti-HER2 agent in EX").any()


def test_sdtm_tumour_data_one_reader_per_patient_and_responses_derived_not_copied(sdtm_import):
    _, snap, report = sdtm_import
    lesions = snap.query("SELECT patient_id, lesion_id FROM lesion_measurements")
    prefix = lesions["lesion_id"].str.extract(r"^(R\d)-")[0].fillna("INV")
    assert (prefix.groupby(lesions["patient_id"]).nunique() == 1).all()  # never two readers mixed
    assert snap.query("SELECT count(*) AS n FROM scan_history WHERE overall_response IS NOT NULL")["n"].iloc[0] > 500
    summary = report[report["message"].str.contains("our RECIST 1.1 derivation agrees")]
    assert len(summary) == 1
    assert report["message"].str.contains("differs from our RECIST 1.1 derivation").any()
    nodes = snap.query("SELECT count(*) AS n FROM lesion_measurements WHERE is_node")["n"].iloc[0]
    assert nodes > 0


def test_sdtm_without_an_arm_map_names_the_arm_and_the_fix(tmp_path):
    with pytest.raises(ImportRejected) as caught:
        importing.run_import("sdtm", FIXTURES / "sdtm-pharmaverse", out=tmp_path / "x.duckdb")
    errors = caught.value.report.frame().query("severity == 'error'")
    arms = errors[errors["column"] == "ARMCD"]
    assert set(arms["value"]) == {"Pbo", "Xan_Hi", "Xan_Lo"} and (arms["file"] == "dm.csv.gz").all()
    assert arms["message"].str.contains("is not a STOP-HER2 cohort").all()
    assert arms["message"].str.contains("--arm-map").all() and not (tmp_path / "x.duckdb").exists()


def test_sdtm_partial_dates_follow_the_stated_rule(tmp_path):
    folder = tmp_path / "sdtm"
    shutil.copytree(FIXTURES / "sdtm-pharmaverse", folder)
    dm = pd.read_csv(folder / "dm.csv.gz", dtype=str)
    dm.loc[dm["ARMCD"] == "Pbo", "RFSTDTC"] = dm.loc[dm["ARMCD"] == "Pbo", "RFSTDTC"].str[:7]
    dm.to_csv(folder / "dm.csv.gz", index=False)
    tables, report = importing.check("sdtm", folder, options=PHARMAVERSE_ARMS)
    partial = report.frame().query("column == 'RFSTDTC'")
    assert partial["message"].str.contains("last day of the month").all() and len(partial) > 0
    enrolled = tables["patients"]["enrolled_on"].dropna()
    assert (enrolled[tables["patients"]["cohort"] == 1].dt.is_month_end).all()


@pytest.mark.parametrize("domain, column, bad", [("dm", "RFSTDTC", "2024-02-30"), ("ex", "EXSTDTC", "2024-02-30"),
                                                 ("dm", "RFSTDTC", "2999-01-01")])
def test_sdtm_a_date_that_is_no_real_day_is_an_error_not_a_dropped_row(tmp_path, domain, column, bad):
    folder = tmp_path / "sdtm"
    shutil.copytree(FIXTURES / "sdtm-pharmaverse", folder)
    frame = pd.read_csv(folder / f"{domain}.csv.gz", dtype=str)
    frame.loc[frame.index[0], column] = bad
    frame.to_csv(folder / f"{domain}.csv.gz", index=False)
    _, report = importing.check("sdtm", folder, options=PHARMAVERSE_ARMS)
    errors = report.frame().query("severity == 'error' and column == @column")
    assert len(errors) == 1 and errors["value"].iloc[0] == bad and errors["row"].iloc[0] == 2
    assert errors["file"].iloc[0] == f"{domain}.csv.gz" and "not a real calendar date" in errors["message"].iloc[0]
    assert not report.ok


# ------------------------------------------------------------------------------- FHIR
def test_fhir_mcode_loads_and_flags_the_her2_negative_patient(tmp_path):
    info = importing.run_import("fhir", FIXTURES / "fhir-mcode", out=tmp_path / "f.duckdb")
    report = pd.read_csv(info["report"])
    flagged = report[report["message"].str.contains("HER2-NEGATIVE")]
    assert list(flagged["value"]) == ["cancer-patient-jenny-m"]
    snap = Snapshot(info["path"])
    jenny = snap.query("SELECT * FROM patients WHERE patient_id = 'cancer-patient-jenny-m'").iloc[0]
    assert jenny["er_status"] == "positive" and jenny["pr_status"] == "negative" and jenny["sex"] == "F"
    assert not jenny["her2_ish_amplified"]
    elig = snap.query("SELECT met FROM eligibility WHERE patient_id = 'cancer-patient-jenny-m' AND criterion = 'her2_positive'")
    assert not elig["met"].fillna(False).any()
    classes = snap.query("SELECT DISTINCT agent, agent_class FROM treatments WHERE patient_id = 'cancer-patient-jenny-m'")
    assert dict(zip(classes["agent"], classes["agent_class"], strict=True))["anastrozole"] == "endocrine"


def test_fhir_ndjson_and_a_single_bundle_read_the_same_patient(tmp_path):
    bundle = json.loads((FIXTURES / "fhir-mcode" / "Bundle-mcode-patient-bundle-jenny-m.json").read_text())
    ndjson = tmp_path / "jenny.ndjson"
    ndjson.write_text("\n".join(json.dumps(e["resource"]) for e in bundle["entry"]))
    a, _ = importing.check("fhir", FIXTURES / "fhir-mcode" / "Bundle-mcode-patient-bundle-jenny-m.json")
    b, _ = importing.check("fhir", ndjson)
    pd.testing.assert_frame_equal(a["patients"], b["patients"])
    assert len(a["treatments"]) == len(b["treatments"]) > 0


def test_fhir_malformed_json_says_which_file_and_line(tmp_path):
    (tmp_path / "bad.ndjson").write_text('{"resourceType": "Patient", "id": "a"}\n{"resourceType": \n')
    (tmp_path / "worse.json").write_text("[1, 2")
    _, report = importing.check("fhir", tmp_path)
    errors = report.frame().query("severity == 'error'")
    assert ((errors["file"] == "bad.ndjson") & (errors["row"] == 2)).any()
    assert ((errors["file"] == "worse.json") & errors["message"].str.contains("not valid JSON")).any()


# ------------------------------------------------------------------------- history, rollback, live app
def test_history_lists_kept_snapshots_and_rollback_restores_the_previous_one(bundle_dir, live_folder):
    first = snapshot_path()
    info = importing.run_import("csv", bundle_dir)
    assert snapshot_path() == Path(info["path"]) != first
    history = importing.history()
    assert history["live"].sum() == 1 and history.loc[history["live"], "snapshot_id"].iloc[0] == Path(info["path"]).stem
    assert {"source", "created_at", "rows: patients", "rows: pro_responses"} <= set(history.columns)
    assert (history["rows: patients"] == 82).all()
    importing.rollback(first.stem)
    assert snapshot_path() == first and Path(info["path"]).exists()  # the newer one is kept for a roll-forward
    with pytest.raises(ValueError, match="no kept snapshot"):
        importing.rollback("../../etc/passwd")


def test_the_app_keeps_answering_while_an_import_runs_in_another_process(live_folder, tmp_path):
    big = tmp_path / "big.duckdb"
    build_synthetic(3000, seed=7, out=big)
    bundle = tmp_path / "big-bundle"
    export_bundle(Snapshot(big), bundle)
    first = snapshot_path()
    env = {**os.environ, "STOPHER2_SNAPSHOT_DIR": str(live_folder), "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "data", "build", "--source", "csv", str(bundle)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    answered, served = 0, set()
    while proc.poll() is None:
        path = snapshot_path()
        snap = Snapshot(path)  # what a page does on a rerun: open the live file read-only and query it
        n = snap.query("SELECT count(*) AS n FROM patient_summary WHERE patient_id = ?", ["STH-0001"])["n"].iloc[0]
        assert n == 1
        answered += 1
        served.add(path.name)
        snap.close()
        time.sleep(0.05)
    out, err = proc.communicate()
    assert proc.returncode == 0, err
    assert answered >= 3 and first.name in served
    assert snapshot_path() != first and Snapshot(snapshot_path()).info()["n_patients"] == 3000


def test_sdtm_questionnaires_ctdna_and_suppdm_are_mapped(tmp_path):
    """QS, LB and SUPPDM rows written the way a STOP-HER2 SDTM delivery would carry them."""
    folder = tmp_path / "sdtm"
    folder.mkdir()
    pd.DataFrame([{"STUDYID": "STOPHER2", "DOMAIN": "DM", "USUBJID": "S-001", "SITEID": "01", "RFSTDTC": "2024-01-15",
                   "AGE": "58", "SEX": "F", "ARMCD": "STOP"}]).to_csv(folder / "dm.csv", index=False)
    pd.DataFrame([{"USUBJID": "S-001", "QNAM": q, "QVAL": v} for q, v in
                  (("HER2IHC", "3+"), ("ER", "POSITIVE"), ("PR", "NEGATIVE"), ("DENOVO", "N"), ("FLSTDTC", "2019-06"),
                   ("BESTRESP", "CR"), ("VISCERAL", "Y"), ("NMETSITE", "2"))]).to_csv(folder / "suppdm.csv", index=False)
    pd.DataFrame([{"USUBJID": "S-001", "QSCAT": "EORTC QLQ-C30 V3.0", "QSTESTCD": f"EOR01{i:02d}", "QSSTRESN": "2",
                   "QSDTC": "2024-02-01"} for i in range(1, 31)]).to_csv(folder / "qs.csv", index=False)
    pd.DataFrame([{"USUBJID": "S-001", "LBTESTCD": "CTDNA", "LBMETHOD": "Signatera", "LBSTRESN": v, "LBSTRESU": "MTM/mL",
                   "LBLLOQ": "0.01", "LBSTRESC": c, "LBDTC": d, "LBSTAT": s} for v, c, d, s in
                  (("", "NOT DETECTED", "2024-01-10", ""), ("0.5", "DETECTED", "2024-04-10", ""),
                   ("", "", "2024-07-10", "NOT DONE"))]).to_csv(folder / "lb.csv", index=False)
    tables, report = importing.check("sdtm", folder)
    assert report.ok, report.frame().query("severity == 'error'").to_string()
    p = tables["patients"].iloc[0]
    assert (p["cohort"], p["her2_ihc"], p["er_status"], p["de_novo"], p["visceral"]) == (2, "3+", "positive", False, True)
    assert p["first_line_start"] == pd.Timestamp("2019-06-01") and p["n_metastatic_sites"] == 2
    qs = tables["pro_responses"]
    assert len(qs) == 30 and set(qs["instrument"]) == {"QLQ-C30"} and sorted(qs["item"].astype(int)) == list(range(1, 31))
    draws = tables["ctdna_draws"].sort_values("drawn_on")
    assert draws["detected"].tolist()[:2] == [False, True] and pd.isna(draws["detected"].iloc[2])
    assert list(draws["qc"]) == ["pass", "pass", "failed"] and draws["lod"].iloc[1] == 0.01
    assert draws["assay"].iloc[0] == "Signatera" and draws["value"].iloc[1] == 0.5


def test_fhir_ctdna_observations_and_questionnaire_responses_are_mapped(tmp_path):
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "urn:uuid:p1", "resource": {"resourceType": "Patient", "id": "p1", "gender": "female",
                                                "birthDate": "1966-03-01"}},
        {"resource": {"resourceType": "ResearchSubject", "individual": {"reference": "urn:uuid:p1"},
                      "period": {"start": "2024-01-15"}, "assignedArm": "Cohort 2: stop anti-HER2 therapy"}},
        {"resource": {"resourceType": "Observation", "subject": {"reference": "urn:uuid:p1"},
                      "code": {"coding": [{"code": "CTDNA"}]}, "effectiveDateTime": "2024-04-10",
                      "valueQuantity": {"value": 0.5, "unit": "MTM/mL"}, "referenceRange": [{"low": {"value": 0.01}}],
                      "interpretation": [{"coding": [{"code": "POS"}]}], "method": {"text": "Signatera"}}},
        {"resource": {"resourceType": "QuestionnaireResponse", "subject": {"reference": "Patient/p1"},
                      "questionnaire": "http://example.org/Questionnaire/EORTC-QLQ-C30", "authored": "2024-02-01",
                      "item": [{"linkId": f"q{i}", "answer": [{"valueInteger": 2}]} for i in range(1, 31)]}},
        {"resource": {"resourceType": "MedicationStatement", "subject": {"reference": "Patient/p1"},
                      "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                                "code": "224905"}]},
                      "effectivePeriod": {"start": "2019-06-01", "end": "2024-01-14"}}},
    ]}
    path = tmp_path / "trial.json"
    path.write_text(json.dumps(bundle))
    tables, report = importing.check("fhir", path)
    assert report.ok, report.frame().query("severity == 'error'").to_string()
    p = tables["patients"].iloc[0]
    assert (p["cohort"], p["enrolled_on"], p["age_at_enrolment"]) == (2, pd.Timestamp("2024-01-15"), 57)
    draw = tables["ctdna_draws"].iloc[0]
    assert (draw["value"], draw["lod"], bool(draw["detected"]), draw["assay"]) == (0.5, 0.01, True, "Signatera")
    assert len(tables["pro_responses"]) == 30 and set(tables["pro_responses"]["instrument"]) == {"QLQ-C30"}
    t = tables["treatments"].iloc[0]
    assert (t["agent"], t["agent_class"], t["stopped_on"]) == ("trastuzumab", "anti-HER2", pd.Timestamp("2024-01-14"))


def test_sdtm_as_sas_xpt_reads_like_csv(tmp_path):
    import pyreadstat

    folder = tmp_path / "xpt"
    folder.mkdir()
    for domain in ("dm", "ds", "ex", "tu_onco", "tr_onco", "rs_onco"):
        frame = pd.read_csv(FIXTURES / "sdtm-pharmaverse" / f"{domain}.csv.gz", dtype=str)
        if domain == "dm":
            frame["AGE"] = pd.to_numeric(frame["AGE"])  # a numeric variable, as SAS stores it
        pyreadstat.write_xport(frame, str(folder / f"{domain}.xpt"), file_format_version=5)
    from_xpt, report = importing.check("sdtm", folder, options=PHARMAVERSE_ARMS)
    from_csv, _ = importing.check("sdtm", FIXTURES / "sdtm-pharmaverse", options=PHARMAVERSE_ARMS)
    assert report.ok and len(from_xpt["patients"]) == 254
    pd.testing.assert_frame_equal(from_xpt["patients"], from_csv["patients"])
    assert len(from_xpt["lesion_measurements"]) == len(from_csv["lesion_measurements"])


def test_export_in_pieces_writes_the_same_files(snapshot, bundle_dir, tmp_path, monkeypatch):
    """The export streams each table in pieces; a piece boundary must not change a byte."""
    from data import bundle

    monkeypatch.setattr(bundle, "EXPORT_CHUNK_ROWS", 2048)
    pieces = tmp_path / "pieces"
    bundle.export_bundle(snapshot, pieces)
    assert len(snapshot.query("SELECT * FROM pro_responses")) > 3 * 2048  # several pieces really were written
    for path in sorted(bundle_dir.glob("*.csv")):
        assert (pieces / path.name).read_bytes() == path.read_bytes(), path.name
