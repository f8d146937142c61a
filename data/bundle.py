"""The CSV bundle: the project's own exchange format, one CSV per canonical table.

Format (also in the README and in the templates the Data page offers): a folder or a .zip holding
`<table>.csv` for every table in data/canonical.py, UTF-8, comma-separated, a header row with the
column names, dates as YYYY-MM-DD, booleans as true/false, empty cells for missing values. A text
value that a spreadsheet would run as a formula is written with a leading apostrophe (`'=...`) and
read back without it, so a bundle survives a round trip through the product unchanged.
"""
from __future__ import annotations

import csv
import io
import zipfile
import zlib
from array import array
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from data.canonical import TABLES
from data.csvsafe import FORMULA_PREFIXES, safe_csv
from data.validate import Report

#: A zip member is read up to this size and refused beyond it, whatever its header claims (zip bombs: a
#: 0.6 MB zip held a 512 MiB member that took 3.2 GB to import); all members together up to MAX_ZIP_BYTES.
#: Larger cohorts come as a folder (or, at registry size, Parquet).
MAX_MEMBER_BYTES = 256 << 20
MAX_ZIP_BYTES = 1 << 30
#: The longest canonical row is well under 1 KiB and the widest table has 20 columns. Beyond these a file
#: is refused before pandas reads it: a 100,000-column header took 464 s and a line of commas makes one
#: column per comma (the attack's "30 MB line": ~205 MB of memory per MB).
MAX_LINE_BYTES = 1 << 20
MAX_COLUMNS = 200


def unescape(frame: pd.DataFrame) -> pd.DataFrame:
    """Undo the export's formula neutralization: a leading apostrophe before = + - @ is dropped."""
    for col in frame.columns:
        s = frame[col]
        mask = s.str.startswith("'", na=False) & s.str[1:2].isin(FORMULA_PREFIXES)
        if mask.any():
            frame.loc[mask, col] = s[mask].str[1:]
    return frame


def _longest_line(data: bytes) -> tuple[int, int] | None:
    """(line number, bytes) of the first line longer than MAX_LINE_BYTES, or None (vectorised: no Python loop)."""
    if len(data) <= MAX_LINE_BYTES:
        return None
    ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == ord("\n"))
    bounds = np.concatenate(([-1], ends, [len(data)]))
    lengths = np.diff(bounds) - 1
    over = np.flatnonzero(lengths > MAX_LINE_BYTES)
    return (int(over[0]) + 1, int(lengths[over[0]])) if len(over) else None


def report_long_line(report: Report, file: str, line: int, size: int) -> None:
    report.add("error", file, line, "", "", f"line {line} is {size / (1 << 20):.1f} MiB long: no row of this "
               f"format comes near {MAX_LINE_BYTES >> 20} MiB (a broken export or not a table of ours)")


def report_ragged_line(report: Report, file: str, line: int, fields: int, width: int) -> None:
    report.add("error", file, line, "", "", f"line {line} has {fields} field(s) where the header has {width}: "
               "not a readable CSV")


def header_ok(header: list[str], file: str, report: Report) -> bool:
    """The header row's rules (how many columns, none named twice, none unnamed); False with the reason."""
    if len(header) > MAX_COLUMNS:
        report.add("error", file, 1, "", "", f"the header row has {len(header):,} columns; a table of this format "
                   f"has at most {MAX_COLUMNS}")
        return False
    repeated = sorted(c for c, n in Counter(header).items() if n > 1)
    if repeated:
        report.add("error", file, 1, repeated[0], repeated[0], "the header row names this column twice")
        return False
    if any(not c.strip() for c in header):
        report.add("error", file, 1, "", "", "the header row has an empty column name")
        return False
    return True


