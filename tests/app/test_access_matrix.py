"""Who may see what, on every page and in every download, for every role (services/access.py).

ctDNA blinding is on for clinicians and the tumour board: nothing that carries a ctDNA result (a value,
a call, an alert, a count of alerts, a chart) may reach them, on screen or in the bytes of a download.
Researchers' pseudonyms cannot be reversed from anything they see. An unknown id shows one sentence.
"""
import hashlib
import hmac
import json
import re

import pandas as pd
import pytest
import streamlit.testing.v1.app_test as app_test_module
from streamlit.runtime.media_file_manager import MediaFileManager
from streamlit.testing.v1 import AppTest

from data import audit
from data.downloads import behind_the_gate as REAL_GATE_CHECK  # before tests/app/conftest.py stands in for it
from services import access
from tests.app.test_roles import APP, SECRETS, USERS
from ui import exports

BLINDED = ["clinician", "tumor_board"]
#: What a ctDNA result looks like wherever it could leak: alert texts, calls, units, column names, chart names.
LEAKS = [r"ctDNA turned positive", r"ctDNA detected on the last", r"ctDNA draw \(", r"failed QC", r"\bnot detected\b",
         r"(?<!ctDNA )\bdetected\b", r"MTM/mL", r"(?i)last[ _]ctdna", r"(?i)ctdna_detected", r"fold_over_lod",
         r'"name": ?"ctDNA', r"ctDNA at stopping", r"(?i)ctdna lead time", r"ctdna_alerts", r"no new ctDNA signal"]
PAGES = {"": "pages/home.py", "patient": "pages/patient.py", "tumor_board": "pages/tumor_board.py",
         "cohorts": "pages/cohorts.py", "model_card": "pages/model_card.py", "data": "pages/data.py",
         "audit": "pages/audit.py"}
ROLES = ["clinician", "tumor_board", "researcher", "admin", access.DEMO]


@pytest.fixture
def media(monkeypatch):
    """Keep each AppTest run's media file manager, so that the tests can read the bytes of every download."""
    managers = []

    class Recording(MediaFileManager):
        def __init__(self, storage):
            super().__init__(storage)
            managers.append(self)

    monkeypatch.setattr(app_test_module, "MediaFileManager", Recording)
    return managers


def downloads(at, managers, skip=lambda key: False) -> dict[str, bytes]:
    """key -> the bytes a person would download from each download button on the page (but those `skip` names)."""
    out = {}
    for button in at.get("download_button"):
        p = button.proto
        if skip(button.key or p.id):
            continue
        data = None
        for manager in reversed(managers):
            if p.HasField("deferred_file_id"):
                entry = manager._deferred_callables.get(p.deferred_file_id)
                if entry is not None:
                    data = entry["callable"]()
            else:
                stored = manager.read_file(p.url.rsplit("/", 1)[-1].split(".")[0])
                data = None if stored is None else stored.content
            if data is not None:
                break
        assert data is not None, f"the bytes of download {p.id} were not found"
        out[button.key or p.id] = data.encode() if isinstance(data, str) else bytes(data)
    return out


def everything(at) -> str:
    """All a person sees on the page: text, tables (columns and cells), charts, widget options and labels."""
    parts = []
    for kind in ("title", "header", "subheader", "markdown", "caption", "error", "warning", "info", "success",
                 "text", "code", "metric", "exception", "expander", "tabs"):
        for e in getattr(at, kind, []):
            parts.append(str(getattr(e, "value", "") or getattr(e, "label", "")))
            parts.append(str(getattr(e, "label", "")))
    for frame in at.dataframe:
        parts += [" ".join(map(str, frame.value.columns)), frame.value.astype(str).to_csv()]
    for chart in at.get("plotly_chart"):
        parts.append(chart.proto.spec)
    for widget in [*at.selectbox, *at.multiselect, *at.radio]:
        parts += [str(widget.label), *map(str, widget.options)]
    for e in [*at.sidebar.markdown, *at.sidebar.caption]:
        parts.append(str(e.value))
    return "\n".join(parts)


def leaks(content: str) -> list[str]:
    return [m.group(0) for pattern in LEAKS for m in re.finditer(pattern, content)]


def run(role: str, page: str, blinded=BLINDED, **params) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=180)
    if role != access.DEMO:
        for key, value in SECRETS.items():
            at.secrets[key] = json.loads(json.dumps(value))
        at.secrets["stopher2"]["ctdna_blinded_roles"] = list(blinded)
        at.user = USERS[role]
    for k, v in params.items():
        at.query_params[k] = v
    at.switch_page(page)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.fixture(scope="module")
