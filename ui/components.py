"""Streamlit widgets shared by pages, and public cache wrappers around the services layer.

Caches are keyed on the snapshot's file key (or the model's sha256), so swapping in a new snapshot or
model invalidates them. The rules themselves live in services/ and data/: nothing here decides who may
see what or computes a statistic.
"""
from __future__ import annotations

import copy
import io
import logging
import pickle
import re

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from data import audit, clinical, queries
from data.clinical import DEFAULT_HORIZON, HORIZONS
from data.store import Snapshot, SnapshotMissing, clean_leftovers, file_key, snapshot_dir, snapshot_path
from services import access, jobs, models, snapshots
from ui import exports, session

PATIENT_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


# ------------------------------------------------------------------------------- charts
#: Figures kept per process: 100 patients' worth of the page's six. Their JSON is about 35 kB a patient
#: (STH-0019, measured), so the cache holds a few MB, not a memory risk.
FIGURE_CACHE_ENTRIES = 600


class _Sent(go.Figure):
    """A built figure as st.plotly_chart sends it: its plain form, made once. plotly's to_dict deep-copies every
    trace and base64-encodes every array at each call (through narwhals for each pandas column): it was 14 % of
    the server's time under load, paid again at every rerun for a figure already cached. st.plotly_chart asks a
    figure for to_dict and nothing else (streamlit 1.67, pinned), and neither it nor plotly's to_json changes the
    dict, so one dict serves every session. Deliberately not plotly's constructor, which would validate again."""

    def __init__(self, figure: go.Figure):  # plotly's __init__ is skipped on purpose (see above)
        self._sent = figure.to_dict()

    def to_dict(self) -> dict:
        return self._sent


def _build(builder: str, args: tuple, kwargs: tuple) -> _Sent:
    from ui import charts

    return _Sent(getattr(charts, builder)(*args, **dict(kwargs)))


def _frame_bytes(frame: pd.DataFrame) -> bytes:
    """A data frame's whole content, as the figure cache's key reads it: pickled without pickle's memo, so equal
    frames give equal bytes whichever Python objects they happen to share (with the memo, the frame a cached
    query returns and its first copy pickled differently, and every first rerun rebuilt every chart). Equal
    bytes only for equal content; at worst an equal frame built another way pickles differently, a rebuild and
    never a stale figure. It reads every row, where Streamlit's own hash samples 10,000 from a frame of
    50,000 or more, and costs 0.1-0.26 ms for a frame of one patient against Streamlit's 2.7-3.9 ms (measured,
    STH-0019): that hash was a sixth of the patient page's server time under load."""
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=5)
    # no memo (a data frame holds no cycle). Python's documentation calls `fast` deprecated, yet 3.11-3.13 keep
    # it; were it removed, setting it would raise and every patient-page app test would fail at once
    pickler.fast = True
    pickler.dump(frame)
    return buffer.getvalue()


#: A chart built once for its exact inputs. Streamlit keys it by the CONTENT of every argument (each data
#: frame by _frame_bytes), so new data, another patient, a blinded role or a tumour-board decision on the
#: timeline is another entry, never a stale figure. The figure is shared by every session: nothing may
#: change it afterwards (st.plotly_chart only reads it).
_figure = st.cache_resource(show_spinner=False, max_entries=FIGURE_CACHE_ENTRIES,
                            hash_funcs={pd.DataFrame: _frame_bytes})(_build)


def chart(builder, *args, key: str, **kwargs) -> None:
    """Draw `charts.<builder>(*args, **kwargs)`, built once per process for the same inputs: building plotly
    figures was two thirds of a patient page's time, and every rerun (a click, a horizon) built them all
    again."""
    st.plotly_chart(_figure(builder.__name__, args, tuple(sorted(kwargs.items()))), key=key)


# ------------------------------------------------------------------------------- the snapshot
@st.cache_resource(show_spinner=False)
def _leftovers_cleaned(folder: str) -> tuple:
    """Once per process and snapshot folder: remove what killed builds and imports left behind."""
    return tuple(clean_leftovers())


