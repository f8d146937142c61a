"""Sign-in, roles, ctDNA blinding and the audit trail, through AppTest with a configured identity provider."""
import json

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from data import audit
from tests.conftest import REPO

APP = str(REPO / "app.py")
SECRETS = {
    "auth": {"redirect_uri": "http://localhost:8501/oauth2callback", "cookie_secret": "c" * 32, "client_id": "stop-her2",
             "client_secret": "secret", "server_metadata_url": "http://127.0.0.1:9/.well-known/openid-configuration"},
    "stopher2": {"roles": {"clinician": ["doc@site.org"], "tumor_board": ["group:tb"], "researcher": ["group:research"],
                           "admin": ["dm@site.org"]},
                 "pseudonym_key": "a-test-deployment-secret-of-more-than-32-characters"},
}
USERS = {
    "clinician": {"is_logged_in": True, "email": "doc@site.org", "name": "Dr Doc"},
    "tumor_board": {"is_logged_in": True, "email": "chair@site.org", "groups": ["tb"]},
    "researcher": {"is_logged_in": True, "email": "res@uni.org", "groups": ["research"]},
    "admin": {"is_logged_in": True, "email": "dm@site.org"},
}


def run_as(user: dict | None, page: str = "pages/home.py", blinded=(), **params) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    for key, value in SECRETS.items():
        at.secrets[key] = json.loads(json.dumps(value))
    at.secrets["stopher2"]["ctdna_blinded_roles"] = list(blinded)
    at.user = user if user is not None else {"is_logged_in": False}
    for k, v in params.items():
        at.query_params[k] = v
    at.switch_page(page)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def menu(at) -> list[str]:
    return [e.proto.label for e in at.sidebar.get("page_link")]


def text(at) -> str:
    parts = [m.value for m in at.markdown] + [e.value for e in at.error] + [w.value for w in at.warning]
    return " ".join(parts + [i.value for i in at.info] + [c.value for c in at.caption])


def test_without_sign_in_nothing_but_the_sign_in_button(snapshot):
    at = run_as(None, "pages/patient.py", patient="STH-0001")
    assert [b.label for b in at.button] == ["Sign in"]
    assert not at.get("plotly_chart") and not at.dataframe and "STH-0001" not in text(at)


def test_signed_in_without_a_role_is_told_so_and_sees_no_data():
    at = run_as({"is_logged_in": True, "email": "visitor@else.org"}, "pages/patient.py")
    assert "has no role in STOP-HER2" in text(at) and not at.dataframe and not at.get("plotly_chart")


@pytest.mark.parametrize("role,pages", [
    ("clinician", ["Home", "Patient review", "Model card"]),
    ("tumor_board", ["Home", "Patient review", "Tumor board", "Model card"]),
    ("researcher", ["Home", "Cohorts", "Model card"]),
    ("admin", ["Home", "Model card", "Data", "Audit log"]),
])
def test_the_menu_lists_only_the_roles_pages(role, pages):
    at = run_as(USERS[role])
    assert menu(at) == pages
    assert f"Signed in as {USERS[role]['email']}" in text(at) and "Demo mode" not in text(at)


@pytest.mark.parametrize("role,page,title", [
    ("researcher", "pages/patient.py", "Patient review"), ("clinician", "pages/cohorts.py", "Cohorts"),
    ("clinician", "pages/tumor_board.py", "Tumor board"), ("tumor_board", "pages/data.py", "Data"),
    ("researcher", "pages/audit.py", "Audit log"),
])
def test_a_page_opened_by_url_without_the_right_is_refused_with_a_sentence_and_recorded(role, page, title):
    at = run_as(USERS[role], page, patient="STH-0001")
    assert [e.value for e in at.error][0].startswith(f"The {title} page is not open to your role")
    assert not at.dataframe and not at.get("plotly_chart")
    refused = audit.read(action="page_refused")
    assert list(refused["who"]) == [USERS[role]["email"]] and refused["detail"].iloc[0] == "/" + page[6:-3]


def test_researchers_see_pseudonyms_and_no_identified_worklist(snapshot):
    home = run_as(USERS["researcher"])
    assert not home.dataframe  # no identified worklist
    at = run_as(USERS["researcher"], "pages/cohorts.py")
    assert not at.toggle  # no switch back to identified ids
    swimmer = next(json.loads(c.proto.spec) for c in at.get("plotly_chart")
                   if "Swimmer" in json.loads(c.proto.spec)["layout"]["title"]["text"])
    labels = {str(v) for trace in swimmer["data"] for v in (trace.get("y") or []) if isinstance(v, str)}
    assert labels and not any(label.startswith("STH-") for label in labels)
    keys = [b.key for b in at.get("download_button")]  # the pseudonymous extract and the figures' files only
    assert keys[0] == "cohort_export" and all(k.endswith(("_png", "_svg", "_csv")) for k in keys[1:])
    figure_files = {b.key: b.proto.label for b in at.get("download_button")}
    assert figure_files["swimmer_csv"] == "CSV of the data drawn"
    card = run_as(USERS["researcher"], "pages/model_card.py", patient="STH-0001")
    calibration = next(json.loads(c.proto.spec) for c in card.get("plotly_chart")
                       if "alibration" in json.loads(c.proto.spec)["layout"]["title"]["text"])
    assert not any(a.get("text") == "this patient" for a in calibration["layout"].get("annotations", []))


