"""The same tests on both backends of what a deployment shares (data/shared.py): the audit trail's keyed,
anchored chain, the board's decisions, the download grants and the locks that keep long work to one process.
`sqlite` is the embedded default (one host); `postgresql` is a real server the tests start (tests/postgres.py).
"""
from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta

import pytest

from data import audit, decisions, downloads, shared
from data.decisions import Decision
from tests.conftest import REPO

KNOWN = ["STH-0001", "STH-0002"]
TODAY = date(2026, 11, 26)


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request, audit_db):
    """Which backend the stores use for this test; for PostgreSQL a fresh database of the session's server."""
    if request.param == "postgresql":
        request.getfixturevalue("postgres_url")
    assert shared.backend() == request.param
    return request.param


class Raw:
    """Someone with direct access to the store, going around the application (and its triggers)."""

    def __init__(self, backend: str, path):
        self.postgres = backend == "postgresql"
        if self.postgres:
            import psycopg

            self.con = psycopg.connect(shared.database_url(), autocommit=True)
        else:
            self.con = sqlite3.connect(path, isolation_level=None)

    def execute(self, sql: str, params=()):
        return self.con.execute(sql.replace("?", "%s") if self.postgres else sql, params)

    def around_the_triggers(self) -> None:
        if self.postgres:  # a superuser can switch ordinary triggers off for the session
            self.con.execute("SET session_replication_role = replica")
        else:
            self.con.execute("DROP TRIGGER IF EXISTS audit_no_update")
            self.con.execute("DROP TRIGGER IF EXISTS audit_no_delete")

    def close(self):
        self.con.close()


def _errors(backend):
    if backend == "postgresql":
        import psycopg

        return psycopg.Error
    return sqlite3.DatabaseError


def _trail(n=20):
    for i in range(n):
        audit.record("a@x.org", "clinician", "view_patient", patient_id=f"STH-{i:04d}")


# ------------------------------------------------------------------------------------------ audit
def test_records_read_back_newest_first_filtered_with_hostile_text_inert(backend):
    audit.record("a@x.org", "clinician", "view_patient", patient_id="STH-0001", snapshot_id="s1")
    audit.record("b@x.org", "researcher", "page_refused", detail="/patient")
    hostile = "STH-0001'; DROP TABLE audit;-- ? %s %(x)s <script>alert(1)</script>"
    audit.record("a@x.org", "clinician", "not_found", detail=f"patient={hostile}")
    rows = audit.read()
    assert list(rows["action"]) == ["not_found", "page_refused", "view_patient"]
    assert rows.loc[0, "detail"] == f"patient={hostile}"
    assert list(audit.read(who="a@x.org")["action"]) == ["not_found", "view_patient"]
    assert list(audit.read(patient_id=hostile)["who"]) == []
    assert audit.verify() == (True, "3 records, chain intact")
    with pytest.raises(ValueError, match="unknown audit action"):
        audit.record("a@x.org", "clinician", "delete_everything")


def test_the_trail_refuses_changes_and_sees_an_edit_made_around_the_triggers(backend, audit_db):
    _trail(3)
    raw = Raw(backend, audit_db)
    statements = ["UPDATE audit SET who = 'someone else'", "DELETE FROM audit"]
    if backend == "postgresql":
        statements.append("TRUNCATE audit")  # row triggers do not see a TRUNCATE: its own trigger does
    for sql in statements:
        with pytest.raises(_errors(backend), match="append-only"):
            raw.execute(sql)
    raw.around_the_triggers()
    raw.execute("UPDATE audit SET patient_id = 'STH-9999' WHERE seq = 2")
    raw.close()
    intact, sentence = audit.verify()
    assert not intact and sentence.startswith("record 2 was changed after it was written"), sentence


def test_many_processes_writing_at_once_lose_nothing_and_keep_one_chain(backend, audit_db):
    code = ("import sys\nfrom data import audit\n"
            "for i in range(40):\n"
            "    audit.record(sys.argv[1], 'clinician', 'view_patient', patient_id=f'STH-{i:04d}')\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", code, f"user{k}@x.org"], cwd=REPO, env=env) for k in range(4)]
    for p in procs:
        assert p.wait(120) == 0
    rows = audit.read()
    assert len(rows) == 160 and rows.groupby("who").size().eq(40).all()
    assert sorted(rows["seq"]) == list(range(1, 161))
    assert audit.verify() == (True, "160 records, chain intact")


