"""The landmark data and model (model/landmark.py): nothing after s leaks in, the two estimands, refusals."""
import numpy as np
import pandas as pd
import pytest

from model import landmark


def _cohort(n=60, seed=1):
    """A small cohort: ctDNA turns positive some months before progression for the patients who progress."""
    rng = np.random.default_rng(seed)
    day0 = pd.Timestamp("2023-06-01")
    patients, draws, outcomes = [], [], []
    for i in range(n):
        pid = f"P{i:03d}"
        progresses = i % 3 == 0
        t_prog = day0 + pd.Timedelta(days=int(rng.integers(200, 900))) if progresses else None
        last = pd.Timestamp("2026-06-01")
        patients.append({"patient_id": pid, "cohort": 2, "index_date": day0, "best_response": "CR" if i % 2 else "PR",
                         "visceral": bool(i % 5 == 0), "brain_mets_history": bool(i % 11 == 0)})
        restarted = day0 + pd.Timedelta(days=400) if i % 7 == 1 else None
        outcomes.append({"patient_id": pid, "progressed_on": t_prog, "died_on": None, "restarted_on": restarted,
                         "last_followup_on": t_prog if progresses else last})
        d = day0
        while d <= (t_prog or last):
            positive = progresses and d >= t_prog - pd.Timedelta(days=270)
            draws.append({"patient_id": pid, "drawn_on": d, "detected": positive, "value": 5.0 if positive else None,
                          "lod": 0.3, "qc": "pass"})
            d += pd.Timedelta(days=91)
    return pd.DataFrame(patients), pd.DataFrame(draws), pd.DataFrame(outcomes)


def test_rows_hold_only_patients_at_risk_with_inputs_from_on_or_before_the_landmark():
    p, d, o = _cohort()
    rows = landmark.landmark_rows(p, d, o)
    assert set(rows["landmark"]) == set(landmark.LANDMARKS)
    at_risk = rows[rows["at_risk"]]
    assert (pd.to_datetime(at_risk["ctdna_drawn_on"]) <= at_risk["landmark_date"]).all()
    progressed = o.set_index("patient_id")["progressed_on"]
    after = at_risk["landmark_date"] >= pd.to_datetime(at_risk["patient_id"].map(progressed))
    assert not after.any(), "nobody is at risk on or after their progression"


def test_changing_every_measurement_after_s_does_not_move_the_prediction_at_s():
    p, d, o = _cohort()
    model = landmark.train(p, d, o, "test")
    s = 12
    rows = landmark.landmark_rows(p, d, o, landmarks=[s])
    before = model.predict(rows, [12])
    cut = p["index_date"].iloc[0] + pd.Timedelta(days=round(s * landmark.DAYS_PER_MONTH))
    later = pd.to_datetime(d["drawn_on"]) > cut
    d2 = d.copy()
    d2.loc[later, "detected"] = ~d2.loc[later, "detected"].astype(bool)
    d2.loc[later, "value"] = 999.0
    extra = pd.DataFrame([{"patient_id": "P001", "drawn_on": cut + pd.Timedelta(days=1), "detected": True,
                           "value": 1e4, "lod": 0.3, "qc": "pass"}])
    rows2 = landmark.landmark_rows(p, pd.concat([d2, extra]), o, landmarks=[s])
    after = model.predict(rows2, [12])
    pd.testing.assert_frame_equal(before[["estimate", "lower", "upper"]], after[["estimate", "lower", "upper"]])


