"""The audit trail: who looked at or changed what, when. Append-only, crash-safe, shared by all sessions,
and able to prove it was not edited, cut short or replaced.

Kept outside the snapshots (a rollback must not roll back the record of who looked): an SQLite file
at $STOPHER2_AUDIT_DB, else data/audit/audit.sqlite; or, when $STOPHER2_DATABASE_URL names one, a
PostgreSQL database that every host of a deployment shares (data/shared.py). Why these: every record
is one transaction, so a process killed mid-write leaves the record either whole or absent, never
torn; many sessions and processes write at once (SQLite's file lock, WAL and busy timeout; on
PostgreSQL a transaction-scoped advisory lock makes writers take turns); SQLite is in the standard
library. Triggers refuse UPDATE and DELETE (and TRUNCATE on PostgreSQL).

Proof against someone with access to the file:

* each record carries an HMAC-SHA256 of the previous record's MAC and its own fields, keyed with a
  secret the file does not hold ($STOPHER2_AUDIT_KEY, at least 32 characters; without it a random key
  made at first use beside the file, mode 0600, which only protects while the file is copied without
  it), so an edit cannot be hidden by recomputing the later hashes;
* the head (the last record's number and MAC, itself MACed) is written to a file beside the database
  after every record, so removing the last records, emptying the file or deleting it is seen too. On
  PostgreSQL the head is a row written in the record's own transaction, and the next record's number
  and predecessor are taken from it, so a removed last record stays a visible gap even after later
  records are written.

`verify` names every kind of damage with its place and never raises.
"""
from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from data import shared
from data.keyfile import KeyFileDamaged, local_key

DEFAULT_PATH = Path(__file__).resolve().parent / "audit" / "audit.sqlite"
ACTIONS = ("view_patient", "export", "import", "import_refused", "rollback", "retrain", "page_refused",
           "not_found", "sign_in", "board_decision", "export_download")
FIELDS = ("at", "who", "role", "action", "patient_id", "snapshot_id", "detail")
CHAIN = "hmac-sha256/1"  # what the chain's MACs are; a file without it predates the keyed chain
KEY_ENV = "STOPHER2_AUDIT_KEY"
MIN_KEY_CHARS = 32
_SQLITE = """
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL, who TEXT NOT NULL, role TEXT NOT NULL, action TEXT NOT NULL,
    patient_id TEXT, snapshot_id TEXT, detail TEXT,
    prev_hash TEXT NOT NULL, hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
"""
_POSTGRESQL = """
CREATE TABLE IF NOT EXISTS audit (
    seq BIGINT PRIMARY KEY,
    at TEXT NOT NULL, who TEXT NOT NULL, role TEXT NOT NULL, action TEXT NOT NULL,
    patient_id TEXT, snapshot_id TEXT, detail TEXT,
    prev_hash TEXT NOT NULL, hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audit_head (
    one INTEGER PRIMARY KEY CHECK (one = 1), seq BIGINT NOT NULL, hash TEXT NOT NULL, mac TEXT NOT NULL
);
CREATE OR REPLACE FUNCTION stopher2_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'the % table is append-only', TG_TABLE_NAME; END $$;
CREATE OR REPLACE TRIGGER audit_no_change BEFORE UPDATE OR DELETE ON audit
    FOR EACH ROW EXECUTE FUNCTION stopher2_append_only();
CREATE OR REPLACE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit
    FOR EACH STATEMENT EXECUTE FUNCTION stopher2_append_only();
"""
SCHEMA = shared.Schema("audit", _SQLITE, _POSTGRESQL)
GENESIS = "0" * 64
MAX_TEXT = 500  # a hostile value is recorded, truncated, never interpreted
MAX_FINDINGS = 12  # verify names this many places, then counts the rest


class AuditUnavailable(RuntimeError):
    """The record could not be written: whatever it was to record must not happen (fail closed)."""


def audit_path() -> Path:
    return Path(os.environ.get("STOPHER2_AUDIT_DB", DEFAULT_PATH))


def head_path(path: Path | None = None) -> Path:
    path = Path(path or audit_path())
    return path.with_name(path.name + ".head")


def _key_path(path: Path) -> Path:
    return path.with_name(path.name + ".key")


