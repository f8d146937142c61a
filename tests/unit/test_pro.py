"""PRO scoring against hand-computed values from the EORTC QLQ-C30 scoring manual (3rd ed.)."""
import numpy as np
import pandas as pd
import pytest

from data import pro


def qlq(answers: dict[int, float], patient="P1", date="2024-01-01"):
    return pd.DataFrame([{"patient_id": patient, "completed_on": date, "instrument": "QLQ-C30",
                          "item": str(i), "response": v} for i, v in answers.items()])


def scores(frame) -> dict[str, float]:
    out = pro.score(frame)
    return dict(zip(out["scale"], out["score"], strict=False))


def test_every_qlq_c30_scale_is_scored_by_the_manual():
    answers = {i: 2 for i in range(1, 29)} | {29: 5, 30: 6}
    s = scores(qlq(answers))
    assert set(s) == set(pro.QLQ_C30_SCALES)
    # functioning: (1 - (RS - 1) / 3) * 100 with RS = 2 -> 66.67
    for code in ("PF2", "RF2", "EF", "CF", "SF"):
        assert s[code] == pytest.approx(66.6667, abs=1e-3)
    # symptoms: (RS - 1) / 3 * 100 with RS = 2 -> 33.33
    for code in ("FA", "NV", "PA", "DY", "SL", "AP", "CO", "DI", "FI"):
        assert s[code] == pytest.approx(33.3333, abs=1e-3)
    # global health: RS = (5 + 6) / 2 = 5.5 -> (5.5 - 1) / 6 * 100 = 75
    assert s["QL2"] == pytest.approx(75.0)


def test_hand_worked_mixed_answers():
    answers = {1: 1, 2: 2, 3: 1, 4: 1, 5: 1, 10: 3, 12: 4, 18: 2, 29: 7, 30: 7, 17: 4}
    s = scores(qlq(answers))
    # PF2: RS = 6/5 = 1.2 -> (1 - 0.2/3) * 100 = 93.33
    assert s["PF2"] == pytest.approx(93.3333, abs=1e-3)
    # FA: RS = (3 + 4 + 2) / 3 = 3 -> 66.67
    assert s["FA"] == pytest.approx(66.6667, abs=1e-3)
    assert s["QL2"] == pytest.approx(100.0)
    assert s["DI"] == pytest.approx(100.0)


def test_half_items_rule():
    # PF2 has 5 items: 3 answered is enough (>= half), 2 is not
    s = scores(qlq({1: 2, 2: 2, 3: 2}))
    assert s["PF2"] == pytest.approx(66.6667, abs=1e-3)
    assert np.isnan(scores(qlq({1: 2, 2: 2}))["PF2"])
    # 2-item scales need one answer; a single-item scale needs its item
    assert scores(qlq({6: 4}))["RF2"] == pytest.approx(0.0)
    assert np.isnan(scores(qlq({6: 4}))["DI"])
    # FA has 3 items: 2 answered is enough (2 * 2 >= 3)
    assert scores(qlq({10: 1, 12: 4}))["FA"] == pytest.approx(50.0)


def test_out_of_range_answers_are_treated_as_unanswered():
    s = scores(qlq({29: 8, 30: 7, 17: 5, 16: 0}))
    assert s["QL2"] == pytest.approx(100.0)  # 8 is not an answer to item 29
    assert np.isnan(s["DI"]) and np.isnan(s["CO"])


def test_fcri_sf_total_is_the_sum_of_nine_items_prorated_when_some_are_missing():
    full = pd.DataFrame([{"patient_id": "P1", "completed_on": "2024-01-01", "instrument": "FCRI-SF",
                          "item": str(i), "response": v} for i, v in zip(range(1, 10), [0, 1, 2, 3, 4, 4, 3, 2, 1], strict=False)])
    assert scores(full)["TOTAL"] == pytest.approx(20.0)
    partial = full[full["item"] != "9"]  # 19 over 8 items -> 19 / 8 * 9
    assert scores(partial)["TOTAL"] == pytest.approx(19 / 8 * 9)


def test_decision_regret_reverses_items_2_and_4():
    # strongly agree (1) that it was right / would choose again / wise, strongly disagree (5) with regret/harm
    frame = pd.DataFrame([{"patient_id": "P1", "completed_on": "2024-01-01", "instrument": "DRS",
                           "item": str(i), "response": v} for i, v in zip(range(1, 6), [1, 5, 1, 5, 1], strict=False)])
    assert scores(frame)["TOTAL"] == pytest.approx(0.0)
    frame["response"] = [5, 1, 5, 1, 5]  # the most regret possible
    assert scores(frame)["TOTAL"] == pytest.approx(100.0)
    frame["response"] = [2, 4, 2, 4, 2]  # 25 on every item
    assert scores(frame)["TOTAL"] == pytest.approx(25.0)


def test_promis_t_scores_pass_through():
    frame = pd.DataFrame([{"patient_id": "P1", "completed_on": "2024-01-01", "instrument": "PROMIS-Anxiety",
                           "item": "TSCORE", "response": 57.3}])
    out = pro.score(frame)
    assert out[["instrument", "scale", "score"]].values.tolist() == [["PROMIS-Anxiety", "TSCORE", 57.3]]


def test_questionnaires_are_scored_separately_per_patient_and_date():
    frame = pd.concat([qlq({29: 7, 30: 7}, "A", "2024-01-01"), qlq({29: 1, 30: 1}, "A", "2024-04-01"),
                       qlq({29: 4, 30: 4}, "B", "2024-01-01")])
    out = pro.score(frame)
    ql2 = out[out["scale"] == "QL2"].set_index(["patient_id", "completed_on"])["score"]
    assert ql2[("A", "2024-01-01")] == 100 and ql2[("A", "2024-04-01")] == 0 and ql2[("B", "2024-01-01")] == 50


def test_catalogue_is_one_source_of_truth_for_direction_and_meaningful_change():
    cat = pro.catalogue_frame().set_index(["instrument", "scale"])
    assert cat.loc[("QLQ-C30", "QL2"), "higher_is_better"]
    assert not cat.loc[("QLQ-C30", "FA"), "higher_is_better"]
    assert cat.loc[("QLQ-C30", "PF2"), "meaningful_change"] == pro.QLQ_C30_MCID == 10
    assert cat.loc[("FCRI-SF", "TOTAL"), "high"] == 36
    assert "22" in cat.loc[("FCRI-SF", "TOTAL"), "cutoffs"]


def test_missing_column_is_named():
    with pytest.raises(ValueError, match="response"):
        pro.score(qlq({1: 1}).drop(columns="response"))