def test_a_positive_ctdna_call_lowers_the_estimate_and_the_interval_holds_it():
    p, d, o = _cohort()
    model = landmark.train(p, d, o, "test")
    hr = model.hazard_ratios().set_index("input")
    assert hr.loc["ctDNA positive on the latest draw", "hazard_ratio"] > 2
    rows = landmark.landmark_rows(p, d, o, landmarks=[12])
    rows = rows[rows["at_risk"]]
    out = model.predict(rows, [12]).assign(detected=rows["ctdna_detected"].to_numpy())
    means = out.groupby("detected")["estimate"].mean()
    assert means[1.0] < means[0.0] - 0.2
    assert ((out["lower"] <= out["estimate"]) & (out["estimate"] <= out["upper"])).all()
    longer = model.predict(rows, [24])["estimate"].to_numpy()
    assert (longer <= out["estimate"].to_numpy() + 1e-12).all(), "a longer horizon never raises the chance"


def test_the_two_estimands_differ_only_by_how_a_restart_counts():
    p, d, o = _cohort()
    rows = landmark.landmark_rows(p, d, o, landmarks=[0])
    restarted = rows["patient_id"].isin(o.loc[o["restarted_on"].notna(), "patient_id"]) & ~rows["event_pfs"]
    assert restarted.any()
    r = rows[restarted]
    assert r["event_off_therapy"].all() and not r["event_pfs"].any()
    assert (r["time_off_therapy"] < r["time_pfs"]).all()
    model = landmark.train(p, d, o, "test")
    later = landmark.landmark_rows(p, d, o, landmarks=[18])
    gone = later[later["restarted_before"] & later["at_risk"]]
    assert not gone.empty
    assert model.refusal(gone.iloc[0].to_dict(), "pfs") is None  # the trial's PFS still answers
    assert "restarted" in model.refusal(gone.iloc[0].to_dict(), "off_therapy")


def test_refusals_name_the_event_or_the_missing_input():
    p, d, o = _cohort()
    model = landmark.train(p, d, o, "test")
    end = landmark.landmark_rows(p, d, o, as_of="2026-06-01")
    progressed = end[end["patient_id"] == "P000"].iloc[0].to_dict()
    assert model.refusal(progressed).startswith("progressed on ")
    no_draws = landmark.landmark_rows(p, d[d["patient_id"] != "P001"], o, as_of="2026-06-01")
    row = no_draws[no_draws["patient_id"] == "P001"].iloc[0].to_dict()
    assert "no ctDNA result" in model.refusal(row)
    o2 = o.copy()
    o2.loc[o2["patient_id"] == "P002", "last_followup_on"] = pd.Timestamp("2024-01-01")
    gone = landmark.landmark_rows(p, d, o2, as_of="2026-06-01")
    assert "last followed on 2024-01-01" in model.refusal(gone[gone["patient_id"] == "P002"].iloc[0].to_dict())


def test_optional_inputs_missing_are_handled_one_way_and_said():
    p, d, o = _cohort()
    model = landmark.train(p, d, o, "test")
    p2 = p.assign(best_response=None)
    rows = landmark.landmark_rows(p2, d, o, as_of="2026-06-01")
    row = rows[rows["at_risk"]].iloc[0].to_dict()
    assert model.refusal(row) is None
    assert any("not recorded: set to the training patients' average" in n for n in model.notes(row))
    high = dict(row, ctdna_level=model.fits["pfs"].level_max + 1, ctdna_detected=1.0)
    assert any("higher risk than any patient the model learned from" in n for n in model.notes(high))


