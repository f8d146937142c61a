"""Charts as pure functions: DataFrames from the contract views in, plotly Figures out.

Every chart takes ``axis`` = "days" (days from the index date, day 0 = therapy stopped or
enrolment) or "dates", so the whole page shares one time axis.
"""
from __future__ import annotations

import html

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

from data.clinical import PD_MIN_ABSOLUTE_MM, PD_PCT_FROM_NADIR
from data.queries import rows_by

RESPONSE_COLORS = {  # colour-blind-safe diverging palette: green = good, red = PD
    "CR": "#1b7837", "PR": "#5aae61", "SD": "#4575b4", "NON-CR/NON-PD": "#74add1",
    "PD": "#d73027", "NE": "#999999", "baseline": "#333333", "NED": "#00441b",
}
TRACKS = ["anti-HER2", "other therapy", "scan", "ctDNA", "PRO", "event", "board"]
ON_THERAPY_FILL = "rgba(69, 117, 180, 0.10)"
FONT = dict(family="Source Sans Pro, Arial, sans-serif", size=13)


def _groups(frame: pd.DataFrame, by) -> dict:
    """The frame's rows per value of `by` (queries.rows_by), as frames: ask with .get(value, frame.iloc[:0])."""
    return {key: frame.iloc[at] for key, at in rows_by(frame, by).items()}


def _x(frame: pd.DataFrame, date_col: str, days_col: str, axis: str):
    return pd.to_datetime(frame[date_col]) if axis == "dates" else frame[days_col]


def _to_axis(date, index_date, axis: str):
    if date is None or pd.isna(date):
        return None
    if axis == "dates":
        return pd.Timestamp(date)
    return (pd.Timestamp(date) - pd.Timestamp(index_date)).days


# The house style as a small plotly template (our style and plotly's colours, without plotly's per-trace
# defaults), given to each figure as it is made: 1.9 ms a figure, against 2.4 ms for plotly's default
# template and 17 ms for a copy of it. Setting the style figure by figure (update_layout, update_xaxes over
# every axis) was a third of the patient page's server time. Importing this module changes no global
# state: plotly's default template is left alone.
TEMPLATE = go.layout.Template(layout=dict(
    font=dict(FONT, color="#2a3f5f"), colorway=pio.templates["plotly"].layout.colorway, plot_bgcolor="white",
    paper_bgcolor="white", hovermode="closest", margin=dict(l=10, r=10, t=50, b=100),
    # the legend sits under the plot, where it cannot cover the title or the day-0 label
    legend=dict(orientation="h", yanchor="top", y=-0.25, xanchor="left", x=0),
    xaxis=dict(showgrid=True, gridcolor="#eee", zeroline=False, automargin=True),
    yaxis=dict(showgrid=True, gridcolor="#eee", automargin=True)))


def plain(value, limit: int = 200) -> str:
    """Text from the data or a person, for plotly's labels and hovers: plotly reads a subset of HTML there (<a
    href>, <b>, <span style>), so every markup character is escaped (plotly shows the entity as the character)
    and a long note is cut to a hover's size."""
    text = str(value)
    return html.escape(text[:limit] + ("…" if len(text) > limit else ""))


def _figure(*traces) -> go.Figure:
    """A new figure in the house style."""
    return go.Figure(data=list(traces), layout=dict(template=TEMPLATE))


def _merge(into: dict, props: dict) -> None:
    """plotly's update semantics on plain dicts: a dict merges into a dict, anything else replaces."""
    for key, value in props.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


class _Draft:
    """A figure in the house style made of plain dicts, validated once by `done()` into a plotly Figure.

    plotly validates and copies as it goes: each add_trace, add_annotation and update_layout on a Figure.
    The patient page's timeline took 52 ms a patient that way and 7 ms as one dict validated once (STH-0019,
    measured); its four charts were a third of a first visit's server time. The methods bear plotly's names,
    so the helpers below serve a Draft and a Figure alike; properties are nested dicts (line=dict(width=0)),
    never plotly's magic underscores (line_width), which only a Figure understands.
    """

    def __init__(self):
        self.data: list[dict] = []
        self.layout: dict = dict(template=TEMPLATE)

    def add_trace(self, trace: dict) -> None:
        self.data.append(trace)

    def add_traces(self, traces: list[dict]) -> None:
        self.data.extend(traces)

    def add_shape(self, **shape) -> None:
        self.layout.setdefault("shapes", []).append(shape)

    def add_annotation(self, **note) -> None:
        self.layout.setdefault("annotations", []).append(note)

    def update_layout(self, **props) -> None:
        _merge(self.layout, props)

    def update_xaxes(self, **props) -> None:  # one x axis: the drafts are single-panel charts
        _merge(self.layout, {"xaxis": props})

    def update_yaxes(self, **props) -> None:
        _merge(self.layout, {"yaxis": props})

    def done(self) -> go.Figure:
        return go.Figure(dict(data=[_arrays(trace) for trace in self.data], layout=self.layout), _validate=False)


def _arrays(props: dict) -> dict:
    """A trace's pandas columns as numpy arrays. plotly deep-copies a pandas column as a whole frame and reads
    it through narwhals when it turns it into JSON: the PRO chart's columns were 40 % of its cost (py-spy). The
    JSON is the same byte for byte (compared on every chart of every patient)."""
    return {k: v.to_numpy() if isinstance(v, (pd.Series, pd.Index)) else _arrays(v) if isinstance(v, dict) else v
            for k, v in props.items()}


def _done(fig: _Draft, window: tuple | None, index_date, axis: str) -> go.Figure:
    """The draft as a Figure, on the patient page's shared x-range when `window` is given."""
    if window is not None:
        align(fig.layout, window, index_date, axis)
    return fig.done()


def _scatter(**props) -> dict:
    return dict(type="scatter", **props)


def _layout(fig, title: str, axis: str, height: int):
    fig.update_layout(title=dict(text=title, x=0, xanchor="left"), height=height + 60,
                      xaxis=dict(title=dict(text="date" if axis == "dates" else "days from index (day 0)")))
    return fig


def _vline(fig: go.Figure, x, line: dict) -> None:
    """A vertical line over the whole plot height (add_vline's result, without its per-call subplot search)."""
    fig.add_shape(type="line", x0=x, x1=x, xref="x", y0=0, y1=1, yref="y domain", line=line)


def _hline(fig: go.Figure, y, line: dict) -> None:
    fig.add_shape(type="line", y0=y, y1=y, yref="y", x0=0, x1=1, xref="x domain", line=line)


def _day0(fig: go.Figure, index_date, axis: str, label: str) -> None:
    x0 = _to_axis(index_date, index_date, axis)
    _vline(fig, x0, dict(color="#333", width=1, dash="dot"))
    fig.add_annotation(x=x0, y=1, yref="paper", text=label, showarrow=False, xanchor="left",
                       yanchor="bottom", font=dict(size=11, color="#333"))


def _therapy_spans(timeline: pd.DataFrame, end_date) -> list[tuple]:
    """(start, end) of anti-HER2 exposure; ongoing therapy runs to the end of follow-up."""
    t = timeline[timeline["track"] == "anti-HER2"]
    spans = []
    for _, row in t.iterrows():
        spans.append((row["starts_on"], row["ends_on"] if pd.notna(row["ends_on"]) else end_date))
    return spans


