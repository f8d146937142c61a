"""Exports a person opens elsewhere: CSV that a spreadsheet cannot execute, and printable HTML sheets."""
from __future__ import annotations

import copy
import html
import importlib.util
import shutil

import numpy as np
import pandas as pd

from data.csvsafe import FORMULA_PREFIXES, neutralize, safe_csv  # noqa: F401  (re-exported for the pages)

SHEET_CSS = """
@page { size: A4; margin: 14mm; }
body { font-family: "Source Sans Pro", Arial, sans-serif; color: #1f2933; font-size: 11pt; }
.sheet { page-break-after: always; }
.sheet:last-child { page-break-after: auto; }
h1 { font-size: 16pt; margin: 0 0 2mm 0; }
.sub { color: #555; margin-bottom: 4mm; }
table { border-collapse: collapse; width: 100%; margin: 2mm 0 4mm 0; }
th, td { border: 1px solid #ccc; padding: 1.5mm 2mm; text-align: left; vertical-align: top; }
th { background: #f3f6f9; }
.estimate { font-size: 14pt; font-weight: bold; }
.no { color: #b2182b; } .yes { color: #1b7837; } .unknown { color: #8a6d00; }
.foot { color: #777; font-size: 9pt; margin-top: 4mm; }
"""


def _e(value) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NaT:
        return "—"
    if isinstance(value, pd.Timestamp):
        return value.strftime("%Y-%m-%d")
    return html.escape(str(value))


def meeting_sheets(patients: list[dict], title: str, footer: str) -> str:
    """One printable page per patient. Every value is HTML-escaped: nothing from the data is markup.

    Each patient dict has: patient_id, summary (dict), eligibility (DataFrame criterion/met/detail),
    estimate (str), alerts (list[str]), scans (DataFrame of recent scans), decisions (list[str], the board's
    current decisions for the patient).
    """
    sheets = []
    for p in patients:
        s = p["summary"]
        rows = "".join(
            f"<tr><td>{_e(r.text)}</td><td class='{ 'yes' if r.met is True else 'no' if r.met is False else 'unknown'}'>"
            f"{'met' if r.met is True else 'not met' if r.met is False else 'unknown'}</td><td>{_e(r.detail)}</td></tr>"
            for r in p["eligibility"].itertuples())
        scans = "".join(f"<tr><td>{_e(pd.Timestamp(r.scanned_on))}</td><td>{_e(r.overall_response or 'baseline')}</td>"
                        f"<td>{_e(r.sld_mm)}</td></tr>" for r in p["scans"].itertuples())
        alerts = "".join(f"<li>{_e(a)}</li>" for a in p["alerts"]) or "<li>none</li>"
        board = "".join(f"<li>{_e(d)}</li>" for d in p.get("decisions", [])) or "<li>none recorded</li>"
        called = s.get("last_ctdna_detected")
        ctdna = (f"<p>Last ctDNA: {_e('detected' if called is True else 'not detected' if called is False else None)} "
                 f"({_e(s.get('last_ctdna_on'))})</p>") if p.get("shows_ctdna", True) else ""
        sheets.append(f"""
<section class="sheet">
  <h1>{_e(p['patient_id'])} · cohort {_e(s.get('cohort'))}</h1>
  <div class="sub">age {_e(s.get('age_at_enrolment'))} at enrolment · ER {_e(s.get('er_status'))}, PR {_e(s.get('pr_status'))} ·
  HER2 IHC {_e(s.get('her2_ihc'))} · best response to first line {_e(s.get('best_response'))} ·
  {_e(round(float(s.get('years_on_first_line') or 0), 1))} y of first-line therapy before day 0</div>
  <p class="estimate">{_e(p['estimate'])}</p>
  <h2>Eligibility</h2>
  <table><tr><th>criterion</th><th>verdict</th><th>detail</th></tr>{rows}</table>
  <h2>{'Last ctDNA and scans' if p.get('shows_ctdna', True) else 'Scans'}</h2>
  {ctdna}
  <table><tr><th>scan</th><th>overall response</th><th>SLD (mm)</th></tr>{scans}</table>
  <h2>Alerts</h2><ul>{alerts}</ul>
  <h2>Tumour board decisions</h2><ul>{board}</ul>
  <div class="foot">{_e(footer)}</div>
</section>""")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{_e(title)}</title>"
            f"<style>{SHEET_CSS}</style></head><body>{''.join(sheets)}</body></html>")


