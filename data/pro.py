"""Patient-reported outcomes: the instrument catalogue and scoring (pure, no database).

The catalogue is the one source of truth for each scale's range, direction and meaningful change;
the snapshot build writes it into the ``pro_catalogue`` table so that the ``pro_scores`` view and the
pages read the same numbers.

Scoring follows the EORTC QLQ-C30 Scoring Manual (3rd edition): the raw score is the mean of the
answered items of a scale, valid when at least half of its items are answered; functioning scales
are ``(1 - (RS - 1) / range) * 100``, symptom scales and global health ``(RS - 1) / range * 100``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Scale:
    instrument: str
    scale: str
    label: str
    low: float
    high: float
    higher_is_better: bool
    #: the smallest change a patient notices; None where no published value exists
    meaningful_change: float | None
    #: clinical cut-offs drawn on charts (value, label)
    cutoffs: tuple[tuple[float, str], ...] = ()
    source: str = ""
    #: raise a patient-page alert on sustained meaningful worsening (multi-item scales and global
    #: health: single-item symptom scales move 33 points on a one-step answer change)
    alert: bool = False


QLQ_C30 = "QLQ-C30"
FCRI_SF = "FCRI-SF"
PROMIS_ANXIETY = "PROMIS-Anxiety"
DRS = "DRS"

# QLQ-C30 v3.0: scale -> (items, kind). kind "function" is reversed so that higher = better.
QLQ_C30_SCALES: dict[str, tuple[tuple[int, ...], str]] = {
    "QL2": ((29, 30), "global"),
    "PF2": ((1, 2, 3, 4, 5), "function"),
    "RF2": ((6, 7), "function"),
    "EF": ((21, 22, 23, 24), "function"),
    "CF": ((20, 25), "function"),
    "SF": ((26, 27), "function"),
    "FA": ((10, 12, 18), "symptom"),
    "NV": ((14, 15), "symptom"),
    "PA": ((9, 19), "symptom"),
    "DY": ((8,), "symptom"),
    "SL": ((11,), "symptom"),
    "AP": ((13,), "symptom"),
    "CO": ((16,), "symptom"),
    "DI": ((17,), "symptom"),
    "FI": ((28,), "symptom"),
}
QLQ_C30_LABELS = {
    "QL2": "Global health status / QoL", "PF2": "Physical functioning", "RF2": "Role functioning",
    "EF": "Emotional functioning", "CF": "Cognitive functioning", "SF": "Social functioning",
    "FA": "Fatigue", "NV": "Nausea and vomiting", "PA": "Pain", "DY": "Dyspnoea", "SL": "Insomnia",
    "AP": "Appetite loss", "CO": "Constipation", "DI": "Diarrhoea", "FI": "Financial difficulties",
}
#: Items 1-28 are answered 1-4, items 29-30 (global health) 1-7.
QLQ_C30_ITEM_MAX = {i: (7 if i >= 29 else 4) for i in range(1, 31)}
QLQ_C30_MCID = 10.0  # Osoba 1998: 10-20 points is a moderate change a patient notices

# The baseline window (data/clinical.py): the last score from PRO_BASELINE_DAYS_BEFORE days before the
# index date to PRO_BASELINE_DAYS_AFTER days after it.
from data.clinical import PRO_BASELINE_DAYS_AFTER, PRO_BASELINE_DAYS_BEFORE  # noqa: E402,F401

FCRI_SF_ITEMS = 9  # each 0-4, total 0-36 (Simard & Savard 2009)
DRS_ITEMS = 5  # each 1-5 (1 = strongly agree); items 2 and 4 reverse-coded (Brehaut 2003)
DRS_REVERSED = (2, 4)
PROMIS_TSCORE_ITEM = "TSCORE"  # PROMIS instruments arrive already scored as a T-score

CATALOGUE: tuple[Scale, ...] = tuple(
    Scale(QLQ_C30, code, QLQ_C30_LABELS[code], 0, 100, kind != "symptom", QLQ_C30_MCID,
          source="EORTC QLQ-C30 Scoring Manual 3rd ed.; MCID Osoba 1998",
          alert=code in ("QL2", "PF2", "RF2", "EF", "SF", "FA"))
    for code, (_, kind) in QLQ_C30_SCALES.items()
) + (
    Scale(FCRI_SF, "TOTAL", "Fear of cancer recurrence (FCRI-SF)", 0, 36, False, None,
          cutoffs=((13, "screening cut-off"), (22, "clinical cut-off")),
          source="Simard & Savard 2009/2015; no published minimal important change"),
    Scale(PROMIS_ANXIETY, "TSCORE", "Anxiety (PROMIS T-score)", 20, 80, False, 5.0,
          cutoffs=((55, "mild anxiety"),), alert=True,
          source="PROMIS; meaningful change 3-5 points (we use 5, the conservative end)"),
    Scale(DRS, "TOTAL", "Decision regret (stopping therapy)", 0, 100, False, None,
          cutoffs=((25, "moderate to strong regret"),),
          source="Brehaut 2003 Decision Regret Scale; > 25 = moderate/strong regret"),
)


def catalogue_frame() -> pd.DataFrame:
    """The catalogue as a table (one row per instrument x scale), as written into the snapshot."""
    rows = [
        {
            "instrument": s.instrument, "scale": s.scale, "label": s.label, "low": s.low,
            "high": s.high, "higher_is_better": s.higher_is_better,
            "meaningful_change": s.meaningful_change,
            "cutoffs": "; ".join(f"{v:g} {name}" for v, name in s.cutoffs), "source": s.source,
            "alert": s.alert,
        }
        for s in CATALOGUE
    ]
    return pd.DataFrame(rows)


RESPONSE_COLUMNS = ["patient_id", "completed_on", "instrument", "item", "response"]
PROMIS_TSCORE_RANGE = (10.0, 90.0)  # T-scores: mean 50, SD 10 in the reference population


def item_problems(responses: pd.DataFrame) -> pd.Series:
    """Per answer, why it cannot be scored ("" when it can): the item ranges of the catalogue above.

    Used by the importers' validation; unknown instruments are kept but not scored.
    """
    out = pd.Series("", index=responses.index, dtype=object)
    inst = responses["instrument"].astype(str)
    item = responses["item"].astype(str)
    value = pd.to_numeric(responses["response"], errors="coerce")
    answered = value.notna()
    whole = value == value.round()

    qlq = inst == QLQ_C30
    number = pd.to_numeric(item.where(qlq), errors="coerce")
    high = number.map(QLQ_C30_ITEM_MAX)
    out[qlq & high.isna()] = "not a QLQ-C30 item (1-30)"
    out[qlq & high.notna() & answered & ((value < 1) | (value > high) | ~whole)] = "QLQ-C30 answer out of its scale"
    for name, n_items, low, top in ((FCRI_SF, FCRI_SF_ITEMS, 0, 4), (DRS, DRS_ITEMS, 1, 5)):
        here = inst == name
        number = pd.to_numeric(item.where(here), errors="coerce")
        out[here & ~number.between(1, n_items)] = f"not a {name} item (1-{n_items})"
        out[here & number.between(1, n_items) & answered & (~value.between(low, top) | ~whole)] = \
            f"{name} answer out of its scale ({low}-{top})"
    promis = inst.str.startswith("PROMIS")
    out[promis & (item != PROMIS_TSCORE_ITEM)] = f"PROMIS instruments are imported as item {PROMIS_TSCORE_ITEM}"
    out[promis & (item == PROMIS_TSCORE_ITEM) & answered & ~value.between(*PROMIS_TSCORE_RANGE)] = \
        "PROMIS T-score out of range (10-90)"
    known = qlq | promis | inst.isin([FCRI_SF, DRS])
    out[~known] = "unknown instrument: kept, not scored"
    return out
SCORE_COLUMNS = ["patient_id", "completed_on", "instrument", "scale", "score"]


class _Wide:
    """One row per questionnaire (patient_id, completed_on), one column per item (NaN = unanswered).

    Built by scattering into a numpy matrix: a pivot_table of 30 million answers is far slower.
    """

    def __init__(self, responses: pd.DataFrame, items: list):
        keys = responses[["patient_id", "completed_on"]]
        codes = keys.groupby(["patient_id", "completed_on"], sort=False, observed=True).ngroup().to_numpy()
        first = ~pd.Series(codes).duplicated().to_numpy()
        self.patient_id = keys["patient_id"].to_numpy()[first]
        self.completed_on = keys["completed_on"].to_numpy()[first]
        order = np.argsort(codes[first], kind="stable")
        self.patient_id, self.completed_on = self.patient_id[order], self.completed_on[order]
        column = pd.Index(items).get_indexer(responses["item"])
        ok = column >= 0
        self.values = np.full((first.sum(), len(items)), np.nan)
        self.values[codes[ok], column[ok]] = responses["response"].to_numpy(dtype=float)[ok]

    def frame(self, instrument: str, scale: str, score: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame({"patient_id": self.patient_id, "completed_on": self.completed_on,
                             "instrument": instrument, "scale": scale, "score": score})


def _mean_if_half(values: np.ndarray) -> np.ndarray:
    """Row mean of answered items, NaN unless at least half of the items were answered."""
    answered = (~np.isnan(values)).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nansum(values, axis=1) / answered
    return np.where(answered * 2 >= values.shape[1], mean, np.nan)


def _item_numbers(items: pd.Series) -> pd.Series:
    """Item codes as numbers ("7" -> 7.0, anything else NaN), each distinct code parsed once: a cohort has
    about 40 codes over millions of answers, and parsing every answer's text was a third of a build's scoring."""
    codes, uniques = pd.factorize(items)
    numbers = np.append(pd.to_numeric(pd.Series(uniques, dtype=object), errors="coerce").to_numpy(dtype=float), np.nan)
    return pd.Series(numbers[codes], index=items.index)  # code -1 (missing) takes the appended NaN


def _score_qlq_c30(responses: pd.DataFrame) -> pd.DataFrame:
    items = list(range(1, 31))
    resp = responses.assign(item=_item_numbers(responses["item"]))
    wide = _Wide(resp, items)
    values = wide.values
    # Answers outside an item's scale are treated as not answered (the validator reports them).
    maxima = np.array([QLQ_C30_ITEM_MAX[i] for i in items], dtype=float)
    values = np.where((values >= 1) & (values <= maxima) & (values == np.round(values)), values, np.nan)
    out = []
    for code, (scale_items, kind) in QLQ_C30_SCALES.items():
        cols = [i - 1 for i in scale_items]
        raw = _mean_if_half(values[:, cols])
        rng = maxima[cols[0]] - 1
        score = (1 - (raw - 1) / rng) * 100 if kind == "function" else (raw - 1) / rng * 100
        out.append(wide.frame(QLQ_C30, code, score))
    return pd.concat(out, ignore_index=True)


def _score_sum(responses: pd.DataFrame, instrument: str, n_items: int, low: int, high: int,
               reversed_items: tuple[int, ...] = (), to_0_100: bool = False) -> pd.DataFrame:
    items = list(range(1, n_items + 1))
    resp = responses.assign(item=_item_numbers(responses["item"]))
    wide = _Wide(resp, items)
    values = wide.values
    values = np.where((values >= low) & (values <= high), values, np.nan)
    for i in reversed_items:
        values[:, i - 1] = low + high - values[:, i - 1]
    mean = _mean_if_half(values)  # prorated: mean of answered items when >= half answered
    score = (mean - low) / (high - low) * 100 if to_0_100 else mean * n_items
    return wide.frame(instrument, "TOTAL", score)


def score(responses: pd.DataFrame) -> pd.DataFrame:
    """Score item-level questionnaire answers.

    Parameters
    ----------
    responses : DataFrame with columns patient_id, completed_on, instrument, item, response.
        QLQ-C30 items are "1".."30" (or integers) answered 1-4 (1-7 for 29-30); FCRI-SF items 1-9
        answered 0-4; DRS items 1-5 answered 1-5; PROMIS instruments give item "TSCORE" with the
        T-score as the response, which passes through.

    Returns
    -------
    DataFrame with patient_id, completed_on, instrument, scale, score (one row per questionnaire x
    scale; score NaN when fewer than half of the scale's items were answered). Unknown instruments
    are not scored.
    """
    missing = set(RESPONSE_COLUMNS) - set(responses.columns)
    if missing:
        raise ValueError(f"PRO responses lack column(s): {', '.join(sorted(missing))}")
    responses = responses[RESPONSE_COLUMNS].copy()
    responses["response"] = pd.to_numeric(responses["response"], errors="coerce")
    parts = []
    by_instrument = {k: g for k, g in responses.groupby("instrument", sort=False, observed=True)}
    if QLQ_C30 in by_instrument:
        parts.append(_score_qlq_c30(by_instrument[QLQ_C30]))
    if FCRI_SF in by_instrument:
        parts.append(_score_sum(by_instrument[FCRI_SF], FCRI_SF, FCRI_SF_ITEMS, 0, 4))
    if DRS in by_instrument:
        parts.append(_score_sum(by_instrument[DRS], DRS, DRS_ITEMS, 1, 5, DRS_REVERSED, to_0_100=True))
    for instrument, group in by_instrument.items():
        if instrument.startswith("PROMIS"):
            t = group[group["item"].astype(str) == PROMIS_TSCORE_ITEM]
            parts.append(t.assign(scale="TSCORE").rename(columns={"response": "score"})[SCORE_COLUMNS])
    if not parts:
        return pd.DataFrame(columns=SCORE_COLUMNS)
    out = pd.concat(parts, ignore_index=True)[SCORE_COLUMNS]
    out["score"] = out["score"].astype(float)
    return out.sort_values(["patient_id", "completed_on", "instrument", "scale"], kind="stable",
                           ignore_index=True)
