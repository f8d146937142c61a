"""Cohort statistics on a real snapshot: Kaplan-Meier and log-rank equal lifelines' on the same rows."""
import os

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
    ref = ref.sort_values(["instrument", "scale", "cohort", "month"], ignore_index=True)
    ours = ours.sort_values(["instrument", "scale", "cohort", "month"], ignore_index=True)
    assert len(ref) > 10 and {1, 2} <= set(ours["cohort"])
    pd.testing.assert_frame_equal(ours[["instrument", "scale", "cohort", "month", "n"]],
                                  ref[["instrument", "scale", "cohort", "month", "n"]], check_dtype=False)
    np.testing.assert_allclose(ours["mean"], ref["mean"], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(ours["sd"], ref["sd"], rtol=1e-7, atol=1e-9)
    half = stats.t.ppf(0.975, ref["n"] - 1) * ref["sd"] / np.sqrt(ref["n"])
    enough = ref["n"] >= cohorts.MIN_N_FOR_CI  # below it: no interval at all
    assert (~enough).any() and enough.any()
    np.testing.assert_allclose(ours["upper"][enough], (ref["mean"] + half)[enough], rtol=1e-7, atol=1e-9)
    assert ours["upper"][~enough].isna().all() and ours["lower"][~enough].isna().all()
    ok = ours[enough]
    assert (ok["lower"] <= ok["mean"]).all() and (ok["mean"] <= ok["upper"]).all()


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


# ----------------------------------------------------------------------------- what researchers publish
def _step(x, y, at):
    """The value at `at` of a step function drawn with shape "hv" through (x, y)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    return y[np.searchsorted(x, at, side="right") - 1]


def test_the_km_band_as_drawn_is_lifelines_confidence_interval_at_every_time(frame):
    from ui import charts

    ct = frame.assign(ctdna=frame["ctdna_detected_at_index"].map({True: "detected", False: "not detected"}))
    curves, at_risk, test = cohorts.km_curves(ct, "ctdna")
    fig = charts.km_figure(curves, at_risk, test, "By ctDNA at day 0", colors=charts.CTDNA_COLORS)
    traces = list(fig.data)
    for group in ("detected", "not detected"):
        rows = ct[ct["ctdna"] == group]
        kmf = KaplanMeierFitter().fit(rows["pfs_months"], rows["pfs_event"].astype(bool))
        ci = kmf.confidence_interval_survival_function_
        [k] = [i for i, t in enumerate(traces) if t.fill == "tonexty" and t.legendgroup == group]
        upper, lower = traces[k - 1], traces[k]
        assert upper.line.shape == lower.line.shape == "hv"
        # everywhere on the time axis, including between event times and at t = 0
        grid = np.unique(np.r_[0.0, ci.index.to_numpy(), ci.index.to_numpy()[1:] - 1e-6])
        np.testing.assert_allclose(_step(lower.x, lower.y, grid), _step(ci.index, ci.iloc[:, 0], grid))
        np.testing.assert_allclose(_step(upper.x, upper.y, grid), _step(ci.index, ci.iloc[:, 1], grid))
        assert _step(lower.x, lower.y, [0.0])[0] == 1.0  # the band starts at 1 (it reached 0.38 at t = 0)
        # a censoring tick wherever someone was censored, on the curve
        [ticks] = [t for t in traces if t.name == f"{group} censored"]
        censored_at = kmf.event_table.index[kmf.event_table["censored"] > 0]
        np.testing.assert_allclose(sorted(ticks.x), sorted(censored_at))
        np.testing.assert_allclose(ticks.y, kmf.survival_function_at_times(ticks.x).to_numpy())
    assert fig.layout.xaxis.range[0] < 0  # room left of t = 0 for the first at-risk number


def test_table_one_gives_the_km_median_with_its_ci_and_the_reverse_km_follow_up(frame):
    from lifelines.utils import median_survival_times, qth_survival_time

    t = cohorts.table_one(frame).set_index("")
    assert not any(label.startswith("PFS time") for label in t.index)  # no median of mixed observed times
    for column, rows in (("cohort 2", frame[frame["cohort"] == 2]), ("all", frame)):
        kmf = KaplanMeierFitter().fit(rows["pfs_months"], rows["pfs_event"].astype(bool))
        median, low, high, events = cohorts.km_median(rows)
        ci = median_survival_times(kmf.confidence_interval_)
        assert median == kmf.median_survival_time_ and (low, high) == (ci.iloc[0, 0], ci.iloc[0, 1])
        assert events == int(rows["pfs_event"].sum())
        assert f"{events} events" in t.loc[cohorts.PFS_MEDIAN_ROW, column]
        reverse = KaplanMeierFitter().fit(rows["pfs_months"], ~rows["pfs_event"].astype(bool))
        expected = float(qth_survival_time(0.5, reverse.survival_function_))
        assert cohorts.follow_up(rows)[0] == pytest.approx(expected)
        assert t.loc[cohorts.FOLLOW_UP_ROW, column].startswith(f"{expected:.1f} (")


def test_km_median_when_half_have_progressed():
    rows = pd.DataFrame({"pfs_months": [1, 2, 3, 4, 5, 6.0], "pfs_event": [True, True, True, True, False, False]})
    median, low, high, events = cohorts.km_median(rows)
    kmf = KaplanMeierFitter().fit(rows["pfs_months"], rows["pfs_event"])
    assert median == kmf.median_survival_time_ and np.isfinite(median) and events == 4
    assert cohorts._median_text(median, low, high, events).startswith(f"{median:.1f} (")


def test_cox_models_equal_lifelines_on_the_same_rows(frame):
    from lifelines import CoxPHFitter
    from lifelines.statistics import proportional_hazard_test

    models = cohorts.cox_models(frame)
    data = cohorts._cox_data(frame)
    for comparison, (column, _one, _zero, extra) in cohorts.COX_COMPARISONS.items():
        for model, covariates in (("unadjusted", [column]), ("adjusted", [column, *extra, *cohorts.COX_ADJUSTED_FOR])):
            d = data[["T", "E", *covariates]].dropna()
            cph = CoxPHFitter().fit(d, "T", "E")
            ph = proportional_hazard_test(cph, d, time_transform="rank").summary["p"]
            ours = models[(models["comparison"] == comparison) & (models["model"] == model)]
            assert len(ours) == len(covariates) and (ours["n"] == len(d)).all()
            first = ours.iloc[0]  # the comparison's own term comes first
            assert first["hr"] == pytest.approx(float(cph.hazard_ratios_[column]))
            assert first["lower"] == pytest.approx(float(cph.summary.loc[column, "exp(coef) lower 95%"]))
            assert first["p"] == pytest.approx(float(cph.summary.loc[column, "p"]))
            assert first["ph_p"] == pytest.approx(float(ph.loc[column]))


def test_a_cox_model_that_cannot_be_estimated_says_why(frame):
    only_one_cohort = frame[frame["cohort"] == 2]
    models = cohorts.cox_models(only_one_cohort)
    row = models[models["comparison"] == "cohort"].iloc[0]
    assert np.isnan(row["hr"]) and "too few" in row["note"]


def test_competing_events_are_coded_by_what_came_first():
    day0 = pd.Timestamp("2024-01-01")
    f = pd.DataFrame({
        "patient_id": ["restart-first", "progressed-then-restart", "died", "censored", "same-day"],
        "cohort": [2, 2, 2, 1, 2], "index_date": [day0] * 5, "pfs_months": [20.0, 6.0, 9.0, 30.0, 3.0],
        "progressed_on": [pd.NaT, day0 + pd.Timedelta(days=183), pd.NaT, pd.NaT, day0 + pd.Timedelta(days=91)],
        "restarted_on": [day0 + pd.Timedelta(days=300), day0 + pd.Timedelta(days=200), pd.NaT, pd.NaT,
                         day0 + pd.Timedelta(days=91)],
        "died_on": [pd.NaT, pd.NaT, day0 + pd.Timedelta(days=274), pd.NaT, pd.NaT]})
    e = cohorts.competing_events(f).set_index("patient_id")
    assert e["event"].to_dict() == {"restart-first": 2, "progressed-then-restart": 1, "died": 3, "censored": 0,
                                    "same-day": 1}
    assert e.loc["restart-first", "months"] == pytest.approx(300 / cohorts.DAYS_PER_MONTH)
    assert e.loc["censored", "months"] == 30.0


def test_cumulative_incidence_equals_lifelines_and_adds_up_with_km(frame):
    from lifelines import AalenJohansenFitter

    events = cohorts.competing_events(frame)
    cif = cohorts.cumulative_incidence(events, seed=7)
    two = events[events["cohort"] == 2]
    assert set(cif[cif["group"] == "2"]["event"]) == set(cohorts.COMPETING_EVENTS.values())
    total = 0.0
    for code, name in cohorts.COMPETING_EVENTS.items():
        ajf = AalenJohansenFitter(seed=7).fit(two["months"], two["event"], event_of_interest=code)
        ours = cif[(cif["group"] == "2") & (cif["event"] == name)]
        np.testing.assert_allclose(ours["incidence"], ajf.cumulative_density_.iloc[:, 0].to_numpy())
        np.testing.assert_allclose(ours["upper"], ajf.confidence_interval_cumulative_density_.iloc[:, 1].to_numpy())
        total += float(ours["incidence"].iloc[-1])
    # every patient ends in one of the events or is censored: the incidences add up to 1 - KM(any event)
    km = KaplanMeierFitter().fit(two["months"], two["event"] > 0)
    assert total == pytest.approx(1 - float(km.survival_function_.iloc[-1, 0]), abs=0.01)


def test_one_colour_per_cohort_on_every_chart_and_pro_points_say_their_n(frame, snapshot):
    from ui import charts

    curves, at_risk, test = cohorts.km_curves(frame, "cohort")
    km = charts.km_figure(curves, at_risk, test, "By cohort", charts.COHORT_NAMES, charts.COHORT_COLORS)
    km_colors = {t.name: t.line.color for t in km.data if t.name in charts.COHORT_NAMES.values()}
    f = frame.assign(label=frame["patient_id"])
    lanes, draws = cohorts.swimmer_lanes(f, queries.cohort_positive_draws(snapshot))
    swim = charts.swimmer_figure(lanes, draws)
    swim_colors = {t.name: t.marker.color for t in swim.data if t.type == "bar"}
    sums = queries.pro_change_sums(snapshot, SCALES, BY, 3, cohorts.DAYS_PER_MONTH)
    change = cohorts.pro_change(sums)
    pro = charts.pro_change_figure(change, SCALES, {})
    pro_colors = {t.name: t.line.color for t in pro.data}
    cif = charts.cumulative_incidence_figure(cohorts.cumulative_incidence(cohorts.competing_events(frame)))
    cif_colors = {t.name.split(":")[0]: t.line.color for t in cif.data if t.name}
    for name in charts.COHORT_NAMES.values():
        assert km_colors[name] == swim_colors[name] == pro_colors[name] == cif_colors[name]
    # every PRO point names its n; a point of fewer than 5 is open and has no error bar
    for t in pro.data:
        assert all(text.startswith("n=") for text in t.text)
        small = [int(text[2:]) < cohorts.MIN_N_FOR_CI for text in t.text]
        for is_small, fill, up in zip(small, t.marker.color, t.error_y.array, strict=True):
            assert (fill == "white") == is_small and (not is_small or up == 0)
    # the swimmer's legend sits above the lanes (no gap under a tall plot) and its labels are readable
    assert swim.layout.legend.y >= 1 and swim.layout.yaxis.tickfont.size >= 11


def test_exported_figures_and_data_carry_the_snapshot_and_filters(frame):
    from ui import charts, exports

    curves, at_risk, test = cohorts.km_curves(frame, "cohort")
    fig = charts.km_figure(curves, at_risk, test, "By cohort")
    line = "STOP-HER2 · snapshot synthetic-abc (cut-off 2026-11-01) · filters: HR status: positive"
    marked = exports.with_provenance(fig, line)
    assert any("synthetic-abc" in a.text for a in marked.layout.annotations)
    assert not any("synthetic-abc" in (a.text or "") for a in fig.layout.annotations)  # the page's own is untouched
    data = exports.with_provenance_columns(curves, {"snapshot_id": "synthetic-abc", "filters": "HR status: positive"})
    assert (data["snapshot_id"] == "synthetic-abc").all() and len(data) == len(curves)
    if exports.static_images_problem() is None:
        svg = exports.figure_file(fig, "svg", line).decode()
        assert svg.startswith("<svg") and "synthetic-abc" in svg
        png = exports.figure_file(fig, "png", line)
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
    else:
        assert os.environ.get("CI") != "true", exports.static_images_problem()  # CI installs Chromium
