"""The patient page's charts are built as plain dicts and skip plotly's validation at run time (issue 18: it was
most of a first visit's server time). These tests are that validation: every chart of every patient of the
test cohort, in both time axes, is exactly what plotly's validated Figure makes of it, so a property plotly does
not know, or a magic underscore (line_width) that only a validated Figure expands, cannot reach a browser."""
import json

import pandas as pd
import plotly.graph_objects as go
import pytest

from data import cohorts, queries
from ui import charts


def _validated(fig: go.Figure) -> dict:
    spec = json.loads(fig.to_json())
    return json.loads(go.Figure(spec).to_json())  # raises on a property plotly does not know


def _patient_charts(snapshot, patient_id: str, axis: str) -> dict[str, go.Figure]:
    rec = queries.patient_record(snapshot, patient_id)
    s, o = rec.summary, rec.outcome
    end = o["died_on"] if pd.notna(o["died_on"]) else o["last_followup_on"]
    window = charts.shared_window(s["index_date"], end, rec.timeline["starts_on"])
    catalogue = queries.pro_catalogue(snapshot)
    scales = [tuple(k) for k in rec.pros[["instrument", "scale"]].drop_duplicates().head(3).itertuples(index=False)]
    trajectory = pd.DataFrame({"date": pd.to_datetime([s["index_date"], pd.Timestamp(s["index_date"]) + pd.Timedelta(days=91)]),
                               "estimate": [0.8, 0.6], "lower": [0.7, 0.4], "upper": [0.9, 0.75]})
    return {
        "timeline": charts.timeline_figure(rec.timeline, s["index_date"], end, cohort=int(s["cohort"]), axis=axis,
                                           window=window),
        "timeline (own window)": charts.timeline_figure(rec.timeline, s["index_date"], end, cohort=int(s["cohort"]),
                                                        axis=axis),
        "ctdna": charts.ctdna_figure(rec.ctdna, rec.timeline, s["index_date"], end, o["progressed_on"], axis=axis,
                                     lead=cohorts.patient_lead_time(rec.ctdna, o["progressed_on"]), window=window),
        "sld": charts.sld_figure(rec.scans, s["index_date"], axis=axis, window=window),
        "pro": charts.pro_figure(rec.pros, catalogue, scales, s["index_date"], o["progressed_on"], axis=axis,
                                 window=window),
        "pro (one scale)": charts.pro_figure(rec.pros, catalogue, scales[:1], s["index_date"], o["progressed_on"],
                                             axis=axis),
        "pro (none)": charts.pro_figure(rec.pros, catalogue, [], s["index_date"], axis=axis),
        "trajectory": charts.estimate_trajectory_figure(trajectory, s["index_date"], axis=axis, window=window),
        "trajectory (empty)": charts.estimate_trajectory_figure(trajectory.iloc[0:0], s["index_date"], axis=axis),
    }


@pytest.mark.parametrize("axis", ["days", "dates"])
def test_every_patient_chart_is_what_plotlys_validation_makes_of_it(snapshot, axis):
    ids = queries.patient_list(snapshot)["patient_id"].tolist()
    assert len(ids) >= 80
    # every patient's shape of data on the days axis; the dates axis changes only the x values' type
    for patient_id in ids if axis == "days" else ids[::3]:
        for name, fig in _patient_charts(snapshot, patient_id, axis).items():
            assert json.loads(fig.to_json()) == _validated(fig), f"{patient_id} {name} ({axis})"
    for p, low, high in [(0.67, 0.5, 0.8), (0.0, 0.0, 0.1), (1.0, 0.9, 1.0)]:
        fig = charts.icon_array_figure(p, low, high, 12)
        assert json.loads(fig.to_json()) == _validated(fig)


def test_a_magic_underscore_in_a_draft_is_caught_by_that_comparison():
    """The comparison above would see the mistake the PRO chart's band made while it was being converted."""
    draft = charts._Draft()
    draft.add_shape(type="rect", x0=0, x1=1, y0=0, y1=1, line_width=0)
    fig = draft.done()
    assert json.loads(fig.to_json()) != _validated(fig)
