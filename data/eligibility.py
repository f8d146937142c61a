"""STOP-HER2 eligibility as data: each criterion has an id, its plain text and a rule (pure).

``evaluate(patients, first_line_progressions, as_of)`` returns one row per patient x criterion
with met = True / False / None (unknown: an input is missing; never silently "met") and a detail
a tumour board can read. The criteria follow clinical-facts.md (NCT05721248).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from data.clinical import (  # noqa: F401  (re-exported for callers of eligibility.MIN_AGE etc.)
    DAYS_PER_MONTH,
    DAYS_PER_YEAR,
    HER2_IHC_EQUIVOCAL,
    HER2_RULE,
    MIN_AGE,
    MIN_FIRST_LINE_YEARS,
    MIN_MONTHS_SINCE_CNS_THERAPY,
    her2_positive,
)

PATIENT_COLUMNS = ["patient_id", "age", "her2_ihc", "her2_ish_amplified", "first_line_start", "stopped_on",
                   "progressed_on"]
#: Optional: enrolled_on (study start for an enrolled patient; a candidate's is the evaluation date),
#: withdrew_on and died_on (a withdrawn or dead patient is no candidate). Missing columns mean "none".
OPTIONAL_COLUMNS = ["enrolled_on", "withdrew_on", "died_on"]
PROGRESSION_COLUMNS = ["patient_id", "progressed_on", "site", "n_lesions", "treated_with", "symptomatic",
                       "on_steroids", "on_anticonvulsants", "cns_therapy_on"]
OUTPUT_COLUMNS = ["patient_id", "criterion", "text", "met", "detail"]


@dataclass(frozen=True)
class Criterion:
    id: str
    text: str
    rule: Callable[[pd.DataFrame, pd.DataFrame, pd.Timestamp], tuple[pd.Series, pd.Series]]


def _unknown(n: int) -> pd.Series:
    return pd.Series([None] * n, dtype=object)


def _age(p: pd.DataFrame, _prog, _as_of):
    age = pd.to_numeric(p["age"], errors="coerce")
    met = pd.Series(np.where(age.isna(), None, age >= MIN_AGE), dtype=object)
    detail = np.where(age.isna(), "age not recorded", "age " + age.round(0).astype("Int64").astype(str))
    return met, pd.Series(detail)


def _her2(p: pd.DataFrame, _prog, _as_of):
    ihc = p["her2_ihc"].astype(object)
    ish = p["her2_ish_amplified"].astype(object)
    met, detail = [], []
    for i, s in zip(ihc, ish, strict=True):
        met.append(her2_positive(i, s))  # the one definition (data/clinical.py)
        if i is None or pd.isna(i):
            detail.append("HER2 IHC not recorded")
        elif i == HER2_IHC_EQUIVOCAL:
            detail.append(f"IHC {i}, ISH " + ("not recorded" if s is None or pd.isna(s)
                                              else "amplified" if s else "not amplified"))
        else:
            detail.append(f"IHC {i}")
    return pd.Series(met, dtype=object), pd.Series(detail)


def progression_allowed(row: pd.Series, study_start: pd.Timestamp, later: bool,
                        later_cns: bool = False) -> tuple[bool | None, str]:
    """Is one progression during first-line therapy one of the two allowed exceptions?

    `study_start`: enrolment for an enrolled patient, the evaluation date for a candidate (the registered
    criterion counts the 24 months since CNS-directed therapy to study start, not to the data cut-off).
    `later` says whether another progression followed it; `later_cns` whether that was in the brain again.
    """
    when = f"{pd.Timestamp(row['progressed_on']):%Y-%m-%d}"
    site = row.get("site")
    if site == "brain_only":
        needed = ["treated_with", "symptomatic", "on_steroids", "on_anticonvulsants", "cns_therapy_on"]
        if any(row.get(k) is None or pd.isna(row.get(k)) for k in needed):
            return None, f"brain-only progression {when}: treatment, symptoms, steroids, anticonvulsants or CNS therapy date not recorded"
        months = (study_start - pd.Timestamp(row["cns_therapy_on"])).days / DAYS_PER_MONTH
        problems = []
        if later_cns:
            problems.append("another CNS progression since")
        if row["treated_with"] != "local":
            problems.append("not treated locally")
        if bool(row["symptomatic"]):
            problems.append("symptomatic")
        if bool(row["on_steroids"]):
            problems.append("on steroids")
        if bool(row["on_anticonvulsants"]):
            problems.append("on anticonvulsants")
        if months < MIN_MONTHS_SINCE_CNS_THERAPY:
            problems.append(f"{months:.0f} months from CNS therapy to study start {study_start:%Y-%m-%d} "
                            f"(< {MIN_MONTHS_SINCE_CNS_THERAPY})")
        if problems:
            return False, f"brain-only progression {when}: " + ", ".join(problems)
        return True, (f"brain-only progression {when} allowed: treated locally, asymptomatic, off steroids and "
                      f"anticonvulsants, {months:.0f} months from CNS therapy to study start")
    if site == "extracranial":
        if any(row.get(k) is None or pd.isna(row.get(k)) for k in ("n_lesions", "treated_with")):
            return None, f"extracranial progression {when}: number of lesions or treatment not recorded"
        problems = []
        if int(row["n_lesions"]) != 1:
            problems.append(f"{int(row['n_lesions'])} lesions")
        if row["treated_with"] not in ("local", "endocrine_change"):
            problems.append(f"treated with {row['treated_with']}")
        if later:
            problems.append("progressed again since")
        if problems:
            return False, f"extracranial progression {when}: " + ", ".join(problems)
        how = "locally" if row["treated_with"] == "local" else "by an endocrine change"
        return True, f"single-lesion oligoprogression {when} allowed: treated {how}, no progression since"
    return None, f"progression {when}: site not recorded"


def _first_line(p: pd.DataFrame, prog: pd.DataFrame, as_of: pd.Timestamp):
    met, detail = [], []
    # one sort for everyone, then each patient's rows as plain records (a sort and iterrows per patient took
    # 12 of the 25 s at 100,000 patients); stable, so equal dates keep their order as before
    by_patient: dict = {}
    for record in prog.sort_values(["patient_id", "progressed_on"], kind="stable").to_dict("records"):
        by_patient.setdefault(record["patient_id"], []).append(record)
    for row in p.itertuples(index=False):
        start = row.first_line_start
        if start is None or pd.isna(start):
            met.append(None)
            detail.append("first-line start not recorded")
            continue
        stopped = row.stopped_on is not None and pd.notna(row.stopped_on)
        end = row.stopped_on if stopped else as_of
        years = (pd.Timestamp(end) - pd.Timestamp(start)).days / DAYS_PER_YEAR
        verdicts, notes = [], []
        g = by_patient.get(row.patient_id)
        enrolled = getattr(row, "enrolled_on", None)
        study_start = pd.Timestamp(enrolled) if enrolled is not None and pd.notna(enrolled) else as_of
        if g is not None:
            sites = [pr.get("site") for pr in g]
            for k, pr in enumerate(g):
                ok, note = progression_allowed(pr, study_start, later=k < len(sites) - 1,
                                               later_cns="brain_only" in sites[k + 1:])
                verdicts.append(ok)
                notes.append(note)
        on_first_line = row.stopped_on is None or pd.isna(row.stopped_on) or (
            pd.notna(row.progressed_on) and row.progressed_on <= row.stopped_on)
        if row.progressed_on is not None and pd.notna(row.progressed_on) and on_first_line:
            verdicts.append(False)
            notes.append(f"RECIST progression on first-line therapy {pd.Timestamp(row.progressed_on):%Y-%m-%d}")
        # said: "10.9 years" beside the sheet's "8.1 y before day 0" read as a contradiction
        until = f"to the stop on {pd.Timestamp(end):%Y-%m-%d}" if stopped else f"to {as_of:%Y-%m-%d} (still on it)"
        text = (f"{years:.1f} years of first-line therapy {until}"
                + ("; " + "; ".join(notes) if notes else ", no progression"))
        if years < MIN_FIRST_LINE_YEARS or any(v is False for v in verdicts):
            met.append(False)
        elif any(v is None for v in verdicts):
            met.append(None)
        else:
            met.append(True)
        detail.append(text)
    return pd.Series(met, dtype=object), pd.Series(detail)


def _not_stopped_or_progressed(p: pd.DataFrame, _prog, _as_of):
    met, detail = [], []
    for row in p.itertuples(index=False):
        reasons = []
        if row.stopped_on is not None and pd.notna(row.stopped_on):
            reasons.append(f"stopped anti-HER2 therapy {pd.Timestamp(row.stopped_on):%Y-%m-%d}")
        if row.progressed_on is not None and pd.notna(row.progressed_on):
            reasons.append(f"progressed {pd.Timestamp(row.progressed_on):%Y-%m-%d}")
        met.append(not reasons)
        detail.append("; ".join(reasons) or "on therapy, no progression")
    return pd.Series(met, dtype=object), pd.Series(detail)


def _in_follow_up(p: pd.DataFrame, _prog, _as_of):
    met, detail = [], []
    for row in p.itertuples(index=False):
        reasons = [f"{what} {pd.Timestamp(on):%Y-%m-%d}" for what, on in
                   (("withdrew", getattr(row, "withdrew_on", None)), ("died", getattr(row, "died_on", None)))
                   if on is not None and pd.notna(on)]
        met.append(not reasons)
        detail.append("; ".join(reasons) or "in follow-up")
    return pd.Series(met, dtype=object), pd.Series(detail)


CRITERIA: tuple[Criterion, ...] = (
    Criterion("age_18", f"Age {MIN_AGE} or older", _age),
    Criterion("her2_positive", HER2_RULE, _her2),
    Criterion("first_line_3y", f">= {MIN_FIRST_LINE_YEARS:g} years of first-line anti-HER2 therapy without RECIST "
              "progression (allowed: brain-only progression treated locally, asymptomatic, off steroids and "
              f"anticonvulsants, >= {MIN_MONTHS_SINCE_CNS_THERAPY} months since CNS therapy; single-lesion "
              "extracranial oligoprogression treated locally or by an endocrine change, none since)", _first_line),
    Criterion("not_stopped_or_progressed", "Not already stopped anti-HER2 therapy, not progressed",
              _not_stopped_or_progressed),
    Criterion("in_follow_up", "In follow-up: not withdrawn, alive", _in_follow_up),
)


def evaluate(patients: pd.DataFrame, first_line_progressions: pd.DataFrame, as_of) -> pd.DataFrame:
    """Every criterion for every patient, as of a date. Columns: OUTPUT_COLUMNS."""
    missing = set(PATIENT_COLUMNS) - set(patients.columns)
    if missing:
        raise ValueError(f"eligibility input lacks column(s): {', '.join(sorted(missing))}")
    p = patients.reindex(columns=PATIENT_COLUMNS + OPTIONAL_COLUMNS).reset_index(drop=True)
    prog = first_line_progressions.reindex(columns=PROGRESSION_COLUMNS)
    as_of = pd.Timestamp(as_of)
    parts = []
    for c in CRITERIA:
        met, detail = c.rule(p, prog, as_of)
        parts.append(pd.DataFrame({"patient_id": p["patient_id"], "criterion": c.id, "text": c.text,
                                   "met": met.to_numpy(), "detail": detail.to_numpy()}))
    return pd.concat(parts, ignore_index=True)[OUTPUT_COLUMNS]


def overall(results: pd.DataFrame) -> pd.DataFrame:
    """Per patient: eligible (all met), not eligible (any failed) or unknown, naming the criteria."""
    def names(rows: pd.DataFrame) -> pd.Series:
        return rows.groupby("patient_id", sort=False)["criterion"].agg(", ".join)

    order = pd.Index(results["patient_id"].drop_duplicates())
    failed = names(results[results["met"].eq(False)]).reindex(order, fill_value="")
    unknown = names(results[results["met"].isna()]).reindex(order, fill_value="")
    status = np.where(failed != "", "not eligible", np.where(unknown != "", "unknown", "eligible"))
    return pd.DataFrame({"patient_id": order, "eligibility": status, "failed": failed.to_numpy(),
                         "unknown": unknown.to_numpy()})


def funnel(results: pd.DataFrame) -> pd.DataFrame:
    """Attrition: patients left after each criterion in order, and how many each removes or leaves unknown."""
    remaining = set(results["patient_id"])
    rows = [{"step": "all patients", "remaining": len(remaining), "removed": 0, "unknown": 0}]
    for c in CRITERIA:
        r = results[(results["criterion"] == c.id) & results["patient_id"].isin(remaining)]
        failed = set(r.loc[r["met"].eq(False), "patient_id"])
        unknown = set(r.loc[r["met"].isna(), "patient_id"])
        remaining -= failed | unknown
        rows.append({"step": c.text.split(" (")[0], "remaining": len(remaining), "removed": len(failed),
                     "unknown": len(unknown)})
    return pd.DataFrame(rows)