def test_a_brain_only_relapse_that_escapes_ctdna_is_carried_by_brain_history():
    """Relapses in the brain shed little ctDNA: a negative draw cannot rule them out. Here every patient with
    brain history progresses with every draw negative; the model must give such a ctDNA-negative patient a
    lower chance than the same patient without brain history, and say when the history is not recorded."""
    p, d, o = _cohort(n=90)
    brain = p["patient_id"].isin([f"P{i:03d}" for i in range(90) if i % 3 == 1])
    p["brain_mets_history"] = brain
    t_prog = p["index_date"] + pd.to_timedelta(np.where(brain, 300, 0), "D")
    o.loc[brain.to_numpy(), "progressed_on"] = t_prog[brain].to_numpy()
    o.loc[brain.to_numpy(), "last_followup_on"] = t_prog[brain].to_numpy()
    model = landmark.train(p, d, o, "test")
    assert model.hazard_ratios().set_index("input").loc["history of brain metastases", "hazard_ratio"] > 2
    row = landmark.landmark_rows(p, d, o, landmarks=[0]).query("ctdna_detected == 0 and at_risk").iloc[[0]]
    with_, without = (model.predict(row.assign(brain_mets_history=v), [12])["estimate"].iloc[0] for v in (1.0, 0.0))
    assert with_ < without - 0.1
    unknown = row.assign(brain_mets_history=np.nan)
    assert model.refusal(unknown.iloc[0].to_dict()) is None
    assert "history of brain metastases not recorded: set to the training patients' average" in model.notes(
        unknown.iloc[0].to_dict())
    assert with_ < model.predict(unknown, [12])["estimate"].iloc[0] < without


def test_a_negative_call_from_the_draw_at_stopping_only_is_told_apart_from_one_off_therapy():
    """A negative draw taken on therapy (day 0 or before) says less than one taken after stopping: a relapse's
    ctDNA rises months before the scan shows it, and only a draw off therapy can see that rise begin. Here the
    patients who progress early are negative on the day-0 draw and never drawn again before progressing."""
    p, d, o = _cohort(n=90)
    rows = landmark.landmark_rows(p, d, o, landmarks=[0, 3])
    at = rows[rows["at_risk"]].set_index(["patient_id", "landmark"])
    negative = at["ctdna_detected"] == 0
    on_therapy_only = at["ctdna_negative_on_therapy_only"]
    assert (on_therapy_only[negative].xs(0, level="landmark") == 1).all(), "the day-0 draw is taken on therapy"
    assert (on_therapy_only[negative].xs(3, level="landmark") == 0).all(), "the day-91 draw is taken off therapy"
    assert (on_therapy_only[~negative] == 0).all(), "a positive call is not a negative one"
    # a pre-stopping draw counts as on therapy, and a missing call leaves the input missing (then refused)
    early = landmark.landmark_rows(p, d.assign(drawn_on=pd.to_datetime(d["drawn_on"]) - pd.Timedelta(days=10)), o,
                                   landmarks=[0])
    assert (early.loc[early["ctdna_detected"] == 0, "ctdna_negative_on_therapy_only"] == 1).all()
    none = landmark.landmark_rows(p, d.iloc[:0], o, landmarks=[0])
    assert none["ctdna_negative_on_therapy_only"].isna().all()
    # early progressions negative only on therapy: the model learns that such a negative call reassures less
    early_progressors = p["patient_id"].isin([f"P{i:03d}" for i in range(90) if i % 3 == 1])
    t_prog = p["index_date"] + pd.Timedelta(days=60)
    o.loc[early_progressors.to_numpy(), ["progressed_on", "last_followup_on"]] = (
        np.repeat(t_prog[early_progressors].to_numpy()[:, None], 2, axis=1))
    d = d[~(d["patient_id"].isin(p.loc[early_progressors, "patient_id"]) & (pd.to_datetime(d["drawn_on"]) > p["index_date"].iloc[0]))]
    model = landmark.train(p, d, o, "test")
    label = landmark.INPUT_LABELS["ctdna_negative_on_therapy_only"]
    assert model.hazard_ratios().set_index("input").loc[label, "hazard_ratio"] > 2
    row = landmark.landmark_rows(p, d, o, landmarks=[3]).query("ctdna_detected == 0 and at_risk").iloc[[0]]
    off, on = (model.predict(row.assign(ctdna_negative_on_therapy_only=v), [12])["estimate"].iloc[0] for v in (0.0, 1.0))
    assert on < off - 0.1


def test_too_few_events_is_a_sentence():
    p, d, o = _cohort(n=6)
    o = o.assign(progressed_on=None, last_followup_on=pd.Timestamp("2026-06-01"))
    with pytest.raises(ValueError, match="too few patients"):
        landmark.train(p, d, o, "test")


