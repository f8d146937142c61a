"""REDCap in: the STOP-HER2 project's export round-trips to the same snapshot; real REDCap exports written by
others (tests/fixtures/redcap, from REDCapR's test data) load through mappings written for them with every
field left out named; a wrong mapping or a wrong value is refused with its place, and nothing is stored."""
from __future__ import annotations

import shutil
import subprocess
import sys

import pandas as pd
import pytest

from data import importing
from data.importers import redcap, redcap_export
from data.store import Snapshot, snapshot_path
from data.validate import ImportRejected
from tests.conftest import REPO
from tests.integration.conftest import assert_same_views

FIXTURES = REPO / "tests" / "fixtures" / "redcap"
LONGITUDINAL, REPEATING = FIXTURES / "redcapr_longitudinal", FIXTURES / "redcapr_repeating_instruments"


@pytest.fixture(scope="module")
def project_export(snapshot, tmp_path_factory):
    folder = tmp_path_factory.mktemp("redcap")
    redcap_export.export(snapshot, folder)
    return folder


def test_the_stop_her2_export_imports_to_a_snapshot_with_identical_views(snapshot, project_export, tmp_path):
    records = pd.read_csv(project_export / "records.csv", dtype=str)
    assert {"redcap_event_name", "redcap_repeat_instrument", "redcap_repeat_instance",
            "redcap_data_access_group"} <= set(records.columns)
    assert set(records["redcap_event_name"]) == {"enrolment_arm_1", "enrolment_arm_2", "follow_up_arm_1",
                                                 "follow_up_arm_2"}
    assert "qlq_c30_q30" in records and "promis_anxiety_qtscore" in records  # questionnaires as instruments
    cutoff = pd.Timestamp(snapshot.info()["data_cutoff"]).strftime("%Y-%m-%d")
    info = importing.run_import("redcap", project_export, out=tmp_path / "again.duckdb", data_cutoff=cutoff)
    assert info["warnings"] == 0 and info["n_patients"] == 82
    assert_same_views(snapshot, Snapshot(tmp_path / "again.duckdb"))


@pytest.mark.parametrize("label_headers", [False, True], ids=["variable names", "label headers"])
def test_an_export_with_choice_labels_instead_of_codes_imports_to_the_same_views(snapshot, tmp_path, label_headers):
    """REDCap's "CSV (labels)" writes a choice's label ("CR", "Yes") where the raw export writes its code, an
    event's label with its arm, a data access group's name, and (if asked) every header as its label."""
    folder = tmp_path / "labels"
    redcap_export.export(snapshot, folder, labels=True, label_headers=label_headers)
    records = pd.read_csv(folder / "records.csv", dtype=str)
    visceral, response, event = (("visceral", "best_response", "redcap_event_name") if not label_headers else
                                 ("visceral metastases", "best RECIST response to first line",
                                  "Event Name"))
    assert set(records[visceral].dropna()) == {"Yes", "No"} and "CR" in set(records[response])
    assert "Enrolment (Arm 2: Cohort 2: stop)" in set(records[event])
    assert ("STOP-HER2 patient id" in records) == label_headers
    cutoff = pd.Timestamp(snapshot.info()["data_cutoff"]).strftime("%Y-%m-%d")
    info = importing.run_import("redcap", folder, out=tmp_path / "again.duckdb", data_cutoff=cutoff)
    assert info["warnings"] == 0
    assert_same_views(snapshot, Snapshot(tmp_path / "again.duckdb"))


def test_the_shipped_design_is_the_one_the_export_writes(project_export):
    for name, shipped in redcap.design_files().items():
        assert (project_export / name).read_bytes() == shipped, name


def test_a_real_longitudinal_export_loads_through_its_mapping_and_every_field_left_out_is_named():
    tables, report = importing.check("redcap", LONGITUDINAL)
    assert report.ok, report.frame()[report.frame()["severity"] == "error"]
    p = tables["patients"].set_index("patient_id")
    assert p["cohort"].to_dict() == {"100": 1, "220": 1, "304": 2}  # the arm of each record's events
    assert p["sex"].to_dict() == {"100": "M", "220": "F", "304": "F"}  # 1 = Male, 0 = Female
    assert str(p.loc["100", "enrolled_on"])[:10] == "2015-04-02"
    assert len(tables["events"]) == 2 and set(tables["events"]["detail"]) == {"final visit: study not completed"}
    data = pd.read_csv(LONGITUDINAL / "data.csv", dtype=str)
    said = {f.column for f in report.findings if f.message.startswith("not imported")}
    used = {"study_id", "date_enrolled", "sex", "date_visit_4", "complete_study"}
    with_data = {c.split("___")[0] for c in data.columns if data[c].notna().any()}
    expected = {c for c in with_data - used if not c.startswith("redcap_") and not c.endswith("_complete")}
    assert said == expected  # every field with data that the mapping leaves out, each once (checkboxes too)
    assert "gym" in said and "first_name" in said
    identifiers = [f for f in report.findings if f.column in {"first_name", "last_name", "email", "dob"}]
    assert all("identifier field: never imported" in f.message for f in identifiers)
    everything = pd.concat([t.astype(str) for t in tables.values()]).to_string()
    assert "Zharko" not in everything and "zlehnox" not in everything