def ensure_snapshot() -> None:
    """On the very first start, the server's first-start job (build the synthetic snapshot, fit the landmark
    model) with its progress: every session shows the same job, and closing this tab does not stop it."""
    _leftovers_cleaned(str(snapshot_dir()))
    if not _missing():
        return
    job = snapshots.first_start_job(on_fitted=_system_retrain_record(session.current()))
    if not follow(job, "First start: building the synthetic STOP-HER2 database", "Synthetic database ready"):
        st.error(f"The first start failed: {job.error} (reload the page to try again)", icon="⛔")
        st.stop()


def follow(job: jobs.Job, running: str, done: str) -> bool:
    """Show a server job's progress until it ends (the job goes on if this session leaves); False if it failed."""
    with st.status(running, expanded=True) as status:
        bar = st.progress(job.fraction, text=job.message)
        while not job.wait(0.4):
            bar.progress(job.fraction, text=job.message)
        if job.state == "failed":
            status.update(label=f"{running}: failed", state="error")
            return False
        bar.progress(1.0, text=job.message)
        status.update(label=done, state="complete", expanded=False)
    return True


def _system_retrain_record(who):
    """The audit record of a model fitted by a server job: named after the person whose visit started it
    (recorded from the job's thread, where there is no session; a trail that is down is logged)."""

    def record(snapshot_id: str, detail: str) -> None:
        try:
            audit.record(who.email, who.audit_role, "retrain", snapshot_id=snapshot_id, detail=detail)
        except audit.AuditUnavailable as exc:
            logging.getLogger("stopher2.audit").error("audit trail unavailable, retrain not recorded: %s", exc)

    return record


def _missing() -> bool:
    try:
        snapshot_path()
        return False
    except SnapshotMissing:
        return True


@st.cache_resource(show_spinner=False, max_entries=2)
def open_snapshot(key: tuple) -> Snapshot:
    """The read-only snapshot behind a file key, opened once per process and shared."""
    return Snapshot(key[0])


def current_snapshot(resolve: bool = False) -> Snapshot:
    """The snapshot of this run. app.py resolves the live pointer once at the top of every run
    (`resolve=True`) and every page gets that same snapshot: the frame's checks (demo mode serves
    synthetic data only) hold for what the page shows even when the pointer moves mid-run."""
    key = None if resolve else st.session_state.get("_run_snapshot_key")
    if key is None:
        path = snapshot_path()
        try:
            key = file_key(path)
        except FileNotFoundError as exc:  # pruned between the two calls: the pointer has moved on
            raise SnapshotMissing(f"snapshot {path} was replaced; reload the page") from exc
        st.session_state["_run_snapshot_key"] = key
    return open_snapshot(key)


@st.cache_data(show_spinner=False, max_entries=4)
def snapshot_info(key: tuple) -> dict:
    return open_snapshot(key).info()


@st.cache_data(show_spinner=False, max_entries=4)
def patient_list(key: tuple) -> pd.DataFrame:
    """Every patient with their alert counts (as stored: pass it through the viewer before showing it)."""
    return queries.patient_list(open_snapshot(key))


@st.cache_data(show_spinner=False, max_entries=4)
def pro_catalogue(key: tuple) -> pd.DataFrame:
    return queries.pro_catalogue(open_snapshot(key))


#: A patient's first visit fetches this many neighbours' records and estimates with its own (in the patient
#: list's order): the queries and pandas steps cost nearly the same for a hundred patients as for one, and a
#: first visit was three quarters of the server's time when many sessions opened patients at random.
PATIENTS_PER_FETCH = 100


