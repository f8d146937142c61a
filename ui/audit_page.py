"""The audit log page: filter, verify the chain, export (the export is itself recorded)."""
from __future__ import annotations

import streamlit as st

from data import audit
from data.csvsafe import safe_csv
from ui import session


def render() -> None:
    st.title("Audit log")
    intact, sentence = audit.verify()
    (st.success if intact else st.error)(f"Append-only trail: {sentence}.", icon="✅" if intact else "⛔")
    st.caption(audit.location())
    c1, c2, c3 = st.columns(3)
    action = c1.selectbox("Action", ["all", *audit.ACTIONS], key="audit_action")
    who = c2.text_input("Who (exact e-mail)", key="audit_who")
    patient = c3.text_input("Patient id (exact)", key="audit_patient")
    try:
        records = audit.read(limit=5000, action=None if action == "all" else action, who=who.strip() or None,
                             patient_id=patient.strip() or None)
    except audit.AuditUnavailable as exc:
        st.error(f"The records cannot be shown: {exc}.", icon="⛔")
        return
    st.caption(f"{len(records)} record(s), newest first (at most 5,000 shown; the export has the same filter).")
    records = session.viewer().audit_records(records)
    st.dataframe(records, hide_index=True, width="stretch")
    session.export_button("audit_log", "Download (CSV)", safe_csv(records), "stop-her2-audit.csv", "text/csv",
                          key="audit_export")