def chain_key(path: Path | None = None, create: bool = True) -> bytes | None:
    """The chain's secret: $STOPHER2_AUDIT_KEY, else the key file beside the database (made when missing)."""
    configured = os.environ.get(KEY_ENV)
    if configured:
        if len(configured) < MIN_KEY_CHARS:
            raise AuditUnavailable(f"{KEY_ENV} must be at least {MIN_KEY_CHARS} characters")
        return configured.encode("utf-8")
    key_file = _key_path(Path(path or audit_path()))
    if not key_file.exists() and not create:
        return None
    try:
        return local_key(key_file, MIN_KEY_CHARS)
    except KeyFileDamaged as exc:
        raise AuditUnavailable(str(exc)) from exc


def _connect(path: Path | None = None) -> shared.Connection:
    return shared.connect(Path(path or audit_path()), SCHEMA)


def _mac(key: bytes, prev: str, values: tuple) -> str:
    text = "\x1f".join("" if v is None else str(v) for v in (prev, *values))
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).hexdigest()


def _head_mac(key: bytes, seq: int, digest: str) -> str:
    return hmac.new(key, f"head\x1f{seq}\x1f{digest}".encode(), hashlib.sha256).hexdigest()


def _write_head(path: Path, key: bytes, seq: int, digest: str) -> None:
    """Replace the head file atomically (write, fsync, rename): a reader sees the old head or the new one."""
    head = head_path(path)
    tmp = head.with_name(head.name + f".{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        json.dump({"seq": seq, "hash": digest, "mac": _head_mac(key, seq, digest)}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, head)


def _clean(value) -> str | None:
    if value is None:
        return None
    return str(value).replace("\x00", "")[:MAX_TEXT]


def record(who: str, role: str, action: str, patient_id: str | None = None, snapshot_id: str | None = None,
           detail: str | None = None, path: Path | None = None) -> int:
    """Append one record (one transaction) and move the head; returns its sequence number.

    Raises AuditUnavailable with a sentence when it cannot be written (read-only file, full disk, a
    damaged database, a database that went away): the caller must then not show or hand out what it was
    recording.
    """
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    path = Path(path or audit_path())
    values = (datetime.now(UTC).isoformat(timespec="milliseconds"), _clean(who) or "unknown", _clean(role) or "none",
              action, _clean(patient_id), _clean(snapshot_id), _clean(detail))
    try:
        if shared.database_url():
            return _append_postgresql(shared_key(), values)
        key = chain_key(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # one writer at a time from the read of the last MAC to the head written after the commit
        with open(path.with_name(path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            con = _connect(path)
            try:
                con.begin()
                # a new file is stamped with the chain it uses; a file that predates the keyed chain never is
                con.execute("INSERT OR IGNORE INTO audit_meta SELECT 'chain', ? WHERE NOT EXISTS "
                            "(SELECT 1 FROM audit)", (CHAIN,))
                row = con.execute("SELECT hash FROM audit ORDER BY seq DESC LIMIT 1")
                prev = row[0][0] if row else GENESIS
                digest = _mac(key, prev, values)
                seq = int(con.execute("INSERT INTO audit (at, who, role, action, patient_id, snapshot_id, detail, "
                                      "prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq",
                                      (*values, prev, digest))[0][0])
                con.commit()
            except BaseException:
                con.rollback()
                raise
            finally:
                con.close()
            _write_head(path, key, seq, digest)
            return seq
    except (*shared.ERRORS, OSError) as exc:
        raise AuditUnavailable(f"the audit trail {_where(path)} cannot be written ({type(exc).__name__}: {exc})") from exc


def location() -> str:
    """Where the trail is kept, for the Audit page (never the database URL: it may hold a password)."""
    try:
        if shared.database_url():
            return "Kept in PostgreSQL ($STOPHER2_DATABASE_URL), shared by every host of the deployment."
    except shared.StoreMisconfigured as exc:
        return str(exc)
    return f"Kept in the SQLite file {audit_path().name} on this host, with its head in {head_path().name}."


def _where(path: Path) -> str:
    """Where the trail is, for a sentence (never the database URL: it may hold a password)."""
    try:
        return "in PostgreSQL" if shared.database_url() else f"at {path.name}"
    except shared.StoreMisconfigured:
        return "in PostgreSQL"


def shared_key() -> bytes:
    """The chain's key when the trail is shared by several hosts: it must be configured, the same everywhere
    ($STOPHER2_AUDIT_KEY). A key file made on one host would chain records that another host cannot check."""
    if not os.environ.get(KEY_ENV):
        raise AuditUnavailable(f"with {shared.URL_ENV} set, every host must chain the audit trail with the same "
                               f"secret: set {KEY_ENV} (at least {MIN_KEY_CHARS} characters)")
    return chain_key()


def _append_postgresql(key: bytes, values: tuple) -> int:
    """One record and the head that anchors it, in one transaction. The number and the predecessor come from
    the head, so a record removed at the end leaves a gap that the next record makes permanent."""
    con = shared.connect(audit_path(), SCHEMA)
    try:
        con.begin(lock="audit")  # writers take turns from the read of the head to the commit
        con.execute("INSERT INTO audit_meta (name, value) SELECT 'chain', ? WHERE NOT EXISTS (SELECT 1 FROM audit) "
                    "ON CONFLICT (name) DO NOTHING", (CHAIN,))
        head = con.execute("SELECT seq, hash, mac FROM audit_head WHERE one = 1")
        if head:
            last_seq, prev, mac = head[0]
            if not hmac.compare_digest(_head_mac(key, int(last_seq), prev), mac):
                raise AuditUnavailable("the audit trail's head was altered (its MAC does not match): nothing more is "
                                       "recorded until it is examined (Audit page, verify)")
        else:
            row = con.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
            last_seq, prev = row[0] if row else (0, GENESIS)
        seq = int(last_seq) + 1
        digest = _mac(key, prev, values)
        con.execute("INSERT INTO audit (seq, at, who, role, action, patient_id, snapshot_id, detail, prev_hash, hash) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", (seq, *values, prev, digest))
        con.execute("INSERT INTO audit_head (one, seq, hash, mac) VALUES (1, ?, ?, ?) ON CONFLICT (one) DO UPDATE "
                    "SET seq = EXCLUDED.seq, hash = EXCLUDED.hash, mac = EXCLUDED.mac",
                    (seq, digest, _head_mac(key, seq, digest)))
        con.commit()
        return seq
    except BaseException:
        con.rollback()
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
    try:
        con = _connect(path)
        try:
            return con.frame(sql, params)
        finally:
            con.close()
    except (*shared.ERRORS, OSError) as exc:
        raise AuditUnavailable(f"the audit trail cannot be read ({type(exc).__name__}: {exc})") from exc


def verify(path: Path | None = None) -> tuple[bool, str]:
    """Check the whole trail: (intact, a sentence saying so or naming every kind of damage and its place)."""
    findings = damage(path)
    if findings and findings[0].startswith("intact:"):
        return True, findings[0].removeprefix("intact: ")
    shown = findings[:MAX_FINDINGS]
    more = len(findings) - len(shown)
    return False, "; ".join(shown) + (f"; and {more} more" if more > 0 else "")


def damage(path: Path | None = None) -> list[str]:
    """Every finding, in order of place; ["intact: N records, chain intact"] when there is none. Never raises."""
    path = Path(path or audit_path())
    try:
        if shared.database_url():
            return _damage_postgresql()
        key = chain_key(path, create=False)
    except (AuditUnavailable, shared.StoreMisconfigured) as exc:
        return [str(exc)]
    head, head_problem = _read_head(path, key)
    if not path.exists():
        if head is not None or head_problem:
            return [f"the audit file {path.name} is missing" + (f": the head says it held {head[0]} records"
                                                                 if head else "")]
        return ["intact: 0 records, chain intact"]
    if path.stat().st_size == 0:
        return [f"the audit file {path.name} is empty" + (f": the head says it held {head[0]} records" if head else "")]
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    except sqlite3.Error as exc:
        return [f"the audit file {path.name} cannot be opened: {exc}"]
    findings: list[str] = []
    try:
        ok = con.execute("PRAGMA integrity_check").fetchone()[0]
        if ok != "ok":
            findings.append(f"the audit file is damaged: {ok}")
        names = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "audit" not in names:
            return findings + [f"the audit file {path.name} holds no audit table"]
        chain = (con.execute("SELECT value FROM audit_meta WHERE name = 'chain'").fetchone()
                 if "audit_meta" in names else None)
        rows = con.execute("SELECT seq, " + ", ".join(FIELDS) + ", prev_hash, hash FROM audit ORDER BY seq").fetchall()
    except sqlite3.Error as exc:
        return findings + [f"the audit file {path.name} cannot be read: {exc}"]
    finally:
        con.close()
    return _chain_findings(findings, rows, chain[0] if chain else None, key, head, head_problem,
                           f"the head file {head_path(path).name}", f"set {KEY_ENV} or restore {_key_path(path).name}")


def _damage_postgresql() -> list[str]:
    """damage() for a trail kept in PostgreSQL: the same chain, the head read from its row."""
    key = shared_key()
    try:
        con = shared.connect(audit_path(), SCHEMA)
        try:
            chain = con.execute("SELECT value FROM audit_meta WHERE name = 'chain'")
            rows = con.execute("SELECT seq, " + ", ".join(FIELDS) + ", prev_hash, hash FROM audit ORDER BY seq")
            stored = con.execute("SELECT seq, hash, mac FROM audit_head WHERE one = 1")
        finally:
            con.close()
    except shared.ERRORS as exc:
        return [f"the audit trail in PostgreSQL cannot be read: {type(exc).__name__}: {exc}"]
    head, head_problem = None, None
    if stored:
        seq, digest, mac = stored[0]
        if hmac.compare_digest(_head_mac(key, int(seq), str(digest)), str(mac)):
            head = (int(seq), str(digest))
        else:
            head_problem = "the head row was altered (its MAC does not match)"
    return _chain_findings([], rows, chain[0][0] if chain else None, key, head, head_problem, "the head row",
                           f"set {KEY_ENV}")


def _chain_findings(findings: list[str], rows: list, chain: str | None, key: bytes | None, head, head_problem,
                    head_name: str, key_hint: str) -> list[str]:
    """Walk the chain record by record and compare its end with the anchored head (both backends)."""
    if rows and chain != CHAIN:
        return findings + [f"the {len(rows)} records were written before the chain was keyed ({CHAIN}): they "
                           "cannot be proven; keep this file as it is and start a new one"]
    if rows and key is None:
        return findings + [f"the chain's key is missing ({key_hint}): the records cannot be checked"]
    prev, last_seq, macs = GENESIS, 0, {}
    for seq, *values, prev_hash, digest in rows:
        values = tuple(values)
        if seq != last_seq + 1:
            findings.append(f"records {last_seq + 1}-{seq - 1} are missing (removed)" if seq > last_seq + 2
                            else f"record {last_seq + 1} is missing (removed)")
        if prev_hash != prev:
            findings.append(f"record {seq} does not follow the record before it")
        if not hmac.compare_digest(_mac(key, prev_hash, values), digest):
            findings.append(f"record {seq} was changed after it was written (its MAC does not match)")
        prev, last_seq, macs[seq] = digest, seq, digest
    if head_problem:
        findings.append(head_problem)
    elif head is None and rows:
        findings.append(f"{head_name} is missing: the end of the trail cannot be proven")
    elif head is not None:
        seq, digest = head
        if seq > last_seq:
            findings.append(f"the last {seq - last_seq} record(s) ({last_seq + 1}-{seq}) were removed: the head "
                            f"names record {seq}" if last_seq else f"all {seq} records were removed")
        elif macs.get(seq) != digest:
            findings.append(f"record {seq} is not the record the head anchored")
    return findings or [f"intact: {len(rows)} records, chain intact"]


def _read_head(path: Path, key: bytes | None) -> tuple[tuple[int, str] | None, str | None]:
    """The anchored head (seq, MAC) or a sentence about what is wrong with it; (None, None) when absent."""
    head = head_path(path)
    if not head.exists():
        return None, None
    try:
        data = json.loads(head.read_text())
        seq, digest, mac = int(data["seq"]), str(data["hash"]), str(data["mac"])
    except (OSError, ValueError, KeyError, TypeError):
        return None, f"the head file {head.name} is unreadable"
    if key is None:
        return None, f"the head file exists but the chain's key is missing (set {KEY_ENV})"
    if not hmac.compare_digest(_head_mac(key, seq, digest), mac):
        return None, f"the head file {head.name} was altered (its MAC does not match)"
    return (seq, digest), None
