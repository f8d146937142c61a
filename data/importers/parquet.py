"""Parquet in and out: the canonical tables as the registry-size exchange format, read and written by DuckDB.

Layout (README, "Scaling out"): one folder per canonical table, hive-partitioned by site
(`patients/site_partition=S01/data_0.parquet`), or one `<table>.parquet` file per table. Export writes the
folders; import reads either. The columns are the canonical ones (data/canonical.py); the partition
column is the exchange's, not the data's, and is dropped on the way in.

What this does not do yet: validation still runs on whole tables in pandas, through the CSV bundle's own
reader (each table is put into the bundle's text conventions first, so a Parquet file meets exactly the
rules, messages and atomic build a CSV bundle does). Reading is DuckDB's; the memory bound at registry
size needs the checks themselves in SQL (the README's measured figures say where that starts to matter).
"""
from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd

from data.bundle import bundle_csv, read_bundle
from data.canonical import TABLES
from data.validate import Report

PARTITION = "site_partition"


def _connect() -> duckdb.DuckDBPyConnection:
    # parquet is built in; nothing is installed or loaded from the network
    return duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})


def export(snap, folder: Path) -> list[Path]:
    """Write every canonical table as Parquet partitioned by site into `folder` (one sub-folder per table)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, table in TABLES.items():
        target = folder / name
        # identifiers from the canonical table list only (data/canonical.py); the path goes to DuckDB as a value
        columns = ", ".join("t." + c for c in table.column_names)
        site = "t.site" if name == "patients" else "p.site"
        join = "" if name == "patients" else " JOIN patients p USING (patient_id)"
        rel = snap.con.cursor().sql("SELECT " + columns + ", coalesce(" + site + ", 'unknown') AS " + PARTITION
                                    + " FROM " + name + " t" + join)
        rel.write_parquet(str(target), partition_by=[PARTITION], overwrite=True)
        written.append(target)
    return written


def _files(source: Path, name: str) -> list[Path]:
    """The Parquet files of one table: `<name>.parquet`, or every file under the `<name>/` folder."""
    single = source / f"{name}.parquet"
    found = [single] if single.is_file() else []
    folder = source / name
    if folder.is_dir():
        found += sorted(p for p in folder.rglob("*.parquet") if p.is_file())
    return found


def read(source, **_options):
    """(tables, files, lines, report) like every importer: the tables as the CSV reader returns them."""
    source = Path(source)
    if not source.is_dir():
        raise FileNotFoundError(f"{source} is not a folder of Parquet files or table folders")
    report = Report()
    members, files = {}, {}
    for entry in sorted(source.iterdir()):
        stem = entry.name.removesuffix(".parquet")
        if stem not in TABLES and not entry.name.startswith("."):
            report.add("warning", entry.name, None, "", "", "not a canonical table: ignored")
    con = _connect()
    try:
        for name, table in TABLES.items():
            paths = _files(source, name)
            if not paths:
                continue
            shown = f"{name}.parquet" if paths == [source / f"{name}.parquet"] else f"{name}/ ({len(paths)} files)"
            files[name] = shown
            try:
                frame = con.execute("SELECT * FROM read_parquet($files, hive_partitioning = true, "
                                    "union_by_name = true)", {"files": [str(p) for p in paths]}).df()
                frame = frame.drop(columns=[PARTITION], errors="ignore")
                present = list(frame.columns)
            except duckdb.Error as exc:
                report.add("error", shown, None, "", "", f"cannot be read as Parquet: {str(exc).splitlines()[0][:300]}")
                continue
            # the bundle's text conventions, then the CSV reader: the same checks and messages as a CSV bundle
            members[f"{name}.csv"] = bundle_csv(frame, table) if not frame.empty else (
                ",".join(present) + "\n").encode()
    finally:
        con.close()
    if not files:
        report.add("error", source.name, None, "", "", "no canonical table found: expected <table>.parquet files "
                   "or <table>/ folders (e.g. patients/site_partition=S01/data_0.parquet)")
        return {}, {}, {}, report
    tables, csv_files, csv_report = read_bundle(members)
    for f in csv_report.findings:  # named by the Parquet source, not the text form made above
        report.add(f.severity, files.get(f.file.removesuffix(".csv"), f.file), None if f.row is None else f.row - 1,
                   f.column, f.value, f.message)
    # a row's place is its number in the table (1 = the first row), not a line of a text file
    lines = {name: pd.Series(range(1, len(frame) + 1), index=frame.index) for name, frame in tables.items()}
    return tables, files, lines, report
