"""The landmark benchmark's summary (model/landmark_check.py): each bar computed as its words say, the
result read back only for the procedure version it measured, and the sentence shown beside intervals."""
import json

import numpy as np
import pandas as pd
import pytest

from model import landmark_check


def _rows(n=400, seed=0) -> pd.DataFrame:
    """Estimates whose interval holds the truth for 3 rows in 4, off by 0.02 on average."""
    rng = np.random.default_rng(seed)
    truth = rng.uniform(0.2, 0.95, n)
    estimate = truth + 0.02
    half = np.where(np.arange(n) % 4 == 0, 0.01, 0.05)  # every 4th interval is too narrow to hold the truth
    return pd.DataFrame({
        "patient_id": [f"P{i}" for i in range(n)], "test_seed": 1, "horizon": np.tile([6, 12, 24, 12], n // 4),
        "landmark": np.tile([0, 3, 6, 9], n // 4), "ctdna_detected": (np.arange(n) % 5 == 0).astype(float),
        "complete_response": (np.arange(n) % 2).astype(float), "estimate": estimate,
        "lower": estimate - half, "upper": estimate + half, "truth": truth, "km": truth - 0.1,
        "ess": np.where(np.arange(n) < 8, 10.0, 4000.0)})


def test_summary_computes_each_bar_from_the_rows():
    s = landmark_check.summarise(_rows())
    assert s["rows"] == 392 and s["rows_left_out_imprecise_truth"] == 8  # imprecise truths are counted, not used
    assert s["coverage"] == pytest.approx(0.75, abs=0.01)
    m = s["measured"]
    assert m["mean_absolute_error"] == pytest.approx(0.02)
    assert m["ctdna_positive_bias"] == pytest.approx(0.02)
    assert m["ctdna_negative_width"] == pytest.approx(100 * (0.25 * 0.02 + 0.75 * 0.10), abs=0.3)
    assert s["passed"]["mean_absolute_error"] and s["passed"]["ctdna_positive_bias"]
    assert not s["passed"]["group_coverage"] and not s["passed"]["ctdna_positive_coverage"]
    assert {g["group"] for g in s["groups"]} == {"ctDNA positive, CR", "ctDNA positive, no CR",
                                                  "ctDNA negative, CR", "ctDNA negative, no CR"}
    assert {h["horizon_months"] for h in s["by_horizon"]} == {6, 12, 24}
    # the KM baseline is further from the truth here: the model's net benefit is at least as high
    assert s["by_horizon"][0]["km_mean_absolute_error"] == pytest.approx(0.1)


def test_the_stored_result_counts_only_for_the_version_it_measured(tmp_path):
    path = tmp_path / "landmark.json"
    assert landmark_check.current("3", path) is None  # never run
    path.write_text(json.dumps({"procedure_version": "2", "generators": {}}))
    assert landmark_check.current("3", path) is None  # an older procedure says nothing about this one
    path.write_text("{not json")
    assert landmark_check.current("3", path) is None
    path.write_text(json.dumps({"procedure_version": "3", "generators": {}}))
    assert landmark_check.current("3", path)["procedure_version"] == "3"


def test_the_sentence_beside_every_interval_quotes_the_measurement():
    assert "has not been measured" in landmark_check.coverage_sentence(None)
    result = {"repeats": 200, "measured_on": "2026-11-26T06:00:00+00:00",
              "generators": {"default": landmark_check.summarise(_rows())}}
    said = landmark_check.coverage_sentence(result)
    assert said.startswith("Caution") and "75%" in said and "200 repetitions" in said
    by_call = landmark_check.coverage_by_call(result["generators"]["default"])
    positive = landmark_check.coverage_sentence(result, True)
    assert f"{by_call['positive']:.0%} for ctDNA-positive patients" in positive


def test_the_lowest_net_benefit_gain_carries_its_spread_between_test_trials():
    """A shortfall of -0.0007 is a tie or a loss depending on how much it varies between trials: the summary
    gives the 95% interval of the lowest gain from the spread of the per-trial gains at that threshold."""
    rows = _rows(n=800).assign(test_seed=lambda r: np.arange(len(r)) // 4 % 10)
    s = landmark_check.summarise(rows)
    low, high = s["net_benefit_interval"]
    assert low < s["measured"]["net_benefit"] < high
    worst = min(s["by_horizon"], key=lambda h: h["lowest_net_benefit_gain_over_km"])
    g = rows[(rows["horizon"] == worst["horizon_months"]) & (rows["ess"] >= landmark_check.MIN_TRUTH_ESS)]
    per = [landmark_check._net_benefit(t["truth"], t["estimate"], worst["at_threshold"])
           - landmark_check._net_benefit(t["truth"], t["km"], worst["at_threshold"]) for _, t in g.groupby("test_seed")]
    assert high - low == pytest.approx(2 * 1.96 * np.std(per, ddof=1) / np.sqrt(10), rel=1e-6)


def test_the_day0_coverage_note_reads_its_stored_measurement_not_a_constant(tmp_path, monkeypatch):
    from model import predict, synthetic_check
    from model.train import MODEL_VERSION

    path = tmp_path / "day0.json"
    monkeypatch.setattr(synthetic_check, "BENCHMARK_FILE", path)
    assert "has not been measured" in predict.interval_coverage_note()
    record = {"procedure_version": MODEL_VERSION, "measured_on": "2026-01-02T00:00:00+00:00",
              "trial_size": {"repeats": 50, "coverage_new_patients": 0.81}}
    path.write_text(json.dumps(record))
    said = predict.interval_coverage_note()
    assert said.startswith("Caution") and "81%" in said and "50 repetitions" in said
    path.write_text(json.dumps({**record, "procedure_version": "0"}))
    assert "has not been measured" in predict.interval_coverage_note()


def _calibration_rows(n=6000, seed=3, lean=-0.5, sd=2.0) -> pd.DataFrame:
    """Test rows whose truth sits off the estimate by N(lean, sd^2) on the log cumulative hazard, with se = 1."""
    rng = np.random.default_rng(seed)
    log_h = rng.uniform(-4, 0, n)
    r = rng.normal(lean, sd, n)
    detected = ((np.arange(n) // 3) % 3 == 0).astype(float)  # not in step with the horizons below
    return pd.DataFrame({"log_h": log_h, "se": 1.0, "truth": np.exp(-np.exp(log_h + r)),
                         "estimate": np.exp(-np.exp(log_h)), "ctdna_detected": detected,
                         "complete_response": (np.arange(n) % 2).astype(float),
                         "landmark": np.where((np.arange(n) // 6) % 7 == 0, 0, 12), "horizon": np.tile([6, 12, 24], n // 3),
                         "ess": 4000.0})


def test_the_interval_calibration_measures_the_spread_beyond_the_coefficients_and_its_lean():
    cells = landmark_check.interval_cells(_calibration_rows())
    assert len(cells) == 2 * 2 * 2 * 3
    c = cells["0|0|0|12"]
    assert not c["pooled"] and c["rows"] >= landmark_check.MIN_CELL_ROWS
    # r has variance 4 + mean 0.25 around 0 and se^2 = 1: tau^2 = E[r^2] - se^2 = 3.25
    assert c["tau2"] == pytest.approx(3.25, abs=0.5)
    # standardised by sqrt(1 + 3.25): quantiles (-0.5 -/+ 1.96 * 2) / 2.06, leaning low as the errors do
    assert c["z_lower"] == pytest.approx((-0.5 - 1.96 * 2) / 4.25 ** 0.5, abs=0.25)
    assert c["z_upper"] == pytest.approx((-0.5 + 1.96 * 2) / 4.25 ** 0.5, abs=0.25)
    # too few rows in a cell (ctDNA positive at the first landmark here): the cell pooled over complete response
    small = cells["1|1|1|6"]
    assert small["pooled"] and small == cells["1|0|1|6"]


def _covered(cells: dict, test: pd.DataFrame) -> np.ndarray:
    """Whether each test row's truth falls in the interval the cells give it."""
    from model import landmark

    X = np.zeros((len(test), len(landmark.INPUTS)))
    X[:, landmark.INPUTS.index("ctdna_detected")] = test["ctdna_detected"]
    X[:, landmark.INPUTS.index("complete_response")] = test["complete_response"]
    X[:, landmark.INPUTS.index("landmark_years")] = test["landmark"] / 12
    covered = []
    for h in (6, 12, 24):
        at = (test["horizon"] == h).to_numpy()
        tau2, lo, hi = landmark.interval_terms({"level": 0.95, "cells": cells}, X[at], h)
        spread = np.sqrt(1.0 + tau2)
        log_truth = np.log(-np.log(test.loc[at, "truth"].to_numpy()))
        log_h = test.loc[at, "log_h"].to_numpy()
        covered.append((log_h + lo * spread <= log_truth) & (log_truth <= log_h + hi * spread))
    return np.concatenate(covered)


def test_a_calibrated_interval_holds_the_truth_as_often_as_it_says_on_new_rows():
    cells = landmark_check.interval_cells(_calibration_rows(seed=3))
    assert _covered(cells, _calibration_rows(seed=4)).mean() == pytest.approx(0.95, abs=0.015)


def test_one_calibration_measured_on_several_worlds_holds_the_truth_across_them():
    """A calibration from one generator held 0.885 under another (scan-interval censoring): measured on the
    estimates of every world together, it holds the truth 95% of the time across them, and in a world where one
    world's own calibration fails it does far better."""
    worlds = {"wide, leaning low": {"lean": -0.5, "sd": 2.0}, "narrow, leaning high": {"lean": 1.5, "sd": 0.8}}
    train = {w: _calibration_rows(seed=3, **k) for w, k in worlds.items()}
    test = {w: _calibration_rows(seed=4, **k) for w, k in worlds.items()}
    wrong = _covered(landmark_check.interval_cells(train["narrow, leaning high"]), test["wide, leaning low"]).mean()
    assert wrong < 0.9, "the test's worlds differ enough that one world's calibration fails in the other"
    pooled = landmark_check.interval_cells(pd.concat(train.values(), ignore_index=True))
    assert _covered(pooled, pd.concat(test.values(), ignore_index=True)).mean() == pytest.approx(0.95, abs=0.015)
    assert _covered(pooled, test["wide, leaning low"]).mean() > wrong + 0.03


def test_truths_far_below_one_in_a_billion_are_calibrated_as_they_are():
    """A patient sure to progress has a true chance of 1e-40 or exactly 0. The calibration once read such a
    truth as 1e-9, nearer the estimate than it is, and measured the interval short; the check, on the
    probability scale as a reader sees it, did not. The two must agree."""
    from model import landmark

    cells = landmark_check.interval_cells(_calibration_rows(seed=3, lean=2.5))
    test = _calibration_rows(seed=4, lean=2.5)
    assert (test["truth"] < 1e-9).mean() > 0.1
    X = np.zeros((len(test), len(landmark.INPUTS)))
    for c in ("ctdna_detected", "complete_response"):
        X[:, landmark.INPUTS.index(c)] = test[c]
    X[:, landmark.INPUTS.index("landmark_years")] = test["landmark"] / 12
    covered = []
    for h in (6, 12, 24):  # as the check counts it: the truth between the bounds a reader sees
        at = (test["horizon"] == h).to_numpy()
        tau2, lo, hi = landmark.interval_terms({"level": 0.95, "cells": cells}, X[at], h)
        log_h, spread, truth = test.loc[at, "log_h"].to_numpy(), np.sqrt(1.0 + tau2), test.loc[at, "truth"].to_numpy()
        covered.append((np.exp(-np.exp(log_h + hi * spread)) <= truth) & (truth <= np.exp(-np.exp(log_h + lo * spread))))
    assert np.concatenate(covered).mean() == pytest.approx(0.95, abs=0.015)


def test_a_stored_check_counts_only_for_the_interval_calibration_it_measured(tmp_path):
    path = tmp_path / "landmark.json"
    interval = {"level": 0.95, "cells": landmark_check.interval_cells(_calibration_rows())}
    other = {"level": 0.95, "cells": landmark_check.interval_cells(_calibration_rows(seed=9))}
    path.write_text(json.dumps({"procedure_version": "4", "interval": landmark_check.interval_digest(interval),
                                "generators": {}}))
    assert landmark_check.current("4", path, interval=interval)["procedure_version"] == "4"
    assert landmark_check.current("4", path, interval=other) is None
    assert landmark_check.current("4", path, interval=None) is None


def test_the_shipped_check_measured_the_procedure_and_interval_calibration_in_use():
    """The model card and every risk card quote this file: it must be the measurement of what is shipped, and on
    the default generator its intervals must hold the truth as often as they say (they held it half the time
    before the calibration: 0.50 for ctDNA-positive patients)."""
    from services.models import LANDMARK_VERSION

    result = landmark_check.current(LANDMARK_VERSION)
    assert result is not None, "model/benchmarks/landmark.json is stale: run python -m model evaluate --synthetic-check"
    interval = landmark_check.current_interval(LANDMARK_VERSION)
    assert interval["seeds"][0] > landmark_check.BENCHMARK_SEED + result["repeats"], "calibrated on other trials"
    assert result["repeats"] >= 200
    default = result["generators"]["default"]
    assert default["passed"]["ctdna_positive_coverage"] and default["passed"]["group_coverage"]
    assert default["passed"]["ctdna_negative_width"]


def test_the_check_end_to_end_calibrates_then_measures_and_a_second_run_reuses_the_cohorts(tmp_path):
    """Small (3 trials), so it runs in the suite: the real check is the same code with 100 and 200."""
    cache = tmp_path / "cohorts"
    interval = landmark_check.calibrate(3, jobs=1, cache=cache, out=tmp_path / "interval.json",
                                        variants=[None, "scan_interval_censoring"])
    assert interval["generators"] == ["default", "scan_interval_censoring"]
    assert json.loads((tmp_path / "interval.json").read_text())["cells"] == interval["cells"]
    assert interval["seeds"] == [landmark_check.CALIBRATION_SEED, landmark_check.CALIBRATION_SEED + 2]
    first = landmark_check.run(3, jobs=1, variants=[None], cache=cache, out=tmp_path / "check.json", interval=interval)
    kept = sorted(p.name for p in cache.iterdir())
    assert len(kept) == 18 and not any(p.endswith(".part") for p in kept)  # inputs and truth of 9 cohorts
    again = landmark_check.run(3, jobs=1, variants=[None], cache=cache, out=None, interval=interval)
    assert sorted(p.name for p in cache.iterdir()) == kept, "the second run made no cohort"
    assert again["generators"] == first["generators"]
    assert first["interval"] == landmark_check.interval_digest(interval)
    assert landmark_check.current(first["procedure_version"], tmp_path / "check.json", interval=interval) is not None


def test_a_changed_query_makes_the_inputs_again_and_keeps_the_truth(tmp_path, monkeypatch):
    """The truth's Monte Carlo is most of a cohort's cost and depends on the generator alone: a new input
    (a changed query or build) must not throw it away, and the inputs made again are the ones made whole."""
    cache = tmp_path / "cohorts"
    whole = landmark_check._cohort(82, 50_003, None, str(tmp_path), cache)
    made = []
    build = landmark_check._build_cohort
    monkeypatch.setattr(landmark_check, "_build_cohort", lambda *a, **k: made.append(k) or build(*a, **k))
    real_key = landmark_check._cohort_key
    monkeypatch.setattr(landmark_check, "_cohort_key",  # as if data/queries.py had changed
                        lambda n, s, v, code=landmark_check._COHORT_CODE: real_key(n, s, v, code) + (
                            "-new-query" if code == landmark_check._COHORT_CODE else ""))
    again = landmark_check._cohort(82, 50_003, None, str(tmp_path), cache)
    assert made == [{"with_inputs": True, "with_truth": False}]
    assert again["truth"].equals(whole["truth"])
    assert all(a.equals(b) for a, b in zip(again["inputs"], whole["inputs"], strict=True))
    landmark_check._cohort(82, 50_003, None, str(tmp_path), cache)
    assert len(made) == 1, "the third call found both in the cache"
