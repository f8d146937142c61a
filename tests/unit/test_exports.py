"""Exports cannot run as spreadsheet formulas or as markup."""
import io

import pandas as pd

from ui import exports


def test_formula_strings_are_neutralized_in_every_csv_cell():
    frame = pd.DataFrame({"patient_id": ["=HYPERLINK(\"http://x\")", "+1", "-2+3", "@SUM(A1)", "STH-0001"],
                          "note": ["\tcmd", "-x", "ok", None, "a=b"], "n": [1, 2, 3, 4, 5]})
    back = pd.read_csv(io.BytesIO(exports.safe_csv(frame)), keep_default_na=False)
    assert back["patient_id"].tolist() == ["'=HYPERLINK(\"http://x\")", "'+1", "'-2+3", "'@SUM(A1)", "STH-0001"]
    assert back["note"].tolist()[:3] == ["'\tcmd", "'-x", "ok"]
    assert exports.neutralize("\rx") == "'\rx" and exports.neutralize(3) == 3
    assert back["note"].tolist()[4] == "a=b"  # only a leading formula character is dangerous
    assert back["n"].tolist() == [1, 2, 3, 4, 5]


def test_printable_sheets_escape_everything_and_break_pages():
    hostile = "<script>alert(1)</script>"
    sheet = exports.meeting_sheets(
        [{"patient_id": hostile, "summary": {"cohort": 1, "er_status": hostile},
          "eligibility": pd.DataFrame([{"text": "Age 18 or older", "met": True, "detail": hostile}]),
          "estimate": hostile, "alerts": [hostile], "scans": pd.DataFrame(columns=["scanned_on", "overall_response", "sld_mm"])},
         {"patient_id": "STH-0002", "summary": {}, "eligibility": pd.DataFrame(columns=["text", "met", "detail"]),
          "estimate": "x", "alerts": [], "scans": pd.DataFrame(columns=["scanned_on", "overall_response", "sld_mm"])}],
        "title", "footer")
    assert "<script>" not in sheet and "&lt;script&gt;" in sheet
    assert sheet.count('<section class="sheet">') == 2 and "page-break-after: always" in sheet


def test_the_visit_summary_escapes_everything_and_its_charts_carry_no_script():
    import numpy as np

    hostile = "<script>alert(1)</script>"
    chart = exports.svg_chart(pd.DataFrame({"x": [0, 91, 182], "y": [0.3, 1.2, 40.0], "filled": [False, True, True]}),
                              title=hostile, unit=hostile, log=True, marks=[(0, hostile)])
    empty = exports.svg_chart(pd.DataFrame({"x": [0], "y": [np.nan], "filled": [True]}), title="SLD", unit="mm")
    page = exports.visit_summary({"patient_id": hostile, "subtitle": hostile, "facts": [(hostile, hostile)],
                                  "alerts": [hostile], "since": "2026-01-01", "estimate": hostile, "charts": [chart, empty],
                                  "digest": pd.DataFrame([{"date": "2026-02-01", "what": "ctDNA", "result": hostile,
                                                           "detail": hostile}])}, footer=hostile)
    assert "<script>" not in page and page.count("&lt;script&gt;") >= 8
    assert page.count("<svg") == 2 and "<circle" in chart and "nothing recorded" in empty
