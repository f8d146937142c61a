"""The questions pages ask, as parameterized SQL against the contract views (no SQL in pages/)."""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from data.store import Snapshot

PATIENT_LIST = """
SELECT patient_id, cohort, index_date, status, last_overall_response, last_ctdna_detected,
       len(alerts) AS n_alerts, len(ctdna_alerts) AS n_ctdna_alerts, alerts, ctdna_alerts, alert_kinds,
       last_followup_on
FROM patient_summary ORDER BY patient_id
"""
# One patient's rows, or several patients' at once (a list of ids): ordered by patient first, then so that no two
# rows tie (a tie's order is DuckDB's choice, and a patient's rows would come in another order alone than among
# others).
SUMMARY = "SELECT * FROM patient_summary WHERE list_contains(?, patient_id) ORDER BY patient_id"
TIMELINE = "SELECT * FROM patient_timeline WHERE list_contains(?, patient_id) ORDER BY patient_id, starts_on, track, label, detail"
CTDNA = "SELECT * FROM ctdna_series WHERE list_contains(?, patient_id) ORDER BY patient_id, drawn_on"
SCANS = "SELECT * FROM scan_history WHERE list_contains(?, patient_id) ORDER BY patient_id, scanned_on, scan_id"
LESIONS = """
SELECT l.patient_id, s.scanned_on, l.scan_id, l.lesion_id, l.kind, l.organ, l.is_node, l.diameter_mm, l.status
FROM lesion_measurements l JOIN scans s USING (patient_id, scan_id)
WHERE list_contains(?, l.patient_id) ORDER BY l.patient_id, s.scanned_on, l.kind, l.lesion_id
"""
PROS = "SELECT * FROM pro_scores WHERE list_contains(?, patient_id) ORDER BY patient_id, instrument, scale, completed_on"
CATALOGUE = "SELECT * FROM pro_catalogue ORDER BY instrument, scale"
OUTCOME = "SELECT * FROM outcomes WHERE list_contains(?, patient_id) ORDER BY patient_id"


class UnknownPatient(LookupError):
    pass


@dataclass
class PatientRecord:
    """Everything the patient page shows for one patient, fetched together."""

    summary: pd.Series
    outcome: pd.Series
    timeline: pd.DataFrame
    ctdna: pd.DataFrame
    scans: pd.DataFrame
    lesions: pd.DataFrame
    pros: pd.DataFrame


def patient_list(snap: Snapshot) -> pd.DataFrame:
    return snap.query(PATIENT_LIST)


def pro_catalogue(snap: Snapshot) -> pd.DataFrame:
    return snap.query(CATALOGUE)


def patient_record(snap: Snapshot, patient_id: str) -> PatientRecord:
    """One patient's rows from every contract view. Raises UnknownPatient for an unknown id."""
    if not isinstance(patient_id, str) or not patient_id or len(patient_id) > 64:
        raise UnknownPatient(patient_id)
    return PatientRows(snap, [patient_id]).record(patient_id)