def _label_headers(folder):
    """Rewrite a raw export's records header as REDCap's "CSV (labels)" writes it, from its own dictionary."""
    fields = redcap.read_dictionary(folder / "dictionary.csv")
    forms = {f.form for f in fields.values()}
    text = (folder / "data.csv").read_text()
    raw, rest = text.split("\n", 1)
    header = []
    for column in raw.split(","):
        base, _, code = column.partition("___")
        if column in redcap.HEADER_LABELS.values():
            header.append(next(k for k, v in redcap.HEADER_LABELS.items() if v == column))
        elif column.endswith("_complete") and column.removesuffix("_complete") in forms:
            header.append("Complete?")
        elif code:
            header.append(f"{fields[base].label} (choice={fields[base].choices[code]})")
        else:
            header.append(fields[column].label)
    (folder / "data.csv").write_text(",".join(f'"{h}"' for h in header) + "\n" + rest)
    return header


def test_a_real_export_with_label_headers_reads_as_its_variable_names(tmp_path):
    """The real longitudinal project, headers as labels: 21 labels are shared by 2-4 fields each ("Creatinine
    (mg/dL)" at four visits), checkboxes read "Label (choice=...)" and every form's status "Complete?"."""
    raw_tables, raw_report = importing.check("redcap", LONGITUDINAL)
    folder = _copy(LONGITUDINAL, tmp_path)
    header = _label_headers(folder)
    assert header.count("Creatinine (mg/dL)") == 4 and header.count("Complete?") > 3
    tables, report = importing.check("redcap", folder)
    assert report.ok, report.frame()
    for name, frame in raw_tables.items():
        pd.testing.assert_frame_equal(tables[name], frame)
    assert sorted((f.column, f.message) for f in report.findings) == \
        sorted((f.column, f.message) for f in raw_report.findings)
    # a header that names one of four "Creatinine (mg/dL)" fields, the others left out: which one is a guess
    data = pd.read_csv(folder / "data.csv", dtype=str)
    data.drop(columns=[c for c in data.columns if c.startswith("Creatinine (mg/dL).")]).to_csv(
        folder / "data.csv", index=False)
    _, report = importing.check("redcap", folder)
    assert any(f.row == 1 and f.column == "Creatinine (mg/dL)" and "4 fields have this label" in f.message
               for f in report.errors), report.frame()


def test_a_real_repeating_instruments_export_gives_one_row_per_instance():
    tables, report = importing.check("redcap", REPEATING)
    assert report.ok
    assert list(tables["patients"]["patient_id"]) == ["1", "2"]
    contacts = tables["events"]
    assert contacts.groupby("patient_id").size().to_dict() == {"1": 3, "2": 1}  # bp instances 1-3 and 1
    said = {f.column for f in report.findings if f.message.startswith("not imported")}
    assert {"bp_systolic", "bp_diastolic", "first_name", "dob", "race", "age", "ethnicity"} == said


def test_a_dictionary_without_records_lists_its_fields_for_mapping():
    fields = redcap.fields_for_mapping(FIXTURES / "hypotheses_tumorbank" / "ICBS_TumorBank_DataDictionary_2020-09-10.csv")
    assert len(fields) == 117 and fields["instrument"].nunique() == 7
    gender = fields.set_index("field").loc["gender"]
    assert gender["type"] == "radio" and gender["choices"].startswith("0=Female | 1=Male")
    assert fields.set_index("field").loc["birth_date", "validation"] == "date_dmy"


@pytest.mark.parametrize("validation, value, iso", [("date_ymd", "2015-04-02", "2015-04-02"),
                                                    ("date_mdy", "04/02/2015", "2015-04-02"),
                                                    ("date_dmy", "02-04-2015", "2015-04-02"),
                                                    ("datetime_ymd", "2015-04-02 13:45", "2015-04-02"),
                                                    ("date_ymd", "2015-13-45", None), ("date_dmy", "31/02/2015", None),
                                                    ("date_ymd", "'; DROP TABLE x; --", None)])
def test_dates_are_read_in_their_field_s_order_or_refused(validation, value, iso):
    assert redcap._date(value, validation) == iso


def _copy(src, tmp_path):
    folder = tmp_path / src.name
    shutil.copytree(src, folder)
    for p in folder.iterdir():
        p.chmod(0o644)
    return folder


def _edit(path, old, new):
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


