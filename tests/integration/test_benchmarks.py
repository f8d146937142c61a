"""The benchmark commands work end to end (their figures are printed, never asserted: no timed tests)."""
import asyncio
import json
import subprocess
import sys

import pytest

from tests.conftest import REPO


@pytest.fixture
def app_env(snapshot_file, model_dir, audit_db, monkeypatch):
    monkeypatch.setenv("STOPHER2_SNAPSHOT", str(snapshot_file))
    monkeypatch.setenv("STOPHER2_MODEL_DIR", str(model_dir))
    return snapshot_file


def test_benchmark_command_prints_every_figure(tmp_path):
    out = subprocess.run([sys.executable, "-m", "benchmarks", "--sizes", "82", "--repeats", "1", "--boot", "5"],
                         capture_output=True, text=True, cwd=REPO, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout)
    size = result["sizes"][0]
    assert size["patients"] == 82 and size["build"]["seconds"] > 0 and size["train"]["bootstrap_refits"] == 5
    pages = size["pages"]
    for key in ("empty_page_s", "patient_page_s", "patient_page_another_patient_s", "tumor_board_page_s",
                "cohorts_page_s", "patient_page_over_empty", "peak_mib"):
        assert pages[key] > 0, key


def test_load_sessions_open_patient_pages_without_error_and_an_error_is_counted(app_env):
    """A few websocket sessions speak Streamlit's protocol to a real server; an unknown id counts as an error."""
    from benchmarks import load
    from data.store import Snapshot

    ids = Snapshot(app_env).query("SELECT patient_id FROM patients")["patient_id"].tolist()
    port = load._free_port()
    server = load._start_server(port)
    base = [f"http://127.0.0.1:{port}"]
    try:
        warm = asyncio.run(load._run(base, 1, 0, 300, ids[:1]))
        assert not warm["errors"], warm["errors"]
        ok = asyncio.run(load._run(base, 3, 3, 120, ids))
        assert not ok["errors"], ok["errors"]
        assert len(ok["pages"]) >= 3 and all(p["seconds"] > 0 for p in ok["pages"])
        bad = asyncio.run(load._run(base, 1, 0, 120, ["STH-9999"]))
        assert any("No patient with id" in e for e in bad["errors"]), bad
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_wait_benchmark_times_the_patient_page_and_a_bare_page_drawing_the_same_charts(app_env):
    """`python -m benchmarks.wait` end to end in Chromium, on 2 patients: the same charts on both servers."""
    from benchmarks import wait

    result = wait.run(patients=2, width=1024)
    assert result["patient_page"]["n"] == 2 and result["floor_same_charts_bare_streamlit"]["n"] == 2
    assert min(result["charts_per_page"]) >= 4  # timeline, ctDNA, SLD, PROs, the estimate over time ...
    assert result["patient_page"]["median_s"] > 0 and result["floor_same_charts_bare_streamlit"]["median_s"] > 0
    assert result["ratio_of_medians"] > 0
