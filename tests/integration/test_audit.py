"""The audit trail: append-only, tamper-evident, safe under concurrent writers and a kill mid-write."""
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from data import audit
from tests.conftest import REPO


def test_records_read_back_newest_first_with_filters_and_hostile_text_kept_inert(audit_db):
    audit.record("a@x.org", "clinician", "view_patient", patient_id="STH-0001", snapshot_id="s1")
    audit.record("b@x.org", "researcher", "page_refused", detail="/patient")
    hostile = "STH-0001'; DROP TABLE audit;--<script>alert(1)</script>"
    audit.record("a@x.org", "clinician", "not_found", detail=f"patient={hostile}")
    rows = audit.read()
    assert list(rows["action"]) == ["not_found", "page_refused", "view_patient"]
    assert rows.loc[0, "detail"] == f"patient={hostile}"
    assert list(audit.read(who="a@x.org")["action"]) == ["not_found", "view_patient"]
    assert list(audit.read(patient_id="STH-0001")["who"]) == ["a@x.org"]
    assert audit.verify() == (True, "3 records, chain intact")
    with pytest.raises(ValueError, match="unknown audit action"):
        audit.record("a@x.org", "clinician", "delete_everything")


def test_the_trail_refuses_updates_and_deletes_and_detects_edits_made_around_it(audit_db):
    for i in range(3):
        audit.record("a@x.org", "clinician", "view_patient", patient_id=f"STH-000{i}")
    con = sqlite3.connect(audit_db)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        con.execute("UPDATE audit SET who = 'someone else'")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        con.execute("DELETE FROM audit")
    con.execute("DROP TRIGGER audit_no_update")  # someone with file access goes around the triggers
    con.execute("UPDATE audit SET patient_id = 'STH-9999' WHERE seq = 2")
    con.commit()
    con.close()
    intact, sentence = audit.verify()
    assert not intact and sentence.startswith("record 2 does not match the chain")


def test_many_processes_writing_at_once_lose_nothing_and_keep_one_chain(audit_db):
    code = ("import sys\nfrom data import audit\n"
            "for i in range(40):\n"
            "    audit.record(sys.argv[1], 'clinician', 'view_patient', patient_id=f'STH-{i:04d}')\n")
    env = {**os.environ, "PYTHONPATH": str(REPO), "STOPHER2_AUDIT_DB": str(audit_db)}
    procs = [subprocess.Popen([sys.executable, "-c", code, f"user{k}@x.org"], cwd=REPO, env=env) for k in range(4)]
    for p in procs:
        assert p.wait(120) == 0
    rows = audit.read()
    assert len(rows) == 160 and rows.groupby("who").size().eq(40).all()
    assert audit.verify() == (True, "160 records, chain intact")


def test_a_process_killed_mid_write_leaves_the_trail_intact(audit_db):
    code = ("from data import audit\n"
            "i = 0\n"
            "while True:\n"
            "    audit.record('w@x.org', 'admin', 'export', detail='x' * 400 + str(i)); i += 1\n")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO), "STOPHER2_AUDIT_DB": str(audit_db)})
    deadline = time.time() + 60
    while time.time() < deadline and (not audit_db.exists() or len(audit.read(limit=30)) < 30):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # no chance to finish the record it is writing
    proc.wait(10)
    before = len(audit.read())
    assert before >= 30
    intact, sentence = audit.verify()
    assert intact, sentence
    audit.record("after@x.org", "admin", "rollback", detail="the next writer carries on")
    assert audit.verify() == (True, f"{before + 1} records, chain intact")
