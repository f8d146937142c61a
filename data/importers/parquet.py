"""Parquet in and out: the canonical tables as the registry-size exchange format, read and written by DuckDB.

Layout (README, "Scaling out"): one folder per canonical table, hive-partitioned by site
(`patients/site_partition=S01/data_0.parquet`), or one `<table>.parquet` file per table. Export writes the
folders; import reads either. The columns are the canonical ones (data/canonical.py); the partition
column is the exchange's, not the data's, and is dropped on the way in.

Reading is DuckDB's, into a temporary staging file (data/parts.py); validation and the build then take one
part of the patients at a time, so memory stays bounded at registry size.
"""
from __future__ import annotations

from pathlib import Path

from data.canonical import TABLES
from data.parts import Staged
from data.validate import Report

PARTITION = "site_partition"


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
    """(parts, files, report) like every importer: the tables staged by DuckDB (data/parts.py), handed out in
    parts of patients, each part put into the CSV bundle's text conventions, so that a Parquet file meets
    exactly the rules, messages and atomic build a CSV bundle does, in a bounded memory."""
    source = Path(source)
    if not source.is_dir():
        raise FileNotFoundError(f"{source} is not a folder of Parquet files or table folders")
    report = Report()
    files = {}
    for entry in sorted(source.iterdir()):
        stem = entry.name.removesuffix(".parquet")
        if stem not in TABLES and not entry.name.startswith("."):
            report.add("warning", entry.name, None, "", "", "not a canonical table: ignored")
    staged = Staged()
    try:
        for name in TABLES:
            paths = _files(source, name)
            if not paths:
                continue
            shown = f"{name}.parquet" if paths == [source / f"{name}.parquet"] else f"{name}/ ({len(paths)} files)"
            files[name] = shown
            staged.add_parquet(name, paths, shown, report, drop=PARTITION)
        if not files:
            report.add("error", source.name, None, "", "", "no canonical table found: expected <table>.parquet "
                       "files or <table>/ folders (e.g. patients/site_partition=S01/data_0.parquet)")
        staged.cut()
    except BaseException:
        staged.close()
        raise
    return staged, files, report
