"""The tumour board's decisions: what the board decided for each patient it discussed, and why.

A decision is clinical record, not data derived from a snapshot: it is kept outside the snapshots (an
import or a rollback must not change what the board decided), beside the audit trail, in an SQLite file
at $STOPHER2_DECISIONS_DB, else decisions.sqlite next to the audit file, or in the PostgreSQL database
that $STOPHER2_DATABASE_URL names (data/shared.py). It is append-only (triggers refuse UPDATE and DELETE,
and TRUNCATE on PostgreSQL): a correction is a new record that names the one it replaces, so what was
decided first stays readable. Every record is audited in the same step: when the audit trail cannot take
the record, the decision is not stored either (fail closed), and the caller hears why.

A meeting is its date: the patients discussed are those with a decision recorded for that date.
"""
from __future__ import annotations

import os
import unicodedata
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd

from data import audit, shared
from data.clinical import BOARD_DECISIONS

REASON_MAX_CHARS = 500
NOTES_MAX_CHARS = 5_000
#: Before this no STOP-HER2 board met (the trial was registered in 2023).
EARLIEST_MEETING = date(2023, 1, 1)
FIELDS = ("meeting_date", "patient_id", "decision", "reason", "notes", "recorded_by", "role", "recorded_at",
          "snapshot_id", "replaces")
_SQLITE = """
CREATE TABLE IF NOT EXISTS decisions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    meeting_date TEXT NOT NULL,
    patient_id TEXT NOT NULL,
    decision TEXT NOT NULL,
    reason TEXT NOT NULL,
    notes TEXT,
    recorded_by TEXT NOT NULL,
    role TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    snapshot_id TEXT,
    replaces INTEGER REFERENCES decisions(seq)
);
CREATE INDEX IF NOT EXISTS decisions_patient ON decisions (patient_id);
CREATE INDEX IF NOT EXISTS decisions_meeting ON decisions (meeting_date);
CREATE TRIGGER IF NOT EXISTS decisions_no_update BEFORE UPDATE ON decisions
BEGIN SELECT RAISE(ABORT, 'decisions are append-only: record a correction instead'); END;
CREATE TRIGGER IF NOT EXISTS decisions_no_delete BEFORE DELETE ON decisions
BEGIN SELECT RAISE(ABORT, 'decisions are append-only: record a correction instead'); END;
"""
_POSTGRESQL = """
CREATE TABLE IF NOT EXISTS decisions (
    seq BIGSERIAL PRIMARY KEY,
    meeting_date TEXT NOT NULL,
    patient_id TEXT NOT NULL,
    decision TEXT NOT NULL,
    reason TEXT NOT NULL,
    notes TEXT,
    recorded_by TEXT NOT NULL,
    role TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    snapshot_id TEXT,
    replaces BIGINT REFERENCES decisions(seq)
);
CREATE INDEX IF NOT EXISTS decisions_patient ON decisions (patient_id);
CREATE INDEX IF NOT EXISTS decisions_meeting ON decisions (meeting_date);
CREATE OR REPLACE FUNCTION stopher2_decisions_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'decisions are append-only: record a correction instead'; END $$;
CREATE OR REPLACE TRIGGER decisions_no_change BEFORE UPDATE OR DELETE ON decisions
    FOR EACH ROW EXECUTE FUNCTION stopher2_decisions_append_only();
CREATE OR REPLACE TRIGGER decisions_no_truncate BEFORE TRUNCATE ON decisions
    FOR EACH STATEMENT EXECUTE FUNCTION stopher2_decisions_append_only();
"""
SCHEMA = shared.Schema("decisions", _SQLITE, _POSTGRESQL)


class DecisionRefused(ValueError):
    """The decision cannot be recorded as given: the message says which field and why. Nothing was stored."""


class DecisionsUnavailable(RuntimeError):
    """The decisions file cannot be read or written: the message says so. Nothing was stored."""


@dataclass(frozen=True)
class Decision:
    meeting_date: date
    patient_id: str
    decision: str
    reason: str
    notes: str = ""
    replaces: int | None = None


