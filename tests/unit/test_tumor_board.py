"""The tumour board's ranking rules: what each order means, and saying when intervals overlap."""
import numpy as np
import pandas as pd
import pytest

from ui import tumor_board as tb


def _table():
    return pd.DataFrame({
        "patient_id": ["A", "B", "C", "D"], "eligibility": ["unknown", "eligible", "eligible", "not eligible"],
        "chance": [90.0, 80.0, 85.0, np.nan], "low %": [40.0, 70.0, 20.0, np.nan], "high %": [99.0, 88.0, 97.0, np.nan],
        "interval": ["40-99%", "70-88%", "20-97%", ""], "last ctDNA": ["not detected", "detected", "not detected", None],
        "last_ctdna_on": pd.to_datetime(["2026-01-01", "2026-02-01", "2026-03-01", None]),
        "last_scan_on": pd.to_datetime(["2026-05-01", "2026-04-01", "2026-06-01", "2026-01-01"])})


@pytest.mark.parametrize("key, order", [
    ("eligibility, then estimate", ["C", "B", "A", "D"]),
    ("estimate", ["A", "C", "B", "D"]),
    ("lower end of the interval", ["B", "A", "C", "D"]),
    ("last ctDNA (not detected first)", ["C", "A", "B", "D"]),
    ("last scan (most recent first)", ["C", "A", "B", "D"]),
])
def test_each_ranking_means_what_it_says(key, order):
    assert tb.rank(_table(), key)["patient_id"].tolist() == order


def test_a_blinded_table_ranks_by_eligibility_without_an_estimate():
    t = _table().drop(columns=["chance", "low %", "high %", "interval", "last ctDNA", "last_ctdna_on"])
    assert tb.rank(t, tb.RANK_KEYS[0])["patient_id"].tolist() == ["B", "C", "A", "D"]


def test_overlapping_intervals_are_said_in_words():
    said = tb.overlap_sentence(tb.rank(_table(), "estimate"))
    assert "overlap" in said and "not a difference the data support" in said
    apart = _table().assign(**{"low %": [90.0, 10.0, 5.0, np.nan], "high %": [99.0, 50.0, 40.0, np.nan]})
    assert "does not overlap" in tb.overlap_sentence(tb.rank(apart, "estimate"))