def ctdna_patient(snapshot) -> str:
    """A patient whose record carries ctDNA: positive draws, ctDNA alerts and other alerts too."""
    return snapshot.query("""SELECT patient_id FROM patient_summary
                             WHERE len(ctdna_alerts) > 0 AND len(alerts) > len(ctdna_alerts)
                               AND last_ctdna_detected ORDER BY patient_id LIMIT 1""").iloc[0, 0]


CASES = [(role, page) for role in ROLES for page in PAGES if access.may_open([role], page)]


@pytest.mark.parametrize("role,page", CASES, ids=[f"{r}-{p or 'home'}" for r, p in CASES])
def test_every_role_on_every_page_and_download_sees_only_what_it_may(role, page, media, snapshot, ctdna_patient):
    at = run(role, PAGES[page], patient=ctdna_patient)
    if page == "tumor_board":  # put the ctDNA patient on the meeting list: the CSV and the sheets appear
        at.multiselect(key="meeting_picker").set_value([ctdna_patient]).run()
        assert not at.exception
    if page == "data":  # the example bundle is an export too
        at.button(key="prepare_example").click().run()
    files = downloads(at, media)
    if page == "tumor_board":
        assert {"csv", "sheets"} <= set(files)
    content = everything(at) + "\n".join(b.decode("utf-8", "replace") for b in files.values())
    blinded = role in BLINDED
    if blinded:
        assert not leaks(content), f"{role} on /{page} saw ctDNA: {leaks(content)[:5]}"
    if page == "patient" and blinded:
        assert "ctDNA results are blinded for your role" in content
    if page == "patient" and not blinded:
        assert leaks(content), "an unblinded person sees the ctDNA results (the check finds them when present)"
    if not access.identified([role]):  # researchers: no identified id anywhere, on screen or in a file
        assert not re.search(r"STH-\d{4}", content.replace(f"patient={ctdna_patient}", "")), f"{role} saw an id"


@pytest.mark.parametrize("role", BLINDED)
def test_alert_counts_do_not_reveal_a_ctdna_alert_to_a_blinded_person(role, snapshot, ctdna_patient):
    from ui.components import alert_severity

    s = snapshot.query("SELECT patient_id, alerts, ctdna_alerts, alert_kinds FROM patient_summary").set_index("patient_id")
    expected = (s["alerts"].map(len) - s["ctdna_alerts"].map(len)).rename("n")
    named = pd.Series([" · ".join(a for a in alerts if a not in set(ct)) for alerts, ct in
                       zip(s["alerts"], s["ctdna_alerts"], strict=True)], index=s.index)
    home = run(role, "pages/home.py")
    shown = home.dataframe[0].value
    shown = shown.assign(patient_id=shown["open"].str.extract(r"patient=(.*)$")[0]).set_index("patient_id")
    assert (shown["alerts"] == named.loc[shown.index]).all()  # every alert named but the ctDNA ones
    # nor does the order: it follows the severity of what this person may see
    visible = s["alert_kinds"].map(lambda k: alert_severity([x for x in k if x != "ctDNA"]))
    assert visible.loc[shown.index].is_monotonic_increasing
    page = run(role, "pages/patient.py", patient=ctdna_patient)
    label = next(o for o in page.selectbox(key="patient_picker").options if o.startswith(ctdna_patient))
    n = int(expected.loc[ctdna_patient])
    assert label.endswith(f" · {n} alert{'s' if n != 1 else ''}") if n else "alert" not in label
    warnings = [w.value for w in page.warning]
    assert len([w for w in warnings if "ctDNA" not in w]) == len(warnings)


def test_pseudonyms_cannot_be_reversed_from_anything_a_researcher_sees(media, snapshot):
    at = run("researcher", "pages/cohorts.py")
    # every file, SVG figures included (their text is the figure's); a PNG draws the same figure as pixels
    files = downloads(at, media, skip=lambda key: key.endswith("_png"))
    assert any(key.endswith("_svg") for key in files) or exports.static_images_problem() is not None
    content = everything(at) + "\n".join(b.decode() for b in files.values())
    shown = set(re.findall(r"R-[0-9A-F]{8,16}", content))
    assert len(shown) >= 50, "the swimmer plot and the extract show pseudonyms"
    # every string a researcher can see is tried as the key, as are the snapshot id and the empty key
    candidates = set(re.findall(r"[A-Za-z0-9_.:+-]{3,}", content)) | {"", str(snapshot.info()["snapshot_id"])}
    ids = [f"STH-{i:04d}" for i in range(10_000)]
    for key in candidates:
        for pid in ids:
            digest = hmac.new(key.encode(), pid.encode(), hashlib.sha256).hexdigest().upper()
            assert "R-" + digest[:12] not in shown and "R-" + digest[:8] not in shown, f"{pid} reversed with {key!r}"