def timeline_figure(timeline: pd.DataFrame, index_date, followup_end, *, cohort: int,
                    axis: str = "days", window_days: int | None = 365, window: tuple | None = None) -> go.Figure:
    """Typed tracks on one axis: therapy bars, scans by response, ctDNA calls, PROs, events.

    followup_end is drawn (last contact, death or data cut-off) so the picture does not stop at
    the last event. window_days zooms the initial view to that many days before day 0; `window` (dates,
    shared_window's answer) sets the view instead, as for every chart stacked with it.
    """
    fig = _Draft()
    tl = timeline.copy()
    end_x = _to_axis(followup_end, index_date, axis)
    view_start = _to_axis(window[0], index_date, axis) if window is not None else None
    legend_seen: set[str] = set()

    def legend_once(name):
        first = name not in legend_seen
        legend_seen.add(name)
        return first

    tracks = _groups(tl, "track")
    none = tl.iloc[:0]
    names = []
    for track, color in (("anti-HER2", "#4575b4"), ("other therapy", "#a6a6a6")):
        for _, row in tracks.get(track, none).iterrows():
            x0 = _to_axis(row["starts_on"], index_date, axis)
            ongoing = pd.isna(row["ends_on"])
            x1 = end_x if ongoing else _to_axis(row["ends_on"], index_date, axis)
            name = f"{track} (bar)"
            fig.add_trace(_scatter(
                x=[x0, x1], y=[track, track], mode="lines", line=dict(color=color, width=14),
                name=track, legendgroup=track, showlegend=legend_once(name), opacity=0.8,
                # the regimen's text as data (customdata), never as part of the template: "%{" or "<a" in an
                # imported name is then shown, not interpreted
                customdata=[[plain(row["label"]) + "<br>" + f"{pd.Timestamp(row['starts_on']):%Y-%m-%d} to "
                             + ("ongoing" if ongoing else f"{pd.Timestamp(row['ends_on']):%Y-%m-%d}")
                             + (f"<br>{plain(row['detail'])}" if isinstance(row["detail"], str) else "")]] * 2,
                hovertemplate="%{customdata[0]}<extra></extra>"))
            names.append((track, x0 if view_start is None else max(x0, view_start), plain(row["label"], 60)))
    # the drugs named just above their bars, from where a bar comes into view; drugs given together (bars
    # coming into view within 60 days of each other on one track) share one label instead of overprinting
    near = 60 if axis == "days" else pd.Timedelta(days=60)
    groups: list[list] = []
    for track, x, name in sorted(names, key=lambda n: (n[0], n[1])):
        if groups and groups[-1][0] == track and x - groups[-1][1] < near:
            if name not in groups[-1][2]:
                groups[-1][2].append(name)
        else:
            groups.append([track, x, [name]])
    for track, x, group in groups:
        fig.add_annotation(x=x, y=track, text=" + ".join(group), showarrow=False, xanchor="left", yanchor="bottom",
                           yshift=6, font=dict(size=10, color="#333"))
    scans = _groups(tracks.get("scan", none), "label")
    for response, color in RESPONSE_COLORS.items():
        s = scans.get(response, none)
        if s.empty:
            continue
        fig.add_trace(_scatter(
            x=_x(s, "starts_on", "days_from_index", axis), y=["scan"] * len(s), mode="markers",
            marker=dict(color=color, size=13, symbol="square", line=dict(color="white", width=1)),
            name=f"scan: {response}", legendgroup="scan",
            customdata=np.stack([pd.to_datetime(s["starts_on"]).dt.strftime("%Y-%m-%d"),
                                 [plain(v) for v in s["detail"].fillna("")]], axis=1),
            hovertemplate="scan %{customdata[0]}<br>" + response + "<br>%{customdata[1]}<extra></extra>"))
    ct = tracks.get("ctDNA", none)
    calls = _groups(ct, "label")
    for label, symbol, color in (("detected", "circle", "#d73027"), ("not detected", "circle-open", "#4575b4")):
        s = calls.get(label, none)
        if not s.empty:
            fig.add_trace(_scatter(
                x=_x(s, "starts_on", "days_from_index", axis), y=["ctDNA"] * len(s), mode="markers",
                marker=dict(color=color, size=11, symbol=symbol, line=dict(width=2, color=color)),
                name=f"ctDNA {label}", legendgroup="ctDNA",
                customdata=np.stack([pd.to_datetime(s["starts_on"]).dt.strftime("%Y-%m-%d"),
                                     [plain(v) for v in s["detail"].fillna("")]], axis=1),
                hovertemplate="draw %{customdata[0]}<br>" + label + "<br>%{customdata[1]}<extra></extra>"))
    qc = ct[ct["label"].str.startswith("QC")]
    if not qc.empty:
        fig.add_trace(_scatter(
            x=_x(qc, "starts_on", "days_from_index", axis), y=["ctDNA"] * len(qc), mode="markers",
            marker=dict(color="#777", size=10, symbol="x-thin", line=dict(width=2, color="#777")),
            name="ctDNA QC failed", legendgroup="ctDNA", text=qc["label"],
            hovertemplate="%{text}<extra></extra>"))
    pros = tracks.get("PRO", none)
    if not pros.empty:
        fig.add_trace(_scatter(
            x=_x(pros, "starts_on", "days_from_index", axis), y=["PRO"] * len(pros), mode="markers",
            marker=dict(color="#8073ac", size=9, symbol="diamond"), name="questionnaire",
            text=pros["label"], hovertemplate="questionnaires: %{text}<extra></extra>"))
    events = _groups(tracks.get("event", none), "label")
    styles = {"progression": ("x", "#d73027", 16), "death": ("cross", "#000000", 14),
              "restart": ("triangle-up", "#1b7837", 14), "withdrawal": ("line-ns", "#777", 16),
              "last_contact": ("line-ns", "#333", 16)}
    # progression and death labelled above their marker, restart and withdrawal below: two events a few
    # weeks apart (a progression, then the restart) do not print over each other
    labelled = {"progression": "top center", "death": "top center", "restart": "bottom center",
                "withdrawal": "bottom center"}
    for event, (symbol, color, size) in styles.items():
        s = events.get(event, none)
        if not s.empty:
            fig.add_trace(_scatter(
                x=_x(s, "starts_on", "days_from_index", axis), y=["event"] * len(s),
                mode="markers+text" if event in labelled else "markers",
                marker=dict(symbol=symbol, color=color, size=size, line=dict(width=3, color=color)),
                name=event.replace("_", " "), text=[event] * len(s), textposition=labelled.get(event, "top center"),
                textfont=dict(size=10, color=color), customdata=[plain(v) for v in s["detail"].fillna("")],
                hovertemplate=event.replace("_", " ") + ": %{customdata}<extra></extra>"))
    board = tracks.get("board", none)
    if not board.empty:  # the tumour board's decisions (data/decisions.py), typed by people: shown as text
        fig.add_trace(_scatter(
            x=_x(board, "starts_on", "days_from_index", axis), y=["board"] * len(board), mode="markers+text",
            marker=dict(symbol="star", size=14, color="#762a83"), name="tumour board decision",
            text=[plain(v) for v in board["label"]], textposition="top center",
            textfont=dict(size=10, color="#762a83"),
            customdata=np.stack([pd.to_datetime(board["starts_on"]).dt.strftime("%Y-%m-%d"),
                                 [plain(v) for v in board["detail"].fillna("")]], axis=1),
            hovertemplate="tumour board %{customdata[0]}: %{text}<br>%{customdata[1]}<extra></extra>"))
    _day0(fig, index_date, axis, "day 0: stopped anti-HER2" if cohort == 2 else "day 0: enrolment")
    _vline(fig, end_x, dict(color="#333", width=1, dash="dash"))
    # at the top, right of its line: at the bottom it printed over a progression marked weeks before the end
    fig.add_annotation(x=end_x, y=1, yref="paper", text="end of follow-up", showarrow=False,
                       xanchor="right", yanchor="bottom", font=dict(size=11, color="#333"))
    fig.update_yaxes(categoryorder="array", categoryarray=list(reversed(TRACKS)), type="category")
    if window is not None:
        align(fig.layout, window, index_date, axis)
    elif window_days is not None and axis == "days":
        fig.update_xaxes(range=[-window_days, (end_x or 0) + 30])
    elif window_days is not None:
        fig.update_xaxes(range=[pd.Timestamp(index_date) - pd.Timedelta(days=window_days),
                                pd.Timestamp(followup_end) + pd.Timedelta(days=30)])
    return _layout(fig, "Timeline", axis, 360).done()