def svg_chart(points: pd.DataFrame, *, title: str, unit: str, log: bool = False, marks=(), width: int = 330,
              height: int = 130) -> str:
    """A small static chart for a printed page (no script: a printout and an archive keep it as drawn).

    points: x (days from day 0), y, filled (bool: a result; open: not detected or not measured). Points without
    a y are left out. marks: (x, label) vertical lines such as day 0 or a progression. Only numbers and our
    own labels are drawn; every text is escaped.
    """
    pts = points.dropna(subset=["x", "y"])
    pts = pts[pts["y"] > 0] if log else pts
    left, right, top, bottom = 44, 8, 18, 20
    head = (f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' "
            f"font-family='Arial' font-size='9'><text x='0' y='11' font-size='10' font-weight='bold'>"
            f"{html.escape(title)}</text>")
    if pts.empty:
        return head + f"<text x='{left}' y='{height / 2:.0f}'>nothing recorded</text></svg>"
    xs = [*pts["x"], *(m[0] for m in marks)]
    x0, x1 = min(xs), max(xs)
    x1 = x1 if x1 > x0 else x0 + 1
    ys = np.log10(pts["y"].astype(float)) if log else pts["y"].astype(float)
    y0, y1 = (float(ys.min()), float(ys.max())) if len(ys) else (0.0, 1.0)
    y0, y1 = (y0 - 0.3, y1 + 0.3) if log else (0.0, y1 * 1.15 or 1.0)

    def px(x):
        return left + (x - x0) / (x1 - x0) * (width - left - right)

    def py(y):
        return top + (1 - (y - y0) / (y1 - y0)) * (height - top - bottom)

    body = [f"<line x1='{left}' y1='{height - bottom}' x2='{width - right}' y2='{height - bottom}' stroke='#999'/>",
            f"<line x1='{left}' y1='{top}' x2='{left}' y2='{height - bottom}' stroke='#999'/>"]
    for value in (y0, y1):
        shown = 10 ** value if log else value
        body.append(f"<text x='{left - 3}' y='{py(value) + 3:.1f}' text-anchor='end'>{shown:.2g}</text>")
    body.append(f"<text x='{left - 3}' y='{top - 6}' text-anchor='end'>{html.escape(unit)}</text>")
    for x, label in marks:
        body.append(f"<line x1='{px(x):.1f}' y1='{top}' x2='{px(x):.1f}' y2='{height - bottom}' stroke='#555' "
                    f"stroke-dasharray='2,2'/><text x='{px(x) + 2:.1f}' y='{top + 8}'>{html.escape(label)}</text>")
    line = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in zip(pts["x"], ys, strict=True))
    body.append(f"<polyline points='{line}' fill='none' stroke='#888' stroke-width='1'/>")
    for x, y, filled in zip(pts["x"], ys, pts["filled"], strict=True):
        fill = "#d73027" if filled else "white"
        body.append(f"<circle cx='{px(x):.1f}' cy='{py(y):.1f}' r='3' fill='{fill}' stroke='#d73027'/>")
    body.append(f"<text x='{left}' y='{height - 6}'>day {x0:.0f}</text>"
                f"<text x='{width - right}' y='{height - 6}' text-anchor='end'>day {x1:.0f}</text>")
    return head + "".join(body) + "</svg>"


def visit_summary(p: dict, footer: str) -> str:
    """The one-page visit summary: header facts, alerts, what happened since the last visit, the estimate
    with its interval, small ctDNA and SLD charts. p: patient_id, facts (list of (label, value)), alerts
    (list[str]), digest (DataFrame date/what/result/detail), estimate (str), charts (list of SVG strings from
    svg_chart). Every value from the data is escaped."""
    facts = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in p["facts"])
    alerts = "".join(f"<li>{_e(a)}</li>" for a in p["alerts"]) or "<li>none</li>"
    digest = "".join(f"<tr><td>{_e(r.date)}</td><td>{_e(r.what)}</td><td>{_e(r.result)}</td><td>{_e(r.detail)}</td></tr>"
                     for r in p["digest"].itertuples()) or "<tr><td colspan='4'>nothing recorded</td></tr>"
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>Visit summary {_e(p['patient_id'])}</title>"
            f"<style>{SHEET_CSS} .charts svg {{ margin-right: 4mm; }}</style></head><body><section class='sheet'>"
            f"<h1>Visit summary · {_e(p['patient_id'])}</h1><div class='sub'>{_e(p['subtitle'])}</div>"
            f"<table>{facts}</table><h2>Alerts, most urgent first</h2><ul>{alerts}</ul>"
            f"<h2>Since {_e(p['since'])}</h2><table><tr><th>date</th><th>what</th><th>result</th><th>detail</th></tr>"
            f"{digest}</table><p class='estimate'>{_e(p['estimate'])}</p>"
            f"<div class='charts'>{''.join(p['charts'])}</div>"
            f"<div class='foot'>{_e(footer)}</div></section></body></html>")


# ------------------------------------------------------------------------------ figures as files
#: Where a Chromium for static images may be (kaleido drives a headless browser to draw plotly figures).
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "chrome")


def static_images_problem() -> str | None:
    """Why PNG/SVG files cannot be made on this server (None: they can)."""
    if importlib.util.find_spec("kaleido") is None:
        return "PNG and SVG files need the kaleido package on the server (pip install -r requirements.txt)."
    if not any(shutil.which(name) for name in CHROMIUM_NAMES):
        return ("PNG and SVG files need Chromium on the server (Debian: apt-get install chromium). The camera "
                "button on each chart still saves a PNG from your browser.")
    return None


def with_provenance(fig, provenance: str):
    """A copy of the figure with where it came from written under it (snapshot, cut-off, filters, when)."""
    out = copy.deepcopy(fig)
    bottom = (out.layout.margin.b or 80) + 40
    out.update_layout(margin=dict(b=bottom))
    out.add_annotation(text=html.escape(provenance), x=0, y=0, xref="paper", yref="paper", xanchor="left",
                       yanchor="top", yshift=-(bottom - 12), showarrow=False, align="left",
                       font=dict(size=10, color="#555"))
    return out


def figure_file(fig, fmt: str, provenance: str, width: int = 1100) -> bytes:
    """The figure as a PNG (2x, for print) or SVG file with its provenance drawn into it."""
    import plotly.io as pio

    if fmt not in ("png", "svg"):
        raise ValueError(f"unknown image format {fmt!r}")
    return pio.to_image(with_provenance(fig, provenance), format=fmt, width=width, scale=2 if fmt == "png" else 1)


def with_provenance_columns(frame: pd.DataFrame, provenance: dict) -> pd.DataFrame:
    """A figure's data as a file says it: the snapshot, cut-off and filters as columns of every row."""
    return frame.assign(**{k: v for k, v in provenance.items()})
