"""Tumour board screening: eligibility per criterion, attrition, ranked candidates, the meeting list."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from data import decisions, eligibility, queries
from services import access
from ui import board, charts, components, exports, session

#: The meeting list's one state: the multiselect's own. A second copy beside it was overwritten by the
#: widget's old value on the rerun after "Add N selected", so the button did nothing.
MEETING_KEY = "meeting_picker"


@st.cache_data(show_spinner=False, max_entries=4)
def _eligibility(key: tuple) -> pd.DataFrame:
    return queries.eligibility(components.open_snapshot(key))


@st.cache_resource(show_spinner=False, max_entries=4)
def _funnel(key: tuple) -> pd.DataFrame:
    return eligibility.funnel(_eligibility(key))


# Shared read-only between reruns and sessions (cache_resource: not copied on every rerun, which cost
# a quarter of a second at 100,000 patients); the page only filters it.
@st.cache_resource(show_spinner="Screening and scoring every patient (once per snapshot and model)…", max_entries=8)
def ranked_candidates(key: tuple, horizon: int, manifest_sha: str | None) -> pd.DataFrame:
    return _display(candidate_table(key, horizon, manifest_sha))


def candidate_table(key: tuple, horizon: int, manifest_sha: str | None) -> pd.DataFrame:
    """Every patient with eligibility, the 'if they stopped now' estimate and what the board screens on."""

    snap = components.open_snapshot(key)
    table = queries.candidates(snap).merge(eligibility.overall(_eligibility(key)), on="patient_id")
    if manifest_sha is not None:
        table = table.merge(components.landmark_scores(key, horizon, manifest_sha), on="patient_id",
                            how="left")
    else:
        table = table.assign(probability=float("nan"), low=float("nan"), high=float("nan"),
                             not_applicable_because="no model")
    return table


def _display(table: pd.DataFrame) -> pd.DataFrame:
    t = table.copy()
    t["open"] = "patient?patient=" + t["patient_id"]
    t["chance"] = (t["probability"] * 100).round()
    t["interval"] = [f"{lo * 100:.0f}-{hi * 100:.0f}%" if pd.notna(lo) else "" for lo, hi in zip(t["low"], t["high"], strict=True)]
    t["failing criteria"] = (t["failed"] + (", unknown: " + t["unknown"]).where(t["unknown"] != "", "")).str.strip(", ")
    t["last ctDNA"] = t["last_ctdna_detected"].map({True: "detected", False: "not detected"})
    t["no estimate because"] = t["not_applicable_because"].where(t["probability"].isna(), "")
    t["low %"] = (t["low"] * 100).round()
    t["high %"] = (t["high"] * 100).round()
    t["years_on_first_line"] = t["years_on_first_line"].round(1)
    t = rank(t, RANK_KEYS[0])
    return t[["open", "patient_id", "eligibility", "failing criteria", "chance", "interval", "no estimate because",
              "status", "last_followup_on", "last ctDNA", "last_ctdna_on", "last_overall_response", "last_scan_on",
              "years_on_first_line", "hr_status", "cohort", "low %", "high %"]]


#: How the board may order the candidates (the first is the default). Ranking by the point estimate alone
#: implied differences that intervals of 17-96 % and 26-99 % do not support.
RANK_KEYS = ("eligibility, then estimate", "estimate", "lower end of the interval", "last ctDNA (not detected first)",
             "last scan (most recent first)")
_ELIGIBILITY_ORDER = {"eligible": 0, "unknown": 1, "not eligible": 2}


def rank(t: pd.DataFrame, key: str) -> pd.DataFrame:
    """The candidates in the order `key` names (one of RANK_KEYS), ties by patient id."""
    if key == "eligibility, then estimate":  # blinded (no estimate column): eligibility, then id
        order = t.assign(_e=t["eligibility"].map(_ELIGIBILITY_ORDER))
        by = ["_e", "chance", "patient_id"] if "chance" in t.columns else ["_e", "patient_id"]
        return order.sort_values(by, ascending=[True] + [False] * (len(by) == 3) + [True],
                                 na_position="last").drop(columns="_e")
    if key == "estimate":
        return t.sort_values(["chance", "patient_id"], ascending=[False, True], na_position="last")
    if key == "lower end of the interval":
        return t.sort_values(["low %", "patient_id"], ascending=[False, True], na_position="last")
    if key == "last ctDNA (not detected first)":
        return t.assign(_c=t["last ctDNA"].map({"not detected": 0, "detected": 1})).sort_values(
            ["_c", "last_ctdna_on", "patient_id"], ascending=[True, False, True], na_position="last").drop(columns="_c")
    if key == "last scan (most recent first)":
        return t.sort_values(["last_scan_on", "patient_id"], ascending=[False, True], na_position="last")
    raise ValueError(f"unknown ranking {key!r}: one of {', '.join(RANK_KEYS)}")


def overlap_sentence(t: pd.DataFrame, top: int = 5) -> str | None:
    """In words, how many of the first candidates have intervals overlapping the first one's (None: no estimates)."""
    est = t.dropna(subset=["low %", "high %"]).head(top)
    if len(est) < 2:
        return None
    first = est.iloc[0]
    overlapping = est[(est["low %"] <= first["high %"]) & (est["high %"] >= first["low %"])]
    if len(overlapping) == len(est):
        return (f"The 95% intervals of all {len(est)} first candidates overlap ({first['patient_id']}: "
                f"{first['interval']}; {est.iloc[-1]['patient_id']}: {est.iloc[-1]['interval']}): the order among "
                "them is not a difference the data support.")
    if len(overlapping) > 1:
        return (f"The 95% intervals of the first {len(overlapping)} candidates overlap: their order is not a "
                "difference the data support.")
    return f"{first['patient_id']}'s interval ({first['interval']}) does not overlap the next candidates'."