def shared_window(index_date, followup_end, record_dates) -> tuple[pd.Timestamp, pd.Timestamp]:
    """One x-range for every chart stacked on the patient page: from 30 days before the earliest scan, draw,
    questionnaire or day 0, to 30 days after the end of follow-up (and the last record). Therapy started
    years earlier is still drawn; the view opens on the follow-up (pan or zoom out to see it)."""
    dates = pd.to_datetime(pd.Series(list(record_dates), dtype="object")).dropna()
    start = min([pd.Timestamp(index_date), *dates]) - pd.Timedelta(days=30)
    end = max([pd.Timestamp(followup_end), *dates]) + pd.Timedelta(days=30)
    return start, end


#: Stacked charts share their plot area's left and right edges too, not only the range: the timeline's
#: track names took more room than the ctDNA axis labels and shifted day 0 by ~20 px.
STACKED_MARGIN = dict(l=100, r=24)


def align(layout: dict, window: tuple, index_date, axis: str) -> None:
    """Give a figure's layout (a draft's, as plain dicts) the shared x-range (every x-axis of it, subplots
    included) and the shared side margins."""
    x_range = [_to_axis(window[0], index_date, axis), _to_axis(window[1], index_date, axis)]
    axes = {"xaxis", "yaxis", *(name for name in layout if name.startswith(("xaxis", "yaxis")))}
    _merge(layout, dict(margin=STACKED_MARGIN, **{
        # automargin would widen one chart's margin and undo the alignment
        name: dict(range=x_range) if name.startswith("x") else dict(automargin=False) for name in axes}))


def log_ticks(low: float, high: float) -> list[float]:
    """Tick values for a log axis from low to high: 1, 2 and 5 per decade over fewer than 3 decades, else
    every decade. Set explicitly: plotly's own minor labels print 0.5 and 0.2 as "5" and "2"."""
    first, last = int(np.floor(np.log10(low))), int(np.ceil(np.log10(high)))
    steps = (1, 2, 5) if np.log10(high) - np.log10(low) < 3 else (1,)
    return [m * 10.0 ** e for e in range(first, last + 1) for m in steps if low <= m * 10.0 ** e <= high]