def test_without_a_pseudonym_key_a_signed_in_deployment_refuses_researcher_views(snapshot):
    at = AppTest.from_file(APP, default_timeout=180)
    secrets = json.loads(json.dumps(SECRETS))
    del secrets["stopher2"]["pseudonym_key"]
    for key, value in secrets.items():
        at.secrets[key] = value
    at.user = USERS["researcher"]
    at.switch_page("pages/cohorts.py")
    at.run()
    assert any("pseudonym_key" in e.value for e in at.error)
    assert not at.get("plotly_chart") and not at.dataframe


def test_a_short_pseudonym_key_is_refused(tmp_path):
    with pytest.raises(access.AccessConfigError, match="shorter than"):
        access.pseudonym_key({"pseudonym_key": "snapshot-id"}, False, tmp_path)


def test_demo_mode_keeps_one_random_key_beside_the_snapshots(tmp_path):
    first = access.pseudonym_key({}, True, tmp_path)
    assert first == access.pseudonym_key({}, True, tmp_path) and len(first) >= access.MIN_PSEUDONYM_KEY_CHARS
    assert (tmp_path / access.DEMO_KEY_FILE).stat().st_mode & 0o077 == 0  # readable by the server's user only
    assert access.pseudonym_key({}, False, tmp_path) is None  # a signed-in deployment must configure its own


@pytest.mark.parametrize("hostile", ["STH-9999", "' OR 1=1 --", "<script>alert(1)</script>", "x" * 5000,
                                     "STH-0001\n", "../../etc/passwd", "STH-0001' --"])
def test_an_unknown_or_hostile_id_shows_the_sentence_only(hostile, snapshot):
    at = run("clinician", "pages/patient.py", patient=hostile)
    errors = [e.value for e in at.error]
    assert len(errors) == 1 and errors[0].startswith("No patient with id") and len(errors[0]) < 120
    assert not at.get("plotly_chart") and not at.dataframe and not at.main.warning
    assert not re.search(r"STH-\d{4}", " ".join(m.value for m in [*at.markdown, *at.caption, *at.subheader]))
    assert at.selectbox(key="patient_picker").value is None  # nobody is opened in its place
    records = audit.read()
    assert records[records["action"] == "view_patient"].empty
    assert (records["action"] == "not_found").sum() == 1


def test_after_an_unknown_id_the_patient_seen_before_is_not_shown_again(snapshot, ctdna_patient):
    at = run("clinician", "pages/patient.py", patient=ctdna_patient)
    assert at.get("plotly_chart")
    at.query_params["patient"] = "STH-9999"
    at.run()
    assert not at.get("plotly_chart") and ctdna_patient not in " ".join(c.value for c in at.caption)
    assert list(audit.read()["action"]).count("view_patient") == 1


def test_a_signed_in_server_reached_without_the_proxy_offers_no_download(monkeypatch, ctdna_patient):
    """Streamlit hands a download's file to anyone with its /media link; only the deployment's nginx gates it.
    A signed-in server reached without it (no gate header, or a forged one) offers no download and says why."""
    from data import downloads

    monkeypatch.setattr(downloads, "behind_the_gate", REAL_GATE_CHECK)  # the app tests' stand-in, off
    monkeypatch.setenv(downloads.GATE_SECRET_ENV, "s" * 64)
    assert not downloads.behind_the_gate({downloads.GATE_HEADER: "forged"})
    assert not downloads.behind_the_gate({})
    assert downloads.behind_the_gate({downloads.GATE_HEADER: "s" * 64})
    at = run("clinician", PAGES["patient"], patient=ctdna_patient)
    assert not at.get("download_button")
    assert any("not reached through the deployment's proxy" in c.value for c in at.caption)
    demo = run(access.DEMO, PAGES["patient"], patient=ctdna_patient)  # synthetic data only: served as it is
    assert demo.get("download_button")
