"""The malformed-input corpus: every column of every canonical table given values it must refuse.

Made from data/canonical.py (one source of truth), so a column added there is attacked here too. Each
case is imported for real (`run_import`), and must end in a refusal that names the file, the line
(header = 1, so the first row is line 2) and the column, in words rather than a Python message, with
the live snapshot byte-for-byte as it was.
"""
import hashlib
from pathlib import Path

import pandas as pd
import pytest

from data import importing
from data.bundle import MAX_COLUMNS, MAX_LINE_BYTES
from data.canonical import TABLES
from data.store import snapshot_path
from data.validate import MAX_MAGNITUDE, MAX_TEXT_CHARS, ImportRejected

PYTHON_WORDS = ("Traceback", "Error:", "dtype", "NoneType", "nan", "object of type", "cannot safely cast")


def _bad_values(col) -> list[tuple[str, str]]:
    """(why, value) pairs that this column must refuse."""
    out = []
    if col.type == "text":
        out.append(("text beyond the limit", "x" * (MAX_TEXT_CHARS + 1)))
        if col.codes:
            out.append(("a code not in its list", "not-a-code"))
    elif col.type in ("int", "float"):
        out += [("1e308", "1e308"), ("a word", "abc"), ("beyond the magnitude limit", f"{MAX_MAGNITUDE * 10:.0f}"),
                ("infinity", "inf")]
        if col.type == "int":
            out.append(("a fraction", "2.5"))
        if col.high is not None:
            out.append(("above its range", f"{col.high + 1:g}"))
        if col.low is not None:
            out.append(("below its range", f"{col.low - 1:g}"))
    elif col.type == "date":
        out += [("no real day", "2024-02-30"), ("the future", "2999-01-01"), ("before 1900", "1899-12-31"),
                ("day-first", "26/11/2024")]
    elif col.type == "bool":
        out.append(("not a truth value", "maybe"))
    return out


CORPUS = [pytest.param(t.name, c.name, v, id=f"{t.name}.{c.name}: {why}")
          for t in TABLES.values() for c in t.columns for why, v in _bad_values(c)]


@pytest.fixture(scope="module")
def bundle_files(bundle_dir) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(bundle_dir.glob("*.csv"))}


def _sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _import_refused(folder: Path) -> pd.DataFrame:
    live = snapshot_path()
    before = _sha(live)
    with pytest.raises(ImportRejected) as caught:
        importing.run_import("csv", folder)
    assert snapshot_path() == live and _sha(live) == before, "a refused import changed the live snapshot"
    errors = caught.value.report.frame().query("severity == 'error'")
    assert len(errors) and errors["message"].str.len().gt(0).all()
    for message in errors["message"]:
        assert not any(w in message for w in PYTHON_WORDS), message
    return errors


def test_the_corpus_is_large_enough():
    assert len(CORPUS) >= 150, len(CORPUS)


@pytest.mark.parametrize("table, column, value", CORPUS)
def test_each_bad_value_is_refused_at_its_file_line_and_column(bundle_files, tmp_path, live_folder,
                                                                  table, column, value):
    for name, data in bundle_files.items():
        (tmp_path / name).write_bytes(data)
    path = tmp_path / f"{table}.csv"
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame[column] = frame[column].astype(object)
    frame.loc[0, column] = value
    path.write_text(frame.to_csv(index=False))
    errors = _import_refused(tmp_path)
    here = errors[(errors["file"] == f"{table}.csv") & (errors["row"] == 2) & (errors["column"] == column)]
    assert len(here) >= 1, errors.head(10).to_string()


@pytest.mark.parametrize("shape", ["a line of commas", "a long line", "a wide header"])
def test_a_line_or_header_beyond_the_limits_is_refused_before_it_is_parsed(bundle_files, tmp_path, live_folder,
                                                                           shape):
    for name, data in bundle_files.items():
        (tmp_path / name).write_bytes(data)
    data = bundle_files["patients.csv"]
    if shape == "a line of commas":  # pandas would make one column per comma
        data = data + b"," * (MAX_LINE_BYTES + 10) + b"\n"
        line, words = data.count(b"\n"), "MiB long"
    elif shape == "a long line":
        head, rest = data.split(b"\n", 1)
        data = head + b"\n" + b"x" * (30 << 20) + b"," + rest
        line, words = 2, "MiB long"
    else:
        head, rest = data.split(b"\n", 1)
        data = head + b"".join(b",c%d" % i for i in range(MAX_COLUMNS + 1)) + b"\n" + rest
        line, words = 1, "columns"
    (tmp_path / "patients.csv").write_bytes(data)
    errors = _import_refused(tmp_path)
    hit = errors[(errors["file"] == "patients.csv") & (errors["row"] == line)]
    assert len(hit) == 1 and words in hit["message"].iloc[0], errors.to_string()
