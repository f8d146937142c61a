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
#: The patient page warns when the SLD has used up this share of the way to PD (e.g. +10 % of +20 %).
NEAR_PD_PCT_FROM_NADIR = 10.0
#: The response codes of the contract (architecture.md), best first.
RESPONSE_CODES = ("CR", "PR", "SD", "PD", "NE", "NON-CR/NON-PD")

# ------------------------------------------------------------- eligibility (NCT05721248, registered)
MIN_AGE = 18
MIN_FIRST_LINE_YEARS = 3.0  # >= 3 years of first-line anti-HER2 therapy without progression
MIN_MONTHS_SINCE_CNS_THERAPY = 24  # brain-only progression allowed this long after CNS-directed therapy

# ------------------------------------------------------------------ HER2 by ASCO/CAP 2018
HER2_IHC_POSITIVE = "3+"
HER2_IHC_EQUIVOCAL = "2+"  # positive only with ISH amplification
HER2_RULE = "HER2-positive by ASCO/CAP 2018 (IHC 3+, or IHC 2+ with ISH amplification)"


def her2_positive(ihc, ish_amplified) -> bool | None:
    """ASCO/CAP 2018: IHC 3+, or IHC 2+ with ISH amplification. None when it cannot be told."""
    if ihc is None or ihc != ihc:  # None or NaN
        return None
    if ihc == HER2_IHC_POSITIVE:
        return True
    if ihc == HER2_IHC_EQUIVOCAL:
        if ish_amplified is None or ish_amplified != ish_amplified:
            return None
        return bool(ish_amplified)
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
#: A ctDNA result drawn longer than this before the estimate's date is flagged as stale.
CTDNA_STALE_DAYS = 90

# ----------------------------------------------------------------------------------- PROs
#: The baseline score is the last one completed from this many days before the index date to this
#: many days after it (a questionnaire given at the stopping visit, or just before).
PRO_BASELINE_DAYS_BEFORE = 42
PRO_BASELINE_DAYS_AFTER = 14


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
        ("pro_baseline_days_before", PRO_BASELINE_DAYS_BEFORE, "PRO baseline window"),
        ("pro_baseline_days_after", PRO_BASELINE_DAYS_AFTER, "PRO baseline window"),
    ]


def sql_response_codes() -> str:
    """The response codes as an SQL list literal (the schema's CHECK constraints are generated from it)."""
    return ", ".join("'" + code + "'" for code in RESPONSE_CODES)
