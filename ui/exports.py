"""Exports a person opens elsewhere: CSV that a spreadsheet cannot execute, and printable HTML sheets."""
from __future__ import annotations

import html

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
    estimate (str), alerts (list[str]), scans (DataFrame of recent scans).
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
        called = s.get("last_ctdna_detected")
        ctdna = (f"<p>Last ctDNA: {_e('detected' if called is True else 'not detected' if called is False else None)} "
                 f"({_e(s.get('last_ctdna_on'))})</p>") if p.get("shows_ctdna", True) else ""
        sheets.append(f"""
<section class="sheet">
  <h1>{_e(p['patient_id'])} · cohort {_e(s.get('cohort'))}</h1>
  <div class="sub">{_e(s.get('age_at_enrolment'))} y · ER {_e(s.get('er_status'))}, PR {_e(s.get('pr_status'))} ·
  HER2 IHC {_e(s.get('her2_ihc'))} · best response to first line {_e(s.get('best_response'))} ·
  {_e(round(float(s.get('years_on_first_line') or 0), 1))} y of first-line therapy before day 0</div>
  <p class="estimate">{_e(p['estimate'])}</p>
  <h2>Eligibility</h2>
  <table><tr><th>criterion</th><th>verdict</th><th>detail</th></tr>{rows}</table>
  <h2>{'Last ctDNA and scans' if p.get('shows_ctdna', True) else 'Scans'}</h2>
  {ctdna}
  <table><tr><th>scan</th><th>overall response</th><th>SLD (mm)</th></tr>{scans}</table>
  <h2>Alerts</h2><ul>{alerts}</ul>
  <div class="foot">{_e(footer)}</div>
</section>""")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{_e(title)}</title>"
            f"<style>{SHEET_CSS}</style></head><body>{''.join(sheets)}</body></html>")
