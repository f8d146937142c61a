"""Registry size: a source is checked and built in parts of patients (data/parts.py). What a data manager
gets (the snapshot, every finding and its place) must not depend on where the parts are cut."""
from __future__ import annotations

import shutil
import zipfile

import pandas as pd
import pytest

from data import build, importing, validate
from data.importers import parquet
from data.store import Snapshot
from data.validate import ImportRejected
from tests.integration.conftest import assert_same_views


@pytest.fixture(scope="module")
def whole(bundle_dir, tmp_path_factory) -> Snapshot:
    """The bundle imported as one part (82 patients, today's single pass)."""
    info = importing.run_import("csv", bundle_dir, out=tmp_path_factory.mktemp("whole") / "whole.duckdb")
    return Snapshot(info["path"])


@pytest.fixture
def parts_of_ten(monkeypatch):
    monkeypatch.setattr(build, "PART_SIZE", 10)  # 82 patients: 9 parts


def _edited(bundle_dir, folder, table: str, change):
    shutil.copytree(bundle_dir, folder)
    frame = pd.read_csv(folder / f"{table}.csv", dtype=str, keep_default_na=False)
    (folder / f"{table}.csv").write_text(change(frame).to_csv(index=False))
    return folder


def _sorted(report) -> pd.DataFrame:
    return report.frame().sort_values(["file", "row", "column", "message", "value"], ignore_index=True)


@pytest.mark.parametrize("source", ["csv folder", "csv zip", "parquet"])
def test_a_source_in_parts_builds_the_same_snapshot(source, bundle_dir, whole, tmp_path, parts_of_ten, snapshot):
    if source == "csv folder":
        kind, path = "csv", bundle_dir
    elif source == "csv zip":
        kind, path = "csv", tmp_path / "bundle.zip"
        with zipfile.ZipFile(path, "w") as z:
            for f in bundle_dir.glob("*.csv"):
                z.write(f, f.name)
    else:
        kind, path = "parquet", tmp_path / "exchange"
        parquet.export(snapshot, path)
    info = importing.run_import(kind, path, out=tmp_path / "parts.duckdb")
    assert info["n_patients"] == 82
    assert_same_views(whole, Snapshot(info["path"]))


def test_findings_and_their_lines_do_not_depend_on_the_parts(bundle_dir, tmp_path, monkeypatch):
    """Errors spread over many parts: the same findings at the same lines, listed up to MAX_LISTED over the
    whole file (not per part), the rest counted once."""
    monkeypatch.setattr(validate, "MAX_LISTED", 5)

    def damage(frame):
        frame = frame.copy()
        frame.loc[frame.index % 3 == 0, "value"] = "lots"  # every third draw, in every part
        frame.loc[frame.index[-1], "drawn_on"] = "2024-02-30"
        return frame

    folder = _edited(bundle_dir, tmp_path / "bad", "ctdna_draws", damage)
    _, one = importing.check("csv", folder)
    monkeypatch.setattr(build, "PART_SIZE", 7)
    _, many = importing.check("csv", folder)
    assert not one.ok
    pd.testing.assert_frame_equal(_sorted(one), _sorted(many))
    more = many.frame().query("message.str.contains('more rows like this')", engine="python")
    assert len(more) == 1 and more["row"].isna().all()
    listed = many.frame().query("column == 'value' and row.notna()", engine="python")
    assert len(listed) == 5


def test_a_patient_written_with_spaces_is_the_same_patient_in_every_part(bundle_dir, tmp_path, parts_of_ten, whole):
    """A row's part is its patient as validation reads it (stripped): ' STH-0045' must meet STH-0045's
    other rows, or it would look like a patient who is not in patients."""
    folder = _edited(bundle_dir, tmp_path / "spaced", "ctdna_draws",
                     lambda f: f.assign(patient_id=f["patient_id"].where(f["patient_id"] != "STH-0045", " STH-0045 ")))
    info = importing.run_import("csv", folder, out=tmp_path / "spaced.duckdb")
    assert_same_views(whole, Snapshot(info["path"]))


def test_an_error_in_a_late_part_stores_nothing_and_leaves_nothing_behind(bundle_dir, tmp_path, parts_of_ten):
    """Parts are written as they pass; an error in the last one must still leave no file at all."""
    folder = _edited(bundle_dir, tmp_path / "late", "scans",
                     lambda f: f.assign(scanned_on=f["scanned_on"].where(f["patient_id"] != "STH-0082", "tomorrow")))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ImportRejected) as refused:
        importing.run_import("csv", folder, out=out / "late.duckdb")
    bad = refused.value.report.frame().query("severity == 'error'")
    assert set(bad["file"]) == {"scans.csv"} and set(bad["column"]) == {"scanned_on"}
    assert list(out.iterdir()) == []


