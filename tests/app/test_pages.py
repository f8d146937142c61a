"""AppTest of every page: each patient situation renders without exception, with its four charts."""
import json

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from tests.conftest import REPO

APP = str(REPO / "app.py")


@pytest.fixture(autouse=True)
def fresh_caches(live_snapshot_env):
    st.cache_data.clear()
    st.cache_resource.clear()
    yield
    st.cache_data.clear()
    st.cache_resource.clear()


def run_page(page: str, **params) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=90)
    for k, v in params.items():
        at.query_params[k] = v
    at.switch_page(page)
    at.run()
    return at


def charts(at):
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def titles(specs):
    return [s["layout"]["title"]["text"] for s in specs]


@pytest.mark.parametrize("situation", ["stopped_stable", "progressed", "continuing", "no_target_lesions"])
def test_patient_page_for_each_situation(situations, situation):
    pid = situations[situation]
    at = run_page("pages/patient.py", patient=pid)
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="patient_picker").value == pid
    specs = charts(at)
    assert titles(specs)[:2] == ["Timeline", "ctDNA"]
    assert titles(specs)[2].startswith("Scans (RECIST 1.1)")
    assert titles(specs)[3] == "Patient-reported outcomes"
    assert len(specs) == 4
    for spec in specs:
        assert spec["data"], "every chart draws data"
    assert specs[1]["layout"]["yaxis"]["type"] == "log"
    # header facts and the digest are there
    body = " ".join(m.value for m in at.markdown)
    assert "Cohort" in " ".join(c.value for c in at.caption)
    assert any(word in body for word in ("stopped", "continuing"))
    assert at.dataframe, "scan table and digest are shown"


def test_progressed_patient_shows_progression_on_timeline_and_ctdna(situations):
    at = run_page("pages/patient.py", patient=situations["progressed"])
    timeline, ctdna = charts(at)[:2]
    assert any(t.get("name") == "progression" for t in timeline["data"])
    shapes = ctdna["layout"].get("shapes", [])
    assert any(s.get("line", {}).get("color") == "#d73027" for s in shapes)  # the progression line


def test_no_target_patient_gets_the_response_strip_not_an_sld_line(situations):
    at = run_page("pages/patient.py", patient=situations["no_target_lesions"])
    sld = charts(at)[2]
    assert sld["layout"]["yaxis"]["type"] == "category"
    assert "No target lesions" in json.dumps(sld["layout"]["annotations"])


def test_switching_to_calendar_dates_redraws_every_chart(situations):
    at = run_page("pages/patient.py", patient=situations["stopped_stable"])
    at.radio(key="axis").set_value("dates").run()
    assert not at.exception
    for spec in charts(at):
        xs = [x for trace in spec["data"] for x in (trace.get("x") or []) if x is not None]
        assert xs and all(isinstance(x, str) and x[:2] in ("19", "20") for x in xs[:5])


@pytest.mark.parametrize("hostile", ["STH-9999", "' OR 1=1 --", "<script>alert(1)</script>", "x" * 300])
def test_unknown_or_hostile_patient_id_is_not_found_and_nothing_is_rendered(hostile):
    at = run_page("pages/patient.py", patient=hostile)
    assert not at.exception
    errors = [e.value for e in at.error]
    assert errors and "No patient with id" in errors[0]
    assert "<script>" not in errors[0] and "'" not in errors[0]
    assert len(errors[0]) < 120


def test_picking_another_patient_updates_the_url(situations):
    at = run_page("pages/patient.py", patient=situations["continuing"])
    at.selectbox(key="patient_picker").set_value(situations["progressed"]).run()
    assert not at.exception
    assert at.query_params["patient"] in (situations["progressed"], [situations["progressed"]])


def test_home_page_worklist_links_to_patient_pages():
    at = run_page("pages/home.py")
    assert not at.exception
    table = at.dataframe[0].value
    assert len(table) == 82
    assert table["open"].str.startswith("patient?patient=STH-").all()
    assert "Synthetic data" in " ".join(w.value for w in at.sidebar.warning)


def test_first_start_builds_the_snapshot_with_progress(tmp_path, monkeypatch):
    monkeypatch.delenv("STOPHER2_SNAPSHOT", raising=False)
    monkeypatch.setenv("STOPHER2_SNAPSHOT_DIR", str(tmp_path))
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert not at.exception
    assert (tmp_path / "CURRENT").exists()
    status = at.main.children[0]
    assert type(status).__name__ == "Status" and status.proto.label == "Synthetic database ready"
    assert status.children[0].proto.value == 100  # the progress bar reached the end
    assert at.dataframe[0].value.shape[0] == 82  # and the page went on to show the cohort