def tick_label(value: float) -> str:
    """0.5 as "0.5", 20 as "20", 2e-05 as "2×10⁻⁵": each label reads as the number it is."""
    if 1e-3 <= value < 1e5:
        return f"{value:g}"
    exponent = int(np.floor(np.log10(value)))
    mantissa = value / 10.0 ** exponent
    sup = str(exponent).translate(str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹"))
    return (f"{mantissa:g}×" if round(mantissa, 6) != 1 else "") + f"10{sup}"


def ctdna_figure(ctdna: pd.DataFrame, timeline: pd.DataFrame, index_date, followup_end,
                 progressed_on=None, *, lead: dict | None = None, axis: str = "days",
                 window: tuple | None = None) -> go.Figure:
    """ctDNA on a log axis with the detection limit as a floor; open markers = not detected.

    When a patient's draws come from more than one assay, values are shown as multiples of each
    assay's detection limit so that they share one axis. `lead` is data.cohorts.patient_lead_time's
    answer (the first positive draw before progression and the months to it), drawn as an arrow. `window`
    (shared_window's answer) sets the x-range of every chart stacked on the patient page.
    """
    fig = _Draft()
    ct = ctdna.copy()
    for start, end in _therapy_spans(timeline, followup_end):
        fig.add_shape(type="rect", x0=_to_axis(start, index_date, axis), x1=_to_axis(end, index_date, axis),
                      xref="x", y0=0, y1=1, yref="y domain", fillcolor=ON_THERAPY_FILL, line=dict(width=0), layer="below")
    if ct.empty:
        fig.add_annotation(text="No ctDNA draws recorded", x=0.5, y=0.5, xref="paper", yref="paper",
                           showarrow=False)
        return _done(_layout(fig, "ctDNA", axis, 320), window, index_date, axis)
    mixed = ct["unit"].nunique() > 1
    if mixed:
        ct["y"], ct["floor"], unit = ct["value"] / ct["lod"], 1.0, "x detection limit"
    else:
        ct["y"], ct["floor"], unit = ct["value"], ct["lod"], str(ct["unit"].iloc[0])
    ct["x"] = _x(ct, "drawn_on", "days_from_index", axis)
    ct["date"] = pd.to_datetime(ct["drawn_on"]).dt.strftime("%Y-%m-%d")
    passed = ct[ct["qc"] == "pass"]
    fig.add_trace(_scatter(x=ct["x"], y=ct["floor"], mode="lines", name="detection limit",
                           line=dict(color="#999", dash="dash", width=1, shape="hv"), hoverinfo="skip"))
    fig.add_trace(_scatter(x=passed["x"], y=passed["y"].fillna(passed["floor"]), mode="lines",
                           line=dict(color="#bbb", width=1), showlegend=False, hoverinfo="skip"))
    det = passed[passed["detected"] == True]  # noqa: E712 (nullable boolean)
    fig.add_trace(_scatter(
        x=det["x"], y=det["y"], mode="markers", name="detected",
        marker=dict(color="#d73027", size=10, symbol="circle"),
        customdata=np.stack([det["date"], det["assay"], det["value"], det["unit"], det["lod"]], axis=1)
        if not det.empty else None,
        hovertemplate="%{customdata[0]} %{customdata[1]}<br>detected: %{customdata[2]:.3g} "
                      "%{customdata[3]} (limit %{customdata[4]:.3g})<extra></extra>"))
    nd = passed[passed["detected"] != True]  # noqa: E712
    fig.add_trace(_scatter(
        x=nd["x"], y=nd["floor"], mode="markers", name="not detected (at limit)",
        marker=dict(color="#4575b4", size=10, symbol="circle-open", line=dict(width=2)),
        customdata=np.stack([nd["date"], nd["assay"]], axis=1) if not nd.empty else None,
        hovertemplate="%{customdata[0]} %{customdata[1]}<br>not detected<extra></extra>"))
    ymin = np.nanmin(ct["floor"]) / 3
    failed = ct[ct["qc"] != "pass"]
    if not failed.empty:  # no result: on the bottom axis, apart from every value (not at the limit, as if a result)
        fig.add_trace(_scatter(
            x=failed["x"], y=np.full(len(failed), ymin * 1.12), mode="markers", name="QC failed (no result)",
            marker=dict(color="#777", size=11, symbol="x-thin", line=dict(width=2, color="#777")),
            text=failed["date"] + " QC " + failed["qc"], hovertemplate="%{text}<extra></extra>"))
    if progressed_on is not None and pd.notna(progressed_on):
        xp = _to_axis(progressed_on, index_date, axis)
        _vline(fig, xp, dict(color="#d73027", width=2))
        fig.add_annotation(x=xp, y=0.98, yref="paper", text="progression ", showarrow=False,
                           xanchor="right", yanchor="top", font=dict(color="#d73027", size=11))
        first = det[pd.to_datetime(det["drawn_on"]) == pd.Timestamp(lead["first_positive_on"])].head(1) \
            if lead is not None else det.iloc[0:0]
        if not first.empty:
            first = first.iloc[0]
            y = np.log10(first["y"])
            fig.add_annotation(x=xp, y=y, ax=first["x"], ay=y, axref="x", ayref="y", xref="x", yref="y",
                               showarrow=True, arrowhead=2, arrowcolor="#d73027", text="")
            mid = first["x"] + (xp - first["x"]) / 2
            fig.add_annotation(x=mid, y=y, xref="x", yref="y", yshift=-12, showarrow=False,
                               text=f"ctDNA lead time {lead['months']:.1f} months", font=dict(color="#d73027", size=11))
    _day0(fig, index_date, axis, "day 0")
    ymax = max(np.nanmax(ct["y"]) if ct["y"].notna().any() else 0, np.nanmax(ct["floor"])) * 5
    ticks = log_ticks(ymin, ymax)
    fig.update_yaxes(type="log", title=dict(text=unit), range=[np.log10(ymin), np.log10(ymax)],
                     tickvals=ticks, ticktext=[tick_label(v) for v in ticks])
    # the view spans the draws (therapy shading may reach years back)
    first, last = _to_axis(ct["drawn_on"].min(), index_date, axis), _to_axis(followup_end, index_date, axis)
    pad = 30 if axis == "days" else pd.Timedelta(days=30)
    fig.update_xaxes(range=[min(first, _to_axis(index_date, index_date, axis)) - pad, max(last, ct["x"].max()) + pad])
    fig.add_annotation(text="shaded: on anti-HER2 therapy", x=1, y=1.0, xref="paper", yref="paper",
                       showarrow=False, xanchor="right", yanchor="bottom", font=dict(size=11, color="#555"))
    return _done(_layout(fig, "ctDNA", axis, 340), window, index_date, axis)


def sld_figure(scans: pd.DataFrame, index_date, *, axis: str = "days", window: tuple | None = None) -> go.Figure:
    """Sum of target diameters with baseline, nadir and the RECIST PD threshold.

    With no target lesions there is no SLD: the chart shows each scan's overall response instead.
    """
    fig = _Draft()
    s = scans.copy()
    if s.empty:
        fig.add_annotation(text="No scans recorded", x=0.5, y=0.5, xref="paper", yref="paper", showarrow=False)
        return _done(_layout(fig, "Scans (RECIST 1.1)", axis, 320), window, index_date, axis)
    s["x"] = _x(s, "scanned_on", "days_from_index", axis)
    s["response"] = s["overall_response"].fillna("baseline")
    s["date"] = pd.to_datetime(s["scanned_on"]).dt.strftime("%Y-%m-%d")
    if int(s["n_target_lesions"].max()) == 0:
        responses = _groups(s, "response")
        for response, color in RESPONSE_COLORS.items():
            r = responses.get(response, s.iloc[:0])
            if not r.empty:
                fig.add_trace(_scatter(x=r["x"], y=r["response"], mode="markers", name=response,
                                       marker=dict(color=color, size=13, symbol="square"),
                                       text=r["date"], hovertemplate="%{text}: " + response + "<extra></extra>"))
        # no axis title: the categories name themselves, and a title collided with "NON-CR/NON-PD"
        fig.update_yaxes(type="category", categoryorder="array",
                         categoryarray=["baseline", "NED", "CR", "NON-CR/NON-PD", "NE", "PD"])
        fig.update_layout(margin=dict(t=80))  # room for the title's second line above "day 0"
        _day0(fig, index_date, axis, "day 0")
        # the note is the title's second line: as an annotation above the plot, "day 0" printed over it
        return _done(_layout(fig, "Scans (RECIST 1.1)<br><sup>No target lesions at baseline: response from "
                                  "non-target and new lesions only</sup>", axis, 300), window, index_date, axis)
    base = s["baseline_sld_mm"].dropna()
    threshold = s["pd_threshold_mm"]  # data/recist.pd_threshold_mm, stored with each scan
    fig.add_trace(_scatter(x=s["x"], y=threshold, mode="lines", line=dict(color="#d73027", dash="dash", shape="hv"),
                           name=f"PD threshold (nadir +{PD_PCT_FROM_NADIR:g}% and +{PD_MIN_ABSOLUTE_MM:g} mm)",
                           hovertemplate="PD at %{y:.0f} mm<extra></extra>"))
    fig.add_trace(_scatter(x=s["x"], y=s["nadir_sld_mm"], mode="lines", line=dict(color="#1b7837", dash="dot", shape="hv"),
                           name="nadir (smallest earlier SLD)", hovertemplate="nadir %{y:.0f} mm<extra></extra>"))
    if not base.empty:  # labelled at the right end, clear of the SLD line that starts at the baseline point
        _hline(fig, float(base.iloc[0]), dict(color="#333", dash="dot", width=1))
        fig.add_annotation(text=f"baseline {base.iloc[0]:.0f} mm", x=1, xref="x domain", y=float(base.iloc[0]),
                           yref="y", showarrow=False, xanchor="right", yanchor="bottom", yshift=3,
                           bgcolor="rgba(255,255,255,0.8)", font=dict(size=11, color="#333"))
    fig.add_trace(_scatter(x=s["x"], y=s["sld_mm"], mode="lines", line=dict(color="#555", width=2),
                           name="SLD", hoverinfo="skip", connectgaps=False))
    responses = _groups(s, "response")
    for response, color in RESPONSE_COLORS.items():
        r = responses.get(response, s.iloc[:0])
        if r.empty:
            continue
        # a scan without an SLD (a target not measured) has no point on the SLD scale: it sits on the axis
        # with its response written, never at some other value as if it had been measured
        y = r["sld_mm"].fillna(0)
        fig.add_trace(_scatter(
            x=r["x"], y=y, mode="markers+text" if r["sld_mm"].isna().any() else "markers", name=response,
            text=np.where(r["sld_mm"].isna(), f"{response}: no SLD", ""), textposition="top center",
            textfont=dict(size=10, color=color),
            marker=dict(color=color, size=12, symbol="circle" if response != "NE" else "circle-open",
                        line=dict(width=2, color=color)),
            customdata=np.stack([r["date"], r["pct_from_baseline"].round(1), r["pct_from_nadir"].round(1),
                                 r["note"].fillna("")], axis=1),
            hovertemplate="%{customdata[0]}: " + response + "<br>SLD %{y:.0f} mm<br>%{customdata[1]}% from baseline, "
                          "%{customdata[2]}% from nadir<br>%{customdata[3]}<extra></extra>"))
    # PD by a new lesion while the targets shrank: the point sits below the nadir, so say why it is PD
    by_new = s[(s["response"] == "PD") & s["new_lesion"].eq(True) & s["sld_mm"].notna()]
    for row in by_new.itertuples():
        fig.add_annotation(x=row.x, y=row.sld_mm, text="new lesion", showarrow=True, arrowhead=0, ax=0, ay=-22,
                           font=dict(size=10, color=RESPONSE_COLORS["PD"]))
    _day0(fig, index_date, axis, "day 0")
    top = np.nanmax([s["sld_mm"].max(), threshold.max(), s["baseline_sld_mm"].max()])
    fig.update_yaxes(title=dict(text="sum of diameters (mm)"), rangemode="tozero", range=[0, top * 1.15])
    return _done(_layout(fig, "Scans (RECIST 1.1): sum of target diameters", axis, 340), window, index_date, axis)


def _stacked_panels(titles: list[str], spacing: float) -> tuple[dict, list[dict]]:
    """The axes of len(titles) panels stacked over one shared x axis, and their titles: what
    make_subplots(rows=n, shared_xaxes=True, subplot_titles=titles) makes, as plain dicts. A figure given
    as one dict is validated once (14 ms for the PRO chart); make_subplots and the updates after it
    validated again at every step (160-570 ms a page, the patient page's largest cost)."""
    n = len(titles)
    height = (1 - spacing * (n - 1)) / n
    bottom_axis = f"x{n}" if n > 1 else "x"
    axes, notes = {}, []
    for i, title in enumerate(titles, start=1):
        top = 1 - (i - 1) * (height + spacing)
        sfx = "" if i == 1 else str(i)
        shared = {} if i == n else dict(matches=bottom_axis, showticklabels=False)
        axes[f"xaxis{sfx}"] = dict(anchor=f"y{sfx}", domain=[0.0, 1.0], **shared)
        axes[f"yaxis{sfx}"] = dict(anchor=f"x{sfx}", domain=[round(max(top - height, 0.0), 12), round(top, 12)])
        notes.append(dict(text=title, x=0.5, xanchor="center", xref="paper", y=top, yanchor="bottom", yref="paper",
                          showarrow=False, font=dict(size=16)))
    return axes, notes


def pro_figure(pros: pd.DataFrame, catalogue: pd.DataFrame, scales: list[tuple[str, str]],
               index_date, progressed_on=None, *, axis: str = "days", window: tuple | None = None) -> go.Figure:
    """One panel per scale: score over time, the meaningful-change band around baseline, cut-offs.

    Each panel says whether higher is better or worse, so a falling line is never misread.
    """
    scales = scales or []
    n = max(len(scales), 1)
    listed = {(r["instrument"], r["scale"]): r for r in catalogue.to_dict("records")}
    entries = [listed[key] for key in scales]
    titles = [f"{c['label']} ({'higher is better' if c['higher_is_better'] else 'higher is worse'})" for c in entries]
    axes, notes = _stacked_panels(titles or ["No scale selected"], 0.22 / n if n > 1 else 0.1)
    traces, shapes = [], []
    # what the panels show, made once over all the patient's scores and sliced per scale (per scale, the same
    # few pandas steps cost as much on 20 rows as on 150: 3.7 ms a panel)
    rows = rows_by(pros, ["instrument", "scale"]) if scales else {}
    if rows:
        x_all, score, baseline_all = (_x(pros, "completed_on", "days_from_index", axis).to_numpy(),
                                      pros["score"].to_numpy(), pros["baseline_score"].to_numpy())
        colors_all = pros["meaningful_change"].map({"worsened": "#d73027", "improved": "#1b7837"}).fillna("#4575b4") \
            .to_numpy()
        hover_all = np.stack([pd.to_datetime(pros["completed_on"]).dt.strftime("%Y-%m-%d"),
                              pros["change_from_baseline"].round(1), pros["meaningful_change"].fillna("n/a")], axis=1)
    for i, ((instrument, scale), c) in enumerate(zip(scales, entries, strict=True), start=1):
        at = rows.get((instrument, scale))
        if at is None:
            continue
        xa, ya = ("x", "y") if i == 1 else (f"x{i}", f"y{i}")
        across = dict(xref=f"{xa} domain", x0=0, x1=1, yref=ya)  # a horizontal line or band over the panel
        down = dict(yref=f"{ya} domain", y0=0, y1=1, xref=xa)  # a vertical line through the panel
        baseline = baseline_all[at][pd.notna(baseline_all[at])]
        mcid = c["meaningful_change"]
        if len(baseline) and pd.notna(mcid):
            b = float(baseline[0])
            shapes.append(dict(type="rect", y0=max(b - mcid, c["low"]), y1=min(b + mcid, c["high"]),
                               fillcolor="rgba(120,120,120,0.12)", line=dict(width=0), layer="below", **across))
            shapes.append(dict(type="line", y0=b, y1=b, line=dict(color="#777", width=1, dash="dot"), **across))
        for part in str(c["cutoffs"] or "").split("; "):
            if part:
                value, _, name = part.partition(" ")
                shapes.append(dict(type="line", y0=float(value), y1=float(value),
                                   line=dict(color="#b35806", width=1, dash="dash"), **across))
                notes.append(dict(text=name, x=0, xref=f"{xa} domain", y=float(value), yref=ya, showarrow=False,
                                  xanchor="left", yanchor="bottom", font=dict(size=10, color="#b35806")))
        traces.append(dict(
            type="scatter", x=x_all[at], y=score[at], xaxis=xa, yaxis=ya, mode="lines+markers", name=scale,
            showlegend=False, line=dict(color="#4575b4", width=2), marker=dict(color=colors_all[at], size=8),
            customdata=hover_all[at],
            hovertemplate="%{customdata[0]}: %{y:.1f}<br>change from baseline %{customdata[1]} "
                          "(%{customdata[2]})<extra></extra>"))
        axes[f"yaxis{'' if i == 1 else i}"]["range"] = [c["low"] - 2, c["high"] + 2]
        if progressed_on is not None and pd.notna(progressed_on):
            x = _to_axis(progressed_on, index_date, axis)
            shapes.append(dict(type="line", x0=x, x1=x, line=dict(color="#d73027", width=1.5), **down))
        x = _to_axis(index_date, index_date, axis)
        shapes.append(dict(type="line", x0=x, x1=x, line=dict(color="#333", width=1, dash="dot"), **down))
    notes.append(dict(text="grey band: baseline ± meaningful change; red line: progression; "
                           "red/green points: meaningfully worse/better than baseline",
                      x=0, y=-0.08 if n > 2 else -0.2, xref="paper", yref="paper", showarrow=False,
                      xanchor="left", font=dict(size=11, color="#555")))
    axes[f"xaxis{n if n > 1 else ''}"]["title"] = dict(text="date" if axis == "dates" else "days from index (day 0)")
    fig = _Draft()
    fig.add_traces(traces)
    for shape in shapes:
        fig.add_shape(**shape)
    for note in notes:
        fig.add_annotation(**note)
    fig.update_layout(height=180 * n + 120 + 60, title=dict(text="Patient-reported outcomes", x=0, xanchor="left"),
                      **axes)
    return _done(fig, window, index_date, axis)


# ------------------------------------------------------------------------------ the estimate
def icon_array_figure(p: float, low: float, high: float, horizon: int) -> go.Figure:
    """100 people: green = stay progression-free (the estimate), grey = progress or die (100 - estimate).

    The interval is a band of uncertain icons on both sides of the estimate: pale green ones might still
    progress (down to the lower bound), pale grey ones might stay progression-free (up to the upper bound).
    """
    n, n_lo, n_hi = round(p * 100), round(low * 100), round(high * 100)
    idx = np.arange(100)
    x, y = idx % 10, 9 - idx // 10
    kind = np.where(idx < min(n_lo, n), "sure", np.where(idx < n, "likely",
                    np.where(idx < max(n_hi, n), "possible", "progress")))
    styles = {"sure": ("#1b7837", f"stay progression-free ({min(n_lo, n)}, the lower end of the interval)"),
              "likely": ("#a6dba0", f"… up to the estimate ({n}): uncertain"),
              "possible": ("#bdbdbd", f"progress, but might not: up to {max(n_hi, n)} (upper end): uncertain"),
              "progress": ("#636363", f"progress or die ({100 - max(n_hi, n)})")}
    fig = _Draft()
    for key, (color, label) in styles.items():
        m = kind == key
        if m.any():
            fig.add_trace(_scatter(x=x[m], y=y[m], mode="markers", name=label, hoverinfo="skip",
                                   marker=dict(symbol="circle", size=16, color=color, line=dict(width=0))))
    fig.update_xaxes(visible=False, range=[-0.7, 9.7])
    fig.update_yaxes(visible=False, range=[-0.7, 9.7], scaleanchor="x")
    fig = _layout(fig, f"100 patients like this: {n} stay progression-free for {horizon} months, {100 - n} do not",
                  "days", 300)
    fig.update_layout(legend=dict(y=-0.02), margin=dict(b=130))
    return fig.done()


def estimate_trajectory_figure(trajectory: pd.DataFrame, index_date, *, axis: str = "days",
                               horizon: int = 12, window: tuple | None = None) -> go.Figure:
    """The estimate at each landmark and ctDNA draw with its 95% band: it falls when ctDNA turns positive."""
    fig = _Draft()
    if trajectory.empty:
        fig.add_annotation(text="No estimate on any date (not at risk, or no ctDNA result)", x=0.5, y=0.5,
                           xref="paper", yref="paper", showarrow=False)
        return _done(_layout(fig, "Estimated chance over time", axis, 260), window, index_date, axis)
    t = trajectory.assign(x=[_to_axis(d, index_date, axis) for d in trajectory["date"]])
    fig.add_traces(step_band(t["x"], t["lower"] * 100, t["upper"] * 100, "rgba(69,117,180,0.15)",
                             name="95% interval", showlegend=True))
    fig.add_trace(_scatter(x=t["x"], y=t["estimate"] * 100, mode="lines+markers", line=dict(color="#4575b4",
                           shape="hv"), name=f"chance of no progression in the next {horizon} months",
                           customdata=pd.to_datetime(t["date"]).dt.strftime("%Y-%m-%d"),
                           hovertemplate="%{customdata}: %{y:.0f}%<extra></extra>"))
    _day0(fig, index_date, axis, "day 0")
    fig.update_yaxes(title=dict(text="%"), range=[0, 100])
    return _done(_layout(fig, "Estimated chance over time", axis, 260), window, index_date, axis)


def contributions_figure(contributions: pd.DataFrame) -> go.Figure:
    """What raises and what lowers the estimate, in percentage points against a typical patient."""
    c = contributions[contributions["points"].abs() >= 0.05].iloc[::-1]
    colors = np.where(c["points"] > 0, "#1b7837", "#d73027")
    fig = _figure(go.Bar(x=c["points"], y=c["input"] + " = " + c["value"], orientation="h", marker_color=colors,
                           hovertemplate="%{y}: %{x:+.1f} points<extra></extra>"))
    _vline(fig, 0, dict(color="#333", width=1))
    fig = _layout(fig, "What raises (green) and lowers (red) the chance", "days", 60 + 28 * max(len(c), 1))
    fig.update_xaxes(title_text="percentage points vs the typical training patient")
    return fig


def calibration_figure(predictions: np.ndarray, bins: pd.DataFrame, smooth: pd.DataFrame,
                       current: float | None = None) -> go.Figure:
    """Observed vs predicted: fifths of the predictions (model/card.calibration_bins), a smoothed curve with
    its band, and each training patient's estimate as a rug."""
    fig = _figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect calibration",
                             line=dict(color="#999", dash="dash")))
    fig.add_trace(go.Scatter(x=np.r_[smooth["p"], smooth["p"][::-1]], y=np.r_[smooth["hi"], smooth["lo"][::-1]],
                             fill="toself", fillcolor="rgba(69,117,180,0.15)", line=dict(width=0),
                             name="95% band (bootstrap)", hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=smooth["p"], y=smooth["observed"], mode="lines", name="smoothed",
                             line=dict(color="#4575b4", width=2)))
    binned = bins
    fig.add_trace(go.Scatter(x=binned["p"], y=binned["observed"], mode="markers", name="observed by fifth",
                             marker=dict(size=10, color="#333"), text=binned["n"].astype(int).astype(str) + " patients",
                             hovertemplate="predicted %{x:.2f}, observed %{y:.2f}<br>%{text}<extra></extra>"))
    fig.add_trace(go.Scatter(x=predictions, y=np.full(len(predictions), -0.03), mode="markers", name="training patients",
                             marker=dict(symbol="line-ns", size=10, color="#777", line=dict(width=1)),
                             hoverinfo="skip"))
    if current is not None:
        _vline(fig, current, dict(color="#d73027", width=2))
        fig.add_annotation(x=current, y=1.02, text="this patient", showarrow=False, font=dict(color="#d73027"))
    fig = _layout(fig, "Calibration: predicted vs observed progression-free", "days", 420)
    fig.update_xaxes(title_text="predicted chance of staying progression-free", range=[0, 1.02])
    fig.update_yaxes(title_text="observed (IPCW)", range=[-0.06, 1.05])
    return fig


