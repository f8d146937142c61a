"""Home: what this is, and today's worklist (patients with alerts first), each a link to its review."""
import streamlit as st

from services import access
from ui import components, frame, session

frame.require()
snap = components.current_snapshot()
viewer = session.viewer()
st.title("STOP-HER2 decision support")
st.markdown(
    "Patients with HER2-positive metastatic breast cancer who stayed progression-free for at least "
    "3 years on first-line anti-HER2 therapy. **Cohort 2 stops** the therapy, **cohort 1 continues** it. "
    "Day 0 is the day therapy stopped (cohort 2) or enrolment (cohort 1).")
if viewer.may_open("patient"):
    st.subheader("Worklist")
    st.caption("Patients in follow-up with alerts first. Open a patient with the link in the first column.")
    worklist = components.worklist(viewer.patients(components.patient_list(snap.key)))
    st.dataframe(worklist, hide_index=True, column_config=components.WORKLIST_COLUMNS)
else:
    st.markdown(f"You are signed in as **{viewer.person.label}**. Your pages are in the menu on the left: "
                + ", ".join(access.PAGE_TITLES[p] for p in access.PAGES if p and viewer.may_open(p)) + ".")
