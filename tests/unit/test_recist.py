"""RECIST 1.1: one hand-worked case per rule (Eisenhauer 2009)."""
import numpy as np
import pandas as pd
import pytest

from data import recist

NaN = np.nan


def scans(*visits, patient="P1"):
    """visits: (date, [(lesion_id, kind, is_node, diameter_mm, status), ...]); [] = nothing seen."""
    rows = []
    for k, (date, lesions) in enumerate(visits):
        if not lesions:
            rows.append(dict(patient_id=patient, scan_id=f"S{k}", scanned_on=date, lesion_id=None, kind=None,
                             organ=None, is_node=False, diameter_mm=NaN, status=None))
        for lesion_id, kind, is_node, d, status in lesions:
            rows.append(dict(patient_id=patient, scan_id=f"S{k}", scanned_on=date, lesion_id=lesion_id, kind=kind,
                             organ="lymph node" if is_node else "liver", is_node=is_node, diameter_mm=d, status=status))
    return pd.DataFrame(rows)


def T(lesion_id, d, node=False):
    return (lesion_id, "target", node, d, None)


def NT(lesion_id, status="present", node=False, d=NaN):
    return (lesion_id, "non_target", node, d, status)


def NEW(lesion_id, status="present", d=NaN):
    return (lesion_id, "new", False, d, status)


def responses(frame):
    return recist.assess(frame)["overall_response"].tolist()


def test_baseline_is_the_first_scan_by_date_and_has_no_response():
    frame = scans(("2024-04-01", [T("T1", 30)]), ("2024-01-01", [T("T1", 50)]))
    out = recist.assess(frame)
    assert out["scan_id"].tolist() == ["S1", "S0"]  # sorted by date
    base = out.iloc[0]
    assert base["is_baseline"] and base["overall_response"] is None and base["target_response"] is None
    assert base["sld_mm"] == 50 and base["baseline_sld_mm"] == 50
    assert out.iloc[1]["overall_response"] == "PR"


def test_sld_adds_long_axis_of_lesions_and_short_axis_of_nodes():
    out = recist.assess(scans(("2024-01-01", [T("T1", 50), T("T2", 20, node=True)])))
    assert out.iloc[0]["sld_mm"] == 70


def test_pr_needs_30_percent_below_baseline():
    base = ("2024-01-01", [T("T1", 100)])
    assert responses(scans(base, ("2024-04-01", [T("T1", 70)])))[1] == "PR"  # exactly -30 %
    assert responses(scans(base, ("2024-04-01", [T("T1", 71)])))[1] == "SD"


def test_pd_needs_both_20_percent_and_5_mm_above_nadir():
    base = ("2024-01-01", [T("T1", 20)])
    assert responses(scans(base, ("2024-04-01", [T("T1", 24)])))[1] == "SD"  # +20 % but +4 mm
    assert responses(scans(base, ("2024-04-01", [T("T1", 25)])))[1] == "PD"  # +25 %, +5 mm
    big = ("2024-01-01", [T("T1", 100)])
    assert responses(scans(big, ("2024-04-01", [T("T1", 106)])))[1] == "SD"  # +6 mm but +6 %


def test_nadir_is_the_smallest_sld_of_all_earlier_scans_including_baseline():
    out = recist.assess(scans(("2024-01-01", [T("T1", 50)]), ("2024-04-01", [T("T1", 40)]),
                              ("2024-07-01", [T("T1", 30)]), ("2024-10-01", [T("T1", 36)])))
    assert out["nadir_sld_mm"].tolist() == [50, 50, 40, 30]
    assert out["overall_response"].tolist() == [None, "SD", "PR", "PD"]  # PD though -28 % from baseline
    assert out.iloc[3]["pct_from_baseline"] == pytest.approx(-28.0)
    assert out.iloc[3]["pct_from_nadir"] == pytest.approx(20.0)


def test_nadir_of_zero_any_reappearance_of_5_mm_is_pd():
    base = ("2024-01-01", [T("T1", 15)])
    gone = ("2024-04-01", [T("T1", 0)])
    out = recist.assess(scans(base, gone, ("2024-07-01", [T("T1", 5)])))
    assert out["overall_response"].tolist() == [None, "CR", "PD"]
    assert np.isnan(out.iloc[2]["pct_from_nadir"])  # a percentage of 0 is undefined



@pytest.mark.parametrize("back", [4, 1, recist.TOO_SMALL_TO_MEASURE_MM])
def test_after_a_complete_response_any_reappearance_is_pd(back):
    """RECIST working group (Schwartz 2016): a lesion that reappears after CR is PD, whatever its size."""
    out = recist.assess(scans(("2024-01-01", [T("T1", 20)]), ("2024-04-01", [T("T1", 0)]),
                              ("2024-07-01", [T("T1", back)])))
    assert out["overall_response"].tolist() == [None, "CR", "PD"]
    assert "reappeared after a complete response" in out.iloc[2]["note"]


