"""Every clinical constant and classification rule of the product, defined once (pure: no imports of ours).

Python modules import these names; the SQL views read the numeric ones from the snapshot's
``clinical_constants`` table (written from :func:`sql_constants` at build) and the classifications
(HER2, HR status) from the ``patient_classification`` table, which the build fills with the
functions below. So changing a value here changes it everywhere, and
``tests/unit/test_architecture.py`` fails if any other file defines its own copy.
"""
from __future__ import annotations

# ---------------------------------------------------------------------------------- time
#: Days in a month (365.25 / 12): every "months since" in the product, Python and SQL.
DAYS_PER_MONTH = 30.4375
#: Days in a year (Julian): ages and years on therapy.
DAYS_PER_YEAR = 365.25

# ---------------------------------------------------------------------- RECIST 1.1 (Eisenhauer 2009)
PD_PCT_FROM_NADIR = 20.0  # target PD: >= 20 % above the nadir ...
PD_MIN_ABSOLUTE_MM = 5.0  # ... and >= 5 mm absolute increase
PR_PCT_FROM_BASELINE = -30.0  # target PR: >= 30 % below baseline
NODE_NORMAL_MM = 10.0  # a lymph node < 10 mm short axis is normal (counts as CR)
#: The patient page warns when the SLD has used up this share of the way to PD (e.g. +10 % of +20 %) ...
NEAR_PD_PCT_FROM_NADIR = 10.0
#: ... AND grown by at least this much: smaller changes are within the variability of measuring the same
#: lesion twice (assumption; RECIST's own 5 mm floor for PD exists for the same reason). It fired on 2 mm.
NEAR_PD_MIN_MM = 3.0
#: Worklist order: the most urgent kind of alert first (the patient page lists alerts in this order too).
ALERT_SEVERITY = ("progression not acted on", "ctDNA", "SLD near PD", "PRO worsening", "other",
                  "progression acted on")
#: The response codes of the contract (architecture.md), best first.
RESPONSE_CODES = ("CR", "PR", "SD", "PD", "NE", "NON-CR/NON-PD")
#: A scan's overall response may also be NED: no disease at baseline (no target, no non-target lesion)
#: and nothing new. RECIST has no code for it; calling it CR would claim a response to treatment.
NO_EVIDENCE_OF_DISEASE = "NED"
OVERALL_RESPONSE_CODES = (*RESPONSE_CODES, NO_EVIDENCE_OF_DISEASE)
#: RECIST 1.1 measurability at baseline (Eisenhauer 2009, 3.1): a target node >= 15 mm short axis, any other
#: target >= 10 mm; at most 5 targets, 2 per organ. A lesion "too small to measure" is recorded as 5 mm, a
#: lesion gone as 0 mm (RECIST working group, Schwartz 2016).
MEASURABLE_NODE_MM = 15.0
MEASURABLE_LESION_MM = 10.0
MAX_TARGETS, MAX_TARGETS_PER_ORGAN = 5, 2
TOO_SMALL_TO_MEASURE_MM = 5.0

# ------------------------------------------------------------- eligibility (NCT05721248, registered)
MIN_AGE = 18
MIN_FIRST_LINE_YEARS = 3.0  # >= 3 years of first-line anti-HER2 therapy without progression
MIN_MONTHS_SINCE_CNS_THERAPY = 24  # brain-only progression allowed this long after CNS-directed therapy

# ------------------------------------------------------------------ HER2 by ASCO/CAP 2018
HER2_IHC_POSITIVE = "3+"
HER2_IHC_EQUIVOCAL = "2+"  # positive only with ISH amplification
#: ASCO/CAP 2018 (Wolff 2018): IHC 3+ is positive; ISH group 1 (HER2/CEP17 >= 2.0 and >= 4 copies) is positive
#: whatever the IHC; groups 2-4 are resolved with concurrent IHC into the lab's final ISH call, which is what
#: `her2_ish_amplified` records (amplified = positive after that work-up). IHC 0/1+ without an ISH result is
#: negative (ISH is not required); IHC 2+ without one is unknown, never "not HER2-positive".
HER2_RULE = ("HER2-positive by ASCO/CAP 2018 (IHC 3+, or ISH positive: group 1, or groups 2-4 positive after the "
             "concurrent IHC work-up; IHC 2+ without an ISH result is unknown)")


