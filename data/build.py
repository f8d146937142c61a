"""Build a snapshot: canonical tables in, a checked DuckDB file out, swapped in atomically.

The build never touches the live file until the new one is complete and checked: it writes a
temporary file beside the target, derives RECIST responses and PRO scores with the pure rules,
creates the contract views, queries every view once, and only then os.replace()s it into place.
A failure at any step removes the temporary file and leaves the live snapshot byte-for-byte as it was.
"""
from __future__ import annotations

import ctypes
import os
import queue
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pandas as pd

from data import pro, recist
from data.canonical import CANONICAL
from data.clinical import HER2_IHC_POSITIVE, OVERALL_RESPONSE_CODES, her2_positive, hr_status, sql_constants, sql_response_codes
from data.store import DUCKDB_CONFIG, publish, read_sql, snapshot_dir

BUILDER_VERSION = "1"

#: Patients per part when a cohort is generated, checked or written in parts (data/parts.py, synth.py):
#: memory holds one part (about 110 MiB of synthetic tables at 1,000 patients, most of it questionnaire
#: items), not the cohort. A cohort no larger than one part is written as before parts existed.
PART_SIZE = 1000
#: Each part also pays fixed costs (the pure rules are pandas code: RECIST costs ~0.1 s a call whatever its
#: size), so a large cohort takes larger parts, a 25th of it, up to this: 100,000 patients in 25 parts
#: instead of 100 (measured: 1.3 instead of 2.2 s per 1,000 patients), memory still bounded at any size.
MAX_PART_SIZE = 5000