def roc_figure(fpr: np.ndarray, tpr: np.ndarray, auroc: float) -> go.Figure:
    fig = _figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(color="#999", dash="dash"), name="chance"))
    fig.add_trace(go.Scatter(x=fpr, y=tpr, mode="lines", line=dict(color="#4575b4", width=2, shape="hv"),
                             name=f"model (apparent AUROC {auroc:.2f})"))
    fig = _layout(fig, "ROC (apparent, training patients)", "days", 380)
    fig.update_xaxes(title_text="1 - specificity", range=[0, 1])
    fig.update_yaxes(title_text="sensitivity", range=[0, 1])
    return fig


def decision_curve_figure(curve: pd.DataFrame) -> go.Figure:
    fig = _figure()
    for col, name, style in (("model", "model", dict(color="#4575b4", width=2)),
                             ("act_for_all", "continue therapy for all", dict(color="#777", dash="dash")),
                             ("act_for_none", "stop for all", dict(color="#333", dash="dot"))):
        fig.add_trace(go.Scatter(x=curve["threshold"], y=curve[col], mode="lines", name=name, line=style))
    fig = _layout(fig, "Decision curve (apparent, training patients; continue therapy if risk ≥ threshold)", "days",
                  380)
    fig.update_xaxes(title_text="risk threshold (progression by the horizon)")
    top = max(float(curve["model"].max()), float(curve["act_for_all"].max()), 0.01)
    fig.update_yaxes(title_text="net benefit", range=[-0.05, top * 1.2])
    return fig