def latest_meeting_date() -> date:
    """Today in UTC (the records' own clock): the latest meeting a decision may be recorded for."""
    return datetime.now(UTC).date()


def decisions_path() -> Path:
    configured = os.environ.get("STOPHER2_DECISIONS_DB")
    return Path(configured) if configured else audit.audit_path().with_name("decisions.sqlite")


def _connect(path: Path | None = None) -> shared.Connection:
    return shared.connect(Path(path or decisions_path()), SCHEMA)


def _text(value, field: str, limit: int, required: bool) -> str:
    """Free text as typed, minus control characters (a NUL or an escape sequence is nobody's note)."""
    text = "".join(ch for ch in str(value or "") if ch in "\n\t" or unicodedata.category(ch)[0] != "C").strip()
    if required and not text:
        raise DecisionRefused(f"{field}: required; say why the board decided this")
    if len(text) > limit:
        raise DecisionRefused(f"{field}: {len(text):,} characters, at most {limit:,}")
    return text


def check(d: Decision, known_patients, today: date | None = None) -> Decision:
    """The decision with its text cleaned, or DecisionRefused naming the field that is wrong."""
    today = today or latest_meeting_date()
    try:
        meeting = pd.Timestamp(d.meeting_date).date()
    except (ValueError, TypeError) as exc:
        raise DecisionRefused(f"meeting date: {str(d.meeting_date)[:40]!r} is not a date") from exc
    if meeting > today:
        raise DecisionRefused(f"meeting date: {meeting:%Y-%m-%d} is after today ({today:%Y-%m-%d}); a decision is "
                              "recorded once the board has met")
    if meeting < EARLIEST_MEETING:
        raise DecisionRefused(f"meeting date: {meeting:%Y-%m-%d} is before the trial's first board "
                              f"({EARLIEST_MEETING:%Y-%m-%d})")
    pid = str(d.patient_id or "")
    if pid not in set(known_patients):
        raise DecisionRefused(f"patient: {pid[:40]!r} is not a patient of this snapshot")
    if d.decision not in BOARD_DECISIONS:
        raise DecisionRefused(f"decision: {str(d.decision)[:40]!r} is not one of {', '.join(BOARD_DECISIONS)}")
    return Decision(meeting, pid, d.decision, _text(d.reason, "reason", REASON_MAX_CHARS, True),
                    _text(d.notes, "notes", NOTES_MAX_CHARS, False), d.replaces)


def record(d: Decision, *, who: str, role: str, snapshot_id: str | None, known_patients,
           path: Path | None = None, today: date | None = None) -> int:
    """Store one decision and its audit record together; returns its number.

    DecisionRefused: a field is wrong (nothing stored). audit.AuditUnavailable: the audit trail cannot take
    the record, so the decision is not stored either. DecisionsUnavailable: the decisions file cannot be written.
    """
    d = check(d, known_patients, today)
    try:
        con = _connect(path)
    except (*shared.ERRORS, OSError) as exc:
        raise DecisionsUnavailable(f"the decisions record cannot be opened ({type(exc).__name__}: {exc})") from exc
    try:
        con.begin(lock="decisions")
        if d.replaces is not None:
            earlier = con.execute("SELECT meeting_date, patient_id FROM decisions WHERE seq = ?", (int(d.replaces),))
            if not earlier or tuple(earlier[0]) != (d.meeting_date.isoformat(), d.patient_id):
                raise DecisionRefused(f"replaces: decision {d.replaces} is not {d.patient_id}'s at the meeting "
                                      f"of {d.meeting_date:%Y-%m-%d}")
        at = datetime.now(UTC).isoformat(timespec="seconds")
        seq = con.execute(
            "INSERT INTO decisions (" + ", ".join(FIELDS) + ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq",
            (d.meeting_date.isoformat(), d.patient_id, d.decision, d.reason, d.notes or None, who, role, at,
             snapshot_id, d.replaces))[0][0]
        # in the same step: no audit record, no decision
        audit.record(who, role, "board_decision", patient_id=d.patient_id, snapshot_id=snapshot_id,
                     detail=f"decision {seq}, meeting {d.meeting_date:%Y-%m-%d}: {d.decision}"
                            + (f" (replaces {d.replaces})" if d.replaces is not None else ""))
        con.commit()
        return int(seq)
    except BaseException as exc:
        con.rollback()
        if isinstance(exc, shared.ERRORS):
            raise DecisionsUnavailable(f"the decision was not stored ({type(exc).__name__}: {exc})") from exc
        raise
    finally:
        con.close()