def as_text(data: bytes, file: str, report: Report) -> str | None:
    """The bytes as UTF-8 text with something in it, or None with the reason in the report."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        report.add("error", file, None, "", "", f"not UTF-8 text (byte {exc.start}): save the file as UTF-8 CSV")
        return None
    if not text.strip():
        report.add("error", file, None, "", "", "the file is empty (it needs at least a header row)")
        return None
    return text


def iter_records(lines):
    """(start line, fields) of each data record of a CSV, the header being line 1. A blank line is no record
    (pandas and DuckDB skip it) and a quoted field may hold a line break, so record i is not always on line
    i + 2: a finding must name the line a person finds in the file. `lines`: the text (a str) or an open file
    read with newline=""."""
    reader = csv.reader(io.StringIO(lines, newline="") if isinstance(lines, str) else lines)
    start, header = 1, True
    for row in reader:
        if row:
            if not header:
                yield start, len(row)
            header = False
        start = reader.line_num + 1  # the next record starts on the line after this one ends


def record_starts(text: str, width: int) -> tuple[array, tuple[int, int] | None]:
    """Each data record's first line (8 bytes a record, not a Python int's 36), and the first record whose number
    of fields is not the header's `width` as (line, fields), or None."""
    starts, ragged = array("q"), None
    for start, fields in iter_records(text):
        if ragged is None and fields != width:
            ragged = (start, fields)
        starts.append(start)
    return starts, ragged


def read_csv_bytes(data: bytes, file: str, report: Report, written_by_us: bool = False) -> pd.DataFrame | None:
    """One CSV as strings, or None with the reason in the report (see read_csv_lines)."""
    read = read_csv_lines(data, file, report, written_by_us)
    return None if read is None else read[0]


def read_csv_lines(data: bytes, file: str, report: Report, written_by_us: bool = False
                   ) -> tuple[pd.DataFrame, pd.Series | None] | None:
    """One CSV as strings with each row's line in the file (None: row i is on line i + 2), or None with the
    reason in the report. `written_by_us`: the bytes come from
    bundle_csv (a Parquet part put into the bundle's conventions), so every line has the header's fields and
    that pass is skipped; every other rule still applies."""
    text = as_text(data, file, report)
    if text is None:
        return None
    longest = _longest_line(data)
    if longest is not None:
        report_long_line(report, file, *longest)
        return None
    try:  # pandas renames a repeated column ("a", "a.1"), so the header is checked as written
        header = next(csv.reader(io.StringIO(text.split("\n", 1)[0].rstrip("\r"))))
    except (csv.Error, StopIteration):
        header = []
    if not header_ok(header, file, report):
        return None
    starts = None
    if not written_by_us:
        try:
            starts, ragged = record_starts(text, len(header))
        except csv.Error:
            ragged = None  # a quote left open: pandas' own message says so
        if ragged is not None:  # pandas would pad a short line with blanks and read a long one shifted
            report_ragged_line(report, file, *ragged, len(header))
            return None
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, na_values=[""],
                            skipinitialspace=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        report.add("error", file, None, "", "", f"not a readable CSV: {str(exc).strip()}")
        return None
    # where the csv module and pandas count records differently (they should not), the row number is the
    # fallback, as for a file we wrote ourselves
    lines = pd.Series(np.frombuffer(starts, dtype=np.int64).copy()) if starts is not None and len(starts) == len(frame) \
        else None
    return unescape(frame), lines


def read_bundle(source: Path | dict[str, bytes]
                ) -> tuple[dict[str, pd.DataFrame], dict[str, str], dict[str, pd.Series], Report]:
    """Read a bundle from a folder, a .zip file, or {file name: bytes} (an upload): the tables, their file
    names, each row's line in its file (for the findings: a blank line or a quoted line break makes it differ
    from the row's number) and the report."""
    report = Report()
    if isinstance(source, dict):
        members = dict(source)
    else:
        source = Path(source)
        if source.is_dir():
            members = {}
            for p in sorted(source.glob("*.csv")):
                if p.is_file():
                    members[p.name] = p.read_bytes()
                else:  # a folder named patients.csv
                    report.add("error", p.name, None, "", "", "this is a folder, not a CSV file")
        elif source.suffix.lower() == ".zip":
            members = {}
        else:
            raise FileNotFoundError(f"{source} is neither a folder of CSV files nor a .zip")
        if not source.is_dir():
            members = zip_members(source.read_bytes(), source.name, report)
    expanded = {}
    for name, data in members.items():
        if name.lower().endswith(".zip"):
            expanded.update(zip_members(data, name, report))
        else:
            expanded[name] = data
    raw, files, lines = {}, {}, {}
    for name, data in sorted(expanded.items()):
        stem = Path(name).name
        if not stem.lower().endswith(".csv"):
            report.add("warning", stem, None, "", "", "not a .csv file: ignored")
            continue
        table = stem[:-4].lower()
        if table in files:  # Patients.csv and patients.csv: which one is meant is not ours to guess
            report.add("error", stem, None, "", "", f"{files[table]} and {stem} are the same table: keep one")
            continue
        read = read_csv_lines(data, stem, report)
        files[table] = stem
        if read is not None:
            raw[table] = read[0]
            if read[1] is not None:
                lines[table] = read[1]
    return raw, files, lines, report