def subgroup_figure(table: pd.DataFrame) -> go.Figure:
    """Observed (with interval) and expected chance per subgroup."""
    t = table.iloc[::-1]
    labels = t["subgroup"] + ": " + t["group"].astype(str) + " (n=" + t["n"].astype(str) + ")"
    fig = _figure()
    fig.add_trace(go.Scatter(x=t["observed"], y=labels, mode="markers", name="observed (95% CI)",
                             marker=dict(color="#333", size=9),
                             error_x=dict(type="data", symmetric=False, array=t["observed_hi"] - t["observed"],
                                          arrayminus=t["observed"] - t["observed_lo"], color="#333")))
    fig.add_trace(go.Scatter(x=t["expected"], y=labels, mode="markers", name="predicted (mean)",
                             marker=dict(color="#4575b4", size=11, symbol="diamond")))
    fig = _layout(fig, "Calibration by subgroup", "days", 80 + 30 * len(t))
    fig.update_xaxes(title_text="chance of staying progression-free", range=[0, 1.05])
    return fig


def funnel_figure(funnel: pd.DataFrame) -> go.Figure:
    """Attrition: patients left after each eligibility criterion (ATLAS-style), removals and unknowns."""
    text = [f"{r.remaining}" + (f"  (−{r.removed} fail" + (f", {r.unknown} unknown" if r.unknown else "") + ")"
                                if r.removed or r.unknown else "") for r in funnel.itertuples()]
    fig = _figure(go.Funnel(y=funnel["step"], x=funnel["remaining"], text=text, textinfo="text",
                              marker=dict(color="#4575b4"), connector=dict(line=dict(color="#ccc"))))
    fig = _layout(fig, "Attrition by criterion (as of the data cut-off)", "days", 120 + 45 * len(funnel))
    fig.update_yaxes(automargin=True)
    return fig


