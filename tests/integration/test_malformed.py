"""Malformed CSV bundles the attack found crashing or silently resolved: each is refused with its place
(file, row, column where they exist), never a traceback, and the live snapshot stays byte-identical."""
import hashlib
import io
import struct
import zipfile
from pathlib import Path

import pytest

from data import importing
from data.bundle import MAX_MEMBER_BYTES
from data.store import snapshot_path
from data.validate import ImportRejected


def _sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _zip(files: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


def _bundle(bundle_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(bundle_dir.glob("*.csv"))}


def _crc_lie(files):
    data = bytearray(_zip(files, zipfile.ZIP_STORED))
    at = data.find(b"PK\x03\x04")
    data[at + 14:at + 18] = struct.pack("<I", 0xDEADBEEF)  # the local header's CRC-32 no longer matches
    cd = data.find(b"PK\x01\x02")
    data[cd + 16:cd + 20] = struct.pack("<I", 0xDEADBEEF)
    return bytes(data)


def _unsupported(files):
    data = bytearray(_zip(files, zipfile.ZIP_STORED))
    for sig, off in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
        at = data.find(sig)
        data[at + off:at + off + 2] = struct.pack("<H", 99)  # AES / an unknown method
    return bytes(data)


def _encrypted(files):
    data = bytearray(_zip(files, zipfile.ZIP_STORED))
    for sig, off in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.find(sig)
        flags = struct.unpack("<H", data[at + off:at + off + 2])[0] | 0x1
        data[at + off:at + off + 2] = struct.pack("<H", flags)
    return bytes(data)


def _case(name, bundle):
    """(source bytes or {name: bytes}, the file the finding names, words of the finding)."""
    b = dict(bundle)
    patients = b["patients.csv"].decode()
    header, rest = patients.split("\n", 1)
    if name == "duplicated header":
        first = header.split(",")[0]
        return {**b, "patients.csv": (header + "," + first + "\n" + rest.replace("\n", ",x\n", 1)).encode()}, \
            "patients.csv", "names this column twice"
    if name == "two members with one name":
        z = _zip({"a/patients.csv": b["patients.csv"], "b/patients.csv": b["patients.csv"],
                  **{k: v for k, v in b.items() if k != "patients.csv"}})
        return {"bundle.zip": z}, "bundle.zip", "two members are named patients.csv"
    if name == "one table twice by case":
        return {**b, "Patients.csv": b["patients.csv"]}, "patients.csv", "are the same table"
    if name == "a crc that lies":
        return {"bundle.zip": _crc_lie(b)}, "bundle.zip", "member cannot be read"
    if name == "an unsupported compression":
        return {"bundle.zip": _unsupported(b)}, "bundle.zip", "member cannot be read"
    if name == "an encrypted member":
        return {"bundle.zip": _encrypted(b)}, "bundle.zip", "member cannot be read"
    if name == "a member beyond the size limit":
        big = b["patients.csv"] + b"\n" * (MAX_MEMBER_BYTES + 1)  # deflates to a few hundred kB
        return {"bundle.zip": _zip({**b, "patients.csv": big})}, "bundle.zip", "member larger than"
    raise AssertionError(name)


CASES = ["duplicated header", "two members with one name", "one table twice by case", "a crc that lies",
         "an unsupported compression", "an encrypted member", "a member beyond the size limit"]


@pytest.mark.parametrize("name", CASES)
def test_each_malformed_bundle_is_a_located_refusal_and_changes_nothing(name, bundle_dir, live_folder):
    live = snapshot_path()
    before = _sha(live)
    source, file, words = _case(name, _bundle(bundle_dir))
    with pytest.raises(ImportRejected) as caught:
        importing.run_import("csv", source)
    errors = caught.value.report.frame().query("severity == 'error'")
    hit = errors[errors["message"].str.contains(words, regex=False)]
    assert len(hit) >= 1, errors.to_string()
    assert (hit["file"].str.lower() == file.lower()).any()
    assert snapshot_path() == live and _sha(live) == before


def test_a_folder_named_like_a_table_is_a_finding_not_a_crash(bundle_dir, tmp_path, live_folder):
    import shutil

    folder = tmp_path / "bundle"
    shutil.copytree(bundle_dir, folder)
    (folder / "scans.csv").unlink()
    (folder / "scans.csv").mkdir()
    with pytest.raises(ImportRejected) as caught:
        importing.run_import("csv", folder)
    errors = caught.value.report.frame().query("severity == 'error'")
    assert ((errors["file"] == "scans.csv") & errors["message"].str.contains("a folder, not a CSV")).any()


# ------------------------------------------------------------------------------------------- FHIR
def test_fhir_two_patients_with_one_id_are_refused_not_merged(tmp_path):
    (tmp_path / "p.ndjson").write_text('{"resourceType": "Patient", "id": "a", "gender": "female"}\n'
                                       '{"resourceType": "Patient", "id": "a", "gender": "male"}\n')
    _, report = importing.check("fhir", tmp_path)
    errors = report.frame().query("severity == 'error' and column == 'id'")
    assert len(errors) == 1 and errors["row"].iloc[0] == 2 and "a second, different Patient" in errors["message"].iloc[0]


@pytest.mark.parametrize("text, said", [
    ('{"resourceType": "Observation", "valueQuantity": {"value": NaN}}', "NaN is not a JSON number"),
    ('{"resourceType": "Observation", "valueQuantity": {"value": -Infinity}}', "-Infinity is not a JSON number"),
    ("[" * 200_000 + "]" * 200_000, "nested too deeply"),
])
def test_fhir_json_that_python_would_accept_or_choke_on_is_a_located_finding(tmp_path, text, said):
    (tmp_path / "r.json").write_text(text)
    _, report = importing.check("fhir", tmp_path)
    errors = report.frame().query("severity == 'error'")
    assert ((errors["file"] == "r.json") & errors["message"].str.contains(said, regex=False)).any(), errors


def test_an_empty_trial_is_a_located_refusal_not_a_python_message(tmp_path, live_folder):
    from data import bundle

    for name, data in bundle.templates().items():
        if name != "COLUMNS.csv":
            (tmp_path / name).write_bytes(data)
    live = snapshot_path()
    before = _sha(live)
    with pytest.raises(ImportRejected) as caught:
        importing.run_import("csv", tmp_path)
    errors = caught.value.report.frame().query("severity == 'error'")
    assert ((errors["file"] == "patients.csv") & errors["message"].str.contains("has no rows")).any()
    assert "max()" not in " ".join(errors["message"]) and _sha(live) == before


@pytest.mark.parametrize("resource, column", [
    ({"resourceType": ["Patient"], "id": "a"}, "resourceType"),
    ({"resourceType": "Patient", "id": ["a"]}, "id"),
    ({"resourceType": "ResearchSubject", "id": "rs", "individual": "Patient/a", "period": "2024"}, "resourceType"),
    ({"resourceType": "ResearchSubject", "id": "rs", "individual": {"reference": "Patient/a"}, "period": ["x"]},
     "resourceType"),
    ({"resourceType": "Condition", "id": "c", "subject": {"reference": "Patient/a"}, "meta": "not an object"},
     "resourceType"),
    ({"resourceType": "QuestionnaireResponse", "id": "q", "subject": {"reference": "Patient/a"},
      "authored": "2024-01-01", "item": "not a list"}, "resourceType"),
])
def test_fhir_fields_of_the_wrong_type_are_located_findings_not_tracebacks(tmp_path, resource, column):
    import json

    lines = [{"resourceType": "Patient", "id": "a", "gender": "female"}, resource]
    (tmp_path / "r.ndjson").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    _, report = importing.check("fhir", tmp_path)
    errors = report.frame().query("severity == 'error'")
    assert ((errors["file"] == "r.ndjson") & (errors["row"] == 2) & (errors["column"] == column)).any(), errors


# ------------------------------------------------------------------------------------------- SDTM
SDTM = Path(__file__).resolve().parents[1] / "fixtures" / "sdtm-pharmaverse"
ARMS = {"arm_map": "Pbo=1,Xan_Lo=2,Xan_Hi=2"}


def _drop(file, column):
    def change(folder):
        import pandas as pd

        frame = pd.read_csv(folder / file, dtype=str)
        frame.drop(columns=[column]).to_csv(folder / file, index=False)
    return change


def _not_gzip(folder):
    (folder / "dm.csv.gz").write_bytes(b"plain text, not gzip")


def _folder(folder):
    (folder / "ex.csv.gz").unlink()
    (folder / "ex.csv").mkdir()


@pytest.mark.parametrize("change, file, column, words", [
    (_not_gzip, "dm.csv.gz", "", "not a readable CSV"),
    (_drop("dm.csv.gz", "USUBJID"), "dm.csv.gz", "USUBJID", "required column of the DM domain"),
    (_drop("ex.csv.gz", "EXTRT"), "ex.csv.gz", "EXTRT", "required column of the EX domain"),
    (_drop("tr_onco.csv.gz", "TRGRPID"), "tr_onco.csv.gz", "TRGRPID", "required column of the TR domain"),
    (_folder, "ex.csv", "", "a folder, not a domain file"),
], ids=["not gzip", "no USUBJID", "no EXTRT", "no TRGRPID", "a folder named ex.csv"])
def test_sdtm_unreadable_or_incomplete_domains_are_located_findings(tmp_path, change, file, column, words):
    import shutil

    folder = tmp_path / "sdtm"
    shutil.copytree(SDTM, folder)
    change(folder)
    _, report = importing.check("sdtm", folder, options=ARMS)
    errors = report.frame().query("severity == 'error'")
    hit = errors[(errors["file"] == file) & (errors["column"] == column) & errors["message"].str.contains(words)]
    assert len(hit) >= 1, errors.to_string()
