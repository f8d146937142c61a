"""The model card (TRIPOD+AI / FDA CDS criterion 4): what the model is for and the evidence for it."""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from data.clinical import CTDNA_STALE_DAYS
from services import access, models
from ui import charts, components, session

METRIC_LABELS = {
    "auroc": "AUROC (discrimination)", "brier": "Brier score (lower is better)",
    "scaled_brier": "scaled Brier (1 = perfect, 0 = no better than the average)",
    "calibration_intercept": "calibration intercept (ideal 0)", "calibration_slope": "calibration slope (ideal 1)",
    "oe_ratio": "observed / expected (ideal 1)", "ici": "ICI, mean calibration error (ideal 0)",
}


@st.cache_resource(show_spinner="Gathering the model's evidence (once per model)…", max_entries=6)
def _evidence(snapshot_id: str, horizon: int, sha: str) -> models.Evidence:
    return components.loaded_model(snapshot_id, horizon, sha).evidence()


def _current_patient_estimate(snap, viewer: access.Viewer, fitted: models.FittedModel, horizon: int) -> float | None:
    """The estimate of the patient named in ?patient= (training or not), to mark on the calibration plot."""
    named = components.patients_named_in_link()
    patient = named[0] if len(named) == 1 else None  # a link naming two patients marks neither
    if not patient or not components.PATIENT_ID_PATTERN.match(patient):
        return None
    if not viewer.identified or not viewer.sees_ctdna:  # no lookup by id for researchers; no estimate if blinded
        return None
    known = fitted.training_patient_estimate(patient)
    if known is not None:
        return known
    patients = components.patient_list(snap.key).set_index("patient_id")
    if patient not in patients.index:
        return None
    basis = "index" if patients.loc[patient, "cohort"] == 2 else "now"
    est = components.patient_estimate(snap.key, patient, basis, horizon, fitted.facts.sha256)
    return est.probability if est.applicable else None


