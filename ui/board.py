"""The tumour board's decisions on screen: recorded at the meeting, read on the patient's page.

The rules (what may be decided, what is refused, append-only, audited) are in data/decisions.py; this
module only draws them. Every value typed by a person is shown as text (data frames, escaped captions).
"""
from __future__ import annotations

import dataclasses
import logging

import pandas as pd
import streamlit as st

from data import audit, decisions
from data.clinical import BOARD_DECISIONS
from services import access
from ui import components, exports, session

_LOG = logging.getLogger("stopher2.audit")
COLUMNS = {
    "meeting_date": st.column_config.DateColumn("meeting"),
    "seq": st.column_config.NumberColumn("no.", format="%d", width="small"),
    "decision": "decision", "reason": "reason", "notes": "notes",
    "recorded_by": "recorded by", "recorded_at": "recorded at (UTC)",
    "replaces": st.column_config.NumberColumn("replaces no.", format="%d"),
    "current": st.column_config.CheckboxColumn("current", help="False: a later record at the same meeting replaced it"),
}
SHOWN = ["meeting_date", "seq", "patient_id", "decision", "reason", "notes", "recorded_by", "recorded_at", "replaces",
         "current"]


#: What a person whose role may not see ctDNA reads instead of a decision's free text (it may cite ctDNA results).
TEXT_HIDDEN = "hidden: free text may cite ctDNA results, which your role does not see"


def visible(recorded: pd.DataFrame, viewer: access.Viewer) -> pd.DataFrame:
    """The decisions as this person may read them: a ctDNA-blinded role gets the decision, not the reasons."""
    if viewer.sees_ctdna or recorded.empty:
        return recorded
    return recorded.assign(reason=TEXT_HIDDEN, notes=None)


def _read(**where) -> pd.DataFrame | None:
    try:
        return decisions.read(**where)
    except decisions.DecisionsUnavailable as exc:
        st.error(f"The tumour board's decisions cannot be read: {exc}", icon="⛔")
        return None


def meeting_section(snap, viewer: access.Viewer, meeting: list[str], known_patients) -> None:
    """Record the decisions of one meeting and export its record (the meeting is its date)."""
    st.subheader("The board's decisions")
    latest = decisions.latest_meeting_date()  # the rule's own today: a server ahead of UTC would offer tomorrow
    held_on = st.date_input("Meeting date", value=latest, max_value=latest, min_value=decisions.EARLIEST_MEETING,
                            key="tb_meeting_date")
    if viewer.records_decisions:
        if meeting:
            _form(viewer, held_on, meeting, known_patients)
        else:
            st.caption("Add patients to the meeting list to record the board's decision for each.")
    recorded = _read(meeting_date=held_on)
    if recorded is None:
        return
    recorded = visible(recorded, viewer)
    if recorded.empty:
        st.info(f"No decision recorded for the meeting of {held_on:%Y-%m-%d}.")
        return
    st.dataframe(recorded[SHOWN], hide_index=True, column_config=COLUMNS)
    info = components.snapshot_info(snap.key)
    session.export_button("meeting_record", f"Download the record of the {held_on:%Y-%m-%d} meeting (CSV)",
                          lambda: exports.safe_csv(decisions.export_frame(recorded, info["snapshot_id"],
                                                                          info["data_cutoff"])),
                          f"stop-her2-board-{held_on:%Y-%m-%d}.csv", "text/csv", key="meeting_record",
                          patient_id=",".join(recorded["patient_id"].unique()))


#: Where the submit callback leaves its outcome for the run it starts: ("success" | "error", sentence).
OUTCOME_KEY = "decision_outcome"


