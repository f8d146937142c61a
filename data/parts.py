"""A source's raw tables, handed out in parts by patient: an import holds one part in memory at a time.

Every rule of validation looks at one patient's rows at a time (keys start with patient_id; references
and plausibility join on it), so checking part by part finds exactly what checking the whole source
finds, and the build (data/build.py) writes part by part. A source no larger than one part is one part:
the same tables, rows and findings as before parts existed.

Two holders:
* `InMemory`: tables an importer has already read (SDTM, FHIR, REDCap, an uploaded CSV bundle), cut by
  patient.
* `Staged`: the registry-size sources, a folder of CSV files or Parquet, read by DuckDB into a temporary
  DuckDB file on disk as text, each row with its place in its file, sorted by part. Memory holds DuckDB's
  working set (STAGING_MEMORY) and one part's frames, whatever the source's size.

A row is in the part of its patient_id as validation reads it (whitespace stripped); a row without one
is in the first part, where validation reports it.
"""
from __future__ import annotations

import csv
import itertools
import re
import io
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from data import build
from data.bundle import (MAX_LINE_BYTES, as_text, bundle_csv, header_ok, iter_records, read_csv_bytes,
                         report_long_line, report_ragged_line)
from data.canonical import TABLES
from data.csvsafe import FORMULA_PREFIXES
from data.store import DUCKDB_CONFIG, staging_prefix
from data.validate import Report

#: DuckDB's memory while staging and cutting a source; beyond it, DuckDB spills to its temporary folder.
STAGING_MEMORY = "256MB"

Part = tuple[dict[str, pd.DataFrame], dict[str, pd.Series]]  # raw tables and each row's place in its file


def patient_key(values: pd.Series) -> pd.Series:
    """The patient a row belongs to, as validation will read it: text, whitespace stripped, '' if none."""
    return values.astype("string").str.strip().fillna("")