def _landmark_section(snap) -> None:
    """The model behind every number on the patient page and the tumour board: the estimate as of a date."""
    st.header("The estimate as of a date (landmark model)")
    model, problem = components.landmark_model(snap)
    if model is None:
        st.warning(problem, icon="⚠️")
        return
    st.markdown("""
**Estimand.** For a patient alive, progression-free and off anti-HER2 therapy at landmark *s* (months since
day 0), the chance of **no radiological progression and no death in the next H months** (H = 6, 12 or 24),
given everything known at *s*. The number shown is the trial's PFS (**treatment policy**: restarting
therapy does not count as an event, because the trial's endpoint does not). A second figure from the
same machinery, "still off therapy and progression-free", counts a restart as an event: it answers the
patient's question "how long can I stay off?". After progression or death there is no number: the
event and its date are shown instead.

**Model.** A landmark supermodel (van Houwelingen 2012): stacked data sets of the patients who stopped
(cohort 2) at risk at s = 0, 3, ..., 24 months, one proportional-hazards fit with a piecewise-constant
baseline (0-6, 6-12, 12-24 months after the landmark) and these pre-specified inputs known at *s* only:
the ctDNA call of the last draw with a result, its level, whether a negative call comes only from the draw at
stopping (taken on therapy: only a draw off therapy can see a relapse's ctDNA begin to rise, months before a scan
shows it), complete response to first line, visceral disease, a history of brain metastases (a worse outlook, and relapses in the brain often shed too little
ctDNA to be seen) and the time since stopping. Normal priors (MAP) carry the published evidence; the patient's
repeated rows are accounted for with a sandwich (Godambe) covariance clustered by patient. The 95% interval
holds more than the coefficients' uncertainty: with seven inputs, patients the model cannot tell apart still
differ in their own chance (the whole series of draws, hormone receptors, the number of sites), and on synthetic
trials that difference was several times the coefficients' part. How far it reaches was **measured** on
synthetic trials apart from the validation's and is added (below). For a patient still on therapy (cohort 1) the same model answers
"if they stopped now", an extrapolation from a self-selected cohort.

**Baseline it must beat.** Beside every estimate the risk card shows the Kaplan-Meier of the training
patients with the same ctDNA call at the same landmark ("patients like this one").

**Validation** (below): against the synthetic generator's true chance at each landmark, given what was
observable then.
""")
    st.dataframe(model.fit_facts(), hide_index=True)
    hr = model.hazard_ratios("pfs")
    st.markdown("**Hazard ratios (posterior, 95% interval) and the priors they started from**")
    st.dataframe(hr.round({"hazard_ratio": 2, "lower": 2, "upper": 2, "prior_hr": 2}), hide_index=True)
    st.markdown(r"""**The equation** (TRIPOD+AI item 12): for inputs $x$ at landmark $s$ (ctDNA positive 0/1, its level
in log10 multiples of the limit, negative on the draw at stopping only 0/1, complete response 0/1, visceral 0/1, brain metastases history 0/1, years since stopping),

$$P(\text{progression-free and alive at } s + H) = \exp\Big(-e^{\beta^\top x} \sum_k \lambda_k\, m_k(H)\Big)$$

where $\beta$ are the log hazard ratios above, $\lambda_k$ the baseline hazards per month below and $m_k(H)$ the
months of the horizon that fall in piece $k$.""")
    st.dataframe(model.baseline_hazards("pfs").round(4), hide_index=True)
    _interval_calibration(*model.interval_calibration())
    size = model.sample_size()
    if size.get("minimum"):
        st.markdown(f"**Sample size (Riley et al., BMJ 2020).** For {size['parameters']} parameters to need no more "
                    f"than 10% shrinkage, with a Cox-Snell R² of {size['anticipated_r2_cs']:.3f} anticipated (15% of "
                    f"its maximum {size['max_r2_cs']:.2f} here), a model needs **{size['minimum']:,} patients**; this "
                    f"snapshot has **{size['patients']}** who stopped ({size['events']} progressions or deaths), "
                    f"enough for about {size['supported_parameters']:.1f} parameter(s) by data alone. That is why the "
                    "inputs are few and pre-specified and why published priors carry much of the weight: read the "
                    "estimates as the priors updated by this trial, not as this trial alone.")
    st.markdown("**Participants** (TRIPOD+AI): the patients who stopped, at each landmark.")
    st.dataframe(model.flow(), hide_index=True)
    st.markdown("**Missing inputs** among the patients at risk, and how each is handled.")
    st.dataframe(model.missingness(), hide_index=True)
    st.markdown("**Prior sensitivity**: the same fit with every prior 3 and 10 times wider.")
    st.dataframe(model.prior_sensitivity().round(3), hide_index=True)
    _landmark_validation(models.landmark_validation())
    st.markdown("""**Update plan.** The model is refitted from scratch on every new snapshot (the same pre-specified
inputs and priors; nothing is tuned on the data), and its participant flow, sample size and prior sensitivity
above are recomputed with it. Any change to the procedure (inputs, priors, pieces) gets a new version and is
shown as "not measured" until `python -m model evaluate --synthetic-check` has been run for it. The inputs are
revisited only when the cohort reaches Riley's minimum above, or when the validation shows a bar not met that an
input could fix; at the trial's primary analysis the estimates are compared with the observed landmark
Kaplan-Meier curves before the number is used for decisions.""")
    st.header("For comparison: the day-0 classifier")
    st.caption("The first version's estimate, made at the day therapy stopped and never updated. It is no longer "
               "shown on the patient page or the tumour board; it stays here as a comparison.")


