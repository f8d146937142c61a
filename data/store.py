"""Open the current snapshot read-only and run parameterized queries against it.

A snapshot is one DuckDB file named by its snapshot id, written once by a build and never changed
afterwards. The live one is named by the pointer file ``CURRENT`` in the snapshot folder; a build
writes and checks a new file, then swaps the pointer with os.replace. Readers never see a
half-written database, a running app picks up the new snapshot on its next rerun (see
``Snapshot.key``), and older snapshots stay on disk for readers that still hold them and for
rollback.

Why a pointer and not one file replaced in place: DuckDB keeps one database instance per path in a
process, so a connection opened on the same path after a swap would still read the old file.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pandas as pd

REPO = Path(__file__).resolve().parent.parent
SQL_DIR = Path(__file__).resolve().parent / "sql"
DEFAULT_SNAPSHOT_DIR = REPO / "data" / "snapshots"
POINTER = "CURRENT"

#: No extension may be fetched or loaded behind our back: a missing one must fail at once.
DUCKDB_CONFIG = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}


class SnapshotMissing(RuntimeError):
    pass


def snapshot_dir() -> Path:
    """Where snapshots and the CURRENT pointer live: $STOPHER2_SNAPSHOT_DIR, else data/snapshots."""
    return Path(os.environ.get("STOPHER2_SNAPSHOT_DIR", DEFAULT_SNAPSHOT_DIR))


def snapshot_path() -> Path:
    """The live snapshot file: $STOPHER2_SNAPSHOT if set (one fixed file), else what CURRENT names.

    Raises SnapshotMissing when there is none yet.
    """
    fixed = os.environ.get("STOPHER2_SNAPSHOT")
    if fixed:
        path = Path(fixed)
    else:
        pointer = snapshot_dir() / POINTER
        try:
            name = pointer.read_text().strip()
        except FileNotFoundError:
            raise SnapshotMissing(f"no snapshot yet in {snapshot_dir()}: build one with "
                                  "`python -m data build --source synthetic`") from None
        path = snapshot_dir() / name
    if not path.exists():
        raise SnapshotMissing(f"snapshot file {path} does not exist")
    return path


def has_snapshot() -> bool:
    try:
        snapshot_path()
        return True
    except SnapshotMissing:
        return False


def publish(path: Path, keep: int = 5) -> None:
    """Make `path` (a finished snapshot inside snapshot_dir()) the live one, atomically.

    Keeps the `keep` most recently published snapshot files (a rollback counts as publishing, so the
    snapshot rolled back to is not the next to go); a reader still holding a removed file keeps reading it.
    """
    folder = snapshot_dir()
    os.utime(path)  # the pruning below orders by this: most recently made live first
    tmp = folder / f".{POINTER}.{os.getpid()}.tmp"
    tmp.write_text(Path(path).name + "\n")
    os.replace(tmp, folder / POINTER)
    snapshots = sorted(folder.glob("*.duckdb"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in snapshots[keep:]:
        if old.resolve() != Path(path).resolve():
            old.unlink(missing_ok=True)
            old.with_suffix(".report.csv").unlink(missing_ok=True)


#: A temporary file older than this belongs to a build or import that was killed (a live one is younger).
LEFTOVER_AGE_SECONDS = 6 * 3600


#: An import's staging folder (data/parts.py) in the system's temporary folder: this prefix, then the pid of
#: the process that owns it, so that a folder whose process is gone (killed) is known to be left over.
STAGING_PREFIX = "stop-her2-import-"


def staging_prefix() -> str:
    return f"{STAGING_PREFIX}{os.getpid()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by someone else
    return True


def _clean_staging(now: float) -> list[str]:
    """Staging folders whose process is gone (or, named before the pid was in the name, older than
    LEFTOVER_AGE_SECONDS). A live import's folder is never touched."""
    removed = []
    for path in Path(tempfile.gettempdir()).glob(STAGING_PREFIX + "*"):
        pid = re.match(re.escape(STAGING_PREFIX) + r"(\d+)-", path.name)
        try:
            gone = not _alive(int(pid.group(1))) if pid else now - path.stat().st_mtime > LEFTOVER_AGE_SECONDS
        except OSError:
            continue
        if gone and path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
    return removed


def clean_leftovers(now: float | None = None) -> list[str]:
    """Remove what killed builds and imports left behind: in the snapshot folder, temporary snapshot files
    and their WALs older than LEFTOVER_AGE_SECONDS and reports whose snapshot is gone; in the temporary
    folder, import staging folders whose process is gone. Returns the names removed."""
    now = time.time() if now is None else now
    removed = _clean_staging(now)
    folder = snapshot_dir()
    if not folder.exists():
        return removed
    for path in folder.iterdir():
        try:
            stale = path.name.startswith(".") and ".tmp" in path.name and now - path.stat().st_mtime > LEFTOVER_AGE_SECONDS
            orphan = path.name.endswith(".report.csv") and not path.with_name(
                path.name.removesuffix(".report.csv") + ".duckdb").exists()
            if stale or orphan:
                path.unlink()
                removed.append(path.name)
        except OSError:
            continue  # another process removed or is using it
    return removed


def file_key(path: Path) -> tuple:
    """Changes whenever a new snapshot is swapped in (a new inode), cheap to compute every rerun."""
    st = os.stat(path)
    return (str(path), st.st_ino, st.st_mtime_ns, st.st_size)


#: A reader's DuckDB memory: by default DuckDB may cache up to 80% of RAM of a file it scans (2.7 GB after the
#: Data page's missingness counts at 100,000 patients). Cached blocks of a read-only file are simply dropped
#: at the limit and read again when needed, so this bounds memory without failing queries.
READER_MEMORY_LIMIT = os.environ.get("STOPHER2_DUCKDB_MEMORY_LIMIT", "512MB")


def connect_read_only(path: Path) -> duckdb.DuckDBPyConnection:
    if not Path(path).exists():
        raise SnapshotMissing(f"no snapshot at {path}: build one with `python -m data build`")
    return duckdb.connect(str(path), read_only=True,
                          config={**DUCKDB_CONFIG, "memory_limit": READER_MEMORY_LIMIT})


@dataclass
class Snapshot:
    """A read-only snapshot. Thread-safe: every query runs on its own cursor."""

    path: Path
    key: tuple = field(init=False)
    con: duckdb.DuckDBPyConnection = field(init=False, repr=False)
    _info: dict | None = field(default=None, init=False, repr=False)

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

    def chunks(self, sql: str, params: list | dict | None = None, rows: int = 500_000):
        """The result in DataFrames of about `rows` rows (the first one even when empty, for its columns)."""
        cur = self.con.cursor()
        try:
            cur.execute(sql, params or [])
            first = True
            while True:
                frame = cur.fetch_df_chunk(max(1, rows // 2048))  # DuckDB hands out vectors of 2,048 rows
                if frame.empty and not first:
                    return
                yield frame
                first = False
        finally:
            cur.close()

    def info(self) -> dict:
        """snapshot_info's row (a copy). Read once: the file is read-only, so it never changes under us."""
        if self._info is None:
            self._info = self.query("SELECT * FROM snapshot_info").iloc[0].to_dict()
        return dict(self._info)

    def close(self):
        self.con.close()


def read_sql(name: str) -> str:
    return (SQL_DIR / name).read_text()