def test_a_node_pathological_again_after_a_complete_response_is_pd():
    out = recist.assess(scans(("2024-01-01", [T("N1", 16, node=True)]), ("2024-04-01", [T("N1", 8, node=True)]),
                              ("2024-07-01", [T("N1", 12, node=True)])))
    assert out["overall_response"].tolist() == [None, "CR", "PD"]
    # still normal (< 10 mm) is still CR
    out = recist.assess(scans(("2024-01-01", [T("N1", 16, node=True)]), ("2024-04-01", [T("N1", 8, node=True)]),
                              ("2024-07-01", [T("N1", 9, node=True)])))
    assert out["overall_response"].tolist() == [None, "CR", "CR"]


def test_a_reappearance_without_an_earlier_complete_response_follows_the_usual_rule():
    # 20 -> 4 (PR) -> 6: +2 mm from the nadir is not PD (no CR ever)
    out = recist.assess(scans(("2024-01-01", [T("T1", 20)]), ("2024-04-01", [T("T1", 4)]),
                              ("2024-07-01", [T("T1", 6)])))
    assert out["overall_response"].tolist() == [None, "PR", "PR"]


def test_a_non_target_lesion_back_after_an_overall_complete_response_is_pd():
    base = ("2024-01-01", [T("T1", 20), NT("B1")])
    gone = ("2024-04-01", [T("T1", 0), NT("B1", "absent")])
    assert responses(scans(base, gone, ("2024-07-01", [T("T1", 0), NT("B1", "present")]))) == [None, "CR", "PD"]


def test_nodes_below_10_mm_count_as_complete_response():
    base = ("2024-01-01", [T("T1", 20), T("N1", 18, node=True)])
    assert responses(scans(base, ("2024-04-01", [T("T1", 0), T("N1", 9, node=True)])))[1] == "CR"
    assert responses(scans(base, ("2024-04-01", [T("T1", 0), T("N1", 10, node=True)])))[1] == "PR"


def test_unmeasured_target_lesion_makes_ne_unless_pd_is_already_shown():
    base = ("2024-01-01", [T("T1", 30), T("T2", 20)])
    out = recist.assess(scans(base, ("2024-04-01", [T("T1", 28), T("T2", NaN)])))
    assert out.iloc[1]["overall_response"] == "NE" and np.isnan(out.iloc[1]["sld_mm"])
    out = recist.assess(scans(base, ("2024-04-01", [T("T1", 61), T("T2", NaN)])))  # 61 >= 50 * 1.2
    assert out.iloc[1]["target_response"] == "PD" and out.iloc[1]["overall_response"] == "PD"
    # a target lesion simply missing from a follow-up scan is not measured either
    out = recist.assess(scans(base, ("2024-04-01", [T("T1", 28)])))
    assert out.iloc[1]["overall_response"] == "NE"


def test_incomplete_scan_does_not_set_the_nadir():
    out = recist.assess(scans(("2024-01-01", [T("T1", 30), T("T2", 20)]), ("2024-04-01", [T("T1", 5), T("T2", NaN)]),
                              ("2024-07-01", [T("T1", 30), T("T2", 20)])))
    assert out.iloc[2]["nadir_sld_mm"] == 50 and out.iloc[2]["overall_response"] == "SD"


def test_patient_without_target_lesions_gets_response_from_non_target_and_new_lesions():
    base = ("2024-01-01", [NT("B1")])
    assert responses(scans(base, ("2024-04-01", [NT("B1")])))[1] == "NON-CR/NON-PD"
    assert responses(scans(base, ("2024-04-01", [NT("B1", "absent")])))[1] == "CR"
    assert responses(scans(base, ("2024-04-01", [NT("B1", "unequivocal_progression")])))[1] == "PD"
    assert responses(scans(base, ("2024-04-01", [NT("B1", None)])))[1] == "NE"
    assert responses(scans(base, ("2024-04-01", [NT("B1"), NEW("X1")])))[1] == "PD"
    out = recist.assess(scans(base, ("2024-04-01", [NT("B1")])))
    assert out.iloc[1]["target_response"] is None and np.isnan(out.iloc[1]["sld_mm"])


def test_non_target_node_below_10_mm_counts_as_gone():
    base = ("2024-01-01", [NT("N1", node=True, d=13)])
    assert responses(scans(base, ("2024-04-01", [NT("N1", node=True, d=9)])))[1] == "CR"


def test_no_disease_at_baseline_is_ned_not_cr_until_a_new_lesion():
    out = recist.assess(scans(("2024-01-01", []), ("2024-04-01", []), ("2024-07-01", [NEW("X1")])))
    assert out["overall_response"].tolist() == [None, "NED", "PD"]
    assert out["new_lesion"].tolist()[1:] == [False, True]