def her2_positive(ihc, ish_amplified) -> bool | None:
    """ASCO/CAP 2018 (HER2_RULE): IHC 3+, or ISH positive whatever the IHC. None when it cannot be told."""
    import pandas as pd

    ish_known = not pd.isna(ish_amplified)  # None, NaN and pd.NA all mean "no ISH result"
    if ish_known and bool(ish_amplified):
        return True
    if pd.isna(ihc):
        return False if ish_known else None
    if ihc == HER2_IHC_POSITIVE:
        return True
    if ihc == HER2_IHC_EQUIVOCAL:
        return False if ish_known else None
    return False


def hr_status(er_status, pr_status) -> str | None:
    """Hormone-receptor status: positive if ER or PR is positive, negative if both are negative."""
    if er_status == "positive" or pr_status == "positive":
        return "positive"
    if er_status == "negative" and pr_status == "negative":
        return "negative"
    return None


# ----------------------------------------------------------------------------- the estimate
HORIZONS = (6, 12, 24)  # months; the setting a user may pick
#: Landmarks of the estimate as of a date: months after stopping, every ctDNA draw interval (3 months) to 24.
LANDMARK_MONTHS = tuple(range(0, 25, 3))
DEFAULT_HORIZON = 12

#: What a tumour board may decide for a patient it discusses (data/decisions.py keeps the record).
BOARD_DECISIONS = ("stop", "continue", "restart", "defer", "not eligible")
#: A ctDNA result drawn longer than this before the estimate's date is flagged as stale.
CTDNA_STALE_DAYS = 90

# ----------------------------------------------------------------------------------- PROs
#: The baseline score is the last one completed from this many days before the index date to this
#: many days after it (a questionnaire given at the stopping visit, or just before).
PRO_BASELINE_DAYS_BEFORE = 42
PRO_BASELINE_DAYS_AFTER = 14


def months_off_therapy(index_date, restarted_on, months_to_cutoff: float) -> tuple[float, str]:
    """Months a stopped patient has been off anti-HER2 therapy, and what the count runs to: the count stops
    at a restart (counting on would credit time back on therapy to time off it)."""
    import pandas as pd

    if restarted_on is None or pd.isna(restarted_on):
        return float(months_to_cutoff), "to the data cut-off"
    days = (pd.Timestamp(restarted_on) - pd.Timestamp(index_date)).days
    return days / DAYS_PER_MONTH, f"until the restart on {pd.Timestamp(restarted_on):%Y-%m-%d}"


def sql_constants() -> list[tuple[str, float, str]]:
    """(name, value, what) for the snapshot's clinical_constants table, which the SQL views read."""
    return [
        ("days_per_month", DAYS_PER_MONTH, "days in a month"),
        ("days_per_year", DAYS_PER_YEAR, "days in a year"),
        ("pd_pct_from_nadir", PD_PCT_FROM_NADIR, "RECIST 1.1 target PD"),
        ("pd_min_absolute_mm", PD_MIN_ABSOLUTE_MM, "RECIST 1.1 target PD"),
        ("pr_pct_from_baseline", PR_PCT_FROM_BASELINE, "RECIST 1.1 target PR"),
        ("node_normal_mm", NODE_NORMAL_MM, "RECIST 1.1 normal node"),
        ("near_pd_pct_from_nadir", NEAR_PD_PCT_FROM_NADIR, "alert threshold"),
        ("near_pd_min_mm", NEAR_PD_MIN_MM, "alert threshold"),
        ("pro_baseline_days_before", PRO_BASELINE_DAYS_BEFORE, "PRO baseline window"),
        ("pro_baseline_days_after", PRO_BASELINE_DAYS_AFTER, "PRO baseline window"),
    ]


def sql_response_codes() -> str:
    """The response codes as an SQL list literal (the schema's CHECK constraints are generated from it)."""
    return ", ".join("'" + code + "'" for code in RESPONSE_CODES)
