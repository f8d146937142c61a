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
