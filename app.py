"""STOP-HER2 decision support: the frame around the pages (config, first-start build, navigation)."""
import streamlit as st

from ui import components, frame

st.set_page_config(page_title="STOP-HER2", page_icon="🩺", layout="wide")

components.ensure_snapshot()
snapshot = components.current_snapshot()
components.current_model(snapshot, components.DEFAULT_HORIZON)  # trains once per snapshot, with progress

pages = [
    st.Page("pages/home.py", title="Home", icon="🏠", default=True),
    st.Page("pages/patient.py", title="Patient review", icon="🩺", url_path="patient"),
    st.Page("pages/tumor_board.py", title="Tumor board", icon="🗂️", url_path="tumor_board"),
    st.Page("pages/cohorts.py", title="Cohorts", icon="📊", url_path="cohorts"),
    st.Page("pages/model_card.py", title="Model card", icon="📐", url_path="model_card"),
    st.Page("pages/data.py", title="Data", icon="🗄️", url_path="data"),
]
navigation = st.navigation(pages)
with st.sidebar:
    st.markdown("**STOP-HER2** · NCT05721248  \nStopping anti-HER2 therapy after ≥ 3 years without progression")
components.snapshot_sidebar(snapshot)
frame.enter()
navigation.run()