def test_ctdna_blinding_hides_ctdna_and_the_estimate_from_clinicians_not_researchers(situations):
    pid = situations["progressed"]
    at = run_as(USERS["clinician"], "pages/patient.py", blinded=["clinician"], patient=pid)
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]
    assert "ctDNA" not in titles and "Timeline" in titles
    assert "ctDNA results are blinded for your role" in text(at)
    assert not any("ctDNA" in w.value for w in at.warning)  # no ctDNA alert either
    timeline = next(json.loads(c.proto.spec) for c in at.get("plotly_chart")
                    if json.loads(c.proto.spec)["layout"]["title"]["text"] == "Timeline")
    assert not any("ctDNA" in (trace.get("name") or "") for trace in timeline["data"])
    unblinded = run_as(USERS["clinician"], "pages/patient.py", patient=pid)
    assert "ctDNA" in [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in unblinded.get("plotly_chart")]


def test_exports_only_for_roles_allowed_and_each_download_recorded():
    tb = run_as(USERS["tumor_board"], "pages/tumor_board.py")
    first = tb.multiselect(key="meeting_picker").options[0]
    tb.multiselect(key="meeting_picker").set_value([first]).run()
    assert {"csv", "sheets"} <= {b.key for b in tb.get("download_button")}
    demo_free = run_as(USERS["admin"], "pages/audit.py")
    assert [b.key for b in demo_free.get("download_button")] == ["audit_export"]
    session_record = audit.read(action="export")
    assert session_record.empty  # rendering a button is not an export; a click is (recorded by its callback)


def test_a_scripted_clinician_session_is_completely_on_record(snapshot, situations):
    sid = str(snapshot.info()["snapshot_id"])
    a, b = situations["progressed"], situations["continuing"]
    at = run_as(USERS["clinician"], "pages/patient.py", patient=a)
    at.selectbox(key="patient_picker").set_value(b).run()
    at.query_params["patient"] = "STH-0001<script>alert(1)</script>"
    at.run()
    rows = audit.read().iloc[::-1]  # oldest first
    mine = rows[rows["who"] == "doc@site.org"]
    # the model's first fit is on record against whoever asked first: in this session only when the test runs alone
    mine = mine[mine["action"] != "retrain"]
    # the unknown id shows its sentence and nothing else: b's record is no longer on screen, no view is recorded
    assert list(mine["action"]) == ["sign_in", "view_patient", "view_patient", "not_found"]
    assert not at.get("plotly_chart") and not at.dataframe and b not in text(at)
    assert list(mine.loc[mine["action"] == "view_patient", "patient_id"])[:2] == [a, b]
    assert (mine["role"] == "clinician").all() and (mine["snapshot_id"].dropna() == sid).all()
    assert "<script>" in mine.loc[mine["action"] == "not_found", "detail"].iloc[0]  # recorded, never rendered
    assert audit.verify()[0]


def test_a_link_that_names_two_patients_opens_neither(situations):
    """?patient=A&patient=B opened B (the last named) while a reader of the link sees A first: a tampered or
    mis-pasted link must not put one patient's record in front of a clinician expecting another."""
    a, b = situations["progressed"], situations["continuing"]
    at = run_as(USERS["clinician"], "pages/patient.py", patient=[a, b])
    assert not at.exception
    assert any("names 2 patients" in e.value and a in e.value and b in e.value for e in at.error)
    assert not at.get("plotly_chart") and not at.dataframe and at.selectbox(key="patient_picker").value is None
    mine = audit.read(who="doc@site.org")
    assert mine[mine["action"] == "view_patient"].empty  # no one's record was opened, so none recorded
    assert f"patient={a}&{b}" in mine.loc[mine["action"] == "not_found", "detail"].iloc[0]
    twice = run_as(USERS["clinician"], "pages/patient.py", patient=[a, a])  # the same id twice is one patient
    assert not twice.error and twice.get("plotly_chart") and twice.selectbox(key="patient_picker").value == a


def test_two_sessions_of_different_roles_at_once_see_only_their_own():
    researcher = run_as(USERS["researcher"], "pages/cohorts.py")
    clinician = run_as(USERS["clinician"], "pages/patient.py", patient="STH-0001")
    researcher.run()  # interleaved reruns: neither session's identity leaks into the other
    clinician.run()
    assert menu(researcher) == ["Home", "Cohorts", "Model card"] and [t.value for t in researcher.title] == ["Cohorts"]
    assert menu(clinician) == ["Home", "Patient review", "Model card"]
    assert [t.value for t in clinician.title] == ["Patient review"]
    assert audit.read(who="res@uni.org", action="view_patient").empty


def test_demo_mode_says_so_and_refuses_a_real_snapshot(snapshot_file, tmp_path, monkeypatch):
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert "Demo mode" in text(at)
    # A real (non-synthetic) snapshot without sign-in: refused on every page.
    from data.bundle import export_bundle
    from data.importing import run_import
    from data.store import Snapshot

    export_bundle(Snapshot(snapshot_file), tmp_path / "bundle")
    info = run_import("csv", tmp_path / "bundle", out=tmp_path / "real.duckdb")
    monkeypatch.setenv("STOPHER2_SNAPSHOT", info["path"])
    # a snapshot folder of this test's own: the refusal lists the folder's synthetic snapshots to roll back to,
    # and the repository's folder holds one wherever the app was started from this checkout
    monkeypatch.setenv("STOPHER2_SNAPSHOT_DIR", str(tmp_path / "snapshots"))
    st.cache_data.clear()
    st.cache_resource.clear()
    at = AppTest.from_file(APP, default_timeout=120)
    at.switch_page("pages/patient.py")
    at.run()
    assert any("holds real patient data" in e.value for e in at.error)
    assert not at.dataframe and not at.get("plotly_chart")
