"""Streamlit pieces shared by pages: the snapshot, cached queries, the first-start build, headers.

Caches are keyed on the snapshot's file key, so swapping in a new snapshot invalidates them.
"""
from __future__ import annotations

import fcntl
import re

import pandas as pd
import streamlit as st

from data import queries
from data.store import Snapshot, SnapshotMissing, file_key, has_snapshot, snapshot_dir, snapshot_path
from model.features import DEFAULT_HORIZON, HORIZONS
from ui import session

PATIENT_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


# ------------------------------------------------------------------------------- the snapshot
def ensure_snapshot() -> None:
    """On the very first start, build the synthetic snapshot with visible progress."""
    if has_snapshot():
        return
    from data.build import build_synthetic

    folder = snapshot_dir()
    folder.mkdir(parents=True, exist_ok=True)
    with st.status("First start: building the synthetic STOP-HER2 database", expanded=True) as status:
        bar = st.progress(0.0, text="waiting for another session's build to finish")
        # One build at a time even when several sessions start together.
        with open(folder / ".build.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not has_snapshot():
                build_synthetic(progress=lambda fraction, message: bar.progress(min(fraction, 1.0), text=message))
        status.update(label="Synthetic database ready", state="complete", expanded=False)


@st.cache_resource(show_spinner=False, max_entries=2)
def _open(key: tuple) -> Snapshot:
    return Snapshot(key[0])


def current_snapshot() -> Snapshot:
    """The live snapshot, reopened when a new one has been swapped in."""
    path = snapshot_path()
    try:
        return _open(file_key(path))
    except FileNotFoundError as exc:  # pruned between the two calls: the pointer has moved on
        raise SnapshotMissing(f"snapshot {path} was replaced; reload the page") from exc


@st.cache_data(show_spinner=False, max_entries=4)
def snapshot_info(key: tuple) -> dict:
    return _open(key).info()


@st.cache_data(show_spinner=False, max_entries=4)
def patient_list(key: tuple) -> pd.DataFrame:
    return queries.patient_list(_open(key))


@st.cache_data(show_spinner=False, max_entries=4)
def pro_catalogue(key: tuple) -> pd.DataFrame:
    return queries.pro_catalogue(_open(key))


@st.cache_data(show_spinner=False, max_entries=256)
def patient_record(key: tuple, patient_id: str) -> queries.PatientRecord:
    return queries.patient_record(_open(key), patient_id)


def snapshot_sidebar(snap: Snapshot) -> None:
    info = snapshot_info(snap.key)
    with st.sidebar:
        st.caption("Snapshot")
        if info["is_synthetic"]:
            st.warning("**Synthetic data**: generated patients, not real people.", icon="🧪")
        st.markdown(f"`{info['snapshot_id']}`  \n"
                    f"{int(info['n_patients']):,} patients · data cut-off "
                    f"{pd.Timestamp(info['data_cutoff']):%Y-%m-%d}  \n"
                    f"built {pd.Timestamp(info['created_at']):%Y-%m-%d %H:%M} UTC")


def worklist(patients: pd.DataFrame) -> pd.DataFrame:
    """Patients in follow-up with the most alerts first, then everyone else; with a review link."""
    w = patients.copy()
    w["open"] = "patient?patient=" + w["patient_id"]
    w["in_follow_up"] = w["status"].eq("in follow-up")
    w = w.sort_values(["in_follow_up", "n_alerts", "patient_id"], ascending=[False, False, True])
    w["last_ctdna_detected"] = w["last_ctdna_detected"].map({True: "detected", False: "not detected"})
    return w[["open", "cohort", "status", "n_alerts", "last_overall_response", "last_ctdna_detected", "index_date"]]


WORKLIST_COLUMNS = {
    "open": st.column_config.LinkColumn("patient", display_text=r"patient=(.*)$"),
    "n_alerts": st.column_config.NumberColumn("alerts"),
    "last_overall_response": "last response",
    "last_ctdna_detected": "last ctDNA",
    "index_date": st.column_config.DateColumn("day 0"),
}


# --------------------------------------------------------------------------- patient picking
def safe_text(value: object, limit: int = 40) -> str:
    """A user-supplied string made inert for display: no markup, no control characters, short."""
    text = re.sub(r"[^A-Za-z0-9 ._-]", "?", str(value))[:limit]
    return text + ("…" if len(str(value)) > limit else "")


#: Up to this many patients the picker lists everyone (type to search in the list); above it, a search
#: box narrows the list first: a 100,000-entry list cost 0.27 s per rerun on the server (labels 0.18 s, the selectbox 0.09 s).
PICKER_LISTS_ALL_UP_TO = 2_000
#: How many matches the search shows at once.
PICKER_SHOWS = 100


@st.cache_resource(show_spinner=False, max_entries=2)
def _picker_choices(key: tuple) -> tuple[pd.Index, dict]:
    """Patient ids and their picker labels, once per snapshot (shared and read-only: not copied per rerun)."""
    p = patient_list(key)
    alerts = p["n_alerts"].fillna(0).astype(int)
    labels = (p["patient_id"] + " · cohort " + p["cohort"].astype(str)
              + p["cohort"].map({1: " (continuing) · ", 2: " (stopped) · "}).fillna(" · ") + p["status"].fillna("")
              + alerts.map(lambda k: f" · {k} alert{'s' if k != 1 else ''}" if k else ""))
    return pd.Index(p["patient_id"]), dict(zip(p["patient_id"], labels, strict=True))


def patient_picker(key: tuple) -> str | None:
    """A searchable patient picker that follows and sets the ?patient= query parameter."""
    ids, labels = _picker_choices(key)
    wanted = st.query_params.get("patient")
    unknown = wanted is not None and not (PATIENT_ID_PATTERN.match(wanted) and wanted in labels)
    if unknown:  # the URL keeps the unknown id (and this message) until the user picks someone
        st.error(f"No patient with id “{safe_text(wanted)}” in this snapshot. Pick one below.")
        if st.session_state.get("_last_not_found") != wanted:  # once per value, not on every rerun
            st.session_state["_last_not_found"] = wanted
            session.record("not_found", detail=f"patient={wanted}")
        wanted = None
    options = ids
    if len(ids) > PICKER_LISTS_ALL_UP_TO:
        search = st.text_input(f"Find a patient among {len(ids):,} (part of the id)", key="patient_search",
                               max_chars=64).strip()
        matches = ids[ids.str.contains(search, case=False, regex=False)] if search else ids
        if len(matches) > PICKER_SHOWS:
            st.caption(f"{len(matches):,} patients match; the list shows the first {PICKER_SHOWS}. "
                       "Type more of the id to narrow it.")
        elif search and matches.empty:
            st.caption(f"No patient id contains “{safe_text(search)}”.")
        options = matches[:PICKER_SHOWS]
        if wanted is not None and wanted not in options:  # the open patient stays selectable
            options = pd.Index([wanted]).append(options)
    options = options.tolist()
    index = options.index(wanted) if wanted is not None else 0
    chosen = st.selectbox("Patient (type to search)", options, index=index if options else None,
                          format_func=lambda pid: labels.get(pid, pid), key="patient_picker", on_change=_picked)
    if chosen and not unknown and st.query_params.get("patient") != chosen:
        st.query_params["patient"] = chosen
    return chosen


def _picked() -> None:
    st.query_params["patient"] = st.session_state["patient_picker"]


def record_view(patient_id: str) -> None:
    """One audit record each time the page opens a patient (not on every rerun of the same one)."""
    if st.session_state.get("_last_viewed") != patient_id:
        st.session_state["_last_viewed"] = patient_id
        session.record("view_patient", patient_id=patient_id)


# ------------------------------------------------------------------------------------ header
def _fmt_date(value) -> str:
    return "—" if value is None or pd.isna(value) else f"{pd.Timestamp(value):%Y-%m-%d}"


def patient_header(rec: queries.PatientRecord) -> None:
    s = rec.summary
    stopped = s["cohort"] == 2
    if s["on_anti_her2"]:
        anti = "on" + (f", restarted {_fmt_date(s['restarted_on'])}" if pd.notna(s["restarted_on"]) else "")
    else:
        anti = f"off since {_fmt_date(s['stopped_on'])}" if stopped else "off"
    ct = s["last_ctdna_detected"]
    facts = [
        ("Cohort", f"{s['cohort']} · {'stopped' if stopped else 'continuing'}", f"day 0 {_fmt_date(s['index_date'])}"),
        ("Months since stopping" if stopped else "Months since enrolment", f"{s['months_since_index']:.1f}",
         "to the data cut-off"),
        ("Anti-HER2 therapy", anti, ""),
        ("Last overall response", s["last_overall_response"] or "—", f"RECIST 1.1, {_fmt_date(s['last_scan_on'])}"),
        ("Last ctDNA", "—" if ct is None or pd.isna(ct) else ("detected" if ct else "not detected"),
         _fmt_date(s["last_ctdna_on"])),
        ("Status", s["status"], f"last follow-up {_fmt_date(s['last_followup_on'])}"),
    ]
    for col, (label, value, note) in zip(st.columns(len(facts)), facts, strict=False):
        with col.container(border=True):
            st.caption(label)
            st.markdown(f"**{value}**")
            if note:
                st.caption(note)
    st.caption(
        f"**{s['patient_id']}** · site {s['site']} · {s['age_at_enrolment']} y · ER {s['er_status']}, PR {s['pr_status']} · HER2 IHC {s['her2_ihc']}"
        + (" ISH+" if s["her2_ish_amplified"] is True else "")
        + f" · {'de novo' if s['de_novo'] else 'recurrent'} · best response to first line {s['best_response']}"
        + f" · {'visceral' if s['visceral'] else 'non-visceral'} · {int(s['n_metastatic_sites'])} metastatic site(s)"
        + (" · brain metastases history" if s["brain_mets_history"] else "")
        + f" · {s['years_on_first_line']:.1f} y of first-line {s['first_line_regimen']} before day 0")
    alerts = list(s["alerts"]) if s["alerts"] is not None else []
    if alerts:
        for alert in alerts:
            st.warning(alert, icon="⚠️")
    else:
        st.success("No alerts: no new ctDNA signal, no scan near PD, no sustained PRO worsening.", icon="✅")


def since_last_visit(rec: queries.PatientRecord) -> None:
    default = queries.previous_visit(rec)
    left, right = st.columns([1, 3])
    since = left.date_input("Since", value=default, help="Default: the visit before the latest one.",
                            key="since_date")
    if since is None:
        return
    digest = queries.since(rec, since)
    if digest.empty:
        right.info(f"Nothing recorded after {since:%Y-%m-%d}.")
        return
    table = digest.assign(date=pd.to_datetime(digest["starts_on"]).dt.date)[["date", "track", "label", "detail"]]
    table.columns = ["date", "what", "result", "detail"]
    right.dataframe(table, hide_index=True, width="stretch")


# ------------------------------------------------------------------------------ scan and PRO
SCAN_TABLE_COLUMNS = {
    "scanned_on": "date", "days_from_index": "day", "modality": "modality", "sld_mm": "SLD (mm)",
    "pct_from_baseline": "% from baseline", "pct_from_nadir": "% from nadir", "target_response": "target",
    "non_target_response": "non-target", "new_lesion": "new lesion", "overall_response": "overall", "note": "note",
}


def scan_table(scans: pd.DataFrame) -> pd.DataFrame:
    t = scans[list(SCAN_TABLE_COLUMNS)].rename(columns=SCAN_TABLE_COLUMNS)
    t["date"] = pd.to_datetime(t["date"]).dt.date
    t["overall"] = t["overall"].fillna("baseline")
    for col in ("% from baseline", "% from nadir"):
        t[col] = t[col].round(1)
    return t


DEFAULT_PRO_SCALES = [("QLQ-C30", "QL2"), ("QLQ-C30", "PF2"), ("QLQ-C30", "FA"), ("QLQ-C30", "DI"),
                      ("FCRI-SF", "TOTAL"), ("PROMIS-Anxiety", "TSCORE"), ("DRS", "TOTAL")]


def pro_scale_picker(pros: pd.DataFrame, catalogue: pd.DataFrame) -> list[tuple[str, str]]:
    available = [tuple(x) for x in pros[["instrument", "scale"]].drop_duplicates().itertuples(index=False)]
    labels = {(r.instrument, r.scale): f"{r.label} ({r.instrument})" for r in catalogue.itertuples()}
    default = [k for k in DEFAULT_PRO_SCALES if k in available]
    return st.multiselect("Scales", available, default=default, format_func=lambda k: labels.get(k, str(k)),
                          key="pro_scales")


# ------------------------------------------------------------------------------- the estimate
HORIZON_KEY = "horizon_months"


def horizon_setting() -> int:
    """The prediction horizon (6, 12 or 24 months), shared by every page of the session."""
    with st.sidebar:
        return st.selectbox("Estimate horizon (months)", HORIZONS, index=HORIZONS.index(DEFAULT_HORIZON),
                            key=HORIZON_KEY, help="The chance of staying progression-free for this long.")


@st.cache_resource(show_spinner=False, max_entries=6)
def _load_model(snapshot_id: str, horizon: int, manifest_sha: str):
    from model import predict

    return predict.load(snapshot_id, horizon)


def current_model(snap: Snapshot, horizon: int):
    """The verified model for this snapshot and horizon, training it (with progress) when none exists.

    Returns (model, None) or (None, message): a tampered or incompatible model is never retrained
    silently, so its message stays on screen until someone retrains on purpose.
    """
    from model import predict
    from model.train import save, train

    snapshot_id = str(snapshot_info(snap.key)["snapshot_id"])
    try:
        manifest = predict.read_manifest(snapshot_id, horizon)
    except predict.ModelUnavailable:
        folder = snapshot_dir()
        folder.mkdir(parents=True, exist_ok=True)
        with st.status(f"Training the {horizon}-month model on this snapshot (once)", expanded=True) as status:
            bar = st.progress(0.0, text="waiting for another session's training to finish")
            with open(folder / f".train-{horizon}.lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                try:
                    manifest = predict.read_manifest(snapshot_id, horizon)
                except predict.ModelUnavailable:
                    try:
                        model = train(snap, horizon=horizon,
                                      progress=lambda f, m: bar.progress(min(f, 1.0), text=m))
                    except ValueError as exc:
                        status.update(label="No model for this snapshot", state="error")
                        return None, f"The estimate is not available: {exc}"
                    save(model)
                    session.record("retrain", snapshot_id=snapshot_id,
                                   detail=f"{horizon}-month model trained (none existed for this snapshot)")
                    manifest = predict.read_manifest(snapshot_id, horizon)
            status.update(label=f"{horizon}-month model ready", state="complete", expanded=False)
    try:
        return _load_model(snapshot_id, horizon, manifest["sha256"]), None
    except predict.ModelUnavailable as exc:
        return None, f"The estimate is not available: {exc}"


@st.cache_resource(show_spinner="Scoring every patient once for this snapshot and model…", max_entries=8)
def scored(key: tuple, basis: str, horizon: int, manifest_sha: str) -> pd.DataFrame:
    """Every patient's estimate and interval (predict.batch), shared read-only by pages and sessions.

    Training stores them with the model (model/train.score_snapshot); an artifact without them is
    scored here once.
    """
    from model.train import score_snapshot

    model = _load_model(str(snapshot_info(key)["snapshot_id"]), horizon, manifest_sha)
    scores = getattr(model, "scores", None) or score_snapshot(model, _open(key))
    return scores[basis]


@st.cache_data(show_spinner=False, max_entries=512)
def patient_estimate(key: tuple, patient_id: str, basis: str, horizon: int, manifest_sha: str):
    from model import features, predict

    snapshot_id = str(snapshot_info(key)["snapshot_id"])
    model = _load_model(snapshot_id, horizon, manifest_sha)
    table = scored(key, basis, horizon, manifest_sha)
    known = patient_id in table.index and bool(table.at[patient_id, "applicable"])
    interval = tuple(table.loc[patient_id, ["probability", "low", "high"]]) if known else None
    return predict.estimate(model, features.patient_features(_open(key), patient_id, basis), basis, scored=interval)


def risk_card(snap: Snapshot, rec: queries.PatientRecord, horizon: int) -> None:
    """The estimate as a number with its interval, an icon array and words; its inputs and drivers."""
    from model import predict
    from ui import charts

    s = rec.summary
    basis = "index" if s["cohort"] == 2 else "now"
    when = (f"at stopping (day 0, {_fmt_date(s['index_date'])})" if basis == "index"
            else f"if anti-HER2 therapy stopped at the data cut-off ({_fmt_date(snapshot_info(snap.key)['data_cutoff'])})")
    st.subheader(f"Chance of staying progression-free for {horizon} months off anti-HER2 therapy")
    model, problem = current_model(snap, horizon)
    if model is None:
        st.warning(problem + " The rest of this page does not depend on it.", icon="⚠️")
        return
    sha = predict.read_manifest(model.snapshot_id, horizon)["sha256"]
    est = patient_estimate(snap.key, str(s["patient_id"]), basis, horizon, sha)
    st.caption(f"Estimated {when}. Decision support from {int((model.training['weight'] > 0).sum())} patients "
               f"who stopped; see the model card for how it was made and validated.")
    if not est.applicable:
        st.info("**No estimate for this patient**: the model does not apply, because\n\n"
                + "\n".join(f"- {r}" for r in est.reasons), icon="🚫")
        with st.expander("Inputs"):
            st.dataframe(est.inputs, hide_index=True)
        st.page_link("pages/model_card.py", label="Model card: who the model is for")
        return
    pct, lo, hi = round(est.probability * 100), round(est.low * 100), round(est.high * 100)
    left, right = st.columns([2, 3])
    with left:
        st.markdown(f"### {pct}%  \n95% interval **{lo}% to {hi}%**")
        st.caption(predict.interval_coverage_note())
        st.markdown(f"About **{pct} in 100** patients like this stay progression-free for {horizon} months "
                    f"after stopping (somewhere between {lo} and {hi} in 100).")
        flagged = est.inputs[est.inputs["note"] != ""]
        if not flagged.empty:
            for r in flagged.itertuples():
                st.warning(f"{r.input}: {r.note}", icon="⚠️")
        st.caption(f"Model {model.model_name}, {model.calibration} calibration, trained "
                   f"{model.created_at[:10]} on snapshot `{model.snapshot_id}`.")
        st.page_link("pages/model_card.py", label="Model card: how this estimate was made and validated")
    right.plotly_chart(charts.icon_array_figure(est.probability, est.low, est.high, horizon), key="icon_array")
    c1, c2 = st.columns([3, 2])
    c1.plotly_chart(charts.contributions_figure(est.contributions), key="contributions")
    c2.dataframe(est.inputs, hide_index=True)


@st.cache_data(show_spinner=False, max_entries=2)
def synthetic_truth(key: tuple) -> pd.DataFrame:
    return queries.synthetic_truth(_open(key))


def model_versions() -> pd.DataFrame:
    """Every trained model on this machine, newest first, from the manifests."""
    import json

    from model.train import artifact_dir

    rows = []
    for path in sorted(artifact_dir().glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True):
        m = json.loads(path.read_text())
        rows.append({"created": m["created_at"], "snapshot": m["snapshot_id"], "horizon": m["horizon_months"],
                     "model": m["model"], "calibration": m["calibration"], "patients": m["n_training"],
                     "events": m["events_by_horizon"],
                     "AUROC (corrected)": round(m["metrics_optimism_corrected"]["auroc"], 3),
                     "sha256": m["sha256"][:12]})
    return pd.DataFrame(rows)
