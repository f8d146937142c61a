"""The tumour board's decisions: recorded with their audit record or not at all, append-only, refused
with a sentence when wrong, kept outside the snapshots (an import changes nothing), exported as text."""
from __future__ import annotations

import sqlite3
from datetime import date

import pandas as pd
import pytest

from data import audit, decisions, importing
from data.csvsafe import safe_csv
from data.decisions import Decision, DecisionRefused

TODAY = date(2026, 11, 26)
KNOWN = ["STH-0001", "STH-0002", "STH-0049"]


def _record(d: Decision, **kw):
    return decisions.record(d, who=kw.pop("who", "board@x.org"), role="tumor_board", snapshot_id="snap-1",
                            known_patients=KNOWN, today=TODAY, **kw)


def test_a_decision_is_stored_with_its_audit_record_and_read_back():
    seq = _record(Decision(date(2026, 11, 20), "STH-0049", "restart", "new brain lesion on MRI", "discuss SRS"))
    d = decisions.read(patient_id="STH-0049")
    assert d[["seq", "decision", "reason", "notes", "recorded_by", "role"]].iloc[0].tolist() == [
        seq, "restart", "new brain lesion on MRI", "discuss SRS", "board@x.org", "tumor_board"]
    assert d["meeting_date"].iloc[0] == pd.Timestamp("2026-11-20") and bool(d["current"].iloc[0])
    trail = audit.read(action="board_decision")
    assert len(trail) == 1 and trail["patient_id"].iloc[0] == "STH-0049"
    assert f"decision {seq}, meeting 2026-11-20: restart" in trail["detail"].iloc[0]
    assert audit.verify()[0]


def test_the_record_is_append_only_and_a_correction_keeps_the_first_decision():
    first = _record(Decision(date(2026, 11, 20), "STH-0001", "stop", "ctDNA negative x3, CR"))
    second = _record(Decision(date(2026, 11, 20), "STH-0001", "defer", "await the December scan", replaces=first))
    d = decisions.read(patient_id="STH-0001")
    assert d.set_index("seq")["current"].to_dict() == {first: False, second: True}
    con = sqlite3.connect(decisions.decisions_path())
    for sql in ("UPDATE decisions SET decision = 'stop'", "DELETE FROM decisions"):
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            con.execute(sql)
    con.close()
    assert len(decisions.read()) == 2
    meetings = decisions.meetings()
    assert meetings.iloc[0][["patients", "decisions"]].tolist() == [1, 1]  # the current decision only


@pytest.mark.parametrize("d, said", [
    (Decision(date(2026, 12, 1), "STH-0001", "stop", "x"), "meeting date: 2026-12-01 is after today"),
    (Decision("2026-13-45", "STH-0001", "stop", "x"), "meeting date: '2026-13-45' is not a date"),
    (Decision(date(2019, 5, 1), "STH-0001", "stop", "x"), "before the trial's first board"),
    (Decision(date(2026, 11, 20), "STH-9999", "stop", "x"), "patient: 'STH-9999' is not a patient of this snapshot"),
    (Decision(date(2026, 11, 20), "' OR 1=1 --", "stop", "x"), "is not a patient of this snapshot"),
    (Decision(date(2026, 11, 20), "STH-0001", "DROP TABLE", "x"), "decision: 'DROP TABLE' is not one of stop"),
    (Decision(date(2026, 11, 20), "STH-0001", "stop", "   \x00\n"), "reason: required"),
    (Decision(date(2026, 11, 20), "STH-0001", "stop", "r" * 501), "reason: 501 characters, at most 500"),
    (Decision(date(2026, 11, 20), "STH-0001", "stop", "ok", "n" * 5001), "notes: 5,001 characters"),
    (Decision(date(2026, 11, 20), "STH-0001", "stop", "ok", replaces=999), "replaces: decision 999 is not"),
])
def test_a_wrong_field_is_named_and_nothing_is_stored(d, said):
    with pytest.raises(DecisionRefused, match=None) as caught:
        _record(d)
    assert said in str(caught.value)
    assert decisions.read().empty and audit.read().empty


def test_no_audit_record_no_decision(audit_db):
    audit_db.parent.mkdir(parents=True, exist_ok=True)
    audit_db.write_bytes(b"this is not an SQLite database" * 100)  # the trail cannot take a record
    with pytest.raises(audit.AuditUnavailable):
        _record(Decision(date(2026, 11, 20), "STH-0002", "continue", "patient prefers to continue"))
    assert decisions.read().empty


def test_hostile_text_is_kept_as_typed_and_exported_inert():
    reason = "=HYPERLINK(\"http://evil\") ![x](http://host/leak.png) <script>alert(1)</script> :red[SAFE]"
    _record(Decision(date(2026, 11, 20), "STH-0002", "stop", reason, "\x1b[31mnote\x07"))
    d = decisions.read()
    assert d["reason"].iloc[0] == reason and d["notes"].iloc[0] == "[31mnote"  # control characters dropped
    csv = safe_csv(decisions.export_frame(d, "snap-2", "2026-11-01")).decode()
    assert "'=HYPERLINK" in csv and ",=HYPERLINK" not in csv
    assert "snap-2" in csv and "2026-11-01" in csv and "2026-11-20" in csv


def test_decisions_are_kept_across_an_import(live_folder, bundle_dir):
    _record(Decision(date(2026, 11, 20), "STH-0001", "stop", "criteria met, patient agrees"))
    before = decisions.read()
    importing.run_import("csv", bundle_dir)
    after = decisions.read()
    pd.testing.assert_frame_equal(before, after)
    assert decisions.decisions_path().parent != live_folder  # not beside (or inside) the snapshots


def test_timeline_rows_are_the_current_decisions_in_the_view_s_shape(snapshot):
    _record(Decision(date(2026, 11, 20), "STH-0001", "stop", "first"))
    seq = int(decisions.read()["seq"].iloc[0])
    _record(Decision(date(2026, 11, 20), "STH-0001", "defer", "second thoughts", "scan first", replaces=seq))
    rows = decisions.timeline_rows(decisions.read(patient_id="STH-0001"), "2026-01-01")
    view = snapshot.query("SELECT * FROM patient_timeline LIMIT 0")
    assert list(rows.columns) == list(view.columns)
    assert rows[["track", "label", "detail", "days_from_index"]].values.tolist() == [
        ["board", "defer", "second thoughts · scan first", 323]]