def test_equivocal_new_lesion_is_not_pd():
    base = ("2024-01-01", [T("T1", 30)])
    out = recist.assess(scans(base, ("2024-04-01", [T("T1", 30), NEW("X1", "equivocal")]),
                              ("2024-07-01", [T("T1", 30)])))
    assert out["overall_response"].tolist() == [None, "SD", "SD"]
    assert "equivocal" in out.iloc[1]["note"]


def test_equivocal_new_lesion_confirmed_later_dates_pd_to_its_first_scan():
    base = ("2024-01-01", [T("T1", 30)])
    out = recist.assess(scans(base, ("2024-04-01", [T("T1", 30), NEW("X1", "equivocal")]),
                              ("2024-07-01", [T("T1", 30), NEW("X1", "present", 12)])))
    assert out["overall_response"].tolist() == [None, "PD", "PD"]
    assert "confirmed on 2024-07-01" in out.iloc[1]["note"]


def test_overall_response_table_with_targets_and_non_targets():
    base = ("2024-01-01", [T("T1", 30), NT("B1")])
    # target CR with non-target still present: PR (RECIST Table 1)
    out = recist.assess(scans(base, ("2024-04-01", [T("T1", 0), NT("B1")])))
    assert (out.iloc[1]["target_response"], out.iloc[1]["non_target_response"], out.iloc[1]["overall_response"]) == \
        ("CR", "NON-CR/NON-PD", "PR")
    # target CR with non-target not assessed: PR
    assert responses(scans(base, ("2024-04-01", [T("T1", 0), NT("B1", None)])))[1] == "PR"
    # target CR and non-target gone: CR
    assert responses(scans(base, ("2024-04-01", [T("T1", 0), NT("B1", "absent")])))[1] == "CR"
    # target SD with non-target not assessed: SD
    assert responses(scans(base, ("2024-04-01", [T("T1", 28), NT("B1", None)])))[1] == "SD"
    # target PR with unequivocal non-target progression: PD
    assert responses(scans(base, ("2024-04-01", [T("T1", 10), NT("B1", "unequivocal_progression")])))[1] == "PD"
    # target PR with a new lesion: PD
    assert responses(scans(base, ("2024-04-01", [T("T1", 10), NT("B1"), NEW("X1")])))[1] == "PD"


def test_patients_are_assessed_independently():
    a = scans(("2024-01-01", [T("T1", 50)]), ("2024-04-01", [T("T1", 30)]), patient="A")
    b = scans(("2024-01-01", [T("T1", 10)]), ("2024-04-01", [T("T1", 20)]), patient="B")
    out = recist.assess(pd.concat([b, a], ignore_index=True)).set_index("patient_id")
    assert out.loc["A"].iloc[1]["overall_response"] == "PR"
    assert out.loc["B"].iloc[1]["overall_response"] == "PD"
    assert set(out.columns) | {"patient_id"} == set(recist.OUTPUT_COLUMNS)


@pytest.mark.parametrize("column,value,message", [
    ("kind", "tumour", "kind 'tumour'"),
    ("status", "gone", "status 'gone'"),
    ("diameter_mm", -3.0, "negative"),
])
def test_bad_input_is_refused_with_the_row_and_value(column, value, message):
    frame = scans(("2024-01-01", [NT("B1")]), ("2024-04-01", [NT("B1")]))
    frame.loc[1, column] = value
    with pytest.raises(ValueError, match=message):
        recist.assess(frame)


def test_missing_column_is_named():
    with pytest.raises(ValueError, match="diameter_mm"):
        recist.assess(scans(("2024-01-01", [T("T1", 5)])).drop(columns="diameter_mm"))


def test_baseline_targets_that_break_measurability_are_named():
    """RECIST 1.1 3.1/4.2: nodes >= 15 mm short axis, others >= 10 mm, at most 5 targets and 2 per organ."""
    lesions = scans(("2024-01-01", [T("N1", 12, node=True), T("L1", 8), T("L2", 30), T("L3", 30), T("L4", 30),
                                    T("L5", 30)]),
                    ("2024-04-01", [T("N1", 3, node=True), T("L1", 2)]))
    lesions.loc[lesions["lesion_id"] == "L5", "organ"] = "lung"
    problems = recist.measurability_problems(lesions, lesions[["patient_id", "scan_id", "scanned_on"]].drop_duplicates())
    by_lesion = dict(zip(lesions["lesion_id"] + "@" + lesions["scan_id"], problems, strict=True))
    assert "15 mm short axis" in by_lesion["N1@S0"]
    assert ">= 10 mm" in by_lesion["L1@S0"]
    assert by_lesion["L2@S0"] == ""
    assert "in one organ" in by_lesion["L3@S0"] and "in one organ" in by_lesion["L4@S0"]  # liver: L1, L2 first
    assert "more than 5 target lesions" in by_lesion["L5@S0"]
    assert by_lesion["N1@S1"] == "" and by_lesion["L1@S1"] == ""  # follow-up scans are not baseline
