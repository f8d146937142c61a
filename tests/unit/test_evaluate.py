"""model/evaluate.py against hand-computed values."""
import numpy as np
import pytest
from lifelines.utils import concordance_index

from model import evaluate as ev


def perfectly_calibrated():
    """Each prediction p appears as an event with weight p and a non-event with weight 1 - p."""
    p = np.repeat([0.1, 0.3, 0.5, 0.7, 0.9], 2)
    y = np.tile([1.0, 0.0], 5)
    w = np.where(y == 1, p, 1 - p)
    return y, p, w


def test_perfect_calibration_gives_slope_1_intercept_0_and_no_calibration_error():
    y, p, w = perfectly_calibrated()
    m = ev.binary_metrics(y, p, w, ci_boot=0)
    assert m["calibration_slope"] == pytest.approx(1.0, abs=1e-6)
    assert m["calibration_intercept"] == pytest.approx(0.0, abs=1e-6)
    assert m["oe_ratio"] == pytest.approx(1.0)
    assert m["ici"] == pytest.approx(0.0, abs=1e-4) and m["e90"] == pytest.approx(0.0, abs=1e-4)


def test_overconfident_predictions_give_a_slope_below_1():
    y, p, w = perfectly_calibrated()
    extreme = 1 / (1 + np.exp(-2 * ev.logit(p)))  # twice the log-odds: too extreme
    m = ev.binary_metrics(y, extreme, w, ci_boot=0)
    assert m["calibration_slope"] == pytest.approx(0.5, abs=1e-6)


def test_brier_scaled_brier_and_oe_by_hand():
    y, p = np.array([1, 0, 1]), np.array([0.8, 0.3, 0.6])
    m = ev.binary_metrics(y, p, ci_boot=0)
    assert m["brier"] == pytest.approx((0.2 ** 2 + 0.3 ** 2 + 0.4 ** 2) / 3)
    prevalence = 2 / 3
    assert m["scaled_brier"] == pytest.approx(1 - m["brier"] / (prevalence * (1 - prevalence)))
    assert m["oe_ratio"] == pytest.approx(2 / 1.7)


def test_auroc_counts_ties_as_half():
    m = ev.binary_metrics([1, 1, 0, 0], [0.9, 0.5, 0.5, 0.1], ci_boot=200)
    assert m["auroc"] == pytest.approx(3.5 / 4)
    lo, hi = m["auroc_ci"]
    assert 0 <= lo <= hi <= 1


def test_weights_act_like_repeated_rows():
    y, p = np.array([1, 0, 1, 0]), np.array([0.7, 0.4, 0.6, 0.2])
    weighted = ev.binary_metrics(y, p, [2, 1, 1, 3], ci_boot=0)
    repeated = ev.binary_metrics(np.repeat(y, [2, 1, 1, 3]), np.repeat(p, [2, 1, 1, 3]), ci_boot=0)
    for k in ("brier", "auroc", "calibration_slope", "calibration_intercept", "oe_ratio"):
        assert weighted[k] == pytest.approx(repeated[k], rel=1e-6)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="probabilities"):
        ev.binary_metrics([1, 0], [1.2, 0.3])
    with pytest.raises(ValueError, match="0 or 1"):
        ev.binary_metrics([2, 0], [0.5, 0.3])
    with pytest.raises(ValueError, match="one length"):
        ev.binary_metrics([1, 0, 1], [0.5, 0.3])


def test_harrell_c_with_ties_and_censoring_by_hand():
    time = np.array([1, 2, 2, 3, 4])
    event = np.array([1, 1, 0, 1, 0])
    risk = np.array([0.9, 0.5, 0.7, 0.5, 0.1])
    # usable pairs: (0,1..4) 4 concordant; (1,2) discordant, (1,3) tied risk 1/2, (1,4) concordant; (3,4) concordant
    assert ev.harrell_c(time, event, risk) == pytest.approx(6.5 / 8)
    assert ev.harrell_c(time, event, risk) == pytest.approx(concordance_index(time, -risk, event))


def test_ipcw_weights_by_hand():
    y, w = ev.ipcw_weights([1, 2, 3, 4], [1, 0, 1, 0], horizon=3.5)
    assert y.tolist() == [1, 0, 1, 0]
    # censoring KM: G = 2/3 after t=2; event at 1 -> 1/G(1-) = 1; censored at 2 -> 0;
    # event at 3 -> 1/G(3-) = 1.5; followed past 3.5 -> 1/G(3.5) = 1.5
    assert w == pytest.approx([1.0, 0.0, 1.5, 1.5])
    assert w.sum() == pytest.approx(4)


def test_survival_at_horizon_on_well_calibrated_data():
    rng = np.random.default_rng(3)
    n = 4000
    risk = rng.uniform(0.05, 0.6, n)
    hazard = -np.log(1 - risk) / 12
    t_event = rng.exponential(1 / hazard)
    t_censor = rng.uniform(6, 36, n)
    time, event = np.minimum(t_event, t_censor), t_event <= t_censor
    m = ev.survival_at_horizon(time, event, risk, 12)
    assert m["oe_ratio"] == pytest.approx(1, abs=0.06)
    assert m["calibration_slope"] == pytest.approx(1, abs=0.12)
    assert m["ici"] < 0.02 and m["e50"] <= m["e90"]
    assert m["c_index"] == pytest.approx(concordance_index(time, -risk, event))
    # a useless constant prediction has a Brier score of about prevalence * (1 - prevalence)
    flat = ev.survival_at_horizon(time, event, np.full(n, m["observed_risk"]), 12)
    assert flat["brier"] > m["brier"]


