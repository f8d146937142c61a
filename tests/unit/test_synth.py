"""The synthetic cohort respects the figures in clinical-facts.md (measured on a large draw)."""
import pandas as pd
import pytest

from data import synth


@pytest.fixture(scope="module")
def small():
    return synth.generate(82, seed=7)


@pytest.fixture(scope="module")
def large():
    return synth.generate(6000, seed=11)


def test_same_seed_same_cohort_and_another_seed_another(small):
    again = synth.generate(82, seed=7)
    for name, frame in small.items():
        pd.testing.assert_frame_equal(frame, again[name], check_categorical=False)
    other = synth.generate(82, seed=8)
    assert not small["patients"]["age_at_enrolment"].equals(other["patients"]["age_at_enrolment"])


def test_trial_size_and_cohorts(small):
    p = small["patients"]
    assert len(p) == 82 and p["patient_id"].is_unique
    assert p["cohort"].value_counts().to_dict() == {2: 52, 1: 30}


def test_every_patient_is_eligible_by_construction(large):
    p = large["patients"]
    assert ((p["her2_ihc"] == "3+") | ((p["her2_ihc"] == "2+") & (p["her2_ish_amplified"] == True))).all()  # noqa: E712
    years = (pd.to_datetime(p["enrolled_on"]) - pd.to_datetime(p["first_line_start"])).dt.days / 365.25
    assert years.min() >= 3.0  # >= 3 years of first-line therapy before enrolment
    assert (p["age_at_enrolment"] >= 18).all()


def test_each_parameter_has_a_value_and_a_source():
    table = synth.parameter_table()
    assert table["source"].str.len().min() > 5
    assert table["name"].is_unique


def test_progression_free_probabilities_match_clinical_facts(large):
    m = large["patients"].merge(large["synthetic_truth"], on="patient_id")
    pfs = m.groupby("cohort")["p_progression_free_12m"].mean()
    assert 0.76 <= pfs[2] <= 0.84  # cohort 2 ~80 %
    assert 0.86 <= pfs[1] <= 0.93  # cohort 1 ~90 %
    ref = m[(m["cohort"] == 2) & (m["best_response"] == "CR") & ~m["ctdna_detected_at_index"]]
    assert 0.85 <= ref["p_progression_free_12m"].mean() <= 0.92  # ctDNA-negative complete responders
    detected = m[(m["cohort"] == 2) & m["ctdna_detected_at_index"]]["p_progression_free_12m"].mean()
    assert detected < ref["p_progression_free_12m"].mean() - 0.2
    # the truth is monotone in the horizon
    assert (m["p_progression_free_6m"] >= m["p_progression_free_12m"]).all()
    assert (m["p_progression_free_12m"] >= m["p_progression_free_24m"]).all()


def test_ctdna_lead_time_and_sensitivity(large):
    ct = large["ctdna_draws"]
    positive = ct[ct["detected"] == True]  # noqa: E712
    first = positive.groupby("patient_id", observed=True)["drawn_on"].min()
    ev = large["events"]
    prog = ev[ev["event"] == "progression"].set_index("patient_id")["occurred_on"]
    lead = (prog - first.reindex(prog.index)).dt.days / 30.4375
    assert 8.0 <= lead.median() <= 11.5  # median ~9-11 months
    assert 0.78 <= lead.notna().mean() <= 0.92  # sensitivity ~88 %, brain-only often missed
    never = set(large["patients"]["patient_id"]) - set(prog.index) - set(
        large["synthetic_truth"].query("latent_progression_on <= '2028-12-31'")["patient_id"])
    n_pos = positive[positive["patient_id"].isin(never)].groupby("patient_id", observed=True).size()
    share_isolated = (n_pos == 1).sum() / len(never)
    assert 0.02 <= share_isolated <= 0.07  # ~4 % isolated false positives


def test_ctdna_rows_are_internally_consistent(large):
    ct = large["ctdna_draws"]
    ok = ct["qc"] == "pass"
    assert ct.loc[~ok, "value"].isna().all() and ct.loc[~ok, "detected"].isna().all()
    det = ct[ok & (ct["detected"] == True)]  # noqa: E712
    assert (det["value"] >= det["lod"] * 0.999).all()
    assert ct.loc[ok & (ct["detected"] == False), "value"].isna().all()  # noqa: E712
    assert 0.02 <= (~ok).mean() <= 0.06


def test_many_patients_in_complete_response_have_no_target_lesions(large):
    les = large["lesion_measurements"]
    with_targets = set(les.loc[les["kind"] == "target", "patient_id"])
    cr = large["patients"].query("best_response == 'CR'")["patient_id"]
    assert not set(cr) & with_targets
    assert 0.3 <= large["patients"]["best_response"].eq("CR").mean() <= 0.7


def test_pro_trajectories_follow_the_clinical_expectations(large):
    from data import pro

    scored = pro.score(large["pro_responses"])
    p = large["patients"][["patient_id", "cohort"]]
    idx = large["synthetic_truth"][["patient_id"]].merge(
        large["ctdna_draws"].groupby("patient_id", observed=True)["drawn_on"].min().rename("day0").reset_index())
    s = scored.merge(p, on="patient_id").merge(idx, on="patient_id")
    s["month"] = (pd.to_datetime(s["completed_on"]) - pd.to_datetime(s["day0"])).dt.days / 30.4375
    di = s[(s["scale"] == "DI") & (s["cohort"] == 2)]
    assert di[di["month"] > 9]["score"].mean() < di[di["month"] < 1]["score"].mean() - 5  # stopping eases diarrhoea
    fcr = s[(s["instrument"] == "FCRI-SF") & (s["cohort"] == 2)]
    assert fcr[fcr["month"] > 11]["score"].mean() < fcr[fcr["month"] < 1]["score"].mean()  # fear falls over time
    assert s["score"].isna().any()  # skipped items exercise the half-items rule
