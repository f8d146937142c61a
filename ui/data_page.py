"""The Data page: import a CSV bundle, SDTM or FHIR; read the validation report; history and rollback; quality."""
from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
import streamlit as st

from data import bundle, importing, queries
from data.csvsafe import safe_csv
from data.importers import redcap
from data.store import snapshot_dir
from data.validate import ImportRejected, validate
from services import access, importers
from ui import components, session

MAX_UPLOAD_FILES = 200
#: Said at Check in demo mode instead of offering the import: demo mode serves synthetic data only, so an
#: imported source (even the app's own example bundle) would lock every patient page.
DEMO_CANNOT_SERVE = ("The data passed every check, but demo mode (no sign-in configured) serves synthetic data only: "
                     "made live, this import would be refused on every patient page. Configure an identity provider "
                     "([auth] in .streamlit/secrets.toml) to import real data.")


def _save_uploads(files, folder: Path) -> Path:
    """Write the uploads into a private temporary folder under their base names only."""
    for f in files[:MAX_UPLOAD_FILES]:
        name = Path(f.name).name  # never a path from the browser
        (folder / name).write_bytes(f.getvalue())
    return folder


def _report_view(report, key: str) -> None:
    frame = session.viewer().findings(report.frame())
    errors, warnings = len(report.errors), len(report.warnings)
    if errors:
        st.error(f"**{errors} error(s)**, {warnings} warning(s): nothing can be imported until the errors are "
                 "fixed. The live snapshot is unchanged.", icon="⛔")
    elif warnings:
        st.warning(f"No errors, **{warnings} warning(s)**: the data can be imported; the report is kept beside "
                   "the snapshot.", icon="⚠️")
    else:
        st.success("No problems found.", icon="✅")
    if not frame.empty:
        severity = st.multiselect("Show", ["error", "warning"], default=["error", "warning"], key=f"{key}_sev")
        shown = frame[frame["severity"].isin(severity)]
        st.dataframe(shown, hide_index=True, width="stretch",
                     column_config={"row": st.column_config.NumberColumn("row", format="%d")})
        session.export_button("validation_report", "Download the report (CSV)", safe_csv(frame),
                              "stop-her2-validation-report.csv", "text/csv", key=f"{key}_dl")


def _import_tab() -> None:
    labels = {i.label: i for i in importers.REGISTRY.values()}
    importer = labels[st.radio("Source", list(labels), horizontal=True, key="data_source")]
    kind = importer.name
    st.caption(importer.description)
    files = st.file_uploader("Files", type=list(importer.file_types), accept_multiple_files=True, key=f"upload_{kind}")
    options = {}
    c1, c2 = st.columns(2)
    if "arm_map" in importer.options:
        arm_map = c1.text_input("Arm map (arm code = cohort)", key=f"arms_{kind}", placeholder="e.g. CONT=1,STOP=2",
                                help="Which study arm is cohort 1 (continues anti-HER2 therapy) and which is "
                                     "cohort 2 (stops). STOP-HER2's own arm codes are known already.")
        if arm_map.strip():
            options["arm_map"] = arm_map
    cutoff = c2.date_input("Data cut-off (optional)", value=None, key=f"cutoff_{kind}",
                           help="Without one, the latest date in the data.")
    if not files:
        st.info("Choose the files to check. Nothing is written until you press Import.", icon="📥")
        return
    check_clicked = st.button("Check", type="secondary", key=f"check_{kind}")
    state_key = f"checked_{kind}"
    signature = tuple((f.name, f.size) for f in files) + (repr(options),)
    if check_clicked:
        with tempfile.TemporaryDirectory() as tmp, st.spinner("reading and validating every row"):
            try:
                _, report = importing.check(kind, _source(kind, files, Path(tmp)), options=options, keep_tables=False)
            except (FileNotFoundError, ValueError) as exc:
                st.error(f"Cannot read the upload: {components.as_text(exc)}", icon="⛔")
                return
        st.session_state[state_key] = (signature, report)
    checked = st.session_state.get(state_key)
    if not checked or checked[0] != signature:
        return
    report = checked[1]
    _report_view(report, kind)
    if not report.ok:
        return
    if access.DEMO in session.current().roles:
        st.warning(DEMO_CANNOT_SERVE, icon="🔒")
        return
    if st.button("Import and make it the live snapshot", type="primary", key=f"import_{kind}"):
        status = st.status("Importing", expanded=True)
        bar = status.progress(0.0, text="starting")
        with tempfile.TemporaryDirectory() as tmp:
            try:
                info = importing.run_import(kind, _source(kind, files, Path(tmp)), options=options,
                                            data_cutoff=None if cutoff is None else f"{cutoff:%Y-%m-%d}",
                                            progress=lambda f, m: bar.progress(min(max(f, 0.0), 1.0), text=m))
            except ImportRejected as exc:
                session.record("import_refused", detail=f"{kind}: {exc.report.summary()}")
                status.update(label="Import refused: the live snapshot is unchanged", state="error")
                _report_view(exc.report, f"{kind}_rejected")
                return
        session.record("import", snapshot_id=info["snapshot_id"],
                       detail=f"{kind}: {info['n_patients']} patients, {info['warnings']} warnings")
        status.update(label=f"Imported: snapshot {info['snapshot_id']} is now live", state="complete", expanded=False)
        st.success(f"Snapshot **{info['snapshot_id']}** is live: {info['n_patients']} patients, "
                   f"{info['warnings']} warning(s) kept in its report. Every page now shows it.", icon="✅")
        del st.session_state[state_key]


def _source(kind: str, files, folder: Path):
    if kind == "csv":  # the bundle reader takes the uploads' bytes (no file written)
        return {Path(f.name).name: f.getvalue() for f in files[:MAX_UPLOAD_FILES]}
    saved = _save_uploads(files, folder)
    if importers.get(kind).single_file and len(files) == 1:
        return saved / Path(files[0].name).name
    return saved