def test_net_benefit_by_hand():
    curve = ev.net_benefit([1, 0, 1, 0], [0.8, 0.6, 0.3, 0.1], [0.5, 0.25])
    at_half = curve.set_index("threshold").loc[0.5]
    assert at_half["model"] == pytest.approx(1 / 4 - 1 / 4 * 1)  # TP 1/4, FP 1/4, odds 1
    assert at_half["act_for_all"] == pytest.approx(0.5 - 0.5)
    at_quarter = curve.set_index("threshold").loc[0.25]
    assert at_quarter["model"] == pytest.approx(2 / 4 - 1 / 4 * (1 / 3))


def test_calibration_by_subgroup():
    table = ev.calibration_by_subgroup([1, 0, 1, 1], [0.5, 0.5, 0.8, 0.6], ["a", "a", "b", "b"]).set_index("group")
    assert table.loc["a", "observed"] == 0.5 and table.loc["a", "expected"] == 0.5
    assert table.loc["b", "observed"] == 1.0 and table.loc["b", "expected"] == pytest.approx(0.7)
    assert table.loc["b", "observed_lo"] < 1.0 <= table.loc["b", "observed_hi"] + 1e-12


# ------------------------------------------------------------------ the libraries give today's numbers
def _old_harrell_c(time, event, risk):
    """The pairwise loop model/evaluate.py used before lifelines' concordance_index (today's numbers)."""
    concordant = usable = 0.0
    for i in np.flatnonzero(event):
        later = (time > time[i]) | ((time == time[i]) & ~event)
        later[i] = False
        if later.sum() == 0:
            continue
        usable += later.sum()
        concordant += (risk[i] > risk[later]).sum() + 0.5 * (risk[i] == risk[later]).sum()
    return concordant / usable


def _old_kaplan_meier(time, event):
    times = np.unique(time[event])
    at_risk = np.array([(time >= t).sum() for t in times])
    deaths = np.array([((time == t) & event).sum() for t in times])
    return times, np.cumprod(1 - deaths / at_risk)


def _old_auc(y, p, w):
    values, inverse = np.unique(p, return_inverse=True)
    pos = np.bincount(inverse, weights=np.where(y == 1, w, 0.0), minlength=values.size)
    neg = np.bincount(inverse, weights=np.where(y == 0, w, 0.0), minlength=values.size)
    below = np.cumsum(neg) - neg
    return np.sum(pos * (below + neg / 2)) / (pos.sum() * neg.sum())


@pytest.mark.parametrize("seed", range(5))
def test_library_versions_give_the_hand_written_numbers_on_tied_censored_data(seed):
    rng = np.random.default_rng(seed)
    n = 300
    time = rng.integers(1, 40, n).astype(float)  # many ties in time
    event = rng.random(n) < 0.4
    risk = np.round(rng.random(n), 1)  # many ties in risk
    assert ev.harrell_c(time, event, risk) == pytest.approx(_old_harrell_c(time, event, risk), abs=1e-12)
    t_new, s_new = ev.kaplan_meier(time, event)
    t_old, s_old = _old_kaplan_meier(time, event)
    np.testing.assert_allclose(t_new, t_old)
    np.testing.assert_allclose(s_new, s_old, rtol=1e-12)
    y = (rng.random(n) < 0.3).astype(float)
    w = rng.uniform(0.5, 2.0, n)
    assert ev._weighted_auc(y, risk, w) == pytest.approx(_old_auc(y, risk, w), abs=1e-12)
    lo, hi = ev._auc_ci(y, risk, w, n_boot=200, seed=seed)
    assert lo < ev._weighted_auc(y, risk, w) < hi
    assert (lo, hi) == ev._auc_ci(y, risk, w, n_boot=200, seed=seed)  # repeatable


def test_kaplan_meier_and_c_without_events():
    assert [len(a) for a in ev.kaplan_meier([1.0, 2.0], [False, False])] == [0, 0]
    assert np.isnan(ev.harrell_c(np.array([1.0, 2.0]), np.array([False, False]), np.array([0.1, 0.2])))


def test_roc_points_put_tied_scores_on_one_point():
    """The hand-written ROC ordered tied scores arbitrarily: with every score tied it drew a staircase
    whose shape depended on the order of the rows; one point per distinct score is the diagonal."""
    import pandas as pd

    from model.card import roc_points

    class Fake:  # roc_points reads the training frame only
        training = pd.DataFrame({"y": [1, 0, 1, 0, 1, 0, 0, 1], "p": [0.5] * 8, "weight": 1.0})

    fpr, tpr = roc_points(Fake())
    assert list(zip(fpr, tpr, strict=True)) == [(0.0, 0.0), (1.0, 1.0)]