class PatientRows:
    """Several patients' rows from one query per view, each patient's record cut out when asked for.

    A first visit to a patient cost seven queries, about 50 ms of the server's one core, whatever the number
    of patients they ask for (each view is worked out whole at this size): the patient page fetches a patient's
    neighbours with them (ui.components.patient_record). Read-only once made; `record` returns new frames.
    """

    _VIEWS = (("outcome", OUTCOME), ("timeline", TIMELINE), ("ctdna", CTDNA), ("scans", SCANS),
              ("lesions", LESIONS), ("pros", PROS))

    def __init__(self, snap: Snapshot, patient_ids):
        ids = [str(p) for p in patient_ids]
        self._summary = snap.query(SUMMARY, [ids]) if ids else pd.DataFrame({"patient_id": []})
        self._at = {pid: i for i, pid in enumerate(self._summary["patient_id"])}
        self._frames = {name: snap.query(sql, [ids]) for name, sql in self._VIEWS} if self._at else {}
        self._where = {name: rows_by(frame, "patient_id") for name, frame in self._frames.items()}

    def __contains__(self, patient_id) -> bool:
        return patient_id in self._at

    def record(self, patient_id: str) -> PatientRecord:
        """One patient's record, with the dtypes a one-patient query gives. Raises UnknownPatient."""
        if patient_id not in self._at:
            raise UnknownPatient(patient_id)
        summary = self._summary.iloc[self._at[patient_id]]
        summary.name = 0  # as a one-patient query's row

        def own(name: str) -> pd.DataFrame:
            rows = self._frames[name].iloc[self._where[name].get(patient_id, [])].reset_index(drop=True)
            return _as_queried_alone(rows)

        return PatientRecord(summary=summary, outcome=own("outcome").iloc[0], timeline=own("timeline"),
                             ctdna=own("ctdna"), scans=own("scans"), lesions=own("lesions").drop(columns="patient_id"),
                             pros=own("pros"))


def _as_queried_alone(frame: pd.DataFrame) -> pd.DataFrame:
    """DuckDB gives a column with a NULL a nullable dtype (boolean, Int32) and a column without one the numpy
    dtype (bool, int32): a patient's slice of several patients' rows gets the dtypes its own query would give."""
    for c, dtype in frame.dtypes.items():
        numpy_dtype = getattr(dtype, "numpy_dtype", None) if isinstance(dtype, pd.api.extensions.ExtensionDtype) else None
        if numpy_dtype is not None and numpy_dtype.kind in "biu" and not frame[c].isna().any():
            frame[c] = frame[c].astype(numpy_dtype)
    return frame


def rows_by(frame: pd.DataFrame, by) -> dict:
    """A patient's rows per value of `by` (a column, or a list of columns: tuple keys), as row positions in the
    frame's order: one pass, where the charts' filter per value (a track, a response, a scale) cost as much each.
    A value with no rows is missing. Splitting only: nothing is summarised."""
    return frame.groupby(by, sort=False).indices if len(frame) else {}


def since(tl: pd.DataFrame, since_date) -> pd.DataFrame:
    """What happened after `since_date` (exclusive) on a patient's timeline: scans, draws, questionnaires,
    events, therapy."""
    cutoff = pd.Timestamp(since_date)
    started = tl[pd.to_datetime(tl["starts_on"]) > cutoff].assign(what=lambda d: d["track"])
    ended = tl[(tl["ends_on"].notna()) & (pd.to_datetime(tl["ends_on"]) > cutoff)
               & tl["track"].isin(["anti-HER2", "other therapy"])]
    ended = ended.assign(starts_on=ended["ends_on"], label="stopped " + ended["label"])
    out = pd.concat([started, ended], ignore_index=True)
    return out.sort_values("starts_on", ignore_index=True)[["starts_on", "track", "label", "value", "detail"]]


#: Records less than this many days apart belong to one visit (a draw and a scan a few days apart).
VISIT_GAP_DAYS = 14


def previous_visit(tl: pd.DataFrame):
    """The last day of the visit before the latest one on a patient's timeline: the default 'since last visit'
    date.

    Draws, scans and questionnaires within VISIT_GAP_DAYS of each other count as one visit, so
    the digest (records strictly after this day) shows the latest visit whole.
    """
    days = pd.to_datetime(tl.loc[tl["track"].isin(["ctDNA", "PRO", "scan"]), "starts_on"]).dt.normalize()
    days = days.drop_duplicates().sort_values().reset_index(drop=True)
    if days.empty:
        return None
    visit = (days.diff().dt.days.fillna(VISIT_GAP_DAYS + 1) > VISIT_GAP_DAYS).cumsum()
    if visit.iloc[-1] < 2:
        return (days.iloc[0] - pd.Timedelta(days=1)).date()
    return days[visit == visit.iloc[-1] - 1].max().date()