def read(patient_id: str | None = None, meeting_date=None, path: Path | None = None) -> pd.DataFrame:
    """Decisions, oldest first, with `current` False for one a later record replaced."""
    clauses, params = [], []
    if patient_id is not None:
        clauses.append("patient_id = ?")
        params.append(str(patient_id))
    if meeting_date is not None:
        clauses.append("meeting_date = ?")
        params.append(pd.Timestamp(meeting_date).date().isoformat())
    sql = "SELECT seq, " + ", ".join(FIELDS) + " FROM decisions"
    sql += (" WHERE " + " AND ".join(clauses)) if clauses else ""
    path = Path(path or decisions_path())
    try:
        if shared.backend() == "sqlite" and not path.exists():
            frame = pd.DataFrame(columns=["seq", *FIELDS])  # nothing recorded yet: no file made by a read
        else:
            con = _connect(path)
            try:
                frame = con.frame(sql + " ORDER BY seq", params)
            finally:
                con.close()
    except (*shared.ERRORS, OSError) as exc:
        raise DecisionsUnavailable(f"the decisions record cannot be read ({type(exc).__name__}: {exc})") from exc
    replaced = set(frame["replaces"].dropna().astype(int))
    frame["current"] = ~frame["seq"].isin(replaced)
    frame["meeting_date"] = pd.to_datetime(frame["meeting_date"])
    return frame


def meetings(path: Path | None = None) -> pd.DataFrame:
    """One row per meeting date: patients discussed and decisions recorded (current ones)."""
    d = read(path=path)
    d = d[d["current"]]
    if d.empty:
        return pd.DataFrame(columns=["meeting_date", "patients", "decisions"])
    return (d.groupby("meeting_date", as_index=False)
            .agg(patients=("patient_id", "nunique"), decisions=("seq", "size"))
            .sort_values("meeting_date", ascending=False))


def timeline_rows(decisions: pd.DataFrame, index_date) -> pd.DataFrame:
    """The patient's current decisions as rows of the patient_timeline view (track "board")."""
    d = decisions[decisions["current"]] if len(decisions) else decisions
    starts = pd.to_datetime(d["meeting_date"])
    return pd.DataFrame({
        "patient_id": d["patient_id"].astype(str), "track": "board", "starts_on": starts, "ends_on": pd.NaT, "label": d["decision"].astype(str),
        "value": float("nan"),
        "detail": (d["reason"].astype(str) + (" · " + d["notes"].fillna("")).where(d["notes"].fillna("") != "", "")),
        "days_from_index": (starts - pd.Timestamp(index_date)).dt.days,
        "end_days_from_index": float("nan")}).reset_index(drop=True)


def export_frame(decisions: pd.DataFrame, snapshot_id: str, data_cutoff) -> pd.DataFrame:
    """A meeting's record as a file says it: every record (replaced ones marked), the snapshot and its cut-off."""
    out = decisions.assign(meeting_date=pd.to_datetime(decisions["meeting_date"]).dt.strftime("%Y-%m-%d"),
                           replaced=~decisions["current"], snapshot_shown=snapshot_id,
                           data_cutoff=pd.Timestamp(data_cutoff).strftime("%Y-%m-%d"))
    return out.rename(columns={"seq": "decision_no", "snapshot_id": "snapshot_at_decision"})[
        ["meeting_date", "decision_no", "patient_id", "decision", "reason", "notes", "recorded_by", "role",
         "recorded_at", "replaces", "replaced", "snapshot_at_decision", "snapshot_shown", "data_cutoff"]]
