"""RECIST 1.1 engine: lesion measurements in, per-scan responses out (pure, vectorized).

Eisenhauer et al., Eur J Cancer 2009;45:228-47. Responses are derived from the measurements, never
typed in. The rules, each with its source section:

* The first scan of each patient is the baseline; target and non-target lesions are the ones
  recorded there (later rows for lesions not recorded at baseline are ignored, except new lesions).
* SLD = sum of the long axis of non-nodal targets + the short axis of nodal targets (4.3.2).
* Target CR: every non-nodal target gone (0 mm) and every nodal target < 10 mm short axis.
  PR: SLD >= 30 % below BASELINE. PD: SLD >= 20 % above the NADIR (smallest SLD of all EARLIER
  scans, baseline included) AND >= 5 mm above it; with a nadir of 0 any reappearance of >= 5 mm is
  PD. SD otherwise. NE when a target lesion was not measured, unless the measured ones already
  show PD (4.3.2, 4.3.4).
* Non-target CR: all gone and nodes < 10 mm; PD: unequivocal progression; NE: not assessed;
  otherwise NON-CR/NON-PD (4.3.3).
* New lesions: an unequivocal new lesion is PD. An equivocal one is not; if a later scan confirms
  the same lesion, PD is dated to the scan that first showed it (4.3.2, "new lesions").
* After a complete response, a lesion that reappears is PD, whatever its size (RECIST working group's
  answers, Schwartz 2016): a non-nodal target or non-target measured above 0 mm (or present again), a
  node back at >= 10 mm short axis. Without this rule 20 -> 0 -> 4 mm would read PR, and a node
  16 -> 8 -> 12 mm SD.
* Overall response: Table 1 (targets +/- non-targets), Table 2 (non-targets only). A patient with
  no disease at baseline (no target and no non-target lesions) is NED (no evidence of disease) until
  a new lesion: CR would claim a response there was nothing to respond.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

# The thresholds live in data/clinical.py (one source for Python and the SQL views).
from data.clinical import (  # noqa: F401  (re-exported: recist.PD_PCT_FROM_NADIR reads naturally)
    MAX_TARGETS,
    MAX_TARGETS_PER_ORGAN,
    MEASURABLE_LESION_MM,
    MEASURABLE_NODE_MM,
    NEAR_PD_PCT_FROM_NADIR,
    NO_EVIDENCE_OF_DISEASE,
    NODE_NORMAL_MM,
    PD_MIN_ABSOLUTE_MM,
    PD_PCT_FROM_NADIR,
    PR_PCT_FROM_BASELINE,
    RESPONSE_CODES,
    TOO_SMALL_TO_MEASURE_MM,
)

LESION_KINDS = ("target", "non_target", "new")
LESION_STATUSES = ("present", "absent", "unequivocal_progression", "equivocal")

INPUT_COLUMNS = ["patient_id", "scan_id", "scanned_on", "lesion_id", "kind", "organ", "is_node",
                 "diameter_mm", "status"]
OUTPUT_COLUMNS = ["patient_id", "scan_id", "scanned_on", "is_baseline", "n_target_lesions",
                  "sld_mm", "baseline_sld_mm", "nadir_sld_mm", "pd_threshold_mm", "pct_from_baseline", "pct_from_nadir",
                  "target_response", "non_target_response", "new_lesion", "overall_response", "note"]

_KEY = ["patient_id", "scan_id"]


def _scans(m: pd.DataFrame) -> pd.DataFrame:
    scans = (m[["patient_id", "scan_id", "scanned_on"]].drop_duplicates(_KEY)
             .sort_values(["patient_id", "scanned_on", "scan_id"], kind="stable", ignore_index=True))
    scans["seq"] = scans.groupby("patient_id", sort=False, observed=True).cumcount()
    return scans


def _baseline_lesions(m: pd.DataFrame, scans: pd.DataFrame, kind: str) -> pd.DataFrame:
    base = scans.loc[scans["seq"] == 0, _KEY]
    rows = m[m["kind"] == kind].merge(base, on=_KEY)
    return rows[["patient_id", "lesion_id", "is_node"]].drop_duplicates(["patient_id", "lesion_id"])


def _grid(m: pd.DataFrame, scans: pd.DataFrame, kind: str) -> pd.DataFrame:
    """Every baseline lesion of a kind at every scan of its patient, with what was recorded there."""
    lesions = _baseline_lesions(m, scans, kind)
    grid = scans[_KEY + ["seq"]].merge(lesions, on="patient_id")
    recorded = m.loc[m["kind"] == kind, _KEY + ["lesion_id", "diameter_mm", "status"]]
    recorded = recorded.drop_duplicates(_KEY + ["lesion_id"])
    return grid.merge(recorded, on=_KEY + ["lesion_id"], how="left")


def _target(m: pd.DataFrame, scans: pd.DataFrame) -> pd.DataFrame:
    g = _grid(m, scans, "target")
    d = g["diameter_mm"]
    g["measured"] = d.notna()
    g["cr_ok"] = np.where(g["is_node"].astype(bool), d < NODE_NORMAL_MM, d == 0)
    g["back"] = g["measured"] & ~g["cr_ok"]  # disease measurable again (reappeared, if it had gone)
    agg = g.groupby(_KEY, sort=False, observed=True).agg(
        n_target_lesions=("lesion_id", "size"), n_measured=("measured", "sum"),
        sld_partial=("diameter_mm", "sum"), all_cr=("cr_ok", "all"), target_back=("back", "any"))
    return agg.reset_index()


def _non_target(m: pd.DataFrame, scans: pd.DataFrame) -> pd.DataFrame:
    g = _grid(m, scans, "non_target")
    status = g["status"]
    node_normal = g["is_node"].astype(bool) & (g["diameter_mm"] < NODE_NORMAL_MM)
    g["gone"] = (status == "absent") | node_normal
    g["unequivocal"] = status == "unequivocal_progression"
    g["unassessed"] = status.isna() & ~node_normal
    g["back"] = status.isin(["present", "unequivocal_progression"]) & ~node_normal
    agg = g.groupby(_KEY, sort=False, observed=True).agg(
        n_non_target=("lesion_id", "size"), nt_all_gone=("gone", "all"),
        nt_pd=("unequivocal", "any"), nt_unassessed=("unassessed", "any"), nt_back=("back", "any"))
    return agg.reset_index()


def _new_lesions(m: pd.DataFrame, scans: pd.DataFrame) -> pd.DataFrame:
    new = m[m["kind"] == "new"].merge(scans[_KEY + ["seq", "scanned_on"]].rename(
        columns={"scanned_on": "scan_date"}), on=_KEY)
    new = new[new["seq"] > 0]
    status = new["status"].fillna("present")
    new = new.assign(unequivocal=status.isin(["present", "unequivocal_progression"]),
                     equivocal=status == "equivocal")
    per_scan = new.groupby(_KEY, sort=False, observed=True).agg(new_unequivocal=("unequivocal", "any"),
                                                new_equivocal=("equivocal", "any")).reset_index()
    # An equivocal new lesion confirmed later (same lesion id) dates PD back to its first scan.
    eq = new.loc[new["equivocal"], ["patient_id", "lesion_id", "scan_id", "seq"]]
    conf = new.loc[new["unequivocal"], ["patient_id", "lesion_id", "seq", "scan_date"]]
    both = eq.merge(conf, on=["patient_id", "lesion_id"], suffixes=("", "_confirmed"))
    both = both[both["seq_confirmed"] > both["seq"]]
    first_conf = both.groupby(_KEY, sort=False, observed=True)["scan_date"].min().rename("confirmed_on").reset_index()
    return per_scan.merge(first_conf, on=_KEY, how="left")


def _validate(measurements: pd.DataFrame) -> pd.DataFrame:
    missing = set(INPUT_COLUMNS) - set(measurements.columns)
    if missing:
        raise ValueError(f"lesion measurements lack column(s): {', '.join(sorted(missing))}")
    m = measurements[INPUT_COLUMNS].copy()
    bad_kind = m["kind"].notna() & ~m["kind"].isin(LESION_KINDS)
    if bad_kind.any():
        row = m.index[bad_kind][0]
        raise ValueError(f"row {row}: kind {m.at[row, 'kind']!r} is not one of {', '.join(LESION_KINDS)}")
    bad_status = m["status"].notna() & ~m["status"].isin(LESION_STATUSES)
    if bad_status.any():
        row = m.index[bad_status][0]
        raise ValueError(f"row {row}: status {m.at[row, 'status']!r} is not one of "
                         f"{', '.join(LESION_STATUSES)}")
    m["diameter_mm"] = pd.to_numeric(m["diameter_mm"], errors="raise").astype(float)
    if (m["diameter_mm"] < 0).any():
        row = m.index[m["diameter_mm"] < 0][0]
        raise ValueError(f"row {row}: diameter_mm {m.at[row, 'diameter_mm']} is negative")
    m["is_node"] = m["is_node"].fillna(False).astype(bool)
    m["scanned_on"] = pd.to_datetime(m["scanned_on"])
    return m


def measurability_problems(lesions: pd.DataFrame, scans: pd.DataFrame) -> pd.Series:
    """Per lesion row (same index): why a BASELINE target lesion breaks RECIST 1.1's measurability rules
    (3.1, 4.2), or "". lesions: patient_id, scan_id, lesion_id, kind, organ, is_node, diameter_mm;
    scans: patient_id, scan_id, scanned_on. Warnings, not errors: the trial's readers chose these targets,
    and their responses are still derived, but a reviewer should know the series rests on them."""
    out = pd.Series("", index=lesions.index, dtype=object)
    if lesions.empty or scans.empty:
        return out
    first = (scans.sort_values(["patient_id", "scanned_on", "scan_id"], kind="stable")
             .drop_duplicates("patient_id")[["patient_id", "scan_id"]].assign(_baseline=True))
    m = lesions.reset_index(names="_row").merge(first, on=["patient_id", "scan_id"], how="left")
    m = m[m["_baseline"].eq(True) & (m["kind"] == "target")]
    if m.empty:
        return out
    node = m["is_node"].fillna(False).astype(bool)
    d = pd.to_numeric(m["diameter_mm"], errors="coerce")
    small_node = node & (d < MEASURABLE_NODE_MM)
    small = ~node & (d < MEASURABLE_LESION_MM)
    rank = m.groupby("patient_id").cumcount()
    organ_rank = m.groupby(["patient_id", m["organ"].fillna("")]).cumcount()
    messages = np.select(
        [small_node, small, rank >= MAX_TARGETS, m["organ"].notna() & (organ_rank >= MAX_TARGETS_PER_ORGAN)],
        [f"a target node must measure >= {MEASURABLE_NODE_MM:g} mm short axis at baseline (RECIST 1.1)",
         f"a target lesion must measure >= {MEASURABLE_LESION_MM:g} mm at baseline (RECIST 1.1)",
         f"more than {MAX_TARGETS} target lesions at baseline (RECIST 1.1 allows {MAX_TARGETS})",
         f"more than {MAX_TARGETS_PER_ORGAN} target lesions in one organ at baseline (RECIST 1.1 allows "
         f"{MAX_TARGETS_PER_ORGAN})"], default="")
    out.loc[m["_row"].to_numpy()] = messages
    return out


def pd_threshold_mm(nadir_sld_mm):
    """The SLD at which target disease is PD: >= 20 % above the nadir AND >= 5 mm above it (4.3.2)."""
    nadir = np.asarray(nadir_sld_mm, dtype=float)
    return np.maximum(nadir * (1 + PD_PCT_FROM_NADIR / 100), nadir + PD_MIN_ABSOLUTE_MM)


def assess(measurements: pd.DataFrame) -> pd.DataFrame:
    """Derive RECIST 1.1 responses for every scan of every patient.

    Parameters
    ----------
    measurements : DataFrame, one row per lesion per scan, with columns patient_id, scan_id,
        scanned_on, lesion_id, kind ('target' | 'non_target' | 'new'), organ, is_node,
        diameter_mm (long axis; short axis for nodes; NaN when not measured) and status (for
        non-target and new lesions: 'present' | 'absent' | 'unequivocal_progression' |
        'equivocal'). A scan at which no lesion was seen is given as one row with lesion_id and
        kind null.

    Returns
    -------
    DataFrame with one row per (patient_id, scan_id) and the columns in OUTPUT_COLUMNS. The
    baseline scan has no responses (null). Diameters in mm, percentages in % (+ = growth).
    """
    m = _validate(measurements)
    scans = _scans(m)
    out = scans.merge(_target(m, scans), on=_KEY, how="left")
    out = out.merge(_non_target(m, scans), on=_KEY, how="left")
    out = out.merge(_new_lesions(m, scans), on=_KEY, how="left")

    has_target = out["n_target_lesions"].fillna(0) > 0
    has_nt = out["n_non_target"].fillna(0) > 0
    complete = has_target & (out["n_measured"] == out["n_target_lesions"])
    out["sld_mm"] = out["sld_partial"].where(complete)
    out["baseline_sld_mm"] = out["sld_mm"].where(out["seq"] == 0)
    out["baseline_sld_mm"] = out.groupby("patient_id", sort=False, observed=True)["baseline_sld_mm"].transform("first")
    prior_min = out.groupby("patient_id", sort=False, observed=True)["sld_mm"].cummin()
    prior_min = prior_min.groupby(out["patient_id"], sort=False, observed=True).ffill()
    out["nadir_sld_mm"] = prior_min.groupby(out["patient_id"], sort=False, observed=True).shift(1)
    out.loc[out["seq"] == 0, "nadir_sld_mm"] = out["baseline_sld_mm"]
    out["pd_threshold_mm"] = pd_threshold_mm(out["nadir_sld_mm"])
    with np.errstate(invalid="ignore", divide="ignore"):
        base, nadir = out["baseline_sld_mm"], out["nadir_sld_mm"]
        out["pct_from_baseline"] = ((out["sld_mm"] - base) / base * 100).where(base > 0)
        out["pct_from_nadir"] = ((out["sld_mm"] - nadir) / nadir * 100).where(nadir > 0)

    follow_up = out["seq"] > 0
    partial = out["sld_partial"]
    # A complete response at an EARLIER follow-up scan: targets (all gone, nodes normal), and overall.
    target_cr = has_target & follow_up & complete & out["all_cr"].eq(True)
    nt_gone = out["nt_all_gone"].eq(True)
    overall_cr = follow_up & ((target_cr & (~has_nt | nt_gone)) | (~has_target & has_nt & nt_gone))
    by_patient = out["patient_id"]

    def earlier(flag: pd.Series) -> pd.Series:
        seen = flag.astype(int).groupby(by_patient, sort=False, observed=True).cummax()
        return seen.groupby(by_patient, sort=False, observed=True).shift(1).fillna(0).astype(bool)

    target_back = earlier(target_cr) & out["target_back"].eq(True)
    nt_back = earlier(overall_cr) & out["nt_back"].eq(True)
    target_pd = has_target & follow_up & (((partial - nadir >= PD_MIN_ABSOLUTE_MM - 1e-9) & (
        partial >= nadir * (1 + PD_PCT_FROM_NADIR / 100) - 1e-9)) | target_back)
    target = np.select(
        [~has_target | ~follow_up, target_pd, ~complete, out["all_cr"].eq(True),
         out["pct_from_baseline"] <= PR_PCT_FROM_BASELINE + 1e-9],
        [None, "PD", "NE", "CR", "PR"], default="SD")
    non_target = np.select(
        [~has_nt | ~follow_up, out["nt_pd"].eq(True) | nt_back,
         out["nt_unassessed"].eq(True), out["nt_all_gone"].eq(True)],
        [None, "PD", "NE", "CR"], default="NON-CR/NON-PD")
    confirmed_on = out["confirmed_on"]
    new = (out["new_unequivocal"].eq(True) | confirmed_on.notna()) & follow_up
    out["target_response"], out["non_target_response"] = target, non_target
    out["new_lesion"] = pd.array(new, dtype="boolean")
    out.loc[~follow_up, "new_lesion"] = pd.NA

    t, nt = out["target_response"], out["non_target_response"]
    overall = np.select(
        [~follow_up,
         (t == "PD") | (nt == "PD") | new,
         has_target & (t == "CR") & (~has_nt | (nt == "CR")),
         has_target & (t == "CR"),  # CR with non-target non-CR/non-PD or NE: PR (Table 1)
         has_target & (t == "PR"),
         has_target & (t == "SD"),
         has_target,  # target NE
         has_nt & (nt == "CR"),
         has_nt & (nt == "NON-CR/NON-PD"),
         has_nt],  # non-target NE
        [None, "PD", "CR", "PR", "PR", "SD", "NE", "CR", "NON-CR/NON-PD", "NE"],
        default=NO_EVIDENCE_OF_DISEASE)  # no disease at baseline and nothing new
    out["overall_response"] = overall
    notes = pd.Series(None, index=out.index, dtype=object)
    notes[confirmed_on.notna()] = ("equivocal new lesion confirmed on "
                                   + confirmed_on[confirmed_on.notna()].dt.strftime("%Y-%m-%d")
                                   + ": PD dated to this scan")
    eq_open = out["new_equivocal"].eq(True) & confirmed_on.isna() & ~new
    notes[eq_open] = "equivocal new lesion: not PD unless a later scan confirms it"
    notes[follow_up & has_target & ~complete & (t == "PD")] = "PD shown by the measured lesions"
    notes[(target_back | nt_back) & ~new] = "a lesion reappeared after a complete response: PD"
    out["note"] = notes
    out["is_baseline"] = ~follow_up
    out["n_target_lesions"] = out["n_target_lesions"].fillna(0).astype(int)
    for col in ("target_response", "non_target_response", "overall_response"):
        out[col] = out[col].astype(object).where(out[col].notna(), None)
    return out[OUTPUT_COLUMNS]