TRUTH = "SELECT * FROM synthetic_truth ORDER BY patient_id"


def synthetic_truth(snap: Snapshot) -> pd.DataFrame:
    """The generator's true probabilities (synthetic snapshots only; never shown on patient pages)."""
    return snap.query(TRUTH)


CANDIDATES = """
SELECT s.patient_id, s.cohort, s.status, s.last_followup_on, s.last_ctdna_detected, s.last_ctdna_on,
       s.last_overall_response, s.last_scan_on, f.years_on_first_line, s.er_status, s.pr_status, s.hr_status
FROM patient_summary s JOIN model_features_all f ON f.patient_id = s.patient_id AND f.basis = 'now'
ORDER BY s.patient_id
"""
# The verdicts only: each criterion's text and detail repeated for every patient cost ~250 MB at 100,000.
ELIGIBILITY = "SELECT patient_id, criterion, met FROM eligibility ORDER BY patient_id, criterion"
FEATURES_AT = "SELECT * FROM model_features_all WHERE basis = ? ORDER BY patient_id"
ELIGIBILITY_ONE = "SELECT criterion, text, met, detail FROM eligibility WHERE patient_id = ?"


def candidates(snap: Snapshot) -> pd.DataFrame:
    """One row per patient with what the tumour board screens on."""
    return snap.query(CANDIDATES)


def eligibility(snap: Snapshot) -> pd.DataFrame:
    """Every patient's verdict on every criterion (patient_id, criterion, met); details per patient below."""
    return snap.query(ELIGIBILITY)


def features_at(snap: Snapshot, basis: str) -> pd.DataFrame:
    """Every patient's model inputs as of day 0 ('index') or the data cut-off ('now')."""
    return snap.query(FEATURES_AT, [basis])


def patient_eligibility(snap: Snapshot, patient_id: str) -> pd.DataFrame:
    return snap.query(ELIGIBILITY_ONE, [patient_id])


COHORT_FRAME = """
SELECT s.patient_id, s.cohort, s.site, s.age_at_enrolment, s.sex, s.er_status, s.pr_status, s.her2_ihc, s.de_novo,
       s.visceral, s.brain_mets_history, s.n_metastatic_sites, s.best_response, s.years_on_first_line, s.hr_status,
       f.ctdna_detected_at_index, o.index_date, o.pfs_months, o.pfs_event, o.progressed, o.progressed_on,
       o.died, o.died_on, o.restarted_on, o.last_followup_on, o.os_months
FROM patient_summary s JOIN outcomes o USING (patient_id) JOIN model_features f USING (patient_id)
ORDER BY s.patient_id
"""
COHORT_POSITIVE_DRAWS = "SELECT patient_id, drawn_on, days_from_index, detected FROM ctdna_series WHERE detected"


def cohort_frame(snap: Snapshot) -> pd.DataFrame:
    """One row per patient: baseline, ctDNA at day 0 and outcomes (the researchers' table)."""
    return snap.query(COHORT_FRAME)


def cohort_positive_draws(snap: Snapshot) -> pd.DataFrame:
    """Every ctDNA-positive draw (lead times, swimmer markers): a fraction of all draws."""
    return snap.query(COHORT_POSITIVE_DRAWS)


def pro_change_sums(snap: Snapshot, scales: list[tuple[str, str]], by: tuple[str, ...],
                    window_months: int, days_per_month: float) -> pd.DataFrame:
    """Change from baseline summed per scale, cohort, visit window and every value of the `by` columns.

    Counts, sums and sums of squares are all a mean and a standard deviation need, and they add up: the
    cohorts page filters these few thousand rows instead of millions of scores (data/cohorts.pro_change).
    `by` names patient_summary columns (identifiers from the page's own constants, never user input).
    """
    group = ", ".join("s." + column for column in by)
    return snap.query(
        "SELECT p.instrument, p.scale, p.label, s.cohort, " + group + ","
        """     CAST(round(p.days_from_index / $days_per_month / $window) * $window AS INTEGER) AS month,
                count(*) AS n, sum(p.change_from_baseline) AS total,
                sum(p.change_from_baseline * p.change_from_baseline) AS total_sq
           FROM pro_scores p JOIN patient_summary s USING (patient_id)
           WHERE p.change_from_baseline IS NOT NULL AND list_contains($scales, p.instrument || '/' || p.scale)
           GROUP BY ALL""",
        {"days_per_month": days_per_month, "window": window_months,
         "scales": [f"{instrument}/{scale}" for instrument, scale in scales]})


