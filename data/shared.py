"""Where what every process, and every host, of a deployment shares is kept: the audit trail, the tumour
board's decisions, the download grants, and the locks that let one process build or train while the others
wait for it.

Two backends behind one small interface (SQL is written once, with ``?`` placeholders):

* embedded, the default: an SQLite file per store beside the audit trail, and file locks (fcntl). One host
  only: a file lock means nothing to another machine, and SQLite on a network file system is not safe.
* PostgreSQL, when ``$STOPHER2_DATABASE_URL`` names one (``postgresql://user:password@host:5432/db``): one
  database for the three stores, and advisory locks (scoped to that database) for the work. Any number of
  hosts (deploy/, the README's "Beyond one host").

Every operation opens its own connection and closes it. A database that went away fails that operation with
the driver's error, which each store turns into its fail-closed sentence (no record, so nothing shown or
handed out); the next operation connects afresh, so there is nothing to recover by hand. A connection is
given CONNECT_TIMEOUT_S to open, so a host that vanished costs a page seconds, not minutes.
"""
from __future__ import annotations

import fcntl
import hashlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

URL_ENV = "STOPHER2_DATABASE_URL"
CONNECT_TIMEOUT_S = 5
#: What a configured URL must start with: anything else is a configuration mistake, said at once.
URL_SCHEMES = ("postgresql://", "postgres://")


class StoreMisconfigured(RuntimeError):
    """$STOPHER2_DATABASE_URL is set to something that is not a PostgreSQL URL, or the driver is missing."""


try:  # the driver is needed only when a URL is configured
    import psycopg
    ERRORS: tuple[type[BaseException], ...] = (sqlite3.Error, psycopg.Error, StoreMisconfigured)
except ImportError:  # pragma: no cover - requirements.txt pins it
    psycopg = None
    ERRORS = (sqlite3.Error, StoreMisconfigured)


def database_url() -> str | None:
    """The configured PostgreSQL URL, or None for the embedded SQLite files."""
    url = os.environ.get(URL_ENV, "").strip()
    if not url:
        return None
    if not url.startswith(URL_SCHEMES):
        # never echo the value: it may hold a password
        raise StoreMisconfigured(f"{URL_ENV} must be a PostgreSQL URL (postgresql://user@host/database)")
    if psycopg is None:  # pragma: no cover
        raise StoreMisconfigured(f"{URL_ENV} is set but the PostgreSQL driver (psycopg) is not installed")
    return url


def backend() -> str:
    """'postgresql' or 'sqlite': what the stores use in this process, for the pages that say so."""
    return "postgresql" if database_url() else "sqlite"


@dataclass(frozen=True)
class Schema:
    """A store's tables, as each backend spells them (triggers and key types differ)."""

    name: str
    sqlite: str
    postgresql: str


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for a lock's name (PostgreSQL's advisory locks take a bigint)."""
    return int.from_bytes(hashlib.sha256(f"stopher2:{name}".encode()).digest()[:8], "big", signed=True)


class Connection:
    """One connection to one store, on either backend."""

    def __init__(self, raw, postgres: bool):
        self.raw, self.postgres = raw, postgres

    def execute(self, sql: str, params=()) -> list[tuple]:
        if self.postgres:
            sql = sql.replace("?", "%s")  # our SQL holds no literal "?" or "%": placeholders only
        cur = self.raw.execute(sql, tuple(params))
        return cur.fetchall() if cur.description else []

    def frame(self, sql: str, params=()) -> pd.DataFrame:
        if self.postgres:
            sql = sql.replace("?", "%s")
        cur = self.raw.execute(sql, tuple(params))
        return pd.DataFrame(cur.fetchall(), columns=[c[0] for c in cur.description])

    def begin(self, lock: str | None = None) -> None:
        """Start a write transaction. SQLite's BEGIN IMMEDIATE already makes writers take turns; on PostgreSQL
        `lock` names a transaction-scoped advisory lock that does the same for that store's writers."""
        if not self.postgres:
            self.raw.execute("BEGIN IMMEDIATE")
        elif lock:
            self.raw.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(lock),))

    @property
    def in_transaction(self) -> bool:
        if not self.postgres:
            return self.raw.in_transaction
        return self.raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE

    def commit(self) -> None:
        if self.postgres:
            self.raw.commit()
        else:
            self.raw.execute("COMMIT")

    def rollback(self) -> None:
        try:
            if self.postgres:
                self.raw.rollback()
            elif self.raw.in_transaction:
                self.raw.execute("ROLLBACK")
        except ERRORS:
            pass  # a connection that is gone has nothing to roll back; the server discards the transaction

    def close(self) -> None:
        self.raw.close()


_schemas_made: set[tuple[str, str]] = set()
_schemas_lock = threading.Lock()


def connect(sqlite_path: Path, schema: Schema) -> Connection:
    """A connection to the store: PostgreSQL when configured (its tables made once per process), else the
    SQLite file at `sqlite_path` (WAL, every commit on disk before it returns)."""
    url = database_url()
    if url is None:
        path = Path(sqlite_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(path, timeout=30, isolation_level=None)
        try:
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=FULL")  # a record acknowledged is a record on disk
            con.executescript(schema.sqlite)
        except BaseException:
            con.close()
            raise
        return Connection(con, postgres=False)
    raw = psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S, autocommit=False)
    try:
        with _schemas_lock:
            if (url, schema.name) not in _schemas_made:
                # several processes starting together: one makes the tables, the others then find them
                raw.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key(f"schema:{schema.name}"),))
                raw.execute(schema.postgresql)
                raw.commit()
                _schemas_made.add((url, schema.name))
    except BaseException:
        raw.close()
        raise
    return Connection(raw, postgres=True)


@contextmanager
def exclusive(name: str, folder: Path) -> Iterator[None]:
    """Hold the lock `name` for the block: long work (a build, a training) that one process does while the
    others wait and then find its result. A file lock in `folder` (one host), or a PostgreSQL advisory lock on
    a connection held for the block (released by the server if this process dies or loses the connection)."""
    url = database_url()
    if url is None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / f".{name}.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield
        return
    raw = psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT_S, autocommit=True)
    try:
        raw.execute("SELECT pg_advisory_lock(%s)", (lock_key(f"work:{name}"),))
        yield
    finally:
        raw.close()  # ending the session releases the lock
