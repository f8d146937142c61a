"""`python -m benchmarks.wait [--patients 12] [--width 1440]`: a person's wait for the patient page in Chromium,
beside the framework's floor.

The wait is what a clinician sees: from navigating to `/patient?patient=ID` in a new browser tab to every
chart of the page drawn (every chart element holding plotly's SVG, `CHARTS_DRAWN`). The floor is a bare Streamlit page that
draws the very same charts (the figures the patient page sends, captured for each patient beforehand) and
nothing else: no query, no model, no audit record, no other element. It is what Streamlit and plotly.js
cost on this machine whatever the app does, so `patient / floor` says how much of the wait is ours.

Both run as `streamlit run` servers on this machine, each warmed with one patient that is not measured.
Each measured patient is opened once on each server (alternating which goes first), so the app pays its
first-visit queries for every patient, as it does when a clinician opens someone new. Prints one JSON object
with the medians, 95th percentiles and the ratio of medians (the issue's bar: <= 1.2). Not a test: figures,
never a pass/fail in CI.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
#: Debian's Chromium and the flags this machine needs (the browser tests use the same: tests/browser/)
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
#: How many charts are drawn: chart elements that hold plotly's SVG (`[data-testid="stPlotlyChart"] .main-svg`).
#: plotly draws two or three `.main-svg` layers per chart, so counting the layers (as this benchmark and the browser
#: tests once did) took two charts of six for "every chart drawn".
CHARTS_DRAWN = ("Array.from(document.querySelectorAll('[data-testid=\"stPlotlyChart\"]'))"
                ".filter(e => e.querySelector('.main-svg')).length")

#: The floor page: the captured figures of the patient in the URL, drawn as the patient page draws them.
FLOOR_PAGE = '''import json
from pathlib import Path

import streamlit as st

st.set_page_config(layout="wide")
charts = json.loads((Path(__file__).parent / "figures.json").read_text())
for spec in charts.get(st.query_params.get("patient", ""), []):
    st.plotly_chart(json.loads(spec), use_container_width=True, config={"displaylogo": False})
'''


def capture_figures(patient_ids: list[str]) -> dict[str, list[str]]:
    """The plotly specs the patient page sends for each patient (AppTest: the page's own code, no browser)."""
    from streamlit.testing.v1 import AppTest

    out = {}
    for pid in patient_ids:
        at = AppTest.from_file(str(REPO / "app.py"), default_timeout=600)
        at.query_params["patient"] = pid
        at.switch_page("pages/patient.py")
        at.run()
        if at.exception:
            raise RuntimeError(f"the patient page failed for {pid}: {at.exception[0].value}")
        out[pid] = [chart.proto.spec for chart in at.get("plotly_chart")]
    return out


@contextmanager
def _server(script: Path, port: int, log: Path):
    from benchmarks.load import _start_server

    server = _start_server(port, log, script=script)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()


def _wait(browser, url: str, charts: int, width: int, timeout_ms: int = 120_000) -> float:
    """Seconds from navigation in a new tab (a new Streamlit session) to `charts` charts drawn."""
    context = browser.new_context(viewport={"width": width, "height": 1000})
    page = context.new_page()
    try:
        started = time.perf_counter()
        page.goto(url, wait_until="commit")
        page.wait_for_function(f"{CHARTS_DRAWN} >= {charts}", timeout=timeout_ms, polling=50)
        return time.perf_counter() - started
    finally:
        context.close()


def _summary(values: list[float]) -> dict:
    ordered = sorted(values)
    return {"median_s": round(statistics.median(ordered), 2),
            "p95_s": round(ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))], 2),
            "max_s": round(ordered[-1], 2), "n": len(ordered)}


def run(patients: int, width: int) -> dict:
    from playwright.sync_api import sync_playwright

    from benchmarks.load import _free_port
    from data.store import Snapshot, snapshot_path

    snap = Snapshot(snapshot_path())
    try:
        ids = snap.query("SELECT patient_id FROM patients ORDER BY hash(patient_id) LIMIT ?",
                         [patients + 1])["patient_id"].tolist()
    finally:
        snap.close()
    figures = capture_figures(ids)
    with tempfile.TemporaryDirectory() as tmp:
        floor_script = Path(tmp) / "floor.py"
        floor_script.write_text(FLOOR_PAGE)
        (Path(tmp) / "figures.json").write_text(json.dumps(figures))
        app_times, floor_times = [], []
        with _server(REPO / "app.py", _free_port(), Path(tmp) / "app.log") as app_url, \
                _server(floor_script, _free_port(), Path(tmp) / "floor.log") as floor_url, \
                sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            warm, measured = ids[0], ids[1:]
            _wait(browser, f"{app_url}/patient?patient={warm}", len(figures[warm]), width)
            _wait(browser, f"{floor_url}/?patient={warm}", len(figures[warm]), width)
            for k, pid in enumerate(measured):
                n = len(figures[pid])
                order = [("app", f"{app_url}/patient?patient={pid}"), ("floor", f"{floor_url}/?patient={pid}")]
                for which, url in order if k % 2 == 0 else order[::-1]:
                    (app_times if which == "app" else floor_times).append(_wait(browser, url, n, width))
            browser.close()
    app, floor = _summary(app_times), _summary(floor_times)
    return {"what": "navigation in a new Chromium tab to every chart of the patient page drawn",
            "width_px": width, "charts_per_page": sorted({len(v) for v in figures.values()}),
            "patient_page": app, "floor_same_charts_bare_streamlit": floor,
            "ratio_of_medians": round(app["median_s"] / floor["median_s"], 2), "bar_ratio": 1.2,
            "machine": {"cpus": os.cpu_count()}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.wait", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=12, help="patients measured (one more warms each server)")
    parser.add_argument("--width", type=int, default=1440, help="browser width in px")
    args = parser.parse_args(argv)
    print(json.dumps(run(args.patients, args.width), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
