"""Patient review: the oncologist before a visit. What changed, what is worrying, the whole story."""
import pandas as pd
import streamlit as st

from data import cohorts
from services import access
from ui import board, charts, components, frame, risk_card, session

frame.require()
snap = components.current_snapshot()
viewer = session.viewer()
st.title("Patient review")
patient_id = components.patient_picker(snap.key, viewer)
if patient_id is None:
    st.info("Pick a patient above.")
    st.stop()
components.record_view(patient_id)
horizon = components.horizon_setting()
rec = viewer.record(components.patient_record(snap.key, patient_id))  # blinded when the role is
s, o = rec.summary, rec.outcome
followup_end = o["died_on"] if pd.notna(o["died_on"]) else o["last_followup_on"]

components.patient_header(rec, viewer.sees_ctdna)
rec = board.patient_section(rec, viewer)  # decisions are kept outside the snapshot: shown here and on the timeline

st.subheader("Since last visit")
since, digest = components.since_last_visit(rec)
components.visit_summary_button(snap, rec, viewer, horizon, since, digest)

if viewer.sees_ctdna:
    risk_card.render(snap, rec, horizon)
else:
    st.info(access.CTDNA_BLINDED, icon="🙈")

axis = st.radio("Time axis", ["days", "dates"], horizontal=True, key="axis",
                format_func=lambda a: "days from day 0" if a == "days" else "calendar dates")
# the estimate needs ctDNA: a blinded person sees neither
trajectory = components.estimate_trajectory_for(snap, patient_id, horizon) if viewer.sees_ctdna else None
# every stacked chart on one x-range, so a draw, a scan and a questionnaire of one day line up; it reaches the
# estimate's last date (the data cut-off, often after the last contact) so the card's number is in view
records = rec.timeline.loc[~rec.timeline["track"].isin(["anti-HER2", "other therapy"]), "starts_on"]
window = charts.shared_window(s["index_date"], followup_end,
                              records if trajectory is None else pd.concat([records, trajectory["date"]]))
components.chart(charts.timeline_figure, rec.timeline, s["index_date"], followup_end, cohort=int(s["cohort"]),
                 axis=axis, window=window, key="timeline")
if trajectory is not None:
    components.chart(charts.estimate_trajectory_figure, trajectory, s["index_date"], axis=axis, horizon=horizon,
                     window=window, key="trajectory")
if viewer.sees_ctdna:
    components.chart(charts.ctdna_figure, rec.ctdna, rec.timeline, s["index_date"], followup_end,
                     o["progressed_on"], axis=axis, lead=cohorts.patient_lead_time(rec.ctdna, o["progressed_on"]),
                     window=window, key="ctdna")

st.subheader("Scans (RECIST 1.1)")
components.chart(charts.sld_figure, rec.scans, s["index_date"], axis=axis, window=window, key="sld")
# a static table: it wraps into the page's width, so every column stays in view at 1024 px (a data grid
# of eight columns scrolled the last out of view)
st.table(components.scan_table(rec.scans).set_index("date"))
with st.expander("Lesion measurements"):
    st.dataframe(rec.lesions, hide_index=True)

st.subheader("Patient-reported outcomes")
catalogue = components.pro_catalogue(snap.key)
scales = components.pro_scale_picker(rec.pros, catalogue)
components.chart(charts.pro_figure, rec.pros, catalogue, scales, s["index_date"], o["progressed_on"], axis=axis,
                 window=window, key="pro")