COLUMNS = {
    "open": st.column_config.LinkColumn("open", display_text="open ›", width="small"),
    "chance": st.column_config.NumberColumn("chance %", help="Estimated chance of staying progression-free "
                                            "if therapy stopped now", format="%d"),
    "interval": st.column_config.TextColumn("95% interval"),
    "last_ctdna_on": st.column_config.DateColumn("ctDNA date"),
    "status": "status",
    "last_followup_on": st.column_config.DateColumn("last follow-up"),
    "last_overall_response": "last response",
    "last_scan_on": st.column_config.DateColumn("scan date"),
    "years_on_first_line": st.column_config.NumberColumn("years on first line", format="%.1f"),
    "hr_status": "HR",
}


def render(snap, horizon: int) -> None:
    st.title("Tumor board")
    st.plotly_chart(charts.funnel_figure(_funnel(snap.key)), key="funnel")
    with st.expander("The criteria"):
        for c in eligibility.CRITERIA:
            st.markdown(f"- **{c.id}**: {c.text}")

    viewer = session.viewer()
    model, problem = components.landmark_model(snap)  # the estimate as of the data cut-off
    if model is None:
        st.warning(problem, icon="⚠️")
    table = viewer.candidates(ranked_candidates(snap.key, horizon, None if model is None else model.sha256))
    if not viewer.sees_ctdna:
        st.info(access.CTDNA_BLINDED, icon="🙈")

    st.subheader(f"Candidates, ranked by the chance of staying progression-free for {horizon} months if they stopped now")
    f1, f2, f3 = st.columns(3)
    status = f1.multiselect("Eligibility", ["eligible", "unknown", "not eligible"], default=["eligible", "unknown"],
                            key="tb_status")
    hr = f2.multiselect("HR status", ["positive", "negative"], default=["positive", "negative"], key="tb_hr")
    view = table[table["eligibility"].isin(status) & table["hr_status"].isin(hr)]
    if "last ctDNA" in table.columns:  # not for a blinded viewer: the filter itself would reveal results
        ctdna = f3.multiselect("Last ctDNA", ["not detected", "detected"], default=["not detected", "detected"],
                               key="tb_ctdna")
        view = view[view["last ctDNA"].isin(ctdna) | view["last ctDNA"].isna()]
    keys = [k for k in RANK_KEYS if k == RANK_KEYS[0] or (  # a blinded person ranks by neither estimate nor ctDNA
        ("chance" in view.columns or k not in ("estimate", "lower end of the interval"))
        and ("last ctDNA" in view.columns or "ctDNA" not in k))]
    key = st.selectbox("Rank by", keys, key="tb_rank")
    view = rank(view, key)
    if "chance" in view.columns:
        said = overlap_sentence(view)
        if said:
            st.info(said, icon="↔️")
    st.caption(f"{len(view):,} of {len(table):,} patients. Select rows to add them to the meeting list; "
               "'open ›' opens the patient.")
    picked = st.dataframe(view, hide_index=True, column_config=COLUMNS, on_select="rerun",
                          selection_mode="multi-row", key="candidates",
                          column_order=[c for c in view.columns if c not in ("low %", "high %")])
    chosen = view.iloc[picked.selection.rows]["patient_id"].tolist() if picked and picked.selection.rows else []
    meeting = st.session_state.setdefault(MEETING_KEY, [])
    c1, c2 = st.columns([1, 3])
    if c1.button(f"Add {len(chosen)} selected to the meeting list", disabled=not chosen, key="add_meeting"):
        # set before the multiselect below is drawn in this run: it shows the new list at once
        st.session_state[MEETING_KEY] = list(dict.fromkeys(meeting + chosen))
    if len(chosen) == 1 and c2.button(f"Open {chosen[0]}", key="open_patient"):
        st.switch_page("pages/patient.py", query_params={"patient": chosen[0]})

    st.subheader("Meeting list")
    options = table["patient_id"]
    if len(options) > components.PICKER_LISTS_ALL_UP_TO:  # a list of everyone is too long to send or read
        options = pd.concat([pd.Series(st.session_state[MEETING_KEY], dtype=object),
                             view["patient_id"].head(components.PICKER_SHOWS)]).drop_duplicates()
        st.caption(f"The list offers the {components.PICKER_SHOWS} best-ranked candidates shown above; "
                   "select rows in the table to add anyone else.")
    meeting = st.multiselect("Patients for the meeting", options.tolist(), key=MEETING_KEY)
    if not meeting:
        st.info("Select candidates above and add them, or pick patients here.")
    else:
        _meeting_list(snap, viewer, table, meeting, horizon)
    board.meeting_section(snap, viewer, meeting, table["patient_id"])