def _interval_calibration(facts: dict | None, cells: pd.DataFrame | None) -> None:
    """How the 95% interval is made, with the measured calibration it uses (model/benchmarks/landmark_interval.json)."""
    if facts is None:
        st.warning("**The 95% interval** is $\\hat\\eta \\pm 1.96\\,\\mathrm{se}$ on the log cumulative hazard "
                   "$\\eta$: the coefficients' uncertainty only. No interval calibration was measured for this version "
                   "(`python -m model evaluate --synthetic-check`), so the interval understates how far a patient's own "
                   "chance can be from the estimate.", icon="⚠️")
        return
    st.markdown(rf"""**The 95% interval** is $\hat\eta + z\,\sqrt{{\mathrm{{se}}^2 + \tau^2}}$ on the log cumulative hazard
$\eta$ from $z_{{lower}}$ to $z_{{upper}}$, transformed back. $\mathrm{{se}}$ is the coefficients' uncertainty for this
patient; $\tau^2$ is how far, beyond it, patients' own chances fell from the estimate on {facts['repeats']} synthetic
trials of {facts['patients_per_cohort']} patients for each of {_generators(facts)} (seeds {facts['seeds'][0]}-{facts['seeds'][1]}, apart from the
validation's; measured {facts['measured_on'][:10]}), each fitted on one trial and tested on the next. The two
quantiles $z$ are those of the measured errors, so a cell whose estimates were biased leans the way its errors did.
Which of these worlds real patients resemble is not known, so each cell is measured on all of them together,
each weighing the same.
A cell with fewer than {facts['min_cell_rows']} measured estimates uses the cell pooled over complete response; a
patient whose complete response is not recorded gets the wider of the two.
**What this assumes:** that real patients vary around the model as the synthetic ones do. The validation below
checks it on other seeds of the same four generators, not on a world none of them describes; on real data it stays an assumption
until the trial's outcomes can test it.""")
    st.dataframe(cells.round(3), hide_index=True)


def _generators(facts: dict) -> str:
    names = facts.get("generators") or ["default"]
    return f"{len(names)} generators ({', '.join(names)})" if len(names) > 1 else "the default generator"


def _bar_value(key: str, value) -> str:
    if value is None:
        return "—"
    if key.endswith("coverage"):
        return f"{value:.0%}"
    if key.endswith("width"):
        return f"{value:.0f} points"
    if key == "net_benefit":
        return f"{value:+.4f}"
    return f"{value:+.3f}" if key == "ctdna_positive_bias" else f"{value:.3f}"


def _net_benefit_interval(key: str, generator: dict) -> str:
    """The lowest net-benefit gain's 95% interval over the test trials: a shortfall inside it is a tie."""
    low_high = generator.get("net_benefit_interval")
    if key != "net_benefit" or not low_high or not all(np.isfinite(low_high)):  # one test trial: no spread to measure
        return ""
    return f" (95% {low_high[0]:+.4f} to {low_high[1]:+.4f})"


def _landmark_validation(result: dict | None) -> None:
    """The stored synthetic check (model/landmark_check.py): every bar, per generator, as measured."""
    st.subheader("Validation against a known truth (synthetic trial-size data)")
    if result is None:
        st.warning("Not measured for this version of the landmark model: run `python -m model evaluate "
                   "--synthetic-check`. Read every interval as approximate.", icon="⚠️")
        return
    gens = result["generators"]
    st.markdown(f"Measured {result['measured_on'][:10]}: {result['repeats']} cohorts of {result['patients_per_cohort']} "
                "patients for each generator; the model fitted on one cohort and tested on the next one's patients "
                "who stopped, at every landmark 0-24 months and horizons 6, 12 and 24 months, against the generator's "
                "true chance given what was observable at that landmark. Kaplan-Meier by the current ctDNA call, "
                "from the same training cohort, is the baseline.")
    table = pd.DataFrame({name: {text: _bar_value(key, g["measured"][key]) + _net_benefit_interval(key, g)
                                 + ("" if g["passed"][key] else "  ✗ not met")
                                 for key, text in result["bars"].items()} for name, g in gens.items()})
    table.index.name = "bar"
    st.dataframe(table.reset_index(), hide_index=True)
    st.caption(" · ".join(f"**{name}**: {g['about']} ({g['rows']:,} estimates, {g['patients']:,} patients"
                          + (f"; {g['rows_left_out_imprecise_truth']} left out: truth too imprecise" if
                             g["rows_left_out_imprecise_truth"] else "") + ")" for name, g in gens.items()))
    default = gens["default"]
    groups = pd.DataFrame(default["groups"])
    st.markdown("**By ctDNA call and complete response** (default generator)")
    st.dataframe(groups.rename(columns={"group": "patients", "rows": "estimates", "mean_estimate": "mean estimate",
                                        "mean_truth": "mean truth", "mean_width_points": "mean width (points)",
                                        "mean_absolute_error": "mean absolute error"}).round(3), hide_index=True)
    unmet = [result["bars"][k] for k, ok in default["passed"].items() if not ok]
    if unmet:
        worst = max(abs(g["bias"]) for g in default["groups"])
        narrow = min(g["coverage"] for g in default["groups"]) < 0.92
        st.warning(f"On the default generator the 95% intervals held the true chance {default['coverage']:.0%} of the "
                   f"time{', not 95%' if narrow else ''}. Not met: {'; '.join(unmet)}. The mean estimate of each group "
                   f"above is within {worst:.2f} of its mean truth, but the mean absolute error per patient is "
                   f"{default['measured']['mean_absolute_error']:.2f}: the truth differs between patients the model "
                   "cannot tell apart (it uses the latest call and level only, not the whole series of draws). Read each "
                   "number as the average for patients with these inputs"
                   + (", and its interval as too narrow." if narrow else ", and lean on the interval, not the number: "
                      "it is wide because that difference is in it."), icon="⚠️")