@st.cache_data(show_spinner=False, max_entries=4)
def _history(listing: tuple) -> pd.DataFrame:
    return importing.history()


def history_tab() -> None:
    # Opening every kept snapshot on each rerun is wasted work: recompute only when the folder or the
    # pointer changes (snapshot files themselves never change).
    folder = snapshot_dir()
    pointer = folder / "CURRENT"
    listing = (tuple(sorted((p.name, p.stat().st_mtime_ns) for p in folder.glob("*.duckdb"))),
               pointer.read_text() if pointer.exists() else "")
    history = _history(listing)
    if history.empty:
        st.info("No snapshots kept yet.")
        return
    st.dataframe(history, hide_index=True, width="stretch",
                 column_config={"live": st.column_config.CheckboxColumn("live")})
    older = history.loc[~history["live"], "snapshot_id"].tolist()
    if access.DEMO in session.current().roles and "source" in history:  # demo mode serves synthetic ones only
        older = history.loc[~history["live"] & history["source"].eq("synthetic"), "snapshot_id"].tolist()
    if not older:
        st.caption("Only the live snapshot is kept: nothing to roll back to.")
        return
    st.selectbox("Roll back to", older, key="rollback_target")
    st.checkbox("I want every page to show this snapshot again", key="rollback_sure")
    st.button("Roll back", key="rollback", on_click=_roll_back)
    said = st.session_state.pop("rollback_said", None)
    if said:
        (st.success if said[0] == "success" else st.warning)(said[1])


def _roll_back() -> None:
    """A button callback: it runs before the page, so a rerun of the page cannot lose the click."""
    target = st.session_state.get("rollback_target")
    if not st.session_state.get("rollback_sure"):
        st.session_state["rollback_said"] = ("warning", "Tick the box above to confirm the rollback.")
        return
    importing.rollback(target)
    session.record("rollback", snapshot_id=target, detail=f"rolled back to {target}")
    st.session_state["rollback_sure"] = False
    st.session_state["rollback_said"] = ("success", f"Snapshot {target} is live again. The newer ones are kept: "
                                                    "you can roll forward the same way.")


def _recheck(snap) -> None:
    _, st.session_state["recheck_report"] = validate(queries.canonical_tables(snap))


@st.cache_data(show_spinner=False, max_entries=2)
def _missingness(key: tuple) -> pd.DataFrame:
    return queries.missingness(components.open_snapshot(key))


@st.cache_data(show_spinner=False, max_entries=2)
def _patients_without(key: tuple) -> pd.DataFrame:
    return queries.patients_without(components.open_snapshot(key))


def _quality_tab(snap) -> None:
    st.markdown("**Missing values per field** (required fields must be complete)")
    miss = _missingness(snap.key)  # a snapshot never changes: once per snapshot, not per rerun
    st.dataframe(miss[miss["missing"] > 0].round(1), hide_index=True, width="stretch")
    st.markdown("**Patients lacking scans, a usable ctDNA result or questionnaires**")
    lacking = _patients_without(snap.key)
    st.dataframe(lacking, hide_index=True, width="stretch")
    st.caption(f"{len(lacking)} of {int(miss.loc[miss['table'] == 'patients', 'rows'].iloc[0])} patients lack something.")
    st.button("Re-check every row of the live snapshot against today's rules", key="recheck",
              on_click=_recheck, args=(snap,))
    if "recheck_report" in st.session_state:
        _report_view(st.session_state["recheck_report"], "recheck")


def render(snap) -> None:
    st.title("Data")
    info = components.snapshot_info(snap.key)
    st.caption(f"Live snapshot `{info['snapshot_id']}` ({info['source']}, {int(info['n_patients'])} patients, "
               f"data cut-off {pd.Timestamp(info['data_cutoff']):%Y-%m-%d}).")
    imp, hist, quality, templates = st.tabs(["Import", "Snapshots", "Data quality", "Templates"])
    with imp:
        _import_tab()
    with hist:
        history_tab()
    with quality:
        _quality_tab(snap)
    with templates:
        st.markdown("The CSV bundle: one file per table, UTF-8, a header row, dates as YYYY-MM-DD, booleans as "
                    "true/false, empty cells for missing values. `COLUMNS.csv` describes every column.")
        session.export_button("csv_templates", "Download the templates (.zip)",
                              lambda: bundle.zip_bytes(bundle.templates()), "stop-her2-csv-templates.zip",
                              "application/zip", key="csv_templates_dl")
        st.markdown("REDCap: the STOP-HER2 project's design (data dictionary, events, arms) and the mapping that "
                    "imports its exports. A project of another design needs its own mapping: the same five "
                    "columns (table, column, source, event, values), documented in `data/importers/redcap.py`.")
        session.export_button("redcap_design", "Download the REDCap design and mapping (.zip)",
                              lambda: bundle.zip_bytes(redcap.design_files()), "stop-her2-redcap-design.zip",
                              "application/zip", key="redcap_design_dl")
        if st.button("Prepare the live snapshot as an example bundle", key="prepare_example"):
            with tempfile.TemporaryDirectory() as tmp:
                paths = bundle.export_bundle(snap, Path(tmp))
                files = session.viewer().bundle_files({p.name: p.read_bytes() for p in paths})
                st.session_state["example_bundle"] = bundle.zip_bytes(files)
        if "example_bundle" in st.session_state:
            session.export_button("example_bundle", "Download the example bundle (.zip)",
                                  st.session_state["example_bundle"], "stop-her2-bundle.zip", "application/zip",
                                  key="example_bundle_dl")
