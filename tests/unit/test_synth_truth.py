"""The generator's variants and its truth at each landmark (data/synth_truth.py): what the landmark
benchmark measures against must itself be right."""
import numpy as np
import pandas as pd
import pytest

from data import synth
from data.clinical import DAYS_PER_MONTH


@pytest.fixture(scope="module")
def cohort():
    return synth.generate(300, seed=5, landmark_truth=True)


def _day0(cohort) -> pd.Series:
    """Day 0 per patient: the generator draws ctDNA on day 0 (QC failures still leave a row)."""
    return pd.to_datetime(cohort["ctdna_draws"]["drawn_on"]).groupby(
        cohort["ctdna_draws"]["patient_id"].astype(str)).min()


def _with_dates(cohort) -> pd.DataFrame:
    truth = cohort["synthetic_landmark_truth"].copy()
    day0 = _day0(cohort)
    truth["landmark_on"] = truth["patient_id"].map(day0) + pd.to_timedelta(
        np.round(truth["landmark_months"] * DAYS_PER_MONTH), "D")
    return truth


def test_the_truth_is_made_only_when_asked_and_only_for_patients_who_stopped_and_are_at_risk(cohort):
    assert "synthetic_landmark_truth" not in synth.generate(20, seed=5)
    truth = _with_dates(cohort)
    stopped = set(cohort["patients"].query("cohort == 2")["patient_id"])
    assert set(truth["patient_id"]) <= stopped
    assert truth["p_progression_free"].between(0, 1).all() and (truth["ess"] > 0).all()
    assert set(truth["landmark_months"]) == set(range(0, 25, 3)) and set(truth["horizon_months"]) == {6, 12, 24}
    events = cohort["events"].copy()
    events["occurred_on"] = pd.to_datetime(events["occurred_on"])
    ended = events[events["event"].isin(["progression", "death"])].groupby("patient_id")["occurred_on"].min()
    after = truth["landmark_on"] >= truth["patient_id"].map(ended)
    assert truth["patient_id"].isin(ended.index).any() and not after.any()  # no truth after the event


def test_with_nothing_but_a_positive_day0_draw_the_truth_is_the_closed_form(cohort):
    """At landmark 0 a detected day-0 draw proves ctDNA at stopping and its level says nothing about the
    progression time, so the truth must equal exp(-H(t) - death * t) for that hazard."""
    draws = cohort["ctdna_draws"].copy()
    draws["drawn_on"] = pd.to_datetime(draws["drawn_on"])
    day0 = draws.groupby("patient_id", observed=True)["drawn_on"].min().rename("day0")
    first = draws.merge(day0, left_on="patient_id", right_index=True)
    first = first[first["drawn_on"] == first["day0"]]
    positive = set(first.loc[(first["qc"] == "pass") & (first["detected"] == True), "patient_id"])  # noqa: E712
    truth = cohort["synthetic_landmark_truth"]
    at0 = truth[(truth["landmark_months"] == 0) & truth["patient_id"].isin(positive)]
    assert len(at0) >= 6
    lp = cohort["synthetic_truth"].set_index("patient_id")["linear_predictor"]
    expected = [synth.true_pfs(np.array([lp[p]]), h)[0] for p, h in zip(at0["patient_id"], at0["horizon_months"], strict=True)]
    gap = at0["p_progression_free"].to_numpy() - np.array(expected)
    # Monte Carlo error only: each within 4 standard errors of its own effective sample size, none biased
    se = np.sqrt(np.array(expected) * (1 - np.array(expected)) / at0["ess"].to_numpy())
    assert (np.abs(gap) <= 4 * se + 0.005).all()
    assert abs(gap.mean()) < 0.01


def test_the_ctdna_series_moves_the_truth_the_way_the_biology_says(cohort):
    """A negative last draw off therapy means progression is far off (latent lead ~20 months): a high truth;
    a positive last draw a much lower one."""
    truth = _with_dates(cohort).query("horizon_months == 12 and landmark_months >= 6").sort_values("landmark_on")
    draws = cohort["ctdna_draws"].query("qc == 'pass'").copy()
    draws["patient_id"] = draws["patient_id"].astype(str)
    draws["drawn_on"] = pd.to_datetime(draws["drawn_on"]).astype("datetime64[ns]")
    truth["landmark_on"] = truth["landmark_on"].astype("datetime64[ns]")
    last = pd.merge_asof(truth, draws.sort_values("drawn_on")[["patient_id", "drawn_on", "detected"]],
                         left_on="landmark_on", right_on="drawn_on", by="patient_id")
    negative = last.loc[last["detected"] == False, "p_progression_free"]  # noqa: E712
    positive = last.loc[last["detected"] == True, "p_progression_free"]  # noqa: E712
    assert len(negative) > 100 and len(positive) > 10
    assert negative.mean() > 0.9 and positive.mean() < negative.mean() - 0.2


def test_cumulative_hazard_and_its_inverse_agree_with_and_without_a_restart():
    rng = np.random.default_rng(0)
    target = rng.exponential(1, 1000)
    scale, shape = 0.02, 0.9
    restart = rng.uniform(0, 800, 1000)
    for hr in (1.0, 0.45):
        day = synth.invert_cumulative_hazard(target, scale, shape, restart, hr)
        assert np.allclose(synth.cumulative_hazard(day, scale, shape, restart, hr), target)
    plain = synth.invert_cumulative_hazard(target, scale, shape, np.inf, 1.0)
    assert np.allclose(plain, (target / scale) ** (1 / shape) * DAYS_PER_MONTH)
    lowered = synth.invert_cumulative_hazard(target, scale, shape, restart, 0.45)
    assert (lowered >= plain - 1e-9).all() and (lowered > plain).any()  # a lower hazard: later progression


def test_the_variants_change_what_they_say_and_the_default_is_untouched():
    with pytest.raises(ValueError, match="unknown generator variant"):
        synth.parameters("no_such_variant")
    assert synth.parameters(None) == synth.P
    hr10 = synth.generate(400, seed=3, variant="ctdna_hr_10")
    base = synth.generate(400, seed=3)
    t10, t0 = hr10["synthetic_truth"], base["synthetic_truth"]
    positive = t0["ctdna_detected_at_index"].to_numpy()
    gap = (t10["linear_predictor"] - t0["linear_predictor"]).to_numpy()
    assert np.allclose(gap[positive], np.log(10) - 1.4) and np.allclose(gap[~positive], 0)
    assert "2.302" in hr10["synthetic_parameters"].set_index("name").loc["beta", "value"]  # the table says so
    # scan-interval censoring: every progression is dated later than it happened, never earlier
    scans = synth.generate(400, seed=3, variant="scan_interval_censoring")
    assert len(scans["events"].query("event == 'progression'")) > 10
    # restarts that lower the hazard: fewer progressions among the patients who restarted early
    lower = synth.generate(2000, seed=9, variant="restarts_lower_hazard")
    plain = synth.generate(2000, seed=9)
    n_prog = [len(g["events"].query("event == 'progression'")) for g in (lower, plain)]
    assert n_prog[0] < n_prog[1]


def test_scheduled_scans_only_dates_progression_on_the_schedule():
    p = synth.parameters("scan_interval_censoring")
    schedule = synth.scheduled_scan_days(p)
    latent = np.array([10.0, 91.0, 92.0, 300.0, 400.0])
    found = synth.detected_on(latent, p)
    assert list(found) == [91, 91, 182, 365, 547]
    assert list(synth.detected_on(latent, synth.P)) == list(latent)  # default: found when it happens
    assert set(found) <= set(schedule)
