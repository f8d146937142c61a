"""Home: what this is, and today's worklist (patients with alerts first), each a link to its review."""
import streamlit as st

from ui import components, frame

frame.require()
snap = components.current_snapshot()
st.title("STOP-HER2 decision support")
st.markdown(
    "Patients with HER2-positive metastatic breast cancer who stayed progression-free for at least "
    "3 years on first-line anti-HER2 therapy. **Cohort 2 stops** the therapy, **cohort 1 continues** it. "
    "Day 0 is the day therapy stopped (cohort 2) or enrolment (cohort 1).")
st.subheader("Worklist")
st.caption("Patients in follow-up with alerts first. Open a patient with the link in the first column.")
st.dataframe(components.worklist(components.patient_list(snap.key)), hide_index=True,
             column_config=components.WORKLIST_COLUMNS)