def test_the_model_carries_rileys_sample_size_and_its_prior_sensitivity():
    p, d, o = _cohort()
    model = landmark.train(p, d, o, "test")
    size = model.sample_size
    assert size["parameters"] == len(landmark.INPUTS) and size["patients"] == 60
    assert size["minimum"] > size["patients"]  # a trial this size cannot support five free parameters
    # Riley's criterion (i) holds at the minimum: the expected shrinkage is 0.9
    r2 = size["anticipated_r2_cs"]
    assert 1 + size["parameters"] / (size["minimum"] * np.log(1 - r2 / 0.9)) == pytest.approx(0.9, abs=1e-3)
    sens = model.prior_sensitivity
    assert list(sens["priors"]) == ["as published (primary)", "priors 3 x wider", "priors 10 x wider"]
    assert (sens["lower"] < sens["ctDNA hazard ratio"]).all() and (sens["ctDNA hazard ratio"] < sens["upper"]).all()


def test_the_model_carries_its_participant_flow_and_missing_inputs():
    p, d, o = _cohort()
    model = landmark.train(p, d, o, "test")
    flow = model.flow.set_index("months since stopping")
    assert list(flow.index) == list(landmark.LANDMARKS) and (flow["patients who stopped"] == 60).all()
    assert (flow["at risk"].diff().dropna() <= 0).all(), "patients leave the risk set, none come back"
    assert (flow["with a ctDNA result (used)"] <= flow["at risk"]).all()
    assert flow["with a ctDNA result (used)"].sum() == model.fits["pfs"].n_rows
    miss = model.missingness.set_index("input")
    assert (miss["of"] == int(flow["at risk"].sum())).all() and "required" in miss.iloc[0]["handled"]


def test_the_published_equation_reproduces_every_estimate():
    """The card's hazard ratios and baseline hazards are the whole model: recomputing by hand gives its numbers."""
    p, d, o = _cohort()
    model = landmark.train(p, d, o, "test")
    rows = landmark.landmark_rows(p, d, o)
    rows = rows[rows["at_risk"] & rows["ctdna_detected"].notna()].head(40)
    hr = model.hazard_ratios("pfs")["hazard_ratio"].to_numpy()
    base = landmark.baseline_hazards(model.fits["pfs"])
    assert list(base["months after the landmark"]) == ["0-6", "6-12", "12-24"]
    assert (base["lower"] < base["hazard per month"]).all() and (base["hazard per month"] < base["upper"]).all()
    x = landmark.design(rows, model.fits["pfs"].center)
    for h in (6, 12, 24):
        months = np.clip(h - np.array([0, 6, 12]), 0, [6, 6, 12])
        by_hand = np.exp(-np.exp(x @ np.log(hr)) * (base["hazard per month"].to_numpy() * months).sum())
        assert np.allclose(model.predict(rows, [h])["estimate"], by_hand)


def test_patients_like_with_no_event_get_an_exact_bound_not_a_collapsed_interval():
    from model.landmark import LandmarkModel, patients_like

    n = 18
    training = pd.DataFrame({"patient_id": [f"P{i}" for i in range(n)], "landmark": 24, "ctdna_detected": 0.0,
                             "time_pfs": 24.0, "event_pfs": False, "time_off_therapy": 24.0,
                             "event_off_therapy": False, "restarted_before": False})
    like = patients_like(LandmarkModel("s", {}, training), 30, False, 12)
    assert like["km"] == 1.0 and like["events"] == 0
    assert like["lower"] == pytest.approx(0.025 ** (1 / n)) and like["lower"] < 0.83 and like["upper"] == 1.0


