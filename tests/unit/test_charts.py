"""Chart rules that a reader checks by eye: axis labels read as numbers, a failed draw is not a result."""
import numpy as np
import pandas as pd

from ui import charts


def test_log_ticks_below_one_decade_are_labelled_as_the_numbers_they_are():
    ticks = charts.log_ticks(0.1, 30)
    assert [charts.tick_label(v) for v in ticks] == ["0.1", "0.2", "0.5", "1", "2", "5", "10", "20"]


def test_log_ticks_over_many_decades_label_each_decade_readably():
    assert [charts.tick_label(v) for v in charts.log_ticks(3e-6, 0.05)] == ["10⁻⁵", "10⁻⁴", "0.001", "0.01"]
    assert charts.tick_label(2e-5) == "2×10⁻⁵"


def _draws(qc):
    days = np.arange(len(qc)) * 91
    return pd.DataFrame({"drawn_on": pd.Timestamp("2024-01-01") + pd.to_timedelta(days, "D"), "days_from_index": days,
                         "assay": "Signatera", "value": [np.nan, 0.5, np.nan, 2.0][:len(qc)], "unit": "MTM/mL",
                         "lod": 0.3, "detected": pd.array([False, True, None, True][:len(qc)], dtype="boolean"),
                         "qc": qc})


def test_a_qc_failed_draw_sits_on_the_axis_apart_not_at_the_limit_as_if_it_were_a_result():
    timeline = pd.DataFrame(columns=["track", "starts_on", "ends_on", "label"])
    fig = charts.ctdna_figure(_draws(["pass", "pass", "failed", "pass"]), timeline, pd.Timestamp("2024-01-01"),
                              pd.Timestamp("2025-01-01"))
    failed = next(t for t in fig.data if t.name == "QC failed (no result)")
    low = 10 ** fig.layout.yaxis.range[0]
    assert all(y < 0.3 and y < low * 1.5 for y in failed.y)  # below the detection limit, at the bottom axis
    assert list(fig.layout.yaxis.ticktext)[:3] == ["0.1", "0.2", "0.5"]


def _scans(rows):
    s = pd.DataFrame(rows, columns=["overall_response", "sld_mm", "new_lesion"])
    s["scanned_on"] = pd.Timestamp("2024-01-01") + pd.to_timedelta(np.arange(len(s)) * 91, "D")
    s["days_from_index"] = np.arange(len(s)) * 91
    s["n_target_lesions"] = 2
    s["baseline_sld_mm"] = s["sld_mm"].iloc[0]
    s["nadir_sld_mm"] = s["sld_mm"].cummin().shift(1).fillna(s["sld_mm"].iloc[0])
    s["pd_threshold_mm"] = np.maximum(s["nadir_sld_mm"] * 1.2, s["nadir_sld_mm"] + 5)
    s["pct_from_baseline"] = s["pct_from_nadir"] = 0.0
    s["note"] = None
    return s


def test_an_unmeasured_scan_has_no_sld_point_and_pd_by_a_new_lesion_says_so():
    s = _scans([(None, 50.0, None), ("PR", 34.0, False), ("NE", np.nan, False), ("PD", 30.0, True)])
    fig = charts.sld_figure(s, pd.Timestamp("2024-01-01"))
    ne = next(t for t in fig.data if t.name == "NE")
    assert list(ne.y) == [0] and "no SLD" in ne.text[0]  # not drawn at the nadir (34 mm) as if measured
    assert any(a.text == "new lesion" for a in fig.layout.annotations)
    baseline = next(a for a in fig.layout.annotations if a.text.startswith("baseline"))
    assert baseline.x == 1 and baseline.xanchor == "right"  # clear of the line's start


def test_a_drafts_pandas_columns_reach_the_browser_exactly_as_plotly_would_send_them():
    """A draft hands plotly numpy arrays instead of pandas columns (plotly deep-copied each column as a frame and
    read it through narwhals: 40 % of the PRO chart's cost). The JSON must not change for any column type the
    patient page uses: dates, text, floats with gaps, integers, booleans, and a column nested in a marker."""
    import json

    import numpy as np
    import pandas as pd
    import plotly.graph_objects as go

    frame = pd.DataFrame({"when": pd.to_datetime(["2024-01-02", "2024-03-04", None]), "label": ["a", "<b>", None],
                          "value": [1.5, np.nan, 3.0], "n": [1, 2, 300_000], "flag": [True, False, True]})
    draft = charts._Draft()
    for column in frame:
        draft.add_trace(dict(type="scatter", x=frame[column], y=frame.index, marker=dict(color=frame["value"])))
    plotly_itself = go.Figure(dict(data=draft.data, layout=draft.layout), _validate=False)
    assert json.loads(draft.done().to_json()) == json.loads(plotly_itself.to_json())
    assert not any(isinstance(v, pd.Series) for trace in draft.done().data for v in trace.to_plotly_json().values())
