"""Eligibility: each criterion and each allowed exception, with unknown inputs never counted as met."""
import pandas as pd
import pytest

from data import eligibility as el

AS_OF = pd.Timestamp("2026-10-31")


def patient(**kw):
    base = dict(patient_id="P1", age=55, her2_ihc="3+", her2_ish_amplified=None,
                first_line_start=pd.Timestamp("2020-01-01"), stopped_on=pd.NaT, progressed_on=pd.NaT)
    return pd.DataFrame([base | kw])


def progression(**kw):
    base = dict(patient_id="P1", progressed_on=pd.Timestamp("2022-01-01"), site="brain_only", n_lesions=1,
                treated_with="local", symptomatic=False, on_steroids=False, on_anticonvulsants=False,
                cns_therapy_on=pd.Timestamp("2022-01-20"))
    return pd.DataFrame([base | kw])


NONE = pd.DataFrame(columns=el.PROGRESSION_COLUMNS)


def result(p, prog=NONE, criterion=None):
    r = el.evaluate(p, prog, AS_OF).set_index("criterion")
    return r.loc[criterion] if criterion else r


def test_a_typical_candidate_meets_every_criterion():
    r = result(patient())
    assert r["met"].tolist() == [True, True, True, True, True]
    assert el.overall(el.evaluate(patient(), NONE, AS_OF))["eligibility"].tolist() == ["eligible"]


@pytest.mark.parametrize("age,met", [(17, False), (18, True), (None, None)])
def test_age(age, met):
    assert result(patient(age=age), criterion="age_18")["met"] == met


@pytest.mark.parametrize("ihc,ish,met", [("3+", None, True), ("2+", True, True), ("2+", False, False),
                                         ("2+", None, None), ("1+", None, False), ("0", False, False),
                                         # ISH positive (group 1, or 2-4 after the IHC work-up) whatever the IHC
                                         ("0", True, True), (None, True, True), (None, False, False),
                                         (None, None, None)])
def test_her2_by_asco_cap_2018(ihc, ish, met):
    assert result(patient(her2_ihc=ihc, her2_ish_amplified=ish), criterion="her2_positive")["met"] == met


def test_three_years_of_first_line_therapy():
    assert result(patient(first_line_start=pd.Timestamp("2024-01-01")), criterion="first_line_3y")["met"] is False
    assert result(patient(first_line_start=pd.Timestamp("2023-10-30")), criterion="first_line_3y")["met"] is True
    assert result(patient(first_line_start=None), criterion="first_line_3y")["met"] is None
    # for a patient who stopped, the years count to the stop
    stopped = patient(first_line_start=pd.Timestamp("2022-01-01"), stopped_on=pd.Timestamp("2024-06-01"))
    assert result(stopped, criterion="first_line_3y")["met"] is False


def test_brain_only_exception_allowed():
    r = result(patient(), progression(), "first_line_3y")
    assert r["met"] is True and "allowed" in r["detail"]


@pytest.mark.parametrize("change,words", [
    ({"treated_with": "systemic"}, "not treated locally"),
    ({"symptomatic": True}, "symptomatic"),
    ({"on_steroids": True}, "on steroids"),
    ({"on_anticonvulsants": True}, "on anticonvulsants"),
    ({"cns_therapy_on": pd.Timestamp("2025-06-01")}, "months from CNS therapy to study start"),
])
def test_brain_only_exception_refused(change, words):
    r = result(patient(), progression(**change), "first_line_3y")
    assert r["met"] is False and words in r["detail"]


def test_brain_only_exception_with_missing_facts_is_unknown():
    r = result(patient(), progression(on_steroids=None), "first_line_3y")
    assert r["met"] is None and "not recorded" in r["detail"]