@pytest.mark.parametrize("change, said", [
    (("mapping.csv", "patients,sex,sex,,0=F|1=M", "patients,sex,first_name,,"),
     ("mapping.csv", 5, "source", "an identifier field (Identifier? = y in the dictionary) is never imported")),
    (("mapping.csv", "patients,sex,sex,,0=F|1=M", "patients,sex,sex,,0=F"),
     ("data.csv", 2, "sex", "choice 1 (Male) of sex is not in the mapping's value map")),
    (("data.csv", "100,enrollment_arm_1,2015-04-02", "100,enrollment_arm_1,2015-13-45"),
     ("data.csv", 2, "date_enrolled", "not a date in date_enrolled's format (date_ymd)")),
    (("mapping.csv", "patients,sex,sex,,0=F|1=M", "patients,sex,'; DROP TABLE patients; --,,"),
     ("mapping.csv", 5, "source", "not a field of the data dictionary")),
    (("mapping.csv", "patients,sex,sex,,0=F|1=M", "patient,sex,sex,,0=F|1=M"),
     ("mapping.csv", 5, "table", "not a canonical table")),
    (("mapping.csv", "events,event,=last_contact,final_visit_arm_1,", "events,event,=last_contact,visit_99_arm_1,"),
     ("mapping.csv", 7, "event", "not an event of the project")),
    (("data.csv", "100,enrollment_arm_1,2015-04-02", "100,enrollment_arm_9,2015-04-02"),
     ("data.csv", 2, "redcap_event_name", "not an event of the project (events file)")),
    (("data.csv", "100,enrollment_arm_1,2015-04-02", "100,Enrollment (Arm 7: nowhere),2015-04-02"),
     ("data.csv", 2, "redcap_event_name", "not an event of the project (events file)")),
])
def test_a_wrong_mapping_or_value_is_named_with_its_place_and_nothing_is_stored(change, said, tmp_path, live_folder):
    folder = _copy(LONGITUDINAL, tmp_path)
    _edit(folder / change[0], change[1], change[2])
    before = snapshot_path().resolve()
    with pytest.raises(ImportRejected) as caught:
        importing.run_import("redcap", folder)
    found = [(f.file, f.row, f.column, f.message) for f in caught.value.report.errors]
    assert any(f[0] == said[0] and f[1] == said[1] and f[2].startswith(said[2]) and said[3] in f[3]
               for f in found), found
    assert snapshot_path().resolve() == before and len(list(live_folder.glob("*.duckdb"))) == 1


def test_a_folder_without_a_mapping_says_so(tmp_path):
    folder = _copy(REPEATING, tmp_path)
    (folder / "mapping.csv").unlink()
    _, report = importing.check("redcap", folder)
    assert report.errors[0].message == ("the mapping (table,column,source,event,values; the STOP-HER2 project's: "
                                        "data/importers/redcap_stop_her2/mapping.csv) is missing")


def test_the_command_line_checks_a_redcap_export_with_a_mapping_given_apart(tmp_path):
    folder = _copy(REPEATING, tmp_path)
    mapping = tmp_path / "elsewhere.csv"
    (folder / "mapping.csv").rename(mapping)
    out = subprocess.run([sys.executable, "-m", "data", "check", "--source", "redcap", str(folder), "--mapping",
                          str(mapping)], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("0 error(s)") and "bp_systolic" in out.stderr  # the findings, on stderr


@pytest.mark.parametrize("file, change, said", [
    ("data.csv", lambda t: t + ",".join(str(i) for i in range(130)) + "\n", ("data.csv", "cannot be read")),
    ("data.csv", lambda t: t.replace("study_id,redcap_event_name,date_enrolled",
                                     "study_id,redcap_event_name,study_id", 1),
     ("data.csv", "this column appears more than once")),
    ("data.csv", lambda t: t.splitlines()[0] + "\n", ("data.csv", "no records")),
    ("mapping.csv", lambda t: "table,column,source,event,values\n", ("mapping.csv", "the mapping maps nothing")),
    ("mapping.csv", lambda t: "table,column,source,event\npatients,patient_id,study_id,\n",
     ("mapping.csv", "the header must be table,column,source,event,values")),
    ("dictionary.csv", lambda t: '"Variable / Field Name"\n"a quote left open', ("dictionary.csv", "cannot be read")),
    ("event.csv", lambda t: 'unique_event_name,arm_num\n"a quote left open', ("event.csv", "cannot be read")),
])
def test_a_broken_file_is_a_finding_that_names_it_never_a_crash(file, change, said, tmp_path):
    folder = _copy(LONGITUDINAL, tmp_path)
    (folder / file).write_text(change((folder / file).read_text()))
    _, report = importing.check("redcap", folder)
    assert any(f.file == said[0] and said[1] in f.message for f in report.errors), report.frame()