# ------------------------------------------------------------------------------- data quality
def missingness(snap: Snapshot) -> pd.DataFrame:
    """Per canonical table and column: rows, missing values and the share missing."""
    from data.canonical import TABLES

    parts = []
    for name, table in TABLES.items():
        counts = ", ".join(f"count({c.name}) AS {c.name}" for c in table.columns)
        row = snap.query("SELECT count(*) AS _rows, " + counts + " FROM " + name).iloc[0]
        for c in table.columns:
            missing = int(row["_rows"] - row[c.name])
            parts.append({"table": name, "column": c.name, "required": c.required, "rows": int(row["_rows"]),
                          "missing": missing, "missing_pct": 100 * missing / row["_rows"] if row["_rows"] else 0.0})
    return pd.DataFrame(parts)


PATIENTS_WITHOUT = """
SELECT p.patient_id, p.cohort,
       NOT EXISTS (SELECT 1 FROM scans s WHERE s.patient_id = p.patient_id) AS no_scans,
       NOT EXISTS (SELECT 1 FROM ctdna_draws d WHERE d.patient_id = p.patient_id AND d.qc = 'pass') AS no_ctdna,
       NOT EXISTS (SELECT 1 FROM pro_responses r WHERE r.patient_id = p.patient_id) AS no_questionnaires
FROM patients p
ORDER BY p.patient_id
"""


def patients_without(snap: Snapshot) -> pd.DataFrame:
    """Patients with no scans, no usable ctDNA result or no questionnaire (only those lacking something)."""
    frame = snap.query(PATIENTS_WITHOUT)
    return frame[frame[["no_scans", "no_ctdna", "no_questionnaires"]].any(axis=1)].reset_index(drop=True)


def canonical_tables(snap: Snapshot) -> dict[str, pd.DataFrame]:
    """The loaded canonical tables, for re-running the importers' validation on the live snapshot."""
    from data.canonical import TABLES

    return {name: snap.query("SELECT " + ", ".join(t.column_names) + " FROM " + name) for name, t in TABLES.items()}


LANDMARK_PATIENTS = """
SELECT s.patient_id, s.cohort, s.index_date, s.best_response, s.visceral, s.brain_mets_history
FROM patient_summary s ORDER BY s.patient_id
"""
LANDMARK_DRAWS = "SELECT patient_id, drawn_on, detected, value, lod, qc FROM ctdna_series ORDER BY patient_id, drawn_on"
LANDMARK_OUTCOMES = """
SELECT patient_id, progressed_on, died_on, restarted_on, last_followup_on FROM outcomes ORDER BY patient_id
"""


def landmark_inputs(snap: Snapshot, patient_ids: str | list[str] | None = None
                    ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(patients, ctDNA draws, outcomes) for model/landmark.py: everyone, one patient, or a list of patients."""
    if patient_ids is None:
        return snap.query(LANDMARK_PATIENTS), snap.query(LANDMARK_DRAWS), snap.query(LANDMARK_OUTCOMES)
    ids = [patient_ids] if isinstance(patient_ids, str) else [str(p) for p in patient_ids]
    some = " WHERE list_contains(?, patient_id)"
    return tuple(snap.query("SELECT * FROM (" + sql + ")" + some, [ids])
                 for sql in (LANDMARK_PATIENTS, LANDMARK_DRAWS, LANDMARK_OUTCOMES))