def _meeting_list(snap, viewer: access.Viewer, table: pd.DataFrame, meeting: list[str], horizon: int) -> None:
    listed = table.set_index("patient_id").loc[meeting].reset_index()
    info = components.snapshot_info(snap.key)
    # the file says what it is: the question's horizon, the snapshot and its cut-off, rounded as shown
    export = listed.drop(columns=["open"]).assign(
        horizon_months=horizon, snapshot_id=info["snapshot_id"],
        data_cutoff=pd.Timestamp(info["data_cutoff"]).strftime("%Y-%m-%d"))
    d1, d2 = st.columns(2)
    session.export_button("meeting_list", "Download the list (CSV)", exports.safe_csv(export),
                          "stop-her2-meeting-list.csv", "text/csv", key="csv", container=d1,
                          patient_id=",".join(meeting))
    session.export_button("meeting_sheets", "Download printable sheets (one page per patient)",
                          _sheets(snap, viewer, listed, horizon), "stop-her2-meeting-sheets.html", "text/html", key="sheets",
                          container=d2, patient_id=",".join(meeting))
    st.dataframe(export, hide_index=True, column_config=COLUMNS)


def _sheets(snap, viewer: access.Viewer, listed: pd.DataFrame, horizon: int) -> str:
    """One printable page per listed patient, each record passed through the viewer (ctDNA blinding)."""
    info = components.snapshot_info(snap.key)
    try:
        recorded = decisions.read()
        recorded = recorded[recorded["current"]]
    except decisions.DecisionsUnavailable as exc:  # the sheets say so rather than show none
        recorded, unreadable = None, f"the decisions record cannot be read: {exc}"
    patients = []
    for row in listed.to_dict("records"):
        pid = row["patient_id"]
        rec = viewer.record(components.patient_record(snap.key, pid))
        estimate = (f"Chance of staying progression-free for {horizon} months if stopped now: {row['chance']:.0f}% "
                    f"(95% interval {row['interval']})" if pd.notna(row.get("chance"))
                    else f"No estimate: {row['no estimate because'] or 'not available'}")
        patients.append({"patient_id": pid, "summary": rec.summary.to_dict(), "shows_ctdna": viewer.sees_ctdna,
                         "eligibility": queries.patient_eligibility(snap, pid),
                         "estimate": estimate, "alerts": list(rec.summary["alerts"]),
                         "scans": rec.scans.tail(4),
                         "decisions": [unreadable] if recorded is None else [
                             f"{d.meeting_date:%Y-%m-%d}: {d.decision} ({d.reason}), recorded by {d.recorded_by}"
                             for d in board.visible(recorded[recorded["patient_id"] == pid], viewer).itertuples()]})
    footer = (f"STOP-HER2 decision support · snapshot {info['snapshot_id']}"
              + (" · SYNTHETIC DATA" if info["is_synthetic"] else "") + " · decision support, not a decision")
    return exports.meeting_sheets(patients, "STOP-HER2 tumour board", footer)