def test_a_row_without_patient_and_a_hostile_header_in_a_staged_folder(bundle_dir, tmp_path, parts_of_ten):
    hostile = 'x"); DROP TABLE t0; --'

    def change(frame):
        frame = frame.copy()
        frame.loc[frame.index[40], "patient_id"] = ""
        frame[hostile] = "1"
        return frame

    folder = _edited(bundle_dir, tmp_path / "odd", "events", change)
    _, report = importing.check("csv", folder)
    found = report.frame()
    assert ((found["column"] == "patient_id") & (found["row"] == 42) & (found["severity"] == "error")).sum() == 1
    assert ((found["column"] == hostile) & found["message"].str.contains("unknown column")).sum() == 1


def test_a_huge_text_cell_in_parquet_is_a_finding_that_names_the_table(snapshot, tmp_path):
    import duckdb

    folder = tmp_path / "exchange"
    parquet.export(snapshot, folder)
    con = duckdb.connect()
    con.execute("COPY (SELECT * EXCLUDE (detail), CASE WHEN patient_id = 'STH-0005' THEN repeat('x', 3 << 20) "
                "ELSE detail END AS detail FROM read_parquet(?, hive_partitioning = true)) TO ?", [str(folder / "events" / "*" / "*.parquet"),
                                                                    str(tmp_path / "events.parquet")])
    shutil.rmtree(folder / "events")
    shutil.move(tmp_path / "events.parquet", folder / "events.parquet")
    _, report = importing.check("parquet", folder)
    errors = report.frame().query("severity == 'error'")
    assert not report.ok and set(errors["file"]) == {"events.parquet"}
    assert errors["message"].str.contains("MiB long").any()


@pytest.mark.parametrize("how", ["folder", "zip", "upload"])
@pytest.mark.parametrize("change, fields", [(lambda line: line.rsplit(",", 1)[0], "has 3 field(s)"),
                                            (lambda line: line + ",extra", "has 5 field(s)")],
                         ids=["a field missing", "a field too many"])
def test_a_line_with_a_field_missing_or_too_many_is_refused_with_its_number(bundle_dir, tmp_path, how, change,
                                                                            fields):
    """Every way in, one rule: pandas alone would pad a short line with blanks and read a long one shifted."""
    folder = tmp_path / "ragged"
    shutil.copytree(bundle_dir, folder)
    lines = (folder / "scans.csv").read_text().splitlines()
    assert lines[0].count(",") == 3
    lines[6] = change(lines[6])  # line 7
    (folder / "scans.csv").write_text("\n".join(lines) + "\n")
    files = {p.name: p.read_bytes() for p in sorted(folder.glob("*.csv"))}
    if how == "zip":
        with zipfile.ZipFile(tmp_path / "ragged.zip", "w") as z:
            for name, data in files.items():
                z.writestr(name, data)
    source = {"folder": folder, "zip": tmp_path / "ragged.zip", "upload": files}[how]
    _, report = importing.check("csv", source)
    found = report.frame().query("file == 'scans.csv' and severity == 'error' and row.notna()", engine="python")
    assert found["row"].tolist() == [7]  # (and, as for any unreadable file, the table counts as missing)
    message = found["message"].iloc[0]
    assert message == f"line 7 {fields} where the header has 4: not a readable CSV" and "/" not in message


def test_an_import_in_parts_reports_progress_that_only_moves_forward(bundle_dir, tmp_path, parts_of_ten):
    """The Data page draws this as one bar: checking and writing nine parts must not make it jump back."""
    seen = []
    importing.run_import("csv", bundle_dir, out=tmp_path / "p.duckdb", progress=lambda f, m: seen.append((f, m)))
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions), seen
    assert sum("writing part" in m for _, m in seen) == 8 and any("building the snapshot" in m for _, m in seen)


def test_a_staged_csv_with_line_breaks_in_its_records_numbers_every_row_by_its_line_across_batches(tmp_path,
                                                                                                   monkeypatch):
    """The staged reader counts the records again, a batch at a time, when lines and records differ: every row,
    on either side of a batch boundary, carries the line it starts on."""
    from data.bundle import Report
    from data.parts import Staged

    rows = ['P1,"one\nline more"', "", "P2,two", 'P3,"three\n\nlines"', "P4,four", "", "", 'P5,"x"']
    path = tmp_path / "events.csv"
    path.write_text("patient_id,detail\n" + "\n".join(rows) + "\n")
    monkeypatch.setattr(Staged, "LINE_BATCH", 2)  # records counted again two at a time
    staged = Staged()
    try:
        assert staged.add_csv("events", path, Report())
        lines = staged.con.execute("SELECT _line, c0 FROM " + staged.staged["events"] + " ORDER BY _line").fetchall()
    finally:
        staged.close()
    assert lines == [(2, "P1"), (5, "P2"), (6, "P3"), (9, "P4"), (12, "P5")]