def zip_members(data: bytes, file: str, report: Report) -> dict[str, bytes]:
    """The CSV members of a zip by their base names (folders inside are flattened, nothing is extracted)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        report.add("error", file, None, "", "", "not a readable .zip file")
        return {}
    out, where, total = {}, {}, 0
    for info in archive.infolist():
        if info.is_dir():
            continue
        name = Path(info.filename).name
        if name.lower() in where:  # a/patients.csv and b/patients.csv: which one is meant is not ours to guess
            report.add("error", file, None, "", info.filename, f"two members are named {name} ({where[name.lower()]}, "
                       f"{info.filename}): keep one")
            continue
        where[name.lower()] = info.filename
        try:
            with archive.open(info) as member:
                data = member.read(MAX_MEMBER_BYTES + 1)
        except (zipfile.BadZipFile, RuntimeError, EOFError, OSError, zlib.error) as exc:
            # a CRC that lies, an encrypted member or an unsupported compression method (both RuntimeError
            # in zipfile), a cut file
            report.add("error", file, None, "", info.filename, f"member cannot be read: {str(exc)[:200]}")
            continue
        if len(data) > MAX_MEMBER_BYTES:
            report.add("error", file, None, "", info.filename,
                       f"member larger than {MAX_MEMBER_BYTES >> 20} MiB: send a folder instead of a .zip")
            continue
        total += len(data)
        if total > MAX_ZIP_BYTES:
            report.add("error", file, None, "", info.filename, f"the .zip holds more than {MAX_ZIP_BYTES >> 30} GiB")
            return out
        out[name] = data
    return out


#: Rows per piece when exporting: memory stays that of one piece whatever the table's size.
EXPORT_CHUNK_ROWS = 500_000


def export_bundle(snap, folder: Path) -> list[Path]:
    """Write the snapshot's canonical tables as a CSV bundle (formula-safe) into `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, table in TABLES.items():
        path = folder / f"{name}.csv"
        # in chunks: 35 million questionnaire answers as one DataFrame took 17.8 GB
        with open(path, "wb") as out:
            sql = "SELECT " + ", ".join(table.column_names) + " FROM " + name
            for i, frame in enumerate(snap.chunks(sql, rows=EXPORT_CHUNK_ROWS)):
                out.write(bundle_csv(frame, table, header=i == 0))
        written.append(path)
    return written


def bundle_csv(frame: pd.DataFrame, table=None, header: bool = True) -> bytes:
    """One table in the bundle's text conventions: ISO dates, true/false, whole numbers without .0."""
    out = frame.copy()
    columns = {c.name: c for c in table.columns} if table is not None else {}
    for col in out.columns:
        kind = columns[col].type if col in columns else None
        s = out[col]
        if kind == "date" or pd.api.types.is_datetime64_any_dtype(s):
            out[col] = pd.to_datetime(s).dt.strftime("%Y-%m-%d").astype(object).where(s.notna(), None)
        elif kind == "bool" or pd.api.types.is_bool_dtype(s):
            out[col] = s.astype("boolean").map({True: "true", False: "false"}).astype(object).where(s.notna(), None)
        elif kind == "int":
            out[col] = s.astype("Int64").astype("string").astype(object).where(s.notna(), None)
        elif kind == "float":
            out[col] = s.astype("float64").map(lambda x: repr(float(x))).astype(object).where(s.notna(), None)
    return safe_csv(out, header=header)


def templates() -> dict[str, bytes]:
    """Header-only CSVs, one per table, plus a description of every column."""
    out = {f"{name}.csv": (",".join(t.column_names) + "\n").encode() for name, t in TABLES.items()}
    rows = [{"table": name, "column": c.name, "type": c.type, "required": "yes" if c.required else "no",
             "allowed values": " | ".join(c.codes) if c.codes else "",
             "range": "" if c.low is None and c.high is None else
             f"{'>' if c.low_open else '>='} {c.low:g}" + ("" if c.high is None else f" and <= {c.high:g}"),
             "description": c.description}
            for name, t in TABLES.items() for c in t.columns]
    out["COLUMNS.csv"] = safe_csv(pd.DataFrame(rows))
    return out


def zip_bytes(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()