def test_a_process_killed_mid_write_leaves_the_trail_intact(backend):
    code = ("from data import audit\n"
            "i = 0\n"
            "while True:\n"
            "    audit.record('w@x.org', 'admin', 'export', detail='x' * 400 + str(i)); i += 1\n")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if len(audit.read(limit=30)) >= 30:
                break
        except audit.AuditUnavailable:
            pass  # the writer has not made the store yet
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    before = len(audit.read())
    assert before >= 30
    assert audit.verify()[0], audit.verify()[1]
    audit.record("after@x.org", "admin", "rollback", detail="the next writer carries on")
    assert audit.verify() == (True, f"{before + 1} records, chain intact")


def test_a_removed_last_record_is_seen_and_stays_seen_after_later_records(backend, audit_db):
    _trail(20)
    raw = Raw(backend, audit_db)
    raw.around_the_triggers()
    raw.execute("DELETE FROM audit WHERE seq = 20")
    raw.close()
    intact, sentence = audit.verify()
    assert not intact and "the last 1 record(s) (20-20) were removed" in sentence, sentence
    audit.record("b@x.org", "clinician", "view_patient", patient_id="STH-0100")  # the head moves on
    intact, sentence = audit.verify()
    assert not intact and "record 20 is missing (removed)" in sentence, sentence


def test_the_wrong_key_breaks_every_record(backend, monkeypatch):
    monkeypatch.setenv(audit.KEY_ENV, "k" * 40)
    _trail(3)
    assert audit.verify()[0]
    monkeypatch.setenv(audit.KEY_ENV, "z" * 40)
    intact, sentence = audit.verify()
    assert not intact and "record 1 was changed" in sentence


def test_a_shared_trail_needs_a_configured_key(postgres_url, monkeypatch):
    """A key file made on one host would chain records another host cannot check: PostgreSQL needs the key set."""
    monkeypatch.delenv(audit.KEY_ENV)
    with pytest.raises(audit.AuditUnavailable, match="every host must chain the audit trail with the same secret"):
        audit.record("a@x.org", "clinician", "view_patient")
    intact, sentence = audit.verify()
    assert not intact and audit.KEY_ENV in sentence


def test_a_forged_head_row_stops_the_trail_rather_than_being_overwritten(postgres_url):
    _trail(3)
    raw = Raw("postgresql", None)
    raw.execute("UPDATE audit_head SET seq = 2, hash = (SELECT hash FROM audit WHERE seq = 2)")
    raw.close()
    intact, sentence = audit.verify()
    assert not intact and "the head row was altered" in sentence
    with pytest.raises(audit.AuditUnavailable, match="head was altered"):
        audit.record("a@x.org", "clinician", "view_patient")
    assert len(audit.read()) == 3


def test_the_audit_page_says_where_the_trail_is_kept_without_the_url(backend, monkeypatch):
    monkeypatch.setenv(shared.URL_ENV, os.environ.get(shared.URL_ENV, "").replace("postgres@", "postgres:s3cret@"))
    where = audit.location()
    assert ("PostgreSQL" in where and "shared by every host" in where) if backend == "postgresql" \
        else "SQLite file audit.sqlite on this host" in where
    assert "s3cret" not in where and "127.0.0.1" not in where


def test_a_misconfigured_url_is_a_sentence_that_does_not_echo_it(monkeypatch):
    monkeypatch.setenv(shared.URL_ENV, "mysql://root:hunter2@db/x")
    with pytest.raises(audit.AuditUnavailable) as caught:
        audit.record("a@x.org", "clinician", "view_patient")
    assert "must be a PostgreSQL URL" in str(caught.value) and "hunter2" not in str(caught.value)
    assert "hunter2" not in audit.verify()[1]


# ------------------------------------------------------------------------------------- decisions
def _decide(d: Decision):
    return decisions.record(d, who="board@x.org", role="tumor_board", snapshot_id="snap-1", known_patients=KNOWN,
                            today=TODAY)


def test_decisions_are_stored_with_their_audit_record_append_only_and_corrected_by_a_new_one(backend, audit_db):
    first = _decide(Decision(date(2026, 11, 20), "STH-0001", "stop", "ctDNA negative x3, CR", "it's 'fine'; --"))
    second = _decide(Decision(date(2026, 11, 20), "STH-0001", "defer", "await the scan", replaces=first))
    d = decisions.read(patient_id="STH-0001")
    assert d.set_index("seq")["current"].to_dict() == {first: False, second: True}
    assert d["notes"].iloc[0] == "it's 'fine'; --"
    assert len(audit.read(action="board_decision")) == 2 and audit.verify()[0]
    raw = Raw(backend, decisions.decisions_path())
    statements = ["UPDATE decisions SET decision = 'stop'", "DELETE FROM decisions"]
    if backend == "postgresql":
        statements.append("TRUNCATE decisions")
    for sql in statements:
        with pytest.raises(_errors(backend), match="append-only"):
            raw.execute(sql)
    raw.close()
    assert len(decisions.read()) == 2
    with pytest.raises(decisions.DecisionRefused, match="replaces: decision 999"):
        _decide(Decision(date(2026, 11, 20), "STH-0001", "stop", "x", replaces=999))
    assert len(decisions.read()) == 2 and len(audit.read()) == 2


