"""Cohort statistics on a real snapshot: Kaplan-Meier and log-rank equal lifelines' on the same rows."""
import numpy as np
import pandas as pd

import pytest
from lifelines import KaplanMeierFitter
from lifelines.statistics import logrank_test

from services import access

from data import cohorts, queries

KEY = b"k" * 32  # a pseudonym key of the required length


@pytest.fixture(scope="module")
def frame(snapshot):
    return queries.cohort_frame(snapshot)


def test_kaplan_meier_equals_lifelines_on_the_same_rows(snapshot, frame):
    raw = snapshot.query("SELECT o.patient_id, o.cohort, o.pfs_months, o.pfs_event FROM outcomes o")
    curves, at_risk, test = cohorts.km_curves(frame, "cohort")
    for cohort in (1, 2):
        rows = raw[raw["cohort"] == cohort]
        kmf = KaplanMeierFitter().fit(rows["pfs_months"], rows["pfs_event"])
        ours = curves[curves["group"] == str(cohort)]
        np.testing.assert_allclose(ours["survival"], kmf.survival_function_.iloc[:, 0].to_numpy())
        np.testing.assert_allclose(ours["lower"], kmf.confidence_interval_survival_function_.iloc[:, 0].to_numpy())
        at12 = cohorts.survival_at(curves, 12).set_index("group").loc[str(cohort), "survival"]
        assert at12 == pytest.approx(float(kmf.predict(12)))
        assert at_risk[(at_risk["group"] == str(cohort)) & (at_risk["time"] == 0)]["n"].iloc[0] == len(rows)
    a, b = raw[raw["cohort"] == 1], raw[raw["cohort"] == 2]
    lr = logrank_test(a["pfs_months"], b["pfs_months"], a["pfs_event"], b["pfs_event"])
    assert test["p_value"] == pytest.approx(lr.p_value) and test["test_statistic"] == pytest.approx(lr.test_statistic)


def test_table_one_counts(frame):
    t = cohorts.table_one(frame).set_index("")
    assert t.loc["Patients"].tolist() == ["30", "52", "82"]
    er = int(t.loc["ER positive", "all"].split(" ")[0])
    assert er == int((frame["er_status"] == "positive").sum())
    assert "[" in t.loc["Age at enrolment, years", "cohort 1"]


def test_lead_times_count_progressions_without_signal(snapshot, frame):
    draws = queries.cohort_positive_draws(snapshot)
    assert draws["detected"].all() and len(draws) > 0
    leads, no_signal = cohorts.lead_times(draws, frame)
    assert len(leads) + no_signal == int(frame["progressed"].sum())
    assert (leads["lead_months"] >= 0).all()


SCALES = [("QLQ-C30", "QL2"), ("QLQ-C30", "DI"), ("FCRI-SF", "TOTAL"), ("PROMIS-Anxiety", "TSCORE")]
BY = ("hr_status", "de_novo", "best_response", "site")


@pytest.mark.parametrize("chosen", [{}, {"hr_status": ["positive"], "best_response": ["CR", "PR"]}])
def test_pro_change_from_sums_equals_the_scores_themselves(snapshot, frame, chosen):
    """Filtering the per-group sums and adding them up gives the mean, SD and CI of the filtered scores."""
    from scipy import stats

    sums = queries.pro_change_sums(snapshot, SCALES, BY, 3, cohorts.DAYS_PER_MONTH)
    ours = cohorts.pro_change(sums[cohorts.keep(sums, chosen)])
    # the reference: every score of the chosen patients, grouped in pandas
    patients = frame[cohorts.keep(frame, chosen)]
    rows = snapshot.query("SELECT * FROM pro_scores").dropna(subset=["change_from_baseline"])
    rows = rows[[(i, s) in SCALES for i, s in zip(rows["instrument"], rows["scale"], strict=True)]]
    rows = rows.merge(patients[["patient_id", "cohort"]], on="patient_id")
    rows["month"] = (np.round(rows["days_from_index"] / cohorts.DAYS_PER_MONTH / 3) * 3).astype(int)
    ref = rows.groupby(["instrument", "scale", "cohort", "month"])["change_from_baseline"].agg(
        mean="mean", sd="std", n="count").reset_index()
    ref = ref[ref["n"] >= 3].sort_values(["instrument", "scale", "cohort", "month"], ignore_index=True)
    ours = ours.sort_values(["instrument", "scale", "cohort", "month"], ignore_index=True)
    assert len(ref) > 10 and {1, 2} <= set(ours["cohort"])
    pd.testing.assert_frame_equal(ours[["instrument", "scale", "cohort", "month", "n"]],
                                  ref[["instrument", "scale", "cohort", "month", "n"]], check_dtype=False)
    np.testing.assert_allclose(ours["mean"], ref["mean"], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(ours["sd"], ref["sd"], rtol=1e-7, atol=1e-9)
    half = stats.t.ppf(0.975, ref["n"] - 1) * ref["sd"] / np.sqrt(ref["n"])
    np.testing.assert_allclose(ours["upper"], ref["mean"] + half, rtol=1e-7, atol=1e-9)
    assert (ours["lower"] <= ours["mean"]).all() and (ours["mean"] <= ours["upper"]).all()


def test_swimmer_sample_is_stable_and_bounded(frame):
    f = frame.assign(pseudonym=[access.pseudonym(p, KEY) for p in frame["patient_id"]])
    assert len(cohorts.swimmer_sample(f, 1000)) == len(f)
    a, b = cohorts.swimmer_sample(f, 20), cohorts.swimmer_sample(f.sample(frac=1, random_state=1), 20)
    assert len(a) == 20 and set(a["patient_id"]) == set(b["patient_id"])


def test_pseudonyms_are_stable_and_reveal_nothing():
    a = access.pseudonym("STH-0001", KEY)
    assert a == access.pseudonym("STH-0001", KEY) and a != access.pseudonym("STH-0002", KEY)
    assert "0001" not in a and a.startswith("R-") and a != access.pseudonym("STH-0001", b"o" * 32)
    assert pd.Series([access.pseudonym(f"STH-{i:04d}", KEY) for i in range(1000)]).is_unique


def test_the_research_extract_has_pseudonyms_and_no_dates(snapshot):
    from data import queries

    frame = queries.cohort_frame(snapshot)
    researcher = access.Viewer(access.Person("r@x.org", "r", ("researcher",)), key=KEY)
    extract = researcher.research_extract(frame)
    assert len(extract) == len(frame) and extract["pseudonym"].is_unique
    assert not extract.astype(str).apply(lambda c: c.str.contains("STH-")).any().any()
    assert not any(str(t).startswith("datetime") for t in extract.dtypes)
    assert {"pfs_months", "pfs_event", "cohort"} <= set(extract.columns)
