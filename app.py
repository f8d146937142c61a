"""STOP-HER2 decision support: the frame around the pages (config, sign-in, first-start build, navigation)."""
import streamlit as st


from services import access
from ui import components, data_page, frame, session

st.set_page_config(page_title="STOP-HER2", page_icon="🩺", layout="wide")

person = session.sign_in_or_stop()
components.ensure_snapshot()
snapshot = components.current_snapshot(resolve=True)  # one snapshot for the whole run, pages included
info = components.snapshot_info(snapshot.key)
st.session_state["_snapshot_id"] = str(info["snapshot_id"])
real_data_in_demo = access.DEMO in person.roles and not info["is_synthetic"]
if not real_data_in_demo:
    components.landmark_model(snapshot)  # fitted once per snapshot (about a second); the day-0 classifier is
# trained only when the model card asks for it

pages = {
    "": st.Page("pages/home.py", title="Home", icon="🏠", default=True),
    "patient": st.Page("pages/patient.py", title="Patient review", icon="🩺", url_path="patient"),
    "tumor_board": st.Page("pages/tumor_board.py", title="Tumor board", icon="🗂️", url_path="tumor_board"),
    "cohorts": st.Page("pages/cohorts.py", title="Cohorts", icon="📊", url_path="cohorts"),
    "model_card": st.Page("pages/model_card.py", title="Model card", icon="📐", url_path="model_card"),
    "data": st.Page("pages/data.py", title="Data", icon="🗄️", url_path="data"),
    "audit": st.Page("pages/audit.py", title="Audit log", icon="📜", url_path="audit"),
}
# Every page stays routable so that a URL the role may not open gets a sentence, not "page not found";
# the menu lists only the pages this person may open.
navigation = st.navigation(list(pages.values()), position="hidden")
with st.sidebar:
    st.markdown("**STOP-HER2** · NCT05721248  \nStopping anti-HER2 therapy after ≥ 3 years without progression")
    for key, page in pages.items():
        if access.may_open(person.roles, key):
            st.page_link(page)
    if access.DEMO in person.roles:
        st.caption("Demo mode: no sign-in configured, synthetic data only.")
    else:
        st.caption(f"Signed in as {person.email} ({person.label})")
        st.button("Sign out", on_click=st.logout, key="sign_out")
components.snapshot_sidebar(snapshot)
if access.DEMO in person.roles:
    st.info("**Demo mode**: no sign-in is configured, so this app shows synthetic data only.", icon="🧪")
opened = navigation.url_path
if real_data_in_demo:
    st.error("This snapshot holds real patient data, and no sign-in is configured (demo mode). Configure an "
             "identity provider in .streamlit/secrets.toml ([auth]) or roll back to a synthetic snapshot on the "
             "Data page or with `python -m data rollback`.", icon="🔒")
    st.subheader("Kept snapshots")  # the way out: roll back to a synthetic one (no patient data shown here)
    data_page.history_tab()
    st.stop()
if not access.may_open(person.roles, opened):
    st.error(access.refusal(person.roles, opened), icon="🔒")
    session.record_or_log("page_refused", detail=f"/{opened}")
    st.stop()
frame.enter()
navigation.run()