def test_no_audit_record_no_decision(backend, monkeypatch):
    monkeypatch.setenv(audit.KEY_ENV, "short")  # the trail refuses to write with it
    with pytest.raises(audit.AuditUnavailable):
        _decide(Decision(date(2026, 11, 20), "STH-0002", "continue", "patient prefers to continue"))
    assert decisions.read().empty


# ---------------------------------------------------------------------------------------- grants
def test_a_download_grant_reaches_its_browser_only_and_expires(backend):
    file_id, mine, theirs = "a" * 56, "0" * 32, "f" * 32
    url = f"/media/{file_id}.csv"
    downloads.grant(file_id, mine, "a@x.org", "clinician", "audit csv")
    assert downloads.granted(url, mine)["who"] == "a@x.org"
    assert downloads.granted(url, theirs) is None
    assert downloads.granted(f"/media/{file_id}.csv?x=' OR 1=1 --", mine) is None
    later = datetime.now(UTC) + timedelta(minutes=downloads.GRANT_MINUTES + 1)
    assert downloads.granted(url, mine, now=later) is None


def test_expired_grants_are_deleted_so_the_table_holds_minutes_not_years(backend, audit_db):
    long_ago = datetime.now(UTC) - timedelta(days=30)
    for k in range(5):
        downloads.grant(f"{k:x}" * 56, "0" * 32, "a@x.org", "clinician", "csv", now=long_ago)
    downloads.grant("a" * 56, "0" * 32, "a@x.org", "clinician", "csv")  # a click today
    con = downloads._connect(None)
    try:
        rows = con.execute("SELECT file_id FROM grants")
    finally:
        con.close()
    assert [r[0] for r in rows] == ["a" * 56]
    assert downloads.granted(f"/media/{'a' * 56}.csv", "0" * 32)["who"] == "a@x.org"


# ----------------------------------------------------------------------------------------- locks
def test_long_work_is_done_by_one_process_at_a_time(backend, tmp_path):
    """Three processes ask for the same lock at once: each holds it alone (the log never interleaves)."""
    log = tmp_path / "log.txt"
    code = ("import sys, time\nfrom pathlib import Path\nfrom data import shared\n"
            "log = Path(sys.argv[2])\n"
            "with shared.exclusive('build', Path(sys.argv[3])):\n"
            "    with log.open('a') as f: f.write(sys.argv[1] + ' in\\n')\n"
            "    time.sleep(0.7)\n"
            "    with log.open('a') as f: f.write(sys.argv[1] + ' out\\n')\n")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-c", code, f"p{k}", str(log), str(tmp_path)], cwd=REPO, env=env)
             for k in range(3)]
    for p in procs:
        assert p.wait(60) == 0
    lines = log.read_text().split()
    pairs = [lines[i:i + 4] for i in range(0, len(lines), 4)]
    assert len(pairs) == 3 and all(p[0] == p[2] and p[1] == "in" and p[3] == "out" for p in pairs), lines


# ------------------------------------------------------------------------- a database that goes away
def test_a_lost_database_fails_closed_and_the_next_operation_recovers(postgres_url, postgres_server):
    _trail(2)
    downloads.grant("b" * 56, "0" * 32, "a@x.org", "clinician", "csv")
    postgres_server.stop()
    try:
        started = time.perf_counter()
        with pytest.raises(audit.AuditUnavailable, match="cannot be written"):
            audit.record("a@x.org", "clinician", "view_patient", patient_id="STH-0001")
        with pytest.raises(audit.AuditUnavailable, match="cannot be read"):
            audit.read()
        with pytest.raises(decisions.DecisionsUnavailable):
            _decide(Decision(date(2026, 11, 20), "STH-0002", "stop", "reason"))
        with pytest.raises(downloads.DownloadsUnavailable):
            downloads.granted(f"/media/{'b' * 56}.csv", "0" * 32)
        intact, sentence = audit.verify()
        assert not intact and "cannot be read" in sentence
        assert time.perf_counter() - started < 4 * shared.CONNECT_TIMEOUT_S
    finally:
        postgres_server.start()
    audit.record("a@x.org", "clinician", "view_patient", patient_id="STH-0001")
    assert audit.verify() == (True, "3 records, chain intact")
    assert decisions.read().empty  # the refused decision was not half-stored
    assert downloads.granted(f"/media/{'b' * 56}.csv", "0" * 32)["who"] == "a@x.org"