# ------------------------------------------------------------------------------------ cohorts
GROUP_COLORS = ["#4575b4", "#d73027", "#1b7837", "#984ea3", "#ff7f00"]
#: One colour per cohort on every chart of the page (KM, cumulative incidence, swimmer, PROs, forest).
COHORT_COLORS = {"1": "#4575b4", "2": "#e08214"}
COHORT_NAMES = {"1": "cohort 1 (continue)", "2": "cohort 2 (stop)"}
CTDNA_COLORS = {"not detected": "#1b7837", "detected": "#b2182b"}


def group_colors(groups, colors: dict | None = None) -> dict:
    """Each group's colour: from `colors` when it names the group, else the next of GROUP_COLORS."""
    colors = colors or {}
    return {g: colors.get(str(g), GROUP_COLORS[k % len(GROUP_COLORS)]) for k, g in enumerate(groups)}


def step_band(x, lower, upper, fillcolor: str, **filled) -> list[dict]:
    """A confidence band of a step function: the upper and the lower limit each drawn as steps, filled between.

    A closed "toself" path of steps is drawn one step off on its way back (a KM band reached 0.38 at t = 0).
    `filled` goes to the lower (filled) trace: its name, legend group, showlegend.
    """
    edge = dict(mode="lines", line=dict(width=0, shape="hv"), hoverinfo="skip")
    return [_scatter(x=x, y=upper, showlegend=False, legendgroup=filled.get("legendgroup"), **edge),
            _scatter(x=x, y=lower, fill="tonexty", fillcolor=fillcolor, **{"showlegend": False, **filled}, **edge)]


