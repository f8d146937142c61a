"""Import real data: read a source, validate every row, build a snapshot, keep the report; history and rollback.

Every source (registered by name in services/importers.py) is read into canonical tables plus a Report, then the
same validation and the same snapshot build run. Errors stop the import before anything is written:
the live snapshot stays byte-for-byte as it was. Warnings are imported; the report is kept beside
the snapshot as `<snapshot>.report.csv`. A running app keeps serving the old snapshot until the
pointer swaps, then picks up the new one on its next rerun.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from data.build import BuildError, build_snapshot
from data.canonical import TABLES
from data.csvsafe import safe_csv
from data.store import Snapshot, publish, snapshot_dir, snapshot_path
from data.validate import ImportRejected, Report, validate

def read_source(kind: str, source, options: dict | None = None):
    """The source in parts of patients, the file names its tables came from, and what reading found
    (services/importers.py's registry). The caller closes the parts (a staged source has a temporary file)."""
    from services import importers

    return importers.read(kind, source, options)


def _checked_parts(parts, files, report: Report, today, facts: dict):
    """Validate part by part into `report`, yielding each part's typed tables; `facts` gathers what the
    whole-source checks need (patients, the first enrolment)."""
    for raw, lines in parts:
        typed, _ = validate(raw, files, lines, today=today, report=report)
        patients = typed["patients"]
        facts["patients"] = facts.get("patients", 0) + len(patients)
        first = pd.to_datetime(patients["enrolled_on"], errors="coerce").min()
        if pd.notna(first) and not (pd.notna(facts.get("first_enrolled")) and facts["first_enrolled"] <= first):
            facts["first_enrolled"] = first
        yield typed


def check(kind: str, source, today=None, options: dict | None = None,
          keep_tables: bool = True) -> tuple[dict[str, pd.DataFrame] | None, Report]:
    """Read and validate without writing anything (the Data page's first step). The typed tables are
    returned whole unless `keep_tables` is False (a registry-size check holds one part at a time)."""
    parts, files, report = read_source(kind, source, options)
    kept: dict[str, list[pd.DataFrame]] = {}
    try:
        for typed in _checked_parts(parts, files, report, today, {}):
            if keep_tables:
                for name, frame in typed.items():
                    kept.setdefault(name, []).append(frame)
    finally:
        parts.close()
    if not keep_tables:
        return None, report
    tables = {name: frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
              for name, frames in kept.items()}
    return tables, report


def run_import(kind: str, source, *, progress=None, data_cutoff: str | None = None, today=None,
               out: Path | None = None, options: dict | None = None) -> dict:
    """Validate and build, part by part; raises ImportRejected (nothing written) when there is any error.

    Each part is written to the new snapshot's temporary file as soon as it is checked. The first error
    stops the writing (the remaining parts are still checked, so the report is complete) and the
    temporary file is removed: the live snapshot is untouched, as if nothing had been written.
    """
    say = progress or (lambda fraction, message: None)
    say(0.01, f"reading the {kind} source")
    parts, files, report = read_source(kind, source, options)
    facts: dict = {}

    def checked():
        for k, typed in enumerate(_checked_parts(parts, files, report, today, facts)):
            if report.ok:
                if k == 0:  # later parts: the build says "writing part k" (one progress that only moves forward)
                    say(0.05, f"part 1 checked: no errors, {len(report.warnings)} warning(s): building the snapshot")
                yield typed
        if report.ok and not facts.get("patients"):  # valid (the templates are), but there is no trial to build
            report.add("error", "patients.csv" if kind == "csv" else kind, None, "patient_id", "",
                       "the patients table has no rows: nothing to import")
        if report.ok and data_cutoff is not None:
            _check_data_cutoff(data_cutoff, facts.get("first_enrolled"), report, today)
        if not report.ok:
            raise ImportRejected(report)

    def keep_report(path: Path) -> None:  # written before the swap: a live snapshot always has its report
        report_path(path).write_bytes(safe_csv(report.frame()))

    try:
        info = build_snapshot(checked(), source=kind, out=out, data_cutoff=data_cutoff, progress=progress,
                              before_publish=keep_report)
    except BuildError as exc:  # the database's own checks: the last line of defence
        report.add("error", "", None, "", "", f"the snapshot build refused the data: {exc}")
        raise ImportRejected(report) from exc
    finally:
        parts.close()
    path = Path(info["path"])
    info["warnings"] = len(report.warnings)
    info["report"] = str(report_path(path))
    return info


def _check_data_cutoff(value: str, first_enrolled, report: Report, today=None) -> None:
    """A stated data cut-off is a real date, not in the future, and not before anyone enrolled (else every
    "months since" would be negative and every age wrong)."""
    from datetime import date

    try:
        cutoff = pd.Timestamp(date.fromisoformat(str(value)))  # exactly YYYY-MM-DD, a real day
        if len(str(value)) != 10:
            raise ValueError(value)
    except (ValueError, TypeError):
        report.add("error", "", None, "data_cutoff", value, "the data cut-off is not a date written YYYY-MM-DD")
        return
    today_ts = pd.Timestamp(today or pd.Timestamp.now(tz="UTC").date())
    if cutoff > today_ts:
        report.add("error", "", None, "data_cutoff", value, f"the data cut-off is in the future (after {today_ts:%Y-%m-%d})")
    elif pd.notna(first_enrolled) and cutoff < first_enrolled:
        report.add("error", "", None, "data_cutoff", value, f"the data cut-off is before the first enrolment "
                   f"({first_enrolled:%Y-%m-%d}): nothing would be observed")


def report_path(snapshot_file: Path) -> Path:
    return Path(snapshot_file).with_suffix(".report.csv")


# ---------------------------------------------------------------------------- history and rollback
def history() -> pd.DataFrame:
    """Every snapshot kept in the snapshot folder, newest first, with row counts per canonical table."""
    folder = snapshot_dir()
    try:
        live = snapshot_path().resolve()
    except Exception:  # noqa: BLE001 - no live snapshot yet is a valid state
        live = None
    rows = []
    for path in sorted(folder.glob("*.duckdb"), key=lambda p: p.stat().st_mtime, reverse=True):
        row = {"snapshot_id": path.stem, "live": live is not None and path.resolve() == live, "file": path.name}
        snap = None
        try:
            snap = Snapshot(path)
            info = snap.info()
            counts = snap.query(" UNION ALL ".join(f"SELECT '{name}' AS t, count(*) AS n FROM {name}"
                                                   for name in TABLES))
            row.update({"source": info["source"], "created_at": info["created_at"],
                        "data_cutoff": info["data_cutoff"], "patients": int(info["n_patients"])})
            row.update({f"rows: {t}": int(n) for t, n in zip(counts["t"], counts["n"], strict=True)})
            report = report_path(path)
            row["warnings"] = max(0, len(pd.read_csv(report)) if report.exists() else 0)
        except Exception as exc:  # noqa: BLE001 - an unreadable file is listed, not fatal
            row["problem"] = f"cannot be read: {exc}"
        finally:
            if snap is not None:
                snap.close()
        rows.append(row)
    return pd.DataFrame(rows)


def rollback(snapshot_id: str) -> Path:
    """Make a kept snapshot the live one again (atomically, like a build)."""
    folder = snapshot_dir()
    candidates = {p.stem: p for p in folder.glob("*.duckdb")}
    if snapshot_id not in candidates:
        raise ValueError(f"no kept snapshot with id {snapshot_id!r}")
    path = candidates[snapshot_id]
    try:
        snap = Snapshot(path)
        try:
            snap.info()  # it opens and has its facts, or this raises before the pointer moves
        finally:
            snap.close()
    except Exception as exc:  # noqa: BLE001 - a damaged file is a sentence; the live snapshot stays
        raise ValueError(f"snapshot {snapshot_id} cannot be read ({type(exc).__name__}): the live snapshot is "
                         "unchanged") from exc
    publish(path)
    return path
