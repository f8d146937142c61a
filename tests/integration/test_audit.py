"""The audit trail kept in an SQLite file: every kind of tampering a file allows is seen (emptied, truncated,
random bytes, a forged or lost head, records removed), and an unwritable file fails closed."""
import os
import sqlite3

import pytest

from data import audit


# Reading back, refusing changes, many writers and a writer killed mid-record: the same tests on both backends
# in test_shared_backends.py. Here: what only a file can suffer.
# ----------------------------------------------------------------------------- tampering of every kind
def _trail(n=20):
    for i in range(n):
        audit.record("a@x.org", "clinician", "view_patient", patient_id=f"STH-{i:04d}")


def _raw(db):
    con = sqlite3.connect(db)
    con.execute("DROP TRIGGER IF EXISTS audit_no_update")
    con.execute("DROP TRIGGER IF EXISTS audit_no_delete")
    return con


@pytest.mark.parametrize("removed, said", [(1, "the last 1 record(s) (20-20) were removed"),
                                           (10, "the last 10 record(s) (11-20) were removed")])
def test_removing_the_last_records_is_seen(audit_db, removed, said):
    _trail()
    con = _raw(audit_db)
    con.execute("DELETE FROM audit WHERE seq > ?", (20 - removed,))
    con.commit()
    con.close()
    intact, sentence = audit.verify()
    assert not intact and said in sentence


def test_emptying_truncating_or_deleting_the_file_is_seen(audit_db):
    _trail()
    con = _raw(audit_db)
    con.execute("DELETE FROM audit")
    con.commit()
    con.close()
    intact, sentence = audit.verify()
    assert not intact and "all 20 records were removed" in sentence
    audit_db.write_bytes(b"")
    intact, sentence = audit.verify()
    assert not intact and "is empty" in sentence and "20 records" in sentence
    audit_db.unlink()
    for side in audit_db.parent.glob("audit.sqlite-*"):
        side.unlink()
    intact, sentence = audit.verify()
    assert not intact and "is missing" in sentence and "20 records" in sentence


def test_an_edit_with_every_later_hash_recomputed_is_seen_without_the_key(audit_db):
    """The attacker knows the old scheme (SHA-256 of the previous hash and the fields) but not the key."""
    import hashlib

    _trail()
    con = _raw(audit_db)
    rows = con.execute("SELECT seq, at, who, role, action, patient_id, snapshot_id, detail, hash FROM audit "
                       "ORDER BY seq").fetchall()
    prev = rows[8][-1]  # record 9's hash: the chain is rebuilt from there
    for seq, *values, _ in rows[9:]:
        if seq == 10:
            values[4] = "STH-9999"
        text = "\x1f".join("" if v is None else str(v) for v in (prev, *values))
        digest = hashlib.sha256(text.encode()).hexdigest()
        con.execute("UPDATE audit SET patient_id = ?, prev_hash = ?, hash = ? WHERE seq = ?", (values[4], prev, digest, seq))
        prev = digest
    con.commit()
    con.close()
    intact, sentence = audit.verify()
    assert not intact and sentence.startswith("record 10 was changed after it was written")
    assert "record 20 is not the record the head anchored" in " ".join(audit.damage())


def test_a_half_truncated_or_random_file_is_a_sentence_not_a_crash(audit_db):
    _trail(200)
    size = audit_db.stat().st_size
    with open(audit_db, "r+b") as f:
        f.truncate(size // 2)
    intact, sentence = audit.verify()
    assert not intact and sentence
    audit_db.write_bytes(os.urandom(50_000))
    intact, sentence = audit.verify()
    assert not intact and "cannot be" in sentence
    with pytest.raises(audit.AuditUnavailable):
        audit.read()


def test_a_forged_head_and_a_lost_head_are_seen(audit_db):
    import json

    _trail(5)
    head = audit.head_path(audit_db)
    data = json.loads(head.read_text())
    head.write_text(json.dumps({**data, "seq": 3}))
    assert "was altered" in audit.verify()[1]
    head.unlink()
    assert "head file audit.sqlite.head is missing" in audit.verify()[1]


def test_a_configured_key_is_used_and_the_wrong_key_breaks_every_record(audit_db, monkeypatch):
    monkeypatch.setenv(audit.KEY_ENV, "k" * 40)
    _trail(3)
    assert audit.verify() == (True, "3 records, chain intact")
    assert not audit_db.with_name("audit.sqlite.key").exists()  # nothing of the key beside the file
    monkeypatch.setenv(audit.KEY_ENV, "z" * 40)
    intact, sentence = audit.verify()
    assert not intact and "record 1 was changed" in sentence
    monkeypatch.setenv(audit.KEY_ENV, "short")
    with pytest.raises(audit.AuditUnavailable, match="at least 32"):
        audit.record("a@x.org", "clinician", "view_patient")


def test_a_file_from_before_the_keyed_chain_is_named_so(audit_db):
    con = sqlite3.connect(audit_db)
    con.executescript(audit.SCHEMA.sqlite.replace("CREATE TABLE IF NOT EXISTS audit_meta (name TEXT PRIMARY KEY, "
                                           "value TEXT NOT NULL);", ""))
    con.execute("INSERT INTO audit (at, who, role, action, prev_hash, hash) VALUES ('t', 'w', 'r', 'sign_in', ?, ?)",
                (audit.GENESIS, "f" * 64))
    con.commit()
    con.close()
    intact, sentence = audit.verify()
    assert not intact and "before the chain was keyed" in sentence


def test_an_unwritable_trail_raises_a_sentence_and_writes_nothing(audit_db):
    _trail(2)
    audit_db.chmod(0o444)
    for side in audit_db.parent.glob("audit.sqlite-*"):
        side.chmod(0o444)
    try:
        if os.geteuid() == 0:  # root ignores file modes: make the database itself refuse
            con = sqlite3.connect(audit_db)
            con.execute("PRAGMA journal_mode=DELETE")
            con.close()
            audit_db.write_bytes(b"not a database" * 100)
        with pytest.raises(audit.AuditUnavailable, match="cannot be written"):
            audit.record("a@x.org", "clinician", "view_patient", patient_id="STH-0001")
    finally:
        audit_db.chmod(0o644)
