"""The audit trail: who looked at or changed what, when. Append-only, crash-safe, shared by all sessions.

Kept outside the snapshots (a rollback must not roll back the record of who looked): an SQLite file
at $STOPHER2_AUDIT_DB, else data/audit/audit.sqlite. Why SQLite: every record is one transaction,
so a process killed mid-write leaves the record either whole or absent, never torn; many sessions
and processes write at once through its file lock (WAL, busy timeout); and it is in the standard
library. Triggers refuse UPDATE and DELETE, and each record carries the SHA-256 of the previous
record's hash plus its own fields, so an edit made behind SQLite's back breaks the chain at the
edited record (`verify`).
"""
from __future__ import annotations

import hashlib
import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

DEFAULT_PATH = Path(__file__).resolve().parent / "audit" / "audit.sqlite"
ACTIONS = ("view_patient", "export", "import", "import_refused", "rollback", "retrain", "page_refused",
           "not_found", "sign_in")
FIELDS = ("at", "who", "role", "action", "patient_id", "snapshot_id", "detail")
SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL, who TEXT NOT NULL, role TEXT NOT NULL, action TEXT NOT NULL,
    patient_id TEXT, snapshot_id TEXT, detail TEXT,
    prev_hash TEXT NOT NULL, hash TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
"""
GENESIS = "0" * 64
MAX_TEXT = 500  # a hostile value is recorded, truncated, never interpreted


def audit_path() -> Path:
    return Path(os.environ.get("STOPHER2_AUDIT_DB", DEFAULT_PATH))


def _connect(path: Path | None = None) -> sqlite3.Connection:
    path = Path(path or audit_path())
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path, timeout=30, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=FULL")  # a record acknowledged is a record on disk
    con.executescript(SCHEMA)
    return con


def _digest(prev: str, values: tuple) -> str:
    text = "\x1f".join("" if v is None else str(v) for v in (prev, *values))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _clean(value) -> str | None:
    if value is None:
        return None
    return str(value).replace("\x00", "")[:MAX_TEXT]


def record(who: str, role: str, action: str, patient_id: str | None = None, snapshot_id: str | None = None,
           detail: str | None = None, path: Path | None = None) -> int:
    """Append one record (one transaction); returns its sequence number."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    values = (datetime.now(UTC).isoformat(timespec="milliseconds"), _clean(who) or "unknown", _clean(role) or "none",
              action, _clean(patient_id), _clean(snapshot_id), _clean(detail))
    con = _connect(path)
    try:
        con.execute("BEGIN IMMEDIATE")  # one writer at a time: the chain has one order
        row = con.execute("SELECT hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        prev = row[0] if row else GENESIS
        cur = con.execute("INSERT INTO audit (at, who, role, action, patient_id, snapshot_id, detail, prev_hash, hash) "
                          "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", (*values, prev, _digest(prev, values)))
        con.execute("COMMIT")
        return int(cur.lastrowid)
    except BaseException:
        if con.in_transaction:
            con.execute("ROLLBACK")
        raise
    finally:
        con.close()


def read(limit: int | None = None, path: Path | None = None, **where) -> pd.DataFrame:
    """Records, newest first; `where` filters by equality on any field (parameterized)."""
    clauses, params = [], []
    for field, value in where.items():
        if field not in FIELDS or value in (None, ""):
            continue
        clauses.append(f"{field} = ?")
        params.append(value)
    sql = "SELECT seq, " + ", ".join(FIELDS) + " FROM audit"
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    sql += " ORDER BY seq DESC"
    if limit:
        sql += " LIMIT ?"
        params.append(int(limit))
    con = _connect(path)
    try:
        return pd.read_sql_query(sql, con, params=params)
    finally:
        con.close()


def verify(path: Path | None = None) -> tuple[bool, str]:
    """Recompute the chain: (intact, a sentence saying so or naming the first broken record)."""
    con = _connect(path)
    try:
        ok = con.execute("PRAGMA integrity_check").fetchone()[0]
        if ok != "ok":
            return False, f"the audit file is damaged: {ok}"
        prev, n = GENESIS, 0
        for row in con.execute("SELECT seq, " + ", ".join(FIELDS) + ", prev_hash, hash FROM audit ORDER BY seq"):
            seq, values, prev_hash, digest = row[0], row[1:8], row[8], row[9]
            if prev_hash != prev or _digest(prev, values) != digest:
                return False, f"record {seq} does not match the chain: it was changed or a record before it removed"
            prev, n = digest, n + 1
        return True, f"{n} records, chain intact"
    finally:
        con.close()