def _form(viewer: access.Viewer, held_on, meeting: list[str], known_patients) -> None:
    with st.form("decision_form", clear_on_submit=True, enter_to_submit=False):
        st.caption("Decisions are kept outside the data snapshots (an import does not change them), cannot be edited "
                   "or deleted, and are on the audit trail. Recording a patient again at the same meeting replaces "
                   "the earlier decision; both stay in the record.")
        st.selectbox("Patient", meeting, key="decision_patient")
        st.radio("Decision", BOARD_DECISIONS, index=None, horizontal=True, key="decision_choice")
        st.text_input("Reason (required)", max_chars=decisions.REASON_MAX_CHARS, key="decision_reason")
        st.text_area("Notes", max_chars=decisions.NOTES_MAX_CHARS, key="decision_notes")
        # recorded in the click's callback, which runs before anything else of the next run: a run that starts
        # over (a page opened on its own first goes through app.py, ui/frame.py) then cannot lose the click
        st.form_submit_button("Record the decision", type="primary", key="record_decision", on_click=_submit,
                              args=(viewer.person, held_on, known_patients, st.session_state.get("_snapshot_id")))
    outcome = st.session_state.pop(OUTCOME_KEY, None)
    if outcome is not None:
        kind, sentence = outcome
        (st.success if kind == "success" else st.error)(sentence, icon="✅" if kind == "success" else "⛔")


def _submit(who: access.Person, held_on, known_patients, snapshot_id) -> None:
    """The form's callback: record the decision as submitted and leave the outcome for the page to show."""
    state = st.session_state
    patient, decision = state.get("decision_patient"), state.get("decision_choice")
    if decision is None:
        state[OUTCOME_KEY] = ("error", "decision: pick one of " + ", ".join(BOARD_DECISIONS) + ". Nothing was recorded.")
        return
    try:
        earlier = decisions.read(patient_id=patient, meeting_date=held_on)
        current = earlier[earlier["current"]]
        replaces = int(current["seq"].iloc[-1]) if len(current) else None
        seq = decisions.record(
            decisions.Decision(held_on, patient, decision, state.get("decision_reason"), state.get("decision_notes"),
                               replaces),
            who=who.email, role=who.audit_role, snapshot_id=snapshot_id, known_patients=known_patients)
    except decisions.DecisionRefused as exc:
        state[OUTCOME_KEY] = ("error", f"Not recorded. {components.as_text(exc)}")
    except audit.AuditUnavailable as exc:
        _LOG.error("audit trail unavailable, board decision for %s not recorded: %s", patient, exc)
        state[OUTCOME_KEY] = ("error", session.AUDIT_DOWN)
    except decisions.DecisionsUnavailable as exc:
        state[OUTCOME_KEY] = ("error", f"Not recorded. {components.as_text(exc)}")
    else:
        state[OUTCOME_KEY] = ("success", f"Recorded decision {seq} for {patient}: {decision}"
                              + (f" (replaces decision {replaces}, which stays in the record)." if replaces else "."))


def patient_section(rec, viewer: access.Viewer):
    """The patient's decisions under the header (the latest first), and the record with them on its timeline."""
    recorded = _read(patient_id=rec.summary["patient_id"])
    if recorded is None:
        return rec
    recorded = visible(recorded, viewer)
    current = recorded[recorded["current"]]
    if current.empty:
        st.caption("No tumour board decision on record.")
        return rec
    last = current.iloc[-1]
    st.info(f"Tumour board, {pd.Timestamp(last['meeting_date']):%Y-%m-%d}: **{components.as_text(last['decision'])}**"
            f" · {components.as_text(last['reason'])}", icon="🗂️")
    with st.expander(f"All tumour board decisions ({len(recorded)} on record)"):
        st.dataframe(recorded.sort_values("seq", ascending=False)[[c for c in SHOWN if c != "patient_id"]],
                     hide_index=True, column_config=COLUMNS)
    rows = decisions.timeline_rows(recorded, rec.summary["index_date"]).dropna(axis=1, how="all")
    return dataclasses.replace(rec, timeline=pd.concat([rec.timeline, rows], ignore_index=True))