def _rgba(hex_color: str, alpha: float) -> str:
    r, g, b = (int(hex_color[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def km_figure(curves: pd.DataFrame, at_risk: pd.DataFrame, test: dict, title: str, names: dict | None = None,
              colors: dict | None = None, risk_labels: dict | None = None) -> go.Figure:
    """Kaplan-Meier with 95% CI bands (step_band), censoring ticks, the numbers at risk and the log-rank p."""
    names = names or {}
    groups = list(dict.fromkeys(curves["group"]))
    palette = group_colors(groups, colors)
    fig = make_subplots(figure=_figure(), rows=2, cols=1, shared_xaxes=True, row_heights=[0.78, 0.22], vertical_spacing=0.08)
    for g in groups:
        c = curves[curves["group"] == g]
        color = palette[g]
        label = names.get(g, g)
        fig.add_traces(step_band(c["time"], c["lower"], c["upper"], _rgba(color, 0.15), legendgroup=label,
                                 name=f"{label} 95% CI"), rows=1, cols=1)
        fig.add_trace(go.Scatter(x=c["time"], y=c["survival"], mode="lines", name=label, legendgroup=label,
                                 line=dict(color=color, width=2, shape="hv"),
                                 hovertemplate=label + ": %{y:.2f} at %{x:.1f} months<extra></extra>"), row=1, col=1)
        if "censored" in c.columns:
            cens = c[c["censored"] > 0]
            fig.add_trace(go.Scatter(x=cens["time"], y=cens["survival"], mode="markers", legendgroup=label,
                                     name=f"{label} censored", showlegend=False,
                                     marker=dict(symbol="line-ns-open", size=9, color=color, line=dict(width=1.5, color=color)),
                                     customdata=cens["censored"],
                                     hovertemplate=label + ": %{customdata} censored at %{x:.1f} months<extra></extra>"),
                          row=1, col=1)
        r = at_risk[at_risk["group"] == g]
        short = (risk_labels or {}).get(g, label)  # the at-risk rows' labels take the plot's width: short ones
        fig.add_trace(go.Scatter(x=r["time"], y=[short] * len(r), mode="text", text=r["n"].astype(str),
                                 textfont=dict(color=color), showlegend=False, hoverinfo="skip"), row=2, col=1)
    p = test.get("p_value")
    if p is not None and not np.isnan(p):
        fig.add_annotation(text=f"log-rank p = {p:.3g}",
                           x=0.99, y=0.02, xref="x domain", yref="y domain",
                           showarrow=False, xanchor="right", yanchor="bottom", font=dict(size=12))
    fig = _layout(fig, title, "days", 470)
    fig.update_yaxes(title_text="progression-free", range=[0, 1.02], row=1, col=1)
    fig.update_yaxes(title_text="at risk", type="category", row=2, col=1)
    # the first at-risk number is centred on t = 0: start the axis a little before it, or it prints over the
    # group's label beside the axis
    last = float(max(curves["time"].max(), at_risk["time"].max() if len(at_risk) else 0))
    fig.update_xaxes(range=[-0.05 * last, last * 1.02])
    fig.update_xaxes(title_text=None, row=1, col=1)
    fig.update_xaxes(title_text="months from day 0", row=2, col=1)
    return fig


def swimmer_figure(frame: pd.DataFrame, draws: pd.DataFrame, label_col: str = "label") -> go.Figure:
    """One bar per patient from day 0 to last follow-up; ctDNA-positive draws, progression, restart, death.

    `frame` and `draws` come from data.cohorts.swimmer_lanes (months from day 0 already computed)."""
    f = frame.copy()
    f["end"] = f["os_months"]
    f = f.sort_values("end")
    labels = f[label_col].tolist()
    fig = _figure()
    for cohort in (1, 2):
        c = f[f["cohort"] == cohort]
        fig.add_trace(go.Bar(x=c["end"], y=c[label_col], orientation="h", marker_color=COHORT_COLORS[str(cohort)],
                             opacity=0.55, name=COHORT_NAMES[str(cohort)],
                             hovertemplate="%{y}: %{x:.1f} months followed<extra></extra>"))
    pos = draws.merge(f[["patient_id", label_col]], on="patient_id")
    fig.add_trace(go.Scatter(x=pos["months_from_index"], y=pos[label_col], mode="markers", name="ctDNA positive",
                             marker=dict(color=CTDNA_COLORS["detected"], size=6, symbol="circle")))
    for col, name, symbol, color in (("progressed_months", "progression", "x", "#000000"),
                                     ("restarted_months", "restart", "triangle-right", "#1b7837"),
                                     ("died_months", "death", "cross", "#555555")):
        e = f[f[col].notna()]
        fig.add_trace(go.Scatter(x=e[col], y=e[label_col], mode="markers", name=name,
                                 marker=dict(symbol=symbol, size=9, color=color, line=dict(width=2, color=color))))
    lane = 18  # px: room for an 11 px label per lane
    fig = _layout(fig, "Swimmer plot: each patient from day 0 to last follow-up", "days", max(320, lane * len(f) + 60))
    # the legend above the lanes: below a tall plot, a legend placed at a fraction of its height left a blank
    # gap of hundreds of pixels under it
    fig.update_layout(barmode="overlay", margin=dict(t=90, b=50),
                      legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="left", x=0))
    fig.update_yaxes(type="category", categoryorder="array", categoryarray=labels, tickfont=dict(size=11),
                     automargin=True)
    fig.update_xaxes(title_text="months from day 0")
    return fig


def cumulative_incidence_figure(cif: pd.DataFrame, names: dict | None = None) -> go.Figure:
    """Aalen-Johansen cumulative incidence of each competing event by group: colour by cohort, dash by event."""
    names = names or COHORT_NAMES
    dashes = {"progression": "solid", "restart without progression": "dash", "death before progression": "dot"}
    fig = _figure()
    for g, event in sorted(set(zip(cif["group"], cif["event"], strict=True))):
        c = cif[(cif["group"] == g) & (cif["event"] == event)]
        color = COHORT_COLORS.get(str(g), GROUP_COLORS[0])
        label = f"{names.get(str(g), g)}: {event}"
        fig.add_traces(step_band(c["months"], c["lower"], c["upper"], _rgba(color, 0.08), legendgroup=label))
        fig.add_trace(go.Scatter(x=c["months"], y=c["incidence"], mode="lines", name=label, legendgroup=label,
                                 line=dict(color=color, width=2, shape="hv", dash=dashes.get(event, "solid")),
                                 hovertemplate=label + ": %{y:.2f} by %{x:.1f} months<extra></extra>"))
    fig = _layout(fig, "Cumulative incidence of competing events (Aalen-Johansen, 95% CI)", "days", 400)
    fig.update_yaxes(title_text="cumulative incidence", range=[0, 1])
    fig.update_xaxes(title_text="months from day 0")
    return fig


def forest_figure(models: pd.DataFrame) -> go.Figure:
    """Hazard ratios with 95% CIs on a log axis, one row per comparison, model and term; PH test in the hover."""
    m = models.dropna(subset=["hr"]).iloc[::-1]
    labels = [f"{r.comparison} · {r.model}: {r.term}" for r in m.itertuples()]
    main = [r.term.startswith(("cohort 2", "detected")) and (r.comparison == "cohort") == r.term.startswith("cohort 2")
            for r in m.itertuples()]
    colors = ["#333" if is_main else "#999" for is_main in main]
    fig = _figure(go.Scatter(
        x=m["hr"], y=labels, mode="markers", marker=dict(symbol="square", size=9, color=colors),
        error_x=dict(type="data", symmetric=False, array=m["upper"] - m["hr"], arrayminus=m["hr"] - m["lower"],
                     color="#555", thickness=1.5),
        customdata=np.stack([m["lower"], m["upper"], m["p"], m["ph_p"], m["n"], m["events"]], axis=1),
        hovertemplate="HR %{x:.2f} (95% CI %{customdata[0]:.2f} to %{customdata[1]:.2f}), p = %{customdata[2]:.3g}"
                      "<br>proportional hazards test p = %{customdata[3]:.2g}<br>n = %{customdata[4]}, "
                      "%{customdata[5]} events<extra></extra>", showlegend=False))
    _vline(fig, 1, dict(color="#999", dash="dash"))
    fig = _layout(fig, "Hazard ratios for progression or death (Cox, 95% CI)", "days", 60 + 28 * len(m))
    ticks = [v for v in (0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100)
             if len(m) and m["lower"].min() / 1.5 <= v <= m["upper"].max() * 1.5]
    fig.update_xaxes(type="log", title_text="hazard ratio (log scale; right of 1: higher hazard)",
                     tickvals=ticks, ticktext=[f"{v:g}" for v in ticks])
    fig.update_yaxes(type="category", automargin=True)
    fig.update_layout(margin=dict(b=60))
    return fig


def lead_time_figure(leads: pd.DataFrame, no_signal: int) -> go.Figure:
    fig = _figure(go.Histogram(x=leads["lead_months"], xbins=dict(size=3), marker_color="#d73027",
                                 name="progressions with a ctDNA signal"))
    if len(leads):
        med = float(leads["lead_months"].median())
        _vline(fig, med, dict(color="#333", dash="dash"))
        # named in the legend: a label beside the line printed over the bars
        fig.add_trace(go.Scatter(x=[None], y=[None], mode="lines", line=dict(color="#333", dash="dash"),
                                 name=f"median {med:.1f} months"))
    fig.add_annotation(text=f"{len(leads)} progressions with a positive draw before them; {no_signal} without any "
                            "ctDNA signal", x=0, y=1.08, xref="paper", yref="paper", showarrow=False, xanchor="left")
    fig = _layout(fig, "ctDNA lead time: first positive draw to radiological progression", "days", 340)
    fig.update_xaxes(title_text="months")
    fig.update_yaxes(title_text="progressions")
    return fig


def pro_change_figure(summary: pd.DataFrame, scales: list[tuple[str, str]], mcid: dict) -> go.Figure:
    """Mean change from baseline by cohort, one panel per scale; meaningful change shaded.

    Each point is labelled with its n; a point of fewer than MIN_N_FOR_CI patients (data.cohorts) has no CI and
    is drawn open: its mean is a handful of people, not a cohort's."""
    n = max(len(scales), 1)
    labels = []
    for inst, scale in scales:
        s = summary[(summary["instrument"] == inst) & (summary["scale"] == scale)]
        labels.append(s["label"].iloc[0] if len(s) else scale)
    fig = make_subplots(figure=_figure(), rows=n, cols=1, shared_xaxes=True, subplot_titles=labels or ["no scale"],
                        vertical_spacing=0.2 / n if n > 1 else 0.1)
    for i, (inst, scale) in enumerate(scales, start=1):
        m = mcid.get((inst, scale))
        if m is not None and not pd.isna(m):
            fig.add_hrect(y0=-m, y1=m, fillcolor="rgba(120,120,120,0.12)", line_width=0, row=i, col=1)
        for cohort in (1, 2):
            s = summary[(summary["instrument"] == inst) & (summary["scale"] == scale) & (summary["cohort"] == cohort)]
            color = COHORT_COLORS[str(cohort)]
            has_ci = s["lower"].notna()
            fig.add_trace(go.Scatter(x=s["month"], y=s["mean"], mode="lines+markers+text", name=COHORT_NAMES[str(cohort)],
                                     legendgroup=str(cohort), showlegend=i == 1, line=dict(color=color),
                                     marker=dict(color=[color if c else "white" for c in has_ci], size=8,
                                                 line=dict(color=color, width=1.5)),
                                     text=[f"n={k}" for k in s["n"]], textposition="top center",
                                     textfont=dict(size=9, color=color),
                                     error_y=dict(type="data", symmetric=False, array=(s["upper"] - s["mean"]).fillna(0),
                                                  arrayminus=(s["mean"] - s["lower"]).fillna(0), color=color),
                                     customdata=s["n"],
                                     hovertemplate="month %{x}: %{y:.1f} (n = %{customdata})<extra></extra>"), row=i, col=1)
        fig.add_hline(y=0, line=dict(color="#999", width=1), row=i, col=1)
    fig = _layout(fig, "Change from baseline by cohort (mean; 95% CI from n = 5)", "days", 220 * n + 100)
    fig.update_xaxes(title_text=None)
    fig.update_xaxes(title_text="months from day 0", row=n, col=1)
    return fig
