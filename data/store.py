"""Open the current snapshot read-only and run parameterized queries against it.

A snapshot is one DuckDB file, written once by a build and never changed afterwards. The live one
is at ``snapshot_path()``; a build writes a new file beside it and swaps it in with os.replace, so a
reader never sees a half-written database and a running app picks up the new file on its next
query (see ``Snapshot.key``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
SQL_DIR = Path(__file__).resolve().parent / "sql"
DEFAULT_SNAPSHOT = REPO / "data" / "snapshots" / "current.duckdb"

#: No extension may be fetched or loaded behind our back: a missing one must fail at once.
DUCKDB_CONFIG = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}


class SnapshotMissing(RuntimeError):
    pass


def snapshot_path() -> Path:
    """The live snapshot: $STOPHER2_SNAPSHOT, else data/snapshots/current.duckdb."""
    return Path(os.environ.get("STOPHER2_SNAPSHOT", DEFAULT_SNAPSHOT))


def file_key(path: Path) -> tuple:
    """Changes whenever a new snapshot is swapped in (a new inode), cheap to compute every rerun."""
    st = os.stat(path)
    return (str(path), st.st_ino, st.st_mtime_ns, st.st_size)


def connect_read_only(path: Path) -> duckdb.DuckDBPyConnection:
    if not Path(path).exists():
        raise SnapshotMissing(f"no snapshot at {path}: build one with `python -m data build`")
    return duckdb.connect(str(path), read_only=True, config=dict(DUCKDB_CONFIG))


@dataclass
class Snapshot:
    """A read-only snapshot. Thread-safe: every query runs on its own cursor."""

    path: Path
    key: tuple = field(init=False)
    con: duckdb.DuckDBPyConnection = field(init=False, repr=False)

    def __post_init__(self):
        self.path = Path(self.path)
        self.key = file_key(self.path)
        self.con = connect_read_only(self.path)

    def query(self, sql: str, params: list | dict | None = None) -> pd.DataFrame:
        cur = self.con.cursor()
        try:
            return cur.execute(sql, params or []).df()
        finally:
            cur.close()

    def info(self) -> dict:
        row = self.query("SELECT * FROM snapshot_info").iloc[0]
        return row.to_dict()

    def close(self):
        self.con.close()


def read_sql(name: str) -> str:
    return (SQL_DIR / name).read_text()