@st.cache_resource(show_spinner=False, max_entries=4)
def _fetch_group(key: tuple) -> dict[str, int]:
    """Each patient's group of PATIENTS_PER_FETCH neighbours in the patient list."""
    return {pid: i // PATIENTS_PER_FETCH for i, pid in enumerate(queries.patient_list(open_snapshot(key))["patient_id"])}


def _neighbours(key: tuple, group: int) -> list[str]:
    return [pid for pid, g in _fetch_group(key).items() if g == group]


@st.cache_resource(show_spinner=False, max_entries=8)
def _patient_rows(key: tuple, group: int) -> queries.PatientRows:
    """One group's rows from every contract view, shared read-only (records are cut out of it as new frames)."""
    return queries.PatientRows(open_snapshot(key), _neighbours(key, group))


@st.cache_data(show_spinner=False, max_entries=256)
def patient_record(key: tuple, patient_id: str) -> queries.PatientRecord:
    """One patient's rows (as stored: pass it through the viewer before showing it)."""
    group = _fetch_group(key).get(patient_id) if isinstance(patient_id, str) else None
    if group is None:  # not a patient of this snapshot: the query says so in its words
        return queries.patient_record(open_snapshot(key), patient_id)
    return _patient_rows(key, group).record(patient_id)


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


def alert_severity(kinds) -> int:
    """The rank of a patient's most urgent kind of alert (clinical.ALERT_SEVERITY; no alert: last)."""
    ranks = [clinical.ALERT_SEVERITY.index(k) for k in (kinds if kinds is not None else [])
             if k in clinical.ALERT_SEVERITY]
    return min(ranks, default=len(clinical.ALERT_SEVERITY))


def worklist(patients: pd.DataFrame) -> pd.DataFrame:
    """Patients by clinical severity of their most urgent alert (a progression not acted on first, then
    ctDNA turned positive, SLD near PD, PRO worsening), each alert named; then in follow-up before others.

    `patients` is what the viewer may see (services.access.Viewer.patients): blinded, it has no ctDNA column
    and no ctDNA alert.
    """
    w = patients.copy()
    w["open"] = "patient?patient=" + w["patient_id"]
    w["severity"] = w["alert_kinds"].map(alert_severity)
    w["in_follow_up"] = w["status"].eq("in follow-up")
    w["alerts"] = w["alerts"].map(lambda a: " · ".join(a) if a is not None and len(a) else "")
    w = w.sort_values(["severity", "in_follow_up", "n_alerts", "patient_id"], ascending=[True, False, False, True])
    columns = ["open", "alerts", "cohort", "status", "last_followup_on", "last_overall_response",
               "last_ctdna_detected", "index_date"]
    if "last_ctdna_detected" in w.columns:
        w["last_ctdna_detected"] = w["last_ctdna_detected"].map({True: "detected", False: "not detected"})
    return w[[c for c in columns if c in w.columns]]


WORKLIST_COLUMNS = {
    "open": st.column_config.LinkColumn("patient", display_text=r"patient=(.*)$"),
    "alerts": st.column_config.TextColumn("alerts, most urgent first", width="large"),
    "last_followup_on": st.column_config.DateColumn("last follow-up"),
    "last_overall_response": "last response",
    "last_ctdna_detected": "last ctDNA",
    "index_date": st.column_config.DateColumn("day 0"),
}


# --------------------------------------------------------------------------- patient picking
_MARKUP = re.compile(r"([\\`*_{}\[\]()!|<>:~$&^])")  # markup anywhere in a line
#: Markup only at the start of a line (a list, a heading, a quote, an ordered list): escaped there only, so
#: that ids and dates (STH-0018, 2023-09-28) read as they are.
_LEADING = re.compile(r"^(\s*)([-+#=>]|\d+[.)])")


#: Words that GitHub-flavoured markdown turns into links even when escaped ("autolink literals"):
#: a zero-width space after their first letter keeps them text (they look the same).
_AUTOLINK = re.compile(r"(?i)\b(h)(ttps?:)|\b(f)(tp:)|\b(w)(ww\.)|(@)(?=\w)")


def as_text(value: object) -> str:
    """A value from the data shown as itself inside markdown: every markup character backslash-escaped
    (links, images, :color[...] directives, emoji shortcodes, LaTeX, HTML entities), autolinks broken,
    on one line."""
    text = _AUTOLINK.sub(lambda m: "\u200b".join(g for g in m.groups() if g is not None) + (
        "\u200b" if m.group(7) else ""), re.sub(r"[\x00-\x1f\x7f]+", " ", str(value)))
    text = _MARKUP.sub(r"\\\1", text)
    return _LEADING.sub(lambda m: m.group(1) + (m.group(2)[:-1] + "\\" + m.group(2)[-1]), text)


def safe_text(value: object, limit: int = 40) -> str:
    """A user-supplied string made inert for display: no markup, no control characters, short."""
    text = re.sub(r"[^A-Za-z0-9 ._-]", "?", str(value))[:limit]
    return text + ("…" if len(str(value)) > limit else "")


#: Up to this many patients the picker lists everyone (type to search in the list); above it, a search
#: box narrows the list first: a 100,000-entry list cost 0.27 s per rerun on the server (labels 0.18 s, the selectbox 0.09 s).
PICKER_LISTS_ALL_UP_TO = 2_000
#: How many matches the search shows at once.
PICKER_SHOWS = 100


@st.cache_resource(show_spinner=False, max_entries=4)
def _picker_choices(key: tuple, sees_ctdna: bool) -> tuple[pd.Index, dict]:
    """Patient ids and their picker labels, once per snapshot and blinding (shared read-only, not copied per rerun).

    The alert count in a label counts only what the viewer may see (no ctDNA alerts when blinded).
    """
    p = access.patients_seen(patient_list(key), sees_ctdna)
    alerts = p["n_alerts"].fillna(0).astype(int)
    labels = (p["patient_id"] + " · cohort " + p["cohort"].astype(str)
              + p["cohort"].map({1: " (continuing) · ", 2: " (stopped) · "}).fillna(" · ") + p["status"].fillna("")
              + alerts.map(lambda k: f" · {k} alert{'s' if k != 1 else ''}" if k else ""))
    return pd.Index(p["patient_id"]), dict(zip(p["patient_id"], labels, strict=True))


def patients_named_in_link() -> list[str]:
    """Every distinct id the URL's ?patient= names, in order. `st.query_params.get` gives the LAST value alone, so
    ?patient=A&patient=B would open B while a reader of the link sees A: callers open (or mark) a patient only
    when the link names exactly one."""
    return list(dict.fromkeys(st.query_params.get_all("patient")))


def patient_picker(key: tuple, viewer: access.Viewer) -> str | None:
    """A searchable patient picker that follows and sets the ?patient= query parameter.

    An id in the URL that is not in this snapshot (unknown, hostile, too long) gets one sentence and
    an empty picker: no other patient is opened in its place, so no one's record is shown or recorded.
    """
    ids, labels = _picker_choices(key, viewer.sees_ctdna)
    named = patients_named_in_link()
    wanted = named[0] if len(named) == 1 else None
    unknown = len(named) > 1 or (wanted is not None and not (PATIENT_ID_PATTERN.match(wanted) and wanted in labels))
    if len(named) > 1:
        st.error(f"This link names {len(named)} patients (“{'”, “'.join(safe_text(n, 20) for n in named[:3])}”"
                 f"{', …' if len(named) > 3 else ''}): it opens no one. Pick one below.")
    elif unknown:  # the URL keeps the unknown id (and this message) until the user picks someone
        st.error(f"No patient with id “{safe_text(wanted)}” in this snapshot. Pick one below.")
    if unknown:
        asked = "&".join(named)
        if st.session_state.get("_last_not_found") != asked:  # once per value, not on every rerun
            st.session_state["_last_not_found"] = asked
            session.record_or_log("not_found", detail=f"patient={asked}")
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
    if unknown:
        index = None
        st.session_state.pop("patient_picker", None)  # never fall back to the patient picked before
    else:
        index = options.index(wanted) if wanted is not None else (0 if options else None)
    chosen = st.selectbox("Patient (type to search)", options, index=index,
                          format_func=lambda pid: labels.get(pid, pid), key="patient_picker", on_change=_picked)
    if unknown:
        return None
    if chosen and st.query_params.get("patient") != chosen:
        st.query_params["patient"] = chosen
    return chosen


def _picked() -> None:
    st.query_params["patient"] = st.session_state["patient_picker"]


def record_view(patient_id: str) -> None:
    """One audit record each time the page opens a patient (not on every rerun of the same one)."""
    if st.session_state.get("_last_viewed") != patient_id:
        session.record_or_stop("view_patient", patient_id=patient_id)  # no record, no patient data
        st.session_state["_last_viewed"] = patient_id


# ------------------------------------------------------------------------------------ header
def _fmt_date(value) -> str:
    return "—" if value is None or pd.isna(value) else f"{pd.Timestamp(value):%Y-%m-%d}"


def header_facts(s, shows_ctdna: bool = True) -> list[tuple[str, str, str]]:
    """(label, value, note) of the facts a clinician scans first (the page header and the visit summary)."""
    stopped = s["cohort"] == 2
    if s["on_anti_her2"]:
        anti = "on" + (f", restarted {_fmt_date(s['restarted_on'])}" if pd.notna(s["restarted_on"]) else "")
    else:
        anti = f"off since {_fmt_date(s['stopped_on'])}" if stopped else "off"
    ct = s["last_ctdna_detected"]
    months, counted_to = (clinical.months_off_therapy(s["index_date"], s["restarted_on"], s["months_since_index"])
                          if stopped else (s["months_since_index"], "to the data cut-off"))
    facts = [
        ("Cohort", f"{s['cohort']} · {'stopped' if stopped else 'continuing'}", f"day 0 {_fmt_date(s['index_date'])}"),
        ("Months off therapy" if stopped else "Months since enrolment", f"{months:.1f}", counted_to),
        ("Anti-HER2 therapy", anti, ""),
        ("Last overall response", s["last_overall_response"] or "—", f"RECIST 1.1, {_fmt_date(s['last_scan_on'])}"),
        ("Last ctDNA", "—" if ct is None or pd.isna(ct) else ("detected" if ct else "not detected"),
         _fmt_date(s["last_ctdna_on"])),
        ("Status", s["status"], f"last follow-up {_fmt_date(s['last_followup_on'])}"),
    ]
    return [f for f in facts if shows_ctdna or f[0] != "Last ctDNA"]


def patient_header(rec: queries.PatientRecord, shows_ctdna: bool = True) -> None:
    """The facts a clinician scans first; without the ctDNA card for a viewer who may not see ctDNA."""
    s = rec.summary
    facts = header_facts(s, shows_ctdna)
    # rows of three cards: six in one row left ~110 px each at 1024 px and broke words ("stoppe d")
    for start in range(0, len(facts), 3):
        for col, (label, value, note) in zip(st.columns(3), facts[start:start + 3], strict=False):
            with col.container(border=True):
                st.caption(label)
                st.markdown(f"**{as_text(value)}**")
                if note:
                    st.caption(note)
    t = {k: as_text(s[k]) for k in ("patient_id", "site", "er_status", "pr_status", "her2_ihc", "best_response",
                                    "first_line_regimen")}
    st.caption(
        f"**{t['patient_id']}** · site {t['site']} · {s['age_at_enrolment']} y · ER {t['er_status']}, PR {t['pr_status']} · HER2 IHC {t['her2_ihc']}"
        + (" ISH+" if s["her2_ish_amplified"] is True else "")
        + f" · {'de novo' if s['de_novo'] else 'recurrent'} · best response to first line {t['best_response']}"
        + f" · {'visceral' if s['visceral'] else 'non-visceral'} · {int(s['n_metastatic_sites'])} metastatic site(s)"
        + (" · brain metastases history" if s["brain_mets_history"] else "")
        + f" · {s['years_on_first_line']:.1f} y of first-line {t['first_line_regimen']} before day 0")
    alerts = list(s["alerts"]) if s["alerts"] is not None else []
    if alerts:
        for alert in alerts:
            st.warning(as_text(alert), icon="⚠️")
    else:
        st.success("No alerts: " + ("no new ctDNA signal, " if shows_ctdna else "")
                   + "no scan near PD, no sustained PRO worsening" + ("" if shows_ctdna else " (ctDNA is blinded)") + ".",
                   icon="✅")


def digest_table(rec: queries.PatientRecord, since) -> pd.DataFrame:
    """What happened after `since`, readable: date, what, result, detail (no None, no underscores)."""
    return _digest(rec.timeline, since)


# The digest and its default date read the timeline alone (with the board's decisions on it, which is why they
# are not keyed by patient): made once per timeline content, as the charts are. Made at every run they were an
# eighth of the server's time under 20 sessions (py-spy).
# Each works on a copy: reading a datetime column fills pandas' lazy caches on it, which changes the frame's
# pickled bytes (_frame_bytes), so a miss here and a hit at the next run would hand the charts' cache two keys
# for one timeline, and every rerun would rebuild the timeline figure (the board's app tests caught it).
@st.cache_data(show_spinner=False, max_entries=512, hash_funcs={pd.DataFrame: _frame_bytes})
def _previous_visit(timeline: pd.DataFrame):
    return queries.previous_visit(timeline.copy())


@st.cache_data(show_spinner=False, max_entries=512, hash_funcs={pd.DataFrame: _frame_bytes})
def _digest(timeline: pd.DataFrame, since) -> pd.DataFrame:
    digest = queries.since(timeline.copy(), since)
    table = digest.assign(date=pd.to_datetime(digest["starts_on"]).dt.date,
                          label=digest["label"].fillna("").str.replace("_", " "),  # "last contact"
                          detail=digest["detail"].fillna(""))[["date", "track", "label", "detail"]]
    table.columns = ["date", "what", "result", "detail"]
    return table


def since_last_visit(rec: queries.PatientRecord) -> tuple:
    """The digest since a date the clinician picks (default: the visit before the latest); returns the date and
    the digest (None, None when no date is picked)."""
    default = _previous_visit(rec.timeline)
    left, right = st.columns([1, 3])
    # keyed by patient: one key for everyone carried the first patient's date over to the next one picked
    since = left.date_input("Since", value=default, help="Default: the visit before the latest one.",
                            key=f"since_date:{rec.summary['patient_id']}")
    if since is None:
        return None, None
    table = digest_table(rec, since)
    if table.empty:
        right.info(f"Nothing recorded after {since:%Y-%m-%d}.")
    else:
        right.dataframe(table, hide_index=True, width="stretch", column_config=DIGEST_COLUMNS)
    return since, table


#: Widths that keep every column in view at 1024 px (the detail column scrolled out of view).
DIGEST_COLUMNS = {"date": st.column_config.DateColumn("date", width="small"),
                  "what": st.column_config.TextColumn("what", width="small"),
                  "result": st.column_config.TextColumn("result", width="medium"),
                  "detail": st.column_config.TextColumn("detail", width="medium")}


def visit_summary_button(snap: Snapshot, rec: queries.PatientRecord, viewer: access.Viewer, horizon: int,
                         since, digest: pd.DataFrame | None) -> None:
    """A printable one-page visit summary, made at the click and on record like every export. `since` and
    `digest` are since_last_visit's answer (with no date picked, everything since day 0)."""
    s = rec.summary
    pid = str(s["patient_id"])
    cutoff = pd.Timestamp(snapshot_info(snap.key)["data_cutoff"])
    estimate = "Estimate not shown: ctDNA is blinded for your role, and the estimate needs it."
    if viewer.sees_ctdna:
        model, problem = landmark_model(snap)
        if model is None:
            estimate = f"No estimate: {problem}"
        else:
            est = patient_estimates(snap.key, pid, horizon, cutoff.date(), model.sha256).pfs
            estimate = (f"No estimate as of {cutoff:%Y-%m-%d}: {est.refusal}." if est.refusal is not None else
                        f"Chance of staying progression-free for the next {horizon} months, as of {cutoff:%Y-%m-%d}: "
                        f"{est.estimate:.0%} (95% interval {est.lower:.0%} to {est.upper:.0%}).")
    facts = [(label, f"{value} ({note})" if note else value) for label, value, note in
             header_facts(s, viewer.sees_ctdna)]
    digest = digest if since is not None else digest_table(rec, s["index_date"])
    info = snapshot_info(snap.key)
    origin = "SYNTHETIC data, not a real patient" if info["is_synthetic"] else f"source {info['source']}"
    footer = f"STOP-HER2 · snapshot {info['snapshot_id']} · {origin}"

    def make() -> bytes:  # at the click, from plain data made above (no st.* in the download thread)
        charts = []
        if viewer.sees_ctdna and not rec.ctdna.empty:
            ct = rec.ctdna[rec.ctdna["qc"] == "pass"]
            charts.append(exports.svg_chart(
                pd.DataFrame({"x": ct["days_from_index"], "y": ct["value"].where(ct["detected"] == True, ct["lod"]),  # noqa: E712
                              "filled": ct["detected"] == True}),  # noqa: E712
                title="ctDNA (open: not detected, at the limit)", unit=str(ct["unit"].iloc[0]) if len(ct) else "",
                log=True, marks=[(0, "day 0")]))
        sc = rec.scans
        charts.append(exports.svg_chart(
            pd.DataFrame({"x": sc["days_from_index"], "y": sc["sld_mm"], "filled": True}),
            title="Sum of target diameters", unit="mm", marks=[(0, "day 0")]))
        page = {"patient_id": pid, "subtitle": f"cohort {s['cohort']} · data cut-off {cutoff:%Y-%m-%d}",
                "facts": facts, "alerts": list(s["alerts"]) if s["alerts"] is not None else [],
                "since": since if since is not None else s["index_date"], "digest": digest, "estimate": estimate,
                "charts": charts}
        return exports.visit_summary(page, footer).encode()

    session.export_button("visit_summary", "Printable visit summary (HTML)", make,
                          file_name=f"visit-summary-{pid}.html", mime="text/html", key=f"visit_summary:{pid}",
                          patient_id=pid)


# ------------------------------------------------------------------------------ scan and PRO
#: What a reader needs first comes first, in columns that all fit at 1024 px (eleven did not: the overall
#: response, then the last three columns, scrolled out of view).
SCAN_TABLE_COLUMNS = ["date", "day", "overall", "SLD (mm)", "% from baseline", "% from nadir",
                      "target · non-target · new lesion", "modality · note"]


def scan_table(scans: pd.DataFrame) -> pd.DataFrame:
    """The per-scan table as read: rounded, and an empty cell (never "None") where there is no value."""
    def num(values, digits):
        return [f"{v:.{digits}f}" if pd.notna(v) else "" for v in values]

    parts = pd.DataFrame({"target": scans["target_response"].fillna("—"),
                          "non-target": scans["non_target_response"].fillna("—"),
                          "new": scans["new_lesion"].map({True: "new lesion", False: "no new lesion"}).fillna("—")})
    baseline = scans["overall_response"].isna()
    return pd.DataFrame({
        "date": pd.to_datetime(scans["scanned_on"]).dt.date, "day": scans["days_from_index"],
        "overall": scans["overall_response"].fillna("baseline"), "SLD (mm)": num(scans["sld_mm"], 0),
        "% from baseline": num(scans["pct_from_baseline"], 1), "% from nadir": num(scans["pct_from_nadir"], 1),
        "target · non-target · new lesion": ["" if b else " · ".join(r) for b, r in
                                             zip(baseline, parts.itertuples(index=False), strict=True)],
        "modality · note": [" · ".join(x for x in (m, n) if isinstance(x, str) and x) for m, n in
                            zip(scans["modality"], scans["note"], strict=True)],
    })[SCAN_TABLE_COLUMNS]


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
def loaded_model(snapshot_id: str, horizon: int, manifest_sha: str) -> models.FittedModel:
    """The verified model (services.models.load), loaded once per file and shared."""
    return models.load(snapshot_id, horizon)


def current_model(snap: Snapshot, horizon: int) -> tuple[models.FittedModel | None, str | None]:
    """The verified model for this snapshot and horizon, training it (with progress) when none exists.

    Returns (model, None) or (None, message): a tampered or incompatible model is never retrained
    silently, so its message stays on screen until someone retrains on purpose.
    """
    snapshot_id = str(snapshot_info(snap.key)["snapshot_id"])
    manifest = models.find(snapshot_id, horizon)
    try:
        if manifest is None:
            retrained = _system_retrain_record(session.current())
            job = models.training_job(snap, snapshot_id, horizon, on_trained=lambda d: retrained(snapshot_id, d))
            if not follow(job, f"The {horizon}-month model is being made on this snapshot (once, by the server: "
                               "leaving this page does not stop it)", f"{horizon}-month model ready"):
                raise models.ModelUnavailable(job.error)
            manifest = models.find(snapshot_id, horizon)
            if manifest is None:
                raise models.ModelUnavailable(f"the {horizon}-month model was made but cannot be found: retrain it")
        return loaded_model(snapshot_id, horizon, manifest["sha256"]), None
    except models.ModelUnavailable as exc:
        return None, f"The estimate is not available: {exc}"


@st.cache_resource(show_spinner="Scoring every patient once for this snapshot and model…", max_entries=8)
def scored(key: tuple, basis: str, horizon: int, manifest_sha: str) -> pd.DataFrame:
    """Every patient's estimate and interval, shared read-only by pages and sessions."""
    model = loaded_model(str(snapshot_info(key)["snapshot_id"]), horizon, manifest_sha)
    return model.scores(open_snapshot(key), basis)


@st.cache_data(show_spinner=False, max_entries=512)
def patient_estimate(key: tuple, patient_id: str, basis: str, horizon: int, manifest_sha: str):
    """One patient's estimate with its inputs and drivers (the interval looked up in `scored`)."""
    model = loaded_model(str(snapshot_info(key)["snapshot_id"]), horizon, manifest_sha)
    return model.estimate_for(open_snapshot(key), patient_id, basis, scored(key, basis, horizon, manifest_sha))


@st.cache_resource(show_spinner=False, max_entries=4)
def loaded_landmark(snapshot_id: str, manifest_sha: str) -> models.FittedLandmark:
    return models.load_landmark(snapshot_id)


def landmark_model(snap: Snapshot) -> tuple[models.FittedLandmark | None, str | None]:
    """The verified landmark model of this snapshot (fitted once, in a second, when missing), or the reason."""
    snapshot_id = str(snapshot_info(snap.key)["snapshot_id"])
    try:
        manifest = models.find_landmark(snapshot_id)
        if manifest is None:
            with st.spinner("Fitting the landmark model on this snapshot (once)…"):
                manifest = models.ensure_landmark(snap, snapshot_id, on_trained=lambda detail: session.record_or_log(
                    "retrain", snapshot_id=snapshot_id, detail=detail))
        return loaded_landmark(snapshot_id, manifest["sha256"]), None
    except models.ModelUnavailable as exc:
        return None, f"The estimate is not available: {exc}"


@st.cache_data(show_spinner=False, max_entries=512)
def patient_estimates(key: tuple, patient_id: str, horizon: int, as_of, manifest_sha: str) -> models.PatientEstimates:
    """One patient's estimates as of a date (a datetime.date: the risk card's picker, the visit summary and the
    estimate over time ask with the same type, so they share one entry at the cut-off)."""
    model = loaded_landmark(str(snapshot_info(key)["snapshot_id"]), manifest_sha)
    group = _fetch_group(key).get(patient_id) if isinstance(patient_id, str) else None
    if group is None or as_of != data_cutoff(key):  # another date: this patient alone
        return model.review(open_snapshot(key), patient_id, horizon, as_of)
    found = _estimates_at_cutoff(key, group, horizon, manifest_sha)
    if patient_id not in found:
        return model.review(open_snapshot(key), patient_id, horizon, as_of)
    return copy.deepcopy(found[patient_id])  # the group's are shared: this session gets its own frames


@st.cache_resource(show_spinner=False, max_entries=16)
def _estimates_at_cutoff(key: tuple, group: int, horizon: int, manifest_sha: str) -> dict:
    """One group's estimates as of the data cut-off (the default everywhere), shared read-only."""
    model = loaded_landmark(str(snapshot_info(key)["snapshot_id"]), manifest_sha)
    return model.reviews(open_snapshot(key), _neighbours(key, group), horizon, data_cutoff(key))


def data_cutoff(key: tuple):
    """The snapshot's data cut-off as a datetime.date: the default "as of" everywhere."""
    return pd.Timestamp(snapshot_info(key)["data_cutoff"]).date()


@st.cache_resource(show_spinner="Estimating every patient as of the data cut-off (once per snapshot)…", max_entries=8)
def landmark_scores(key: tuple, horizon: int, manifest_sha: str) -> pd.DataFrame:
    """Every patient's estimate as of the data cut-off ("if they stopped now" for cohort 1): patient_id,
    probability, low, high, not_applicable_because (shared read-only by pages and sessions)."""
    model = loaded_landmark(str(snapshot_info(key)["snapshot_id"]), manifest_sha)
    e = model.estimates(open_snapshot(key), [horizon])
    return pd.DataFrame({"patient_id": e["patient_id"], "probability": e["estimate"], "low": e["lower"],
                         "high": e["upper"], "not_applicable_because": e["refusal"]})


def estimate_trajectory_for(snap: Snapshot, patient_id: str, horizon: int) -> pd.DataFrame | None:
    model, _ = landmark_model(snap)
    return None if model is None else \
        patient_estimates(snap.key, patient_id, horizon, data_cutoff(snap.key), model.sha256).trajectory


@st.cache_data(show_spinner=False, max_entries=2)
def synthetic_truth(key: tuple) -> pd.DataFrame:
    return queries.synthetic_truth(open_snapshot(key))
