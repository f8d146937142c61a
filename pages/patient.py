"""Patient review: the oncologist before a visit. What changed, what is worrying, the whole story."""
import pandas as pd
import streamlit as st

from data import queries
from ui import charts, components, frame, session

frame.require()
snap = components.current_snapshot()
st.title("Patient review")
patient_id = components.patient_picker(snap.key)
if patient_id is None:
    st.info("This snapshot has no patients.")
    st.stop()
components.record_view(patient_id)
blinded = session.ctdna_hidden(session.current())
rec = components.patient_record(snap.key, patient_id)
if blinded:
    rec = queries.blind_ctdna(rec)
s, o = rec.summary, rec.outcome
followup_end = o["died_on"] if pd.notna(o["died_on"]) else o["last_followup_on"]

components.patient_header(rec)

st.subheader("Since last visit")
components.since_last_visit(rec)

if blinded:
    st.info("ctDNA results are blinded for your role in this deployment (the trial assesses ctDNA "
            "retrospectively). The estimate needs ctDNA at stopping, so it is not shown either.", icon="🙈")
else:
    components.risk_card(snap, rec, components.horizon_setting())

axis = st.radio("Time axis", ["days", "dates"], horizontal=True, key="axis",
                format_func=lambda a: "days from day 0" if a == "days" else "calendar dates")
st.plotly_chart(charts.timeline_figure(rec.timeline, s["index_date"], followup_end, cohort=int(s["cohort"]),
                                       axis=axis), key="timeline")
if not blinded:
    st.plotly_chart(charts.ctdna_figure(rec.ctdna, rec.timeline, s["index_date"], followup_end, o["progressed_on"],
                                        axis=axis), key="ctdna")

st.subheader("Scans (RECIST 1.1)")
st.plotly_chart(charts.sld_figure(rec.scans, s["index_date"], axis=axis), key="sld")
st.dataframe(components.scan_table(rec.scans), hide_index=True)
with st.expander("Lesion measurements"):
    st.dataframe(rec.lesions, hide_index=True)

st.subheader("Patient-reported outcomes")
catalogue = components.pro_catalogue(snap.key)
scales = components.pro_scale_picker(rec.pros, catalogue)
st.plotly_chart(charts.pro_figure(rec.pros, catalogue, scales, s["index_date"], o["progressed_on"], axis=axis),
                key="pro")