def test_rows_for_many_dates_at_once_are_the_rows_of_each_date_alone():
    """The patient page's estimate over time asks for every date in one pass; nothing may differ from asking
    date by date (a ctDNA draw of another date, or another patient's, must not leak in)."""
    p, d, o = _cohort()
    dates = [pd.Timestamp("2024-03-01"), pd.Timestamp("2025-01-15"), pd.Timestamp("2026-06-01")]
    together = landmark.landmark_rows(p, d, o, as_of=dates)
    alone = pd.concat([landmark.landmark_rows(p, d, o, as_of=day) for day in dates])
    key = ["patient_id", "landmark_date"]
    together = together.sort_values(key).reset_index(drop=True)
    alone = alone.sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(together, alone[together.columns], check_dtype=False)
    assert len(together) == len(dates) * p["patient_id"].nunique()


def _interval(tau2=0.0, z_lower=-1.959963984540054, z_upper=1.959963984540054, **per_cell):
    """A calibration with the same terms in every cell, except those given per cell key."""
    cells = {landmark.interval_cell(d, c, f, h): {"rows": 500, "tau2": tau2, "z_lower": z_lower, "z_upper": z_upper,
                                                  "pooled": False}
             for d in (0, 1) for c in (0, 1) for f in (False, True) for h in (6, 12, 24)}
    cells.update(per_cell)
    return {"level": 0.95, "cells": cells}


def test_a_calibration_of_no_extra_spread_gives_the_coefficients_interval_and_a_wider_one_holds_it():
    p, d, o = _cohort()
    plain = landmark.train(p, d, o, "test")
    rows = landmark.landmark_rows(p, d, o, landmarks=[0, 12])
    rows = rows[rows["at_risk"] & rows["ctdna_detected"].notna()]
    same = landmark.train(p, d, o, "test", interval=_interval())
    pd.testing.assert_frame_equal(plain.predict(rows), same.predict(rows))
    wide = landmark.train(p, d, o, "test", interval=_interval(tau2=1.0)).predict(rows)
    narrow = plain.predict(rows)
    assert np.allclose(wide["estimate"], narrow["estimate"]), "the calibration moves the interval, never the number"
    assert (wide["lower"] < narrow["lower"]).all() and (wide["upper"] > narrow["upper"]).all()


def test_each_row_takes_its_own_cell_and_an_unknown_complete_response_the_wider_of_two():
    p, d, o = _cohort()
    fit_ = landmark.train(p, d, o, "test").fits["pfs"]
    rows = landmark.landmark_rows(p, d, o, landmarks=[0, 12])
    rows = rows[rows["at_risk"] & rows["ctdna_detected"].notna()].reset_index(drop=True)
    special = {"rows": 500, "tau2": 4.0, "z_lower": -3.0, "z_upper": 0.5, "pooled": False}
    interval = _interval(**{landmark.interval_cell(1, 1, False, 12): special})
    X = landmark.design(rows, fit_.center)
    tau2, lo, hi = landmark.interval_terms(interval, X, 12)
    hit = (rows["ctdna_detected"] == 1) & (rows["complete_response"] == 1) & (rows["landmark"] == 12)
    assert hit.any() and (~hit).any()
    assert (tau2[hit] == 4.0).all() and (lo[hit] == -3.0).all() and (hi[hit] == 0.5).all()
    assert (tau2[~hit] == 0.0).all() and np.allclose(hi[~hit], 1.96, atol=1e-3)
    # complete response not recorded: the wider of the CR and no-CR cells, on each side
    X_unknown = landmark.design(rows.assign(complete_response=np.nan), fit_.center)
    tau2, lo, hi = landmark.interval_terms(interval, X_unknown, 12)
    positive_later = ((rows["ctdna_detected"] == 1) & (rows["landmark"] == 12)).to_numpy()
    assert (tau2[positive_later] == 4.0).all() and (lo[positive_later] == -3.0).all()
    assert np.allclose(hi[positive_later], 1.96, atol=1e-3)
    # an interval of another level cannot be applied as if it were 95%
    with pytest.raises(ValueError, match="level"):
        fit_.survival(X, 12, level=0.8, interval=interval)
