"""Parquet, the registry-size exchange: exported partitioned by site, imported to the same snapshot, and
bad files refused with a sentence that names them (nothing stored)."""
from __future__ import annotations

import subprocess
import sys

import duckdb
import pandas as pd
import pytest

from data import importing
from data.canonical import TABLES
from data.importers import parquet
from data.store import Snapshot, snapshot_path
from data.validate import ImportRejected
from tests.conftest import REPO
from tests.integration.conftest import assert_same_views


@pytest.fixture(scope="module")
def exchange(snapshot, tmp_path_factory):
    folder = tmp_path_factory.mktemp("exchange")
    parquet.export(snapshot, folder)
    return folder


def test_export_is_one_folder_per_table_partitioned_by_site(snapshot, exchange):
    sites = set(snapshot.query("SELECT DISTINCT site FROM patients")["site"])
    assert {p.name for p in exchange.iterdir()} == set(TABLES)
    assert {p.name for p in (exchange / "patients").iterdir()} == {f"site_partition={s}" for s in sites}
    con = duckdb.connect()
    n = con.sql(f"SELECT count(*) FROM read_parquet('{exchange}/pro_responses/*/*.parquet', hive_partitioning=true)")
    assert n.fetchall()[0][0] == snapshot.query("SELECT count(*) AS n FROM pro_responses")["n"].iloc[0]


def test_round_trip_synthetic_to_parquet_to_snapshot_gives_identical_views(snapshot, exchange, tmp_path):
    cutoff = pd.Timestamp(snapshot.info()["data_cutoff"]).strftime("%Y-%m-%d")
    info = importing.run_import("parquet", exchange, out=tmp_path / "again.duckdb", data_cutoff=cutoff)
    assert info["warnings"] == 0 and info["n_patients"] == 82
    assert_same_views(snapshot, Snapshot(tmp_path / "again.duckdb"))


def test_one_parquet_file_per_table_reads_the_same(exchange, tmp_path):
    con = duckdb.connect()
    for name in TABLES:
        con.sql(f"COPY (SELECT * EXCLUDE (site_partition) FROM read_parquet('{exchange}/{name}/*/*.parquet', "
                f"hive_partitioning=true)) TO '{tmp_path / (name + '.parquet')}' (FORMAT parquet)")
    flat, report = importing.check("parquet", tmp_path)
    folders, _ = importing.check("parquet", exchange)
    assert report.ok and not report.findings
    for name in TABLES:
        key = [c for c in TABLES[name].column_names]
        pd.testing.assert_frame_equal(flat[name].sort_values(key, ignore_index=True),
                                      folders[name].sort_values(key, ignore_index=True), obj=name)


def test_a_wrong_value_is_named_by_table_row_and_column_and_nothing_is_stored(exchange, tmp_path, live_folder):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(exchange, bad)
    site = next((bad / "patients").iterdir())
    con = duckdb.connect()
    frame = con.sql(f"SELECT * FROM read_parquet('{site}/data_0.parquet')").df()
    frame.loc[0, "cohort"] = 7
    (site / "data_0.parquet").unlink()
    con.sql(f"COPY (SELECT * FROM frame) TO '{site}/data_0.parquet' (FORMAT parquet)")
    before = snapshot_path()
    with pytest.raises(ImportRejected):
        importing.run_import("parquet", bad)
    assert snapshot_path() == before
    _, report = importing.check("parquet", bad)
    errors = report.frame().query("severity == 'error'")
    assert errors[["file", "column"]].values.tolist()[0] == ["patients/ (13 files)", "cohort"]
    assert "not one of 1, 2" in errors["message"].iloc[0] and errors["row"].iloc[0] >= 1


@pytest.mark.parametrize("damage", ["truncated", "not parquet", "empty folder"])
def test_a_damaged_or_missing_file_is_a_sentence_not_a_crash(exchange, tmp_path, damage):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(exchange, bad)
    target = next((bad / "events").iterdir()) / "data_0.parquet"
    if damage == "truncated":
        target.write_bytes(target.read_bytes()[:100])
    elif damage == "not parquet":
        target.write_text("patient_id,event\nSTH-0001,death\n")
    else:
        shutil.rmtree(bad)
        bad.mkdir()
    _, report = importing.check("parquet", bad)
    messages = " ".join(report.frame()["message"])
    assert not report.ok
    assert ("cannot be read as Parquet" in messages) if damage != "empty folder" else ("no canonical table" in messages)


def test_the_command_line_exports_parquet(live_folder, tmp_path):
    out = tmp_path / "exchange"
    done = subprocess.run([sys.executable, "-m", "data", "export", "--format", "parquet", "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert {p.name for p in out.iterdir()} == set(TABLES)
    check = subprocess.run([sys.executable, "-m", "data", "check", "--source", "parquet", str(out)],
                           cwd=REPO, capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stdout + check.stderr


def test_paths_are_values_not_sql(snapshot, exchange, tmp_path):
    """A folder named like SQL (a quote, a statement) is read and written as a path, nothing else."""
    import shutil

    odd = tmp_path / "o'brien'); DROP TABLE patients; --"
    shutil.copytree(exchange, odd)
    tables, report = importing.check("parquet", odd)
    assert report.ok and len(tables["patients"]) == 82
    parquet.export(snapshot, tmp_path / "out'; --")
    assert {p.name for p in (tmp_path / "out'; --").iterdir()} == set(TABLES)