def test_single_lesion_oligoprogression_exception():
    ok = progression(site="extracranial", treated_with="endocrine_change", cns_therapy_on=pd.NaT)
    assert result(patient(), ok, "first_line_3y")["met"] is True
    two = progression(site="extracranial", n_lesions=2, cns_therapy_on=pd.NaT)
    assert result(patient(), two, "first_line_3y")["met"] is False
    again = pd.concat([ok, progression(site="extracranial", progressed_on=pd.Timestamp("2023-01-01"),
                                       cns_therapy_on=pd.NaT)])
    r = result(patient(), again, "first_line_3y")
    assert r["met"] is False and "progressed again since" in r["detail"]


def test_progression_on_first_line_during_the_study_fails():
    r = result(patient(progressed_on=pd.Timestamp("2026-03-01")), criterion="first_line_3y")
    assert r["met"] is False and "2026-03-01" in r["detail"]


def test_already_stopped_or_progressed():
    r = result(patient(stopped_on=pd.Timestamp("2024-01-01")), criterion="not_stopped_or_progressed")
    assert r["met"] is False and "stopped" in r["detail"]
    r = result(patient(progressed_on=pd.Timestamp("2025-01-01")), criterion="not_stopped_or_progressed")
    assert r["met"] is False and "progressed" in r["detail"]


def test_overall_and_funnel():
    p = pd.concat([patient(patient_id="A"), patient(patient_id="B", age=16), patient(patient_id="C", her2_ihc=None),
                   patient(patient_id="D", stopped_on=pd.Timestamp("2024-01-01"))])
    r = el.evaluate(p, NONE, AS_OF)
    o = el.overall(r).set_index("patient_id")
    assert o["eligibility"].to_dict() == {"A": "eligible", "B": "not eligible", "C": "unknown", "D": "not eligible"}
    assert o.loc["B", "failed"] == "age_18" and o.loc["C", "unknown"] == "her2_positive"
    f = el.funnel(r)
    assert f["remaining"].tolist() == [4, 3, 2, 2, 1, 1]
    assert f["removed"].tolist() == [0, 1, 0, 0, 1, 0] and f["unknown"].tolist() == [0, 0, 1, 0, 0, 0]


def test_criteria_are_data_with_ids_and_text():
    assert [c.id for c in el.CRITERIA] == ["age_18", "her2_positive", "first_line_3y", "not_stopped_or_progressed",
                                           "in_follow_up"]
    assert all(len(c.text) > 10 for c in el.CRITERIA)


def test_months_since_cns_therapy_count_to_study_start_not_to_the_data_cutoff():
    # CNS therapy 2022-01-20; enrolled 2023-06-01 (16 months later): not allowed, though 57 months by the cut-off
    enrolled = patient(enrolled_on=pd.Timestamp("2023-06-01"))
    r = result(enrolled, progression(), "first_line_3y")
    assert r["met"] is False and "to study start 2023-06-01" in r["detail"]
    # a candidate not enrolled yet: the evaluation date is the study start
    assert result(patient(), progression(), "first_line_3y")["met"] is True


def test_a_brain_only_progression_followed_by_another_cns_progression_is_not_allowed():
    prog = pd.concat([progression(), progression(progressed_on=pd.Timestamp("2023-01-01"),
                                                 cns_therapy_on=pd.Timestamp("2023-01-15"))])
    r = result(patient(), prog, "first_line_3y")
    assert r["met"] is False and "another CNS progression since" in r["detail"]


@pytest.mark.parametrize("kw, words", [({"withdrew_on": pd.Timestamp("2025-02-25")}, "withdrew 2025-02-25"),
                                       ({"died_on": pd.Timestamp("2025-03-01")}, "died 2025-03-01")])
def test_a_withdrawn_or_dead_patient_is_not_an_eligible_candidate(kw, words):
    r = result(patient(**kw), criterion="in_follow_up")
    assert r["met"] is False and words in r["detail"]
    assert el.overall(el.evaluate(patient(**kw), NONE, AS_OF))["eligibility"].tolist() == ["not eligible"]