def render(snap, horizon: int) -> None:
    info = components.snapshot_info(snap.key)
    viewer = session.viewer()
    model, problem = components.current_model(snap, horizon)
    st.title("Model card")
    _landmark_section(snap)
    if model is None:
        st.warning(problem, icon="⚠️")
        return
    ev = _evidence(model.facts.snapshot_id, horizon, model.facts.sha256)
    events = ev.n_events
    corrected = ev.metrics.set_index("metric")
    shrinkage_note = ("" if "logistic" in ev.model_name
                      else " (for this non-linear model, the term of the most penalized logistic candidate)")

    st.markdown(f"""
**Intended use.** Decision support for oncologists and tumour boards considering whether a patient with
HER2-positive metastatic breast cancer who has been progression-free for at least 3 years on first-line
anti-HER2 therapy could stop it. It estimates the chance of staying **progression-free and alive for
{horizon} months after stopping**, with a 95% interval. It does not decide: the clinician reviews the
inputs, the interval and this card. **Not for** patients who are HER2-negative, have had < 3 years of
first-line therapy, have progressed, or whose inputs lie outside the training range: the app refuses
them with the reason.

**Population and data.** Snapshot `{ev.snapshot_id}` ({'SYNTHETIC data' if info['is_synthetic'] else info['source']},
data cut-off {pd.Timestamp(info['data_cutoff']):%Y-%m-%d}). Training population: cohort 2 (patients who stopped),
**{ev.n_patients} patients, {events} progressions or deaths by {horizon} months**
({events} events for {ev.n_inputs} inputs: a very small sample, hence a penalized model).
Left out: {', '.join(f'{v} {k}' for k, v in ev.excluded.items()) or 'none'}.

**Outcome and horizon.** Progression (RECIST 1.1, derived from lesion measurements) or death within {horizon}
months of day 0 (the day therapy stopped). Patients censored before {horizon} months are neither successes
nor failures: the others carry inverse-probability-of-censoring weights.

**Predictors, measured at day 0 only** (nothing measured later is used): {', '.join(ev.input_labels)}.
ctDNA, best response, years on first-line therapy and HER2 IHC are required; the others are imputed inside
the model when missing (most frequent / median of the training patients) and the risk card flags them.
A ctDNA result drawn more than {CTDNA_STALE_DAYS} days before is flagged as stale. For a patient still on therapy the
same model answers "if they stopped now", with inputs as of the data cut-off.

**Model.** {ev.model_name} with {ev.calibration} calibration (CalibratedClassifierCV, 5-fold), chosen
as the simplest candidate within one standard error of the best cross-validated Brier score.
Each patient's 95% interval, on the logit scale, combines the spread of {ev.n_boot} bootstrap refits
of the model and its calibration with the expected squared bias of the penalty{shrinkage_note}: every refit is
shrunk towards the average patient in the same way, so the refits alone cannot see that bias.
Trained {ev.created_at} with scikit-learn {ev.versions['scikit-learn']}; file sha256 `{model.facts.sha256[:16]}…`.
""")
    st.subheader("Validation (bootstrap optimism-corrected)")
    st.markdown(f"**Discrimination, the one figure to quote: cross-validated AUROC {ev.chosen_cv_auroc:.2f}** "
                "(repeated stratified 5-fold cross-validation of the deployed procedure: each patient is "
                "predicted by a model that never saw them). The figures below marked *apparent* are on the "
                "training patients themselves and flatter the model.")
    slope = corrected.loc["calibration_slope"]
    if not (0.5 <= slope["corrected"] <= 1.5) or slope["ci_high"] - slope["ci_low"] > 2:
        st.warning(f"The optimism-corrected calibration slope is {slope['corrected']:.2f} (95% CI "
                   f"{slope['ci_low']:.2f} to {slope['ci_high']:.2f}): it cannot be estimated reliably from "
                   f"{events} events. Do not lean on it, nor on this classifier's individual estimates.", icon="⚠️")
    m = ev.metrics.assign(metric=ev.metrics["metric"].map(METRIC_LABELS))
    st.dataframe(m.round(3), hide_index=True)
    st.caption("Apparent = on the training patients; optimism = mean (bootstrap apparent − bootstrap model on the "
               "original patients); corrected = apparent − optimism; 95% CI = bootstrap apparent percentiles shifted "
               "by the optimism. Censored-data view (risk of progression, apparent): "
               f"Harrell C {ev.survival['c_index']:.2f}, O/E {ev.survival['oe_ratio']:.2f}, "
               f"IPCW Brier {ev.survival['brier']:.3f}.")
    with st.expander("Candidates compared (repeated stratified 5-fold cross-validation)"):
        st.dataframe(ev.candidates.round(4), hide_index=True)
        st.dataframe(ev.calibration_choice.round(4), hide_index=True)

    current = _current_patient_estimate(snap, viewer, model, horizon)
    st.plotly_chart(charts.calibration_figure(ev.predictions, ev.bins, ev.smooth, current), key="calibration")
    c1, c2 = st.columns(2)
    c1.plotly_chart(charts.roc_figure(*ev.roc, float(corrected.loc["auroc", "apparent"])), key="roc")
    c2.plotly_chart(charts.decision_curve_figure(ev.decision_curve), key="decision_curve")
    st.plotly_chart(charts.subgroup_figure(viewer.subgroups(ev.subgroups)), key="subgroups")

    if info["is_synthetic"]:
        st.subheader("Against the generator's truth (synthetic data only)")
        truth = components.synthetic_truth(snap.key)
        cmp = model.truth_comparison(truth)
        st.markdown(f"Correlation of the estimate with each patient's true probability **{cmp['correlation']:.2f}**, "
                    f"mean absolute error **{cmp['mean_abs_error'] * 100:.1f} points**, the 95% interval covers the "
                    f"true probability for **{cmp['interval_covers_truth']:.0%}** of the {cmp['n']} training patients. "
                    "The benchmark `python -m model evaluate --synthetic-check` repeats this at scale.")

    st.subheader("Limitations")
    st.markdown(f"""
- {ev.n_patients} patients and {events} events: every estimate is uncertain and the intervals are wide; subgroup
  results rest on a handful of patients each. The two internal validations disagree: the repeated
  cross-validated AUROC of the chosen model is **{ev.chosen_cv_auroc:.2f}** (calibration slope {ev.chosen_cv_slope:.2f})
  against the bootstrap-corrected {float(corrected.loc['auroc', 'corrected']):.2f}; with this few events, trust the lower.
  A calibration slope cannot be estimated reliably when the predictions barely spread: read it with its interval.
- Per-patient 95% intervals: {models.coverage_note()} They are wide because {events} events
  cannot tell patients apart precisely.
- Validated internally only (bootstrap). No external validation exists; no published 12-month PFS after
  stopping exists to compare with.
- ctDNA assays differ (tumour-informed MRD panels): levels are compared as multiples of each assay's limit.
- Brain-only progression is often missed by ctDNA; the model cannot know about it.
""")
    st.subheader("Version history")
    st.dataframe(models.versions(), hide_index=True)