def number_parts(keys, part_size: int | None = None) -> dict[str, int]:
    """Each patient key's part: sorted, `part_size` (build.PART_SIZE) patients a part; the empty key (no
    patient) in part 0. Not the larger parts of a large synthetic cohort: a part of raw text weighs about
    four times its typed tables (4,000 patients of a CSV bundle peaked at 1.9 GiB), and validation's cost
    is per row, not per part."""
    ordered = sorted(set(keys) - {""})
    part_size = part_size or build.PART_SIZE
    numbers = {key: i // part_size for i, key in enumerate(ordered)}
    numbers[""] = 0
    return numbers


class InMemory:
    """Tables already read, cut into parts by patient."""

    def __init__(self, raw: dict[str, pd.DataFrame], lines: dict | None = None, part_size: int | None = None):
        self.raw, self.lines = raw, lines or {}
        keys = {name: patient_key(frame["patient_id"]) if "patient_id" in frame.columns else None
                for name, frame in raw.items()}
        self.numbers = number_parts((k for v in keys.values() if v is not None for k in v.unique()), part_size)
        self.part_of = {name: None if k is None else k.map(self.numbers).to_numpy() for name, k in keys.items()}
        self.n_parts = max(self.numbers.values()) + 1

    def __iter__(self) -> Iterator[Part]:
        for part in range(self.n_parts):
            if self.n_parts == 1:  # the whole source, untouched
                yield self.raw, self.lines
                continue
            raw, lines = {}, {}
            for name, frame in self.raw.items():
                where = self.part_of[name]
                # a table without patient_id (a broken file): validation reports it, once, in part 0
                keep = (where == part) if where is not None else np.full(len(frame), part == 0)
                line = self.lines.get(name)
                line = pd.Series(np.arange(len(frame)) + 2) if line is None else pd.Series(np.asarray(line, dtype=object))
                raw[name] = frame[keep].reset_index(drop=True)
                lines[name] = line[keep].reset_index(drop=True)
            yield raw, lines

    def close(self) -> None:
        pass


class Staged:
    """A folder of CSV files or Parquet, staged by DuckDB in a temporary file and handed out in parts.

    Table and column names from the source never reach SQL: a staged table is `t<i>` with columns
    `c<j>`, and the names are kept here.
    """

    def __init__(self, part_size: int | None = None):
        self.part_size = part_size
        self.folder = Path(tempfile.mkdtemp(prefix=staging_prefix()))  # named by our pid: see clean_leftovers
        self.con = duckdb.connect(str(self.folder / "staging.duckdb"), config=dict(DUCKDB_CONFIG))
        self.con.execute("SET memory_limit = '" + STAGING_MEMORY + "'")
        self.columns: dict[str, list[str]] = {}  # table -> its columns as the source names them
        self.staged: dict[str, str] = {}  # table -> the staging table holding it
        self.text = {}  # table -> True when staged as the file's text (CSV), False when typed (Parquet)
        self.where: dict[str, tuple[Report, str]] = {}  # Parquet table -> the report and the name it is shown by
        self.n_parts = 1

    # ------------------------------------------------------------------ reading a source into staging
    def add_csv(self, name: str, path: Path, report: Report) -> bool:
        """One CSV file, as text. The file-level checks of the CSV bundle reader run first, on the header."""
        shown = path.name
        header = _header(path, shown, report)
        if header is None:
            return False
        longest = _first_long_line(path)
        if longest is not None:
            report_long_line(report, shown, *longest)
            return False
        table = f"t{len(self.staged)}"  # a staged table's name: never the file's
        types = {f"c{j}": "VARCHAR" for j in range(len(header))}
        try:
            self.con.execute(
                "CREATE TABLE " + table + " AS SELECT row_number() OVER () + 1 AS _line, * FROM read_csv(?, "
                "header = true, columns = ?, all_varchar = true, quote = '\"', escape = '\"', "
                "max_line_size = ?, strict_mode = true, null_padding = false, auto_detect = false, "
                "delim = ',', skip = 0)", [str(path), types, MAX_LINE_BYTES + 2])
        except duckdb.Error as exc:  # DuckDB's message names the line; its later lines (settings, the path) stay here
            text = str(exc)
            line = re.search(r"CSV Error on Line: (\d+)", text)
            fields = re.search(r"Expected Number of Columns: (\d+) Found: (\d+)", text)
            if line and fields:
                report_ragged_line(report, shown, int(line.group(1)), int(fields.group(2)), int(fields.group(1)))
            elif line:
                report.add("error", shown, int(line.group(1)), "", "", f"line {line.group(1)} cannot be read as CSV "
                           "(a quote left open, or a field the header does not have)")
            else:
                report.add("error", shown, None, "", "", "not a readable CSV file")
            return False
        self._place_lines(table, path)
        self.columns[name], self.staged[name], self.text[name] = header, table, True
        return True

    #: Records counted again per batch when a CSV's lines and records differ (see _place_lines).
    LINE_BATCH = 1_000_000

    def _place_lines(self, table: str, path: Path) -> None:
        """Each staged row's line in the file, for the findings. row_number() + 1 holds while every record is
        one line; a blank line or a quoted line break moves every later record, so then the records are
        counted again from the file, in a stream, LINE_BATCH at a time (bounded memory at any size), and the
        lines placed in one update at the end."""
        rows = self.con.execute("SELECT count(*) FROM " + table).fetchall()[0][0]
        if _physical_lines(path) == rows + 1:
            return
        self.con.execute("CREATE TEMP TABLE line_of (_row BIGINT, _at BIGINT)")
        try:
            with open(path, encoding="utf-8-sig", newline="") as text:
                records = iter_records(text)
                for first in range(0, rows, self.LINE_BATCH):
                    starts = np.fromiter((start for start, _ in itertools.islice(records, self.LINE_BATCH)),
                                         dtype="int64")
                    self.con.register("_batch", pd.DataFrame({"_row": np.arange(first + 2, first + 2 + len(starts)),
                                                              "_at": starts}))
                    try:
                        self.con.execute("INSERT INTO line_of SELECT _row, _at FROM _batch")
                    finally:
                        self.con.unregister("_batch")
            # the two readers agree on the records (DuckDB refused a ragged file already); were they ever to
            # disagree, the rows past the disagreement would keep their row numbers
            self.con.execute("UPDATE " + table + " SET _line = l._at FROM line_of l WHERE " + table + "._line = l._row")
        finally:
            self.con.execute("DROP TABLE line_of")

    def add_parquet(self, name: str, paths: list[Path], shown: str, report: Report, drop: str) -> bool:
        """One table's Parquet files (one file, or a hive-partitioned folder), typed as written."""
        table = f"t{len(self.staged)}"  # a staged table's name: never the file's
        try:
            rel = self.con.sql("SELECT * FROM read_parquet($files, hive_partitioning = true, union_by_name = true)",
                               params={"files": [str(p) for p in paths]})
            present = [c for c in rel.columns if c != drop]
            select = ", ".join(f"#{rel.columns.index(c) + 1} AS c{j}" for j, c in enumerate(present))
            # positional references (#n) only: no name from the file is written into the SQL
            self.con.execute("CREATE TABLE " + table + " AS SELECT row_number() OVER () AS _line, " + select
                             + " FROM read_parquet($files, hive_partitioning = true, union_by_name = true)",
                             {"files": [str(p) for p in paths]})
        except duckdb.Error as exc:
            report.add("error", shown, None, "", "", f"cannot be read as Parquet: {_first_line(exc)[:300]}")
            return False
        self.columns[name], self.staged[name], self.text[name] = present, table, False
        self.where[name] = (report, shown)
        return True

    # ------------------------------------------------------------------------------ cutting into parts
    def cut(self) -> None:
        """Number every patient's part and store each staged table sorted by part (DuckDB reads one part's
        row groups only)."""
        keys = set()
        for name, table in self.staged.items():
            if "patient_id" in self.columns[name]:
                column = f"c{self.columns[name].index('patient_id')}"
                keys.update(self.con.execute("SELECT DISTINCT CAST(" + column + " AS VARCHAR) FROM " + table)
                            .df().iloc[:, 0].pipe(patient_key).tolist())
        numbers = number_parts(keys, self.part_size)
        self.n_parts = max(numbers.values()) + 1
        self.con.execute("CREATE TABLE part_of (key VARCHAR, part INTEGER)")
        self.con.register("_numbers", pd.DataFrame({"key": list(numbers), "part": list(numbers.values())}))
        self.con.execute("INSERT INTO part_of SELECT * FROM _numbers")
        self.con.unregister("_numbers")
        for name, table in self.staged.items():
            if "patient_id" in self.columns[name]:
                column = f"c{self.columns[name].index('patient_id')}"
                # the same key as patient_key(): text, whitespace stripped, '' when missing
                key = "coalesce(trim(CAST(" + column + " AS VARCHAR), ' \t\n\r\x0b\x0c'), '')"
                self.con.execute("CREATE TABLE " + table + "_parts AS SELECT coalesce(p.part, 0) AS _part, t.* FROM "
                                 + table + " t LEFT JOIN part_of p ON p.key = " + key + " ORDER BY _part, _line")
            else:
                self.con.execute("CREATE TABLE " + table + "_parts AS SELECT 0 AS _part, * FROM " + table
                                 + " ORDER BY _line")
            self.con.execute("DROP TABLE " + table)

    def __iter__(self) -> Iterator[Part]:
        for part in range(self.n_parts):
            raw, lines = {}, {}
            for name, table in self.staged.items():
                params = {"part": part, **({"prefixes": list(FORMULA_PREFIXES)} if self.text[name] else {})}
                frame = self.con.execute("SELECT " + self._select(name) + " FROM " + table + "_parts "
                                         "WHERE _part = $part ORDER BY _line", params).df()
                line = frame.pop("_line").astype("int64")
                frame.columns = self.columns[name]
                raw[name] = frame if self.text[name] else self._parquet_as_text(name, frame)
                # a part the bundle reader refused (its finding says why) has no rows to place
                lines[name] = line if len(raw[name]) == len(line) else line.iloc[:0]
            yield raw, lines

    def _select(self, name: str) -> str:
        """A CSV's text as the bundle reader gives it, done by DuckDB (per cell in Python, it was a third of an
        import's time): an empty field is missing, and the export's formula neutralization (an apostrophe
        before = + - @ tab CR) is undone."""
        columns = [f"c{j}" for j in range(len(self.columns[name]))]
        if not self.text[name]:
            return ", ".join(["_line", *columns])
        quote = "''''"  # one apostrophe, as an SQL literal
        return ", ".join(["_line", *(f"CASE WHEN {c} = '' THEN NULL WHEN left({c}, 1) = {quote} AND "
                                     f"list_contains($prefixes, substr({c}, 2, 1)) THEN substr({c}, 2) ELSE {c} END "
                                     f"AS {c}" for c in columns)])

    def _parquet_as_text(self, name: str, frame: pd.DataFrame) -> pd.DataFrame:
        """Typed Parquet values written in the CSV bundle's conventions and read back by its reader."""
        data = bundle_csv(frame, TABLES[name]) if not frame.empty else (",".join(frame.columns) + "\n").encode()
        found = Report()
        text = read_csv_bytes(data, name, found, written_by_us=True)
        report, shown = self.where[name]
        for f in found.findings:  # e.g. a 2 MiB text cell: named by the Parquet source, the file refused
            report.add(f.severity, shown, None, f.column, f.value, f.message)
        return text if text is not None else pd.DataFrame(columns=frame.columns, dtype=object)

    def close(self) -> None:
        try:
            self.con.close()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _first_long_line(path: Path, block: int = 16 << 20) -> tuple[int, int] | None:
    """(line number, bytes) of the first line longer than MAX_LINE_BYTES, read a block at a time (the CSV
    bundle reader's rule, on a file that may not fit in memory)."""
    line, length = 1, 0
    with path.open("rb") as handle:
        while chunk := handle.read(block):
            ends = np.flatnonzero(np.frombuffer(chunk, dtype=np.uint8) == ord("\n"))
            lengths = np.diff(np.concatenate(([-1], ends))) - 1
            if len(lengths):
                lengths[0] += length  # the line carried over from the previous block
            over = np.flatnonzero(lengths > MAX_LINE_BYTES)
            if len(over):
                return line + int(over[0]), int(lengths[over[0]])
            line += len(ends)
            length = (length if not len(ends) else 0) + len(chunk) - (int(ends[-1]) + 1 if len(ends) else 0)
    return (line, length) if length > MAX_LINE_BYTES else None  # the last line, without a newline


def _header(path: Path, shown: str, report: Report) -> list[str] | None:
    """The header row, or None with the reason in the report (the CSV bundle reader's file-level rules)."""
    with path.open("rb") as handle:
        first = handle.readline(MAX_LINE_BYTES + 1)
    if len(first) > MAX_LINE_BYTES:
        report_long_line(report, shown, *(_first_long_line(path) or (1, len(first))))
        return None
    text = as_text(first, shown, report)  # the rest of the file: DuckDB refuses bytes that are not UTF-8
    if text is None:
        return None
    try:
        header = next(csv.reader(io.StringIO(text.rstrip("\r\n"))), [])
    except csv.Error:
        header = []
    return header if header_ok(header, shown, report) else None


def _physical_lines(path: Path, block: int = 1 << 24) -> int:
    """Lines in a file as a person counts them: a last line without its line break counts too."""
    lines, last = 0, b""
    with open(path, "rb") as f:
        while chunk := f.read(block):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    return lines + (1 if last not in (b"", b"\n") else 0)


def csv_folder(folder: Path) -> tuple[Staged, dict[str, str], Report]:
    """A folder of CSV files (the CSV bundle on disk), staged: the bundle reader's file rules, in bounded memory."""
    report, files = Report(), {}
    staged = Staged()
    try:
        for path in sorted(Path(folder).glob("*.csv")):
            if not path.is_file():  # a folder named patients.csv
                report.add("error", path.name, None, "", "", "this is a folder, not a CSV file")
                continue
            table = path.name[:-4].lower()
            if table in files:  # Patients.csv and patients.csv: which one is meant is not ours to guess
                report.add("error", path.name, None, "", "", f"{files[table]} and {path.name} are the same table: keep one")
                continue
            files[table] = path.name
            if table not in TABLES:
                report.add("warning", table, None, "", "", "not a canonical table: ignored")
                continue
            staged.add_csv(table, path, report)
        staged.cut()
    except BaseException:
        staged.close()
        raise
    return staged, files, report