def part_size(n_patients: int) -> int:
    """Patients per part for a cohort of `n_patients` (PART_SIZE, or a 25th of it up to MAX_PART_SIZE)."""
    return int(min(max(PART_SIZE, n_patients // 25), MAX_PART_SIZE))

#: Canonical tables in load order, with the columns each must have (data/canonical.py).
OPTIONAL = {"synthetic_truth", "synthetic_parameters", "synthetic_landmark_truth"}

#: The contract (architecture.md): view -> columns it must have. Checked on every build.
CONTRACT = {
    "patient_summary": ["patient_id", "cohort", "index_date", "stopped_on", "months_since_index",
                        "last_overall_response", "last_ctdna_detected", "alerts"],
    "patient_timeline": ["patient_id", "track", "starts_on", "ends_on", "label", "value"],
    "ctdna_series": ["patient_id", "drawn_on", "days_from_index", "value", "unit", "lod", "detected", "qc"],
    "scan_history": ["patient_id", "scan_id", "scanned_on", "sld_mm", "baseline_sld_mm", "nadir_sld_mm",
                     "pct_from_baseline", "pct_from_nadir", "target_response", "non_target_response",
                     "new_lesion", "overall_response"],
    "pro_scores": ["patient_id", "completed_on", "instrument", "scale", "score", "higher_is_better",
                   "change_from_baseline", "meaningful_change"],
    "outcomes": ["patient_id", "cohort", "index_date", "pfs_months", "progressed"],
    "model_features": ["patient_id", "ctdna_detected_at_index", "ctdna_log10_fold_over_lod", "best_response_cr",
                       "visceral", "hr_positive", "de_novo", "brain_mets_history", "years_on_first_line", "age",
                       "n_metastatic_sites", "her2_ihc3"],
    "eligibility": ["patient_id", "criterion", "met", "detail"],
}


def clinical_constants() -> pd.DataFrame:
    """Constants the SQL views need, taken from their one Python source of truth (data/clinical.py)."""
    return pd.DataFrame([(name, float(value), f"{what} (data/clinical.py)") for name, value, what in sql_constants()],
                        columns=["name", "value", "source"])


def schema_sql() -> str:
    """The canonical tables' DDL; the response codes of its CHECK constraints come from data/clinical.py."""
    return read_sql("schema.sql").replace("{response_codes}", sql_response_codes())


def classify(patients: pd.DataFrame) -> pd.DataFrame:
    """HER2 and HR status per patient by the rules in data/clinical.py, for the SQL views to join."""
    return pd.DataFrame({
        "patient_id": patients["patient_id"].astype(str),
        "her2_positive": pd.array([her2_positive(i, s) for i, s in zip(patients["her2_ihc"].astype(object),
                                   patients["her2_ish_amplified"].astype(object), strict=True)], dtype="boolean"),
        "her2_ihc3": pd.array([None if pd.isna(i) else i == HER2_IHC_POSITIVE for i in patients["her2_ihc"].astype(object)],
                              dtype="boolean"),
        "hr_status": [hr_status(e, p) for e, p in zip(patients["er_status"].astype(object),
                                                      patients["pr_status"].astype(object), strict=True)]})


class BuildError(ValueError):
    """The input cannot become a snapshot; the message says what and where."""


def check_tables(tables: dict[str, pd.DataFrame]) -> None:
    """Structural checks every source (every part of one) must pass before anything is written."""
    for name, columns in CANONICAL.items():
        if name not in tables:
            raise BuildError(f"table {name!r} is missing")
        missing = [c for c in columns if c not in tables[name].columns]
        if missing:
            raise BuildError(f"table {name!r} lacks column(s): {', '.join(missing)}")
    unknown = set(tables) - set(CANONICAL) - OPTIONAL
    if unknown:
        raise BuildError(f"unknown table(s): {', '.join(sorted(unknown))}")
    ids = pd.Index(tables["patients"]["patient_id"].astype(str))
    if ids.has_duplicates:  # across parts, the primary key refuses the second copy
        raise BuildError(f"patients: duplicate patient_id {ids[ids.duplicated()][0]!r}")


def _check_references(con) -> None:
    """Every row's patient is known: in SQL over the whole snapshot, so a source given in parts is checked
    across its parts."""
    for name in CANONICAL:
        if name == "patients":
            continue
        # the table name comes from the canonical list (data/canonical.py), never from input
        orphan = con.execute("SELECT t.patient_id FROM " + name + " t ANTI JOIN patients p USING (patient_id) "
                             "ORDER BY t.patient_id LIMIT 1").fetchall()
        if orphan:
            raise BuildError(f"{name}: patient_id {orphan[0][0]!r} is not in patients")


def _scan_rows(tables) -> pd.DataFrame:
    """Every scan with its lesions; a scan with none keeps one empty row (RECIST input)."""
    scans = tables["scans"][["patient_id", "scan_id", "scanned_on"]]
    les = tables["lesion_measurements"]
    m = scans.merge(les, on=["patient_id", "scan_id"], how="left")
    m["is_node"] = m["is_node"].astype("boolean").fillna(False).astype(bool)
    return m


def _insert(con, table: str, df: pd.DataFrame) -> None:
    if table not in CANONICAL and table not in OPTIONAL and table not in _DERIVED:
        raise BuildError(f"refusing to write unknown table {table!r}")
    con.register("_incoming", df)
    # Rows stored in patient order: DuckDB keeps each column's min/max per row group, so a query for
    # one patient reads the few row groups that can hold them instead of the whole table.
    order = " ORDER BY patient_id" if "patient_id" in df.columns else ""
    try:
        con.execute("INSERT INTO " + table + " BY NAME SELECT * FROM _incoming" + order)
    except duckdb.Error as exc:  # a schema check refused a value: say where
        raise BuildError(f"table {table!r}: {exc}") from exc
    finally:
        con.unregister("_incoming")


_DERIVED = {"recist_assessments", "pro_scale_scores", "pro_catalogue", "clinical_constants", "patient_classification",
            "snapshot_info", "eligibility_results"}

ELIGIBILITY_INPUT = """
SELECT p.patient_id, p.age_at_enrolment + years_between(p.enrolled_on, s.data_cutoff) AS age,
       p.her2_ihc, p.her2_ish_amplified, p.first_line_start, i.stopped_on, o.progressed_on,
       p.enrolled_on, o.withdrew_on, o.died_on
FROM patients p JOIN patient_index i USING (patient_id) JOIN outcomes o USING (patient_id), snapshot_info s
"""


def _eligibility(con) -> pd.DataFrame:
    from data import eligibility

    frame = con.execute(ELIGIBILITY_INPUT).df()
    progressions = con.execute("SELECT * FROM first_line_progressions").df()
    as_of = con.execute("SELECT data_cutoff FROM snapshot_info").fetchall()[0][0]
    return eligibility.evaluate(frame, progressions, as_of)


#: Views whose rows are computed once at build and stored in patient order as `<view>_rows` (a snapshot
#: never changes afterwards), in dependency order. The view keeps its name and columns, so the contract
#: is unchanged; views.sql stays the one definition of what each holds. Without this, a query for one
#: patient's summary computed every patient's window functions (0.3 s at 100,000 patients).
MATERIALIZED = ("patient_index", "outcomes", "ctdna_series", "scan_history", "pro_scores", "patient_timeline",
                "patient_summary", "model_features_all")


def _materialize(con) -> None:
    for view in MATERIALIZED:
        con.execute("CREATE TABLE " + view + "_rows AS SELECT * FROM " + view + " ORDER BY ALL")
        con.execute("CREATE OR REPLACE VIEW " + view + " AS SELECT * FROM " + view + "_rows")


def _check_snapshot(con) -> dict:
    counts = {}
    for view, columns in CONTRACT.items():
        have = [r[0] for r in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = ?", [view]).fetchall()]
        missing = [c for c in columns if c not in have]
        if missing:
            raise BuildError(f"view {view} lacks contract column(s): {', '.join(missing)}")
        counts[view] = con.execute("SELECT count(*) FROM " + view).fetchone()[0]
    bad = con.execute("SELECT count(*) FROM scan_history WHERE overall_response IS NOT NULL "
                      "AND NOT list_contains(?, overall_response)", [list(OVERALL_RESPONSE_CODES)]).fetchone()[0]
    if bad:
        raise BuildError(f"{bad} scans have an invalid response code")
    if counts["patient_summary"] != con.execute("SELECT count(*) FROM patients").fetchone()[0]:
        raise BuildError("patient_summary does not have one row per patient")
    return counts


def build_snapshot(tables, *, source: str, out: Path | None = None,
                   data_cutoff: str | None = None, seed: int | None = None, progress=None,
                   materialize: bool = True, before_publish=None) -> dict:
    """Write the tables as a new snapshot, atomically.

    `tables` is one dict of canonical tables, or an iterable of such dicts holding disjoint sets of
    patients (every row of a patient in the same part), in patient order: a large cohort is written
    part by part, so memory holds one part at a time; the views over all parts are DuckDB's, within
    PARTS_MEMORY and then views_memory(). With `out`, the snapshot is written to exactly that file (replacing it atomically).
    Without it, it goes into the snapshot folder under its own id and becomes the live snapshot
    (``publish``). Returns facts about the snapshot, with the row count of every contract view.
    `materialize=False` leaves every view computed on each query (tests compare the two).
    `before_publish(path)` runs once the file is complete and before it is made live.
    """
    say = progress or (lambda fraction, message: None)
    parts = [tables] if isinstance(tables, dict) else tables
    created = datetime.now(UTC).replace(tzinfo=None)
    snapshot_id = f"{source}-{created:%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    make_live = out is None
    out = Path(out) if out is not None else snapshot_dir() / f"{snapshot_id}.duckdb"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{snapshot_id}.tmp")
    started = time.perf_counter()
    try:
        con = duckdb.connect(str(tmp), config=dict(DUCKDB_CONFIG))
        try:
            con.execute("SET memory_limit = '" + PARTS_MEMORY + "'")
            con.execute(schema_sql())
            n_patients, latest, extras = 0, [], set()
            for k, part in enumerate(parts):  # (a generator of parts is closed when this stops, below)
                check_tables(part)
                if k:
                    say(0.60 + 0.14 * (1 - 1 / k), f"writing part {k + 1}: "
                        f"{n_patients + len(part['patients']):,} patients so far")
                _write_part(con, part, extras, say if k == 0 else None)
                n_patients += len(part["patients"])
                latest.append(_latest_date(part))
                del part
                _give_back_freed_memory()
            _check_references(con)
            _insert(con, "pro_catalogue", pro.catalogue_frame())
            _insert(con, "clinical_constants", clinical_constants())
            known = [d for d in latest if pd.notna(d)]
            if data_cutoff is None and not known:
                raise BuildError("the data hold no dates at all: state the data cut-off")
            cutoff = data_cutoff or max(known)
            _insert(con, "snapshot_info", pd.DataFrame([{
                "snapshot_id": snapshot_id, "source": source, "is_synthetic": source == "synthetic",
                "created_at": created, "data_cutoff": pd.Timestamp(cutoff), "seed": seed,
                "n_patients": n_patients, "builder_version": BUILDER_VERSION}]))
            con.execute("SET memory_limit = '" + views_memory(n_patients) + "'")  # no part is held any more
            say(0.75, "creating the contract views")
            con.execute(read_sql("views.sql"))
            say(0.80, "evaluating eligibility")
            _insert(con, "eligibility_results", _eligibility(con))
            if materialize:
                say(0.82, "storing the contract views in patient order")
                _materialize(con)
            say(0.90, "checking every contract view")
            counts = _check_snapshot(con)
            con.execute("CHECKPOINT")
        finally:
            con.close()
        os.replace(tmp, out)  # atomic: readers see the old file or the new one, never a mixture
        if before_publish is not None:  # e.g. the import's report: beside the file before anyone sees it
            before_publish(out)
        if make_live:
            publish(out)
    except BaseException:
        for leftover in (tmp, Path(str(tmp) + ".wal")):
            leftover.unlink(missing_ok=True)
        raise
    finally:
        if hasattr(parts, "close"):  # e.g. _one_ahead's thread: stopped before the caller moves on
            parts.close()
    say(1.0, "snapshot ready")
    return {"snapshot_id": snapshot_id, "source": source, "path": str(out), "n_patients": n_patients,
            "seconds": round(time.perf_counter() - started, 2), "view_rows": counts}


#: DuckDB's memory while parts are written (Python holds a part too; DuckDB only appends); beyond it, DuckDB
#: spills to a temporary file beside the snapshot.
PARTS_MEMORY = "128MB"


def views_memory(n_patients: int) -> str:
    """DuckDB's memory while the views are stored: they sort and join every patient's rows, and part of that
    work cannot spill. Measured: 128 MB is enough at 20,000 patients (13 s) and ran out of memory at 100,000
    (the timeline), where 512 MB takes 48 s and 1 GB 41 s. So 5 MB per 1,000 patients, between 128 MB and 1 GB
    (beyond ~200,000 patients the views would have to be stored a range of patients at a time)."""
    return f"{int(min(max(128, 5 * n_patients / 1000), 1024))}MB"

_SYNTHETIC_DDL = {
    "synthetic_truth": """CREATE TABLE synthetic_truth (patient_id VARCHAR, linear_predictor DOUBLE,
        p_progression_free_6m DOUBLE, p_progression_free_12m DOUBLE, p_progression_free_24m DOUBLE,
        ctdna_detected_at_index BOOLEAN, latent_progression_on DATE)""",
    "synthetic_parameters": "CREATE TABLE synthetic_parameters (name VARCHAR, value VARCHAR, source VARCHAR)",
    "synthetic_landmark_truth": """CREATE TABLE synthetic_landmark_truth (patient_id VARCHAR,
        landmark_months INTEGER, horizon_months INTEGER, p_progression_free DOUBLE, ess DOUBLE)""",
}


def _give_back_freed_memory() -> None:
    """Return the memory a written part freed to the system. glibc keeps freed blocks for reuse, and a part's
    many short-lived frames leave the process holding ~200 MiB it no longer uses; the next part or DuckDB's
    working set would then come on top of it (measured: 20,000 patients peaked at 508 MiB without this)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to give back this way
        pass


def _write_part(con, part: dict[str, pd.DataFrame], extras: set, say=None) -> None:
    """One part's canonical tables and what the pure rules derive from them (RECIST, PRO scores, HER2/HR).
    `say` (the first part only) tells each step."""
    say = say or (lambda fraction, message: None)
    for i, name in enumerate(CANONICAL):
        say(0.10 + 0.04 * i, f"writing {name}")
        _insert(con, name, part[name][CANONICAL[name]])
    for name in OPTIONAL & set(part):
        if name not in extras:
            con.execute(_SYNTHETIC_DDL[name])
            extras.add(name)
        elif name == "synthetic_parameters":  # the same for every part: kept once
            continue
        _insert(con, name, part[name])
    say(0.45, "deriving RECIST 1.1 responses from lesion measurements")
    _insert(con, "recist_assessments", recist.assess(_scan_rows(part)))
    say(0.60, "scoring questionnaires")
    _insert(con, "pro_scale_scores", pro.score(part["pro_responses"]))
    _insert(con, "patient_classification", classify(part["patients"]))


def _latest_date(tables) -> pd.Timestamp:
    """The latest date anywhere in one part's data (NaT if none): without a stated data cut-off, the
    latest over all parts is the cut-off."""
    latest = [pd.to_datetime(tables["events"]["occurred_on"]).max(),
              pd.to_datetime(tables["scans"]["scanned_on"]).max(),
              pd.to_datetime(tables["ctdna_draws"]["drawn_on"]).max()]
    known = [d for d in latest if pd.notna(d)]
    return max(known) if known else pd.NaT


def build_synthetic(n_patients: int = 82, seed: int = 20230419, out: Path | None = None, progress=None,
                    variant: str | None = None) -> dict:
    """A synthetic snapshot, generated and written in parts (part_size() patients at a time)."""
    from data import synth

    say = progress or (lambda fraction, message: None)
    say(0.0, f"generating a synthetic cohort of {n_patients:,} patients")
    parts = synth.generate_parts(n_patients, seed, progress=lambda m: say(0.05, m), variant=variant)
    return build_snapshot(_one_ahead(parts), source="synthetic", out=out, data_cutoff=synth.P["data_cutoff"],
                          seed=seed, progress=progress)


def _one_ahead(parts):
    """The parts, the next one generated in a second thread while this one is written. Writing lets go of
    Python's lock (DuckDB's inserts, numpy), so the two overlap on two cores: measured at 100,000 patients,
    see the README. At most two parts are held at once. When the writing stops (done or failed) and this
    generator is closed, the thread finishes the part it is making and stops before close() returns."""
    slots, made, stop = threading.Semaphore(2), queue.Queue(), threading.Event()

    def make():
        try:
            source = iter(parts)
            while slots.acquire() and not stop.is_set():
                made.put(("part", next(source)))
        except StopIteration:
            made.put(("done", None))
        except BaseException as exc:  # raised again in the writing thread
            made.put(("error", exc))

    worker = threading.Thread(target=make, name="next synthetic part", daemon=True)
    worker.start()
    try:
        while True:
            kind, value = made.get()
            if kind == "done":
                return
            if kind == "error":
                raise value
            yield value
            del value
            slots.release()  # that part is written: the thread may make one more
    finally:
        stop.set()
        slots.release()
        worker.join()
