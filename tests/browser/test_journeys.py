"""The main journeys in real Chromium against `streamlit run` (Debian's chromium, driven by Playwright)."""
import json
import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from benchmarks.wait import CHARTS_DRAWN, CHROMIUM, CHROMIUM_ARGS  # one Chromium set-up for tests and benchmarks
from tests.conftest import REPO



def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, seconds: float = 60) -> None:
    """Until something listens on the port; the process's output if it dies first."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(proc.stdout.read() if proc.stdout else f"exit code {proc.returncode}") from None
            time.sleep(0.3)


@contextmanager
def streamlit_server(env_overrides: dict, port: int | None = None, args: tuple = ()):
    port = port or free_port()
    env = {**os.environ, **env_overrides, "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(REPO / "app.py"),
                             "--server.port", str(port), "--server.address", "127.0.0.1",
                             "--server.headless", "true", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_port(port, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium not found at {CHROMIUM}: `apt-get install -y chromium` (the README's test command does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def drawn_charts(page, n: int, timeout_ms: int = 90_000) -> int:
    """Waits for `n` charts drawn (not `n` of plotly's SVG layers: a chart has two or three) and counts them."""
    page.wait_for_function(f"{CHARTS_DRAWN} >= {n}", timeout=timeout_ms)
    return page.evaluate(CHARTS_DRAWN)


def test_a_chart_counts_once_however_many_svg_layers_plotly_draws(browser):
    """plotly draws two or three `.main-svg` layers per chart: one chart drawn of six is one, not three."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page = browser.new_page()
    try:
        layers = '<svg class="main-svg"></svg>' * 3
        page.set_content(f'<div data-testid="stPlotlyChart">{layers}</div>' + '<div data-testid="stPlotlyChart"></div>' * 5)
        assert drawn_charts(page, 1) == 1
        with pytest.raises(PlaywrightTimeout):
            drawn_charts(page, 2, timeout_ms=500)
    finally:
        page.close()


def test_deep_link_on_a_fresh_server_draws_the_patient_charts(browser, snapshot_file, model_dir, situations):
    pid = situations["progressed"]
    with streamlit_server({"STOPHER2_SNAPSHOT": str(snapshot_file), "STOPHER2_MODEL_DIR": str(model_dir)}) as url:
        page = browser.new_page(viewport={"width": 1400, "height": 4000})
        page.goto(f"{url}/patient?patient={pid}")  # the very first visitor of this server
        assert drawn_charts(page, 4) >= 4
        assert page.get_by_text("Page not found").count() == 0
        assert page.get_by_text("Patient review").first.is_visible()
        assert page.get_by_text("Synthetic data").first.is_visible()  # the app frame ran (sidebar)
        assert page.get_by_text(f"{pid} · site").first.is_visible()
        page.close()


def test_model_card_deep_link_on_a_fresh_server(browser, snapshot_file, model_dir):
    with streamlit_server({"STOPHER2_SNAPSHOT": str(snapshot_file), "STOPHER2_MODEL_DIR": str(model_dir)}) as url:
        page = browser.new_page(viewport={"width": 1400, "height": 3000})
        page.goto(f"{url}/model_card")
        assert drawn_charts(page, 4) >= 4
        assert page.get_by_text("Intended use.").first.is_visible()
        page.close()


def test_home_then_a_patient_then_calendar_dates(browser, snapshot_file, model_dir):
    with streamlit_server({"STOPHER2_SNAPSHOT": str(snapshot_file), "STOPHER2_MODEL_DIR": str(model_dir)}) as url:
        page = browser.new_page(viewport={"width": 1400, "height": 1200})
        page.goto(url)
        page.wait_for_selector('[data-testid="stDataFrame"]', timeout=60_000)
        page.goto(f"{url}/patient?patient=STH-0002")
        assert drawn_charts(page, 2) >= 2
        page.get_by_text("calendar dates").click()
        page.wait_for_timeout(1500)
        assert drawn_charts(page, 4) >= 4
        page.close()


def test_first_start_builds_the_database_trains_the_model_and_draws_a_chart(browser, tmp_path):
    env = {"STOPHER2_SNAPSHOT_DIR": str(tmp_path / "snapshots"), "STOPHER2_SNAPSHOT": "",
           "STOPHER2_MODEL_DIR": str(tmp_path / "models")}
    with streamlit_server(env) as url:
        page = browser.new_page(viewport={"width": 1400, "height": 3000})
        started = time.perf_counter()
        page.goto(f"{url}/patient?patient=STH-0001")
        assert drawn_charts(page, 1, timeout_ms=180_000) >= 1
        print(f"first start to the first drawn chart: {time.perf_counter() - started:.1f} s")
        assert (tmp_path / "snapshots" / "CURRENT").exists()
        assert list((tmp_path / "models").glob("*-hlandmark.json"))  # the landmark model was fitted on first start
        page.close()


def select_candidates(page, url: str, rows) -> None:
    """Open the tumour board and tick the row selectors of these candidate rows (0 = the first)."""
    page.goto(f"{url}/tumor_board")
    grid = page.locator('[data-testid="stDataFrame"]').first
    grid.wait_for(timeout=90_000)
    page.wait_for_timeout(1500)
    box = grid.bounding_box()
    for row in rows:
        page.mouse.click(box["x"] + 18, box["y"] + 35 + 17 + 35 * row)
        page.wait_for_timeout(800)


def test_tumor_board_row_opens_the_patient_page(browser, snapshot_file, model_dir):
    with streamlit_server({"STOPHER2_SNAPSHOT": str(snapshot_file), "STOPHER2_MODEL_DIR": str(model_dir)}) as url:
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        select_candidates(page, url, [0])
        button = page.get_by_role("button", name="Open STH-")
        button.wait_for(timeout=30_000)
        pid = button.inner_text().split()[-1]
        button.click()
        page.wait_for_url(f"**/patient?patient={pid}", timeout=60_000)
        assert drawn_charts(page, 4) >= 4
        assert page.get_by_text(f"{pid} · site").first.is_visible()
        page.close()


def test_tumor_board_adds_the_selected_rows_to_the_meeting_list(browser, snapshot_file, model_dir):
    """'Add N selected to the meeting list' did nothing (three tries): the multiselect's old state won."""
    with streamlit_server({"STOPHER2_SNAPSHOT": str(snapshot_file), "STOPHER2_MODEL_DIR": str(model_dir)}) as url:
        page = browser.new_page(viewport={"width": 1400, "height": 1600})
        select_candidates(page, url, [0, 1])
        page.get_by_role("button", name="Add 2 selected to the meeting list").click()
        meeting = page.locator('[data-testid="stMultiSelect"]').filter(has_text="Patients for the meeting")
        deadline = time.time() + 30
        while time.time() < deadline and meeting.inner_text().count("STH-") < 2:
            page.wait_for_timeout(300)
        names = [w for w in meeting.inner_text().split() if w.startswith("STH-")]
        assert len(names) == 2, meeting.inner_text()
        page.get_by_role("button", name="Download the list (CSV)").wait_for(timeout=30_000)
        page.close()


@pytest.mark.parametrize("width", [1024, 1440])
def test_the_meeting_from_selection_to_a_recorded_decision_and_the_exported_sheet(browser, snapshot_file, model_dir,
                                                                                 tmp_path, width):
    from data import audit, decisions

    env = {"STOPHER2_SNAPSHOT": str(snapshot_file), "STOPHER2_MODEL_DIR": str(model_dir),
           "STOPHER2_AUDIT_DB": str(tmp_path / "audit.sqlite")}
    with streamlit_server(env) as url:
        page = browser.new_page(viewport={"width": width, "height": 2400})
        select_candidates(page, url, [0, 1])
        page.get_by_role("button", name="Add 2 selected to the meeting list").click()
        meeting = page.locator('[data-testid="stMultiSelect"]').filter(has_text="Patients for the meeting")
        settled(page, lambda: meeting.inner_text().count("STH-"), lambda n: n == 2)
        patient = [w for w in meeting.inner_text().split() if w.startswith("STH-")][0]  # the form's first patient
        form = page.locator('[data-testid="stForm"]')
        form.wait_for(timeout=60_000)
        form.get_by_text("defer", exact=True).click()
        form.get_by_label("Reason (required)").fill("wait for the December MRI <b>first</b>")
        form.get_by_label("Notes").fill("=HYPERLINK(\"http://evil\")")
        form.get_by_role("button", name="Record the decision").click()
        page.get_by_text(f"for {patient}: defer").wait_for(timeout=60_000)
        recorded = decisions.read(path=tmp_path / "decisions.sqlite")
        assert recorded[["patient_id", "decision", "reason"]].values.tolist() == [
            [patient, "defer", "wait for the December MRI <b>first</b>"]]
        assert audit.read(path=tmp_path / "audit.sqlite", action="board_decision")["patient_id"].tolist() == [patient]
        with page.expect_download(timeout=60_000) as download:
            page.get_by_role("button", name="Download printable sheets (one page per patient)").click()
        sheet = Path(download.value.path()).read_text()
        assert "defer (wait for the December MRI &lt;b&gt;first&lt;/b&gt;), recorded by demo" in sheet
        assert "<b>first</b>" not in sheet  # typed text is never markup
        with page.expect_download(timeout=60_000) as download:
            page.get_by_role("button", name="Download the record of the").click()
        record = Path(download.value.path()).read_text()
        assert patient in record and "'=HYPERLINK" in record  # formula-safe
        page.close()


def test_data_manager_uploads_a_bundle_checks_it_and_imports_it(browser, snapshot_file, model_dir, tmp_path):
    """Signed in as an admin (real data needs sign-in); in demo mode the same upload is checked and then
    refused at Check with the reason, so that demo mode never locks itself out."""
    import shutil

    from data.bundle import export_bundle, zip_bytes
    from data.store import Snapshot

    folder = tmp_path / "snapshots"
    folder.mkdir()
    shutil.copy(snapshot_file, folder / "synthetic-start.duckdb")
    (folder / "CURRENT").write_text("synthetic-start.duckdb\n")
    models = tmp_path / "models"
    shutil.copytree(model_dir, models)
    bundle = tmp_path / "bundle"
    export_bundle(Snapshot(snapshot_file), bundle)
    upload = tmp_path / "trial-bundle.zip"
    upload.write_bytes(zip_bytes({p.name: p.read_bytes() for p in bundle.glob("*.csv")}))
    env = {"STOPHER2_SNAPSHOT_DIR": str(folder), "STOPHER2_MODEL_DIR": str(models)}
    with streamlit_server(env) as url:  # demo mode
        page = browser.new_page(viewport={"width": 1400, "height": 2400})
        page.goto(f"{url}/data")
        page.locator('input[type="file"]').first.set_input_files(str(upload))
        page.get_by_role("button", name="Check").click()
        page.get_by_text("demo mode (no sign-in configured) serves synthetic data only").wait_for(timeout=60_000)
        assert page.get_by_role("button", name="Import and make it the live snapshot").count() == 0
        page.close()
    users = [{"sub": "dm", "email": "dm@site.org", "name": "Data Manager"}]
    with identity_provider(users) as idp:
        port = free_port()
        secrets = _secrets(tmp_path, port, idp, 'admin = ["dm@site.org"]')
        with streamlit_server(env, port=port, args=("--secrets.files", str(secrets))) as url:
            page = browser.new_page(viewport={"width": 1400, "height": 2400})
            page.goto(url)
            page.get_by_role("button", name="Sign in").click()
            page.get_by_role("button", name="dm").first.click()
            page.get_by_text("Signed in as dm@site.org").wait_for(timeout=60_000)
            page.goto(f"{url}/data")
            page.locator('input[type="file"]').first.set_input_files(str(upload))
            page.get_by_role("button", name="Check").click()
            page.get_by_text("No problems found.").wait_for(timeout=60_000)
            assert (folder / "CURRENT").read_text().strip() == "synthetic-start.duckdb"  # checking writes nothing
            page.get_by_role("button", name="Import and make it the live snapshot").click()
            page.get_by_text("is live:").first.wait_for(timeout=90_000)
            live = (folder / "CURRENT").read_text().strip()
            assert live.startswith("csv-") and (folder / live).exists()
            assert (folder / live.replace(".duckdb", ".report.csv")).exists()
            page.close()


@pytest.mark.parametrize("width", [1024, 1440])
def test_data_manager_checks_a_real_redcap_export_with_its_mapping(browser, snapshot_file, model_dir, width):
    """The Data page: REDCap, the export's files and the mapping uploaded together, Check: no error and the same
    report as the importer gives (every field left out listed, identifiers named); in demo mode no import."""
    from data import importing

    fixture = REPO / "tests" / "fixtures" / "redcap" / "redcapr_longitudinal"
    env = {"STOPHER2_SNAPSHOT": str(snapshot_file), "STOPHER2_MODEL_DIR": str(model_dir)}
    with streamlit_server(env) as url:
        page = browser.new_page(viewport={"width": width, "height": 2400})
        page.goto(f"{url}/data")
        page.get_by_text("REDCap", exact=True).click()
        page.get_by_text("REDCap's own exports").wait_for(timeout=60_000)
        page.locator('input[type="file"]').first.set_input_files([str(f) for f in sorted(fixture.glob("*.csv"))])
        page.get_by_role("button", name="Check").click()
        page.get_by_text("No errors").first.wait_for(timeout=60_000)
        _, report = importing.check("redcap", fixture)  # the same folder read here: the page shows its report
        assert report.ok and any(f.column == "first_name" and "identifier" in f.message for f in report.warnings)
        assert f"No errors, {len(report.warnings)} warning(s)" in page.inner_text("body")
        assert page.get_by_role("button", name="Import and make it the live snapshot").count() == 0  # demo mode
        page.close()


def _secrets(tmp_path, port, idp, roles: str):
    secrets = tmp_path / f"secrets-{port}.toml"
    secrets.write_text(f"""
[auth]
redirect_uri = "http://127.0.0.1:{port}/oauth2callback"
cookie_secret = "{'k' * 40}"
client_id = "stop-her2"
client_secret = "stop-her2-secret"
server_metadata_url = "{idp}/.well-known/openid-configuration"
client_kwargs = {{ scope = "openid email profile groups" }}

[stopher2]
pseudonym_key = "{'p' * 48}"

[stopher2.roles]
{roles}
""")
    return secrets


@contextmanager
def identity_provider(users: list[dict]):
    """A local OpenID Connect provider (oidc-provider-mock) with these users."""
    import json

    port = free_port()
    cmd = [sys.executable, "-m", "oidc_provider_mock", "--port", str(port)]
    for user in users:
        cmd += ["--user-claims", json.dumps(user)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, proc, seconds=30)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def test_sign_in_through_the_identity_provider_shows_the_roles_pages_and_signs_out(browser, snapshot_file, model_dir,
                                                                                  tmp_path):
    users = [{"sub": "res", "email": "res@uni.org", "name": "A Researcher", "groups": ["research"]}]
    with identity_provider(users) as idp:
        port = free_port()
        secrets = _secrets(tmp_path, port, idp, 'clinician = ["doc@site.org"]\nresearcher = ["group:research", "res@uni.org"]')
        env = {"STOPHER2_SNAPSHOT": str(snapshot_file), "STOPHER2_MODEL_DIR": str(model_dir)}
        with streamlit_server(env, port=port, args=("--secrets.files", str(secrets))) as url:
            page = browser.new_page(viewport={"width": 1400, "height": 2000})
            page.goto(url)
            page.get_by_role("button", name="Sign in").click()
            page.get_by_role("button", name="res").first.click()  # the provider's user choice
            page.get_by_text("Signed in as res@uni.org").wait_for(timeout=60_000)
            page.get_by_role("link", name="Cohorts").wait_for(timeout=60_000)  # the researcher's menu
            assert page.get_by_role("link", name="Cohorts").count() == 1
            assert page.get_by_role("link", name="Model card").count() == 1
            assert page.get_by_role("link", name="Patient review").count() == 0
            page.get_by_role("link", name="Cohorts").click()  # pseudonyms keyed with the deployment's secret
            page.locator('[data-testid="stPlotlyChart"] .main-svg').first.wait_for(timeout=120_000)
            assert page.get_by_text("keyed with this deployment's secret").count() == 1
            page.goto(f"{url}/patient?patient=STH-0001")
            page.get_by_text("The Patient review page is not open to your role").wait_for(timeout=60_000)
            page.get_by_role("button", name="Sign out").click()
            page.get_by_role("button", name="End session").click()  # the provider confirms the sign-out
            page.get_by_role("button", name="Sign in").wait_for(timeout=60_000)
            assert page.get_by_text("Signed in as").count() == 0
            page.close()


def test_a_download_is_recorded_in_the_audit_trail(browser, snapshot_file, model_dir, tmp_path):
    from data import audit

    db = tmp_path / "audit.sqlite"
    env = {"STOPHER2_SNAPSHOT": str(snapshot_file), "STOPHER2_MODEL_DIR": str(model_dir), "STOPHER2_AUDIT_DB": str(db)}
    with streamlit_server(env) as url:
        page = browser.new_page(viewport={"width": 1400, "height": 2000})
        page.goto(f"{url}/audit")
        page.get_by_text("chain intact").first.wait_for(timeout=60_000)
        with page.expect_download() as download:
            page.get_by_role("button", name="Download (CSV)").click()
        assert download.value.suggested_filename == "stop-her2-audit.csv"
        deadline = time.time() + 20
        while time.time() < deadline and audit.read(path=db, action="export").empty:
            time.sleep(0.2)
        exported = audit.read(path=db, action="export")
        assert list(exported["who"]) == ["demo"] and exported["detail"].iloc[0] == "audit_log: stop-her2-audit.csv"
        page.close()


def test_markup_in_imported_text_is_shown_as_text_and_fetches_nothing(browser, tmp_path):
    """An imported regimen holding an image, a link and a colour directive draws none of them in Chromium."""
    from data import synth
    from data.build import build_snapshot

    tables = synth.generate(12, seed=3)
    hostile = "![x](http://127.0.0.1:9/leak.png) [Session expired: sign in again](http://evil.example) :red[**SAFE**]"
    tables["patients"]["first_line_regimen"] = tables["patients"]["first_line_regimen"].astype(object)
    tables["patients"].loc[0, "first_line_regimen"] = hostile
    path = tmp_path / "hostile.duckdb"
    build_snapshot(tables, source="synthetic", out=path, data_cutoff=synth.P["data_cutoff"])
    pid = tables["patients"].loc[0, "patient_id"]
    with streamlit_server({"STOPHER2_SNAPSHOT": str(path), "STOPHER2_MODEL_DIR": str(tmp_path / "m")}) as url:
        page = browser.new_page(viewport={"width": 1024, "height": 3000})
        requested = []
        page.on("request", lambda r: requested.append(r.url))
        page.goto(f"{url}/patient?patient={pid}")
        caption = page.get_by_text(f"{pid} · site").first
        caption.wait_for(timeout=90_000)
        text = caption.inner_text()
        assert "![x](" in text.replace("\u200b", "") and ":red[**SAFE**]" in text
        container = caption.locator("xpath=ancestor::*[@data-testid='stMarkdownContainer'][1]")
        assert container.locator("img").count() == 0 and container.locator("a").count() == 0
        assert not [u for u in requested if "127.0.0.1:9" in u or "evil.example" in u]
        page.close()


BROKEN_WORDS = """() => {
  const bad = [];
  for (const el of document.querySelectorAll('[data-testid="stColumn"] [data-testid="stMarkdownContainer"]')) {
    const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
    let node;
    while ((node = walker.nextNode())) {
      const re = /[^\\s\\-\\/·]+/g; let m;  // a break at a hyphen or a slash is a line break, not a broken word
      while ((m = re.exec(node.textContent))) {
        const r = document.createRange(); r.setStart(node, m.index); r.setEnd(node, m.index + m[0].length);
        const tops = new Set(Array.from(r.getClientRects()).filter(x => x.width > 0).map(x => Math.round(x.top)));
        if (tops.size > 1) bad.push(m[0]);
      }
    }
  }
  return bad;
}"""


HIDDEN_COLUMNS = """(el) => {
  if (el.dataset.testid === 'stDataFrame') {  // the grid renders (and lists for screen readers) visible columns only
    const grid = el.querySelector('[role="grid"], table');
    const shown = el.querySelectorAll('[role="columnheader"]').length;
    return grid ? Number(grid.getAttribute('aria-colcount')) - shown : -1;
  }
  const right = el.getBoundingClientRect().right;
  return [...el.querySelectorAll('th')].filter(th => th.getBoundingClientRect().right > right + 1).length;
}"""


@pytest.mark.parametrize("width", [1024, 1440])
def test_the_patient_page_reads_at_width_no_word_broken_no_column_hidden(browser, snapshot_file, model_dir,
                                                                          situations, width, tmp_path):
    pid = situations["stopped_stable"]
    with streamlit_server({"STOPHER2_SNAPSHOT": str(snapshot_file), "STOPHER2_MODEL_DIR": str(model_dir)}) as url:
        page = browser.new_page(viewport={"width": width, "height": 1400})
        page.goto(f"{url}/patient?patient={pid}")
        drawn_charts(page, 4)
        page.screenshot(path=str(tmp_path / f"patient-{width}.png"), full_page=True)
        assert page.locator('[data-testid="stColumn"]').count() >= 6  # the header's cards (and more)
        assert settled(page, lambda: page.evaluate(BROKEN_WORDS), lambda b: b == []) == []
        # the stacked charts as drawn: one x-range, and day 0 at the same pixel in each (same plot area);
        # charts and grids finish drawing after the page shows them, so each check waits (up to 30 s)
        axes = settled(page, lambda: page.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')]
            .filter(g => g._fullLayout && /^(Timeline|Estimated chance|ctDNA|Scans|Patient-reported)/
                    .test(((g._fullLayout.title || {}).text || '').replace(/<[^>]+>/g, '')))
            .map(g => [g._fullLayout.xaxis.range.map(v => Math.round(Number(v))), Math.round(g._fullLayout.xaxis._offset),
                       Math.round(g._fullLayout.xaxis._length)])"""),
                       lambda a: len(a) >= 5 and len({json.dumps(x) for x in a}) == 1)
        assert len(axes) >= 5 and len({json.dumps(a) for a in axes}) == 1, axes
        tables = page.locator('[data-testid="stDataFrame"]:visible, [data-testid="stTable"]:visible')
        # the digest, the estimate's inputs, the scans (a CI run read the page before the third was drawn)
        assert settled(page, lambda: tables.count(), lambda n: n >= 3) >= 3
        for i in range(tables.count()):
            tables.nth(i).scroll_into_view_if_needed()
            hidden = settled(page, lambda i=i: tables.nth(i).evaluate(HIDDEN_COLUMNS), lambda h: h == 0)
            assert hidden == 0, f"table {i} hides {hidden} column(s) at {width} px"
        page.close()


def settled(page, read, done, seconds: float = 30):
    """read() until done(value) or the time is up; the last value (the caller asserts on it)."""
    deadline = time.time() + seconds
    value = read()
    while not done(value) and time.time() < deadline:
        page.wait_for_timeout(500)
        value = read()
    return value


def test_the_visit_summary_downloads_as_one_printable_page_on_record(browser, snapshot_file, model_dir, situations,
                                                                     tmp_path):
    from data import audit

    pid = situations["progressed"]
    db = tmp_path / "audit.sqlite"
    env = {"STOPHER2_SNAPSHOT": str(snapshot_file), "STOPHER2_MODEL_DIR": str(model_dir), "STOPHER2_AUDIT_DB": str(db)}
    with streamlit_server(env) as url:
        page = browser.new_page(viewport={"width": 1440, "height": 2000})
        page.goto(f"{url}/patient?patient={pid}")
        drawn_charts(page, 4)
        with page.expect_download() as download:
            page.get_by_role("button", name="Printable visit summary (HTML)").click()
        html = Path(download.value.path()).read_text()
        assert f"Visit summary · {pid}" in html and "<script" not in html and html.count("<svg") == 2
        assert "Alerts, most urgent first" in html and "progression on " in html
        deadline = time.time() + 20
        while time.time() < deadline and audit.read(path=db, action="export").empty:
            time.sleep(0.2)
        exported = audit.read(path=db, action="export")
        assert exported["detail"].iloc[0] == f"visit_summary: visit-summary-{pid}.html"
        assert exported["patient_id"].iloc[0] == pid
        page.close()


OVERLAPPING_LABELS = """(title) => {
  const chart = [...document.querySelectorAll('.js-plotly-plot')].find(g => g._fullLayout &&
    ((g._fullLayout.title || {}).text || '').replace(/<[^>]+>/g, '') === title);
  if (!chart) return [0, []];
  const boxes = [...chart.querySelectorAll('.annotation-text, .textpoint text')]
    .map(e => ({t: e.textContent, r: e.getBoundingClientRect()})).filter(b => b.r.width > 0 && b.t.trim());
  const out = [];
  for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
    const a = boxes[i].r, b = boxes[j].r;
    if (a.left < b.right - 1 && b.left < a.right - 1 && a.top < b.bottom - 1 && b.top < a.bottom - 1)
      out.push(boxes[i].t + ' / ' + boxes[j].t);
  }
  return [boxes.length, out];
}"""


@pytest.mark.parametrize("width", [1024, 1440])
def test_timeline_labels_do_not_print_over_each_other(browser, snapshot_file, model_dir, snapshot, width):
    """The patient whose progression came weeks before the end of follow-up (and was not acted on)."""
    pid = snapshot.query("SELECT patient_id FROM patient_summary WHERE alert_kinds[1] = 'progression not acted on' "
                         "ORDER BY progressed_on DESC LIMIT 1").iloc[0, 0]
    with streamlit_server({"STOPHER2_SNAPSHOT": str(snapshot_file), "STOPHER2_MODEL_DIR": str(model_dir)}) as url:
        page = browser.new_page(viewport={"width": width, "height": 1600})
        page.goto(f"{url}/patient?patient={pid}")
        drawn_charts(page, 4)
        # the chart is drawn before all its labels are
        labels, overlaps = settled(page, lambda: page.evaluate(OVERLAPPING_LABELS, "Timeline"), lambda v: v[0] >= 3)
        assert labels >= 3 and overlaps == [], (labels, overlaps)
        page.close()


def test_behind_nginx_a_download_reaches_only_the_browser_that_clicked_and_each_fetch_is_on_record(
        browser, snapshot_file, model_dir, tmp_path):
    """Two replicas behind nginx (python -m deploy): the file Streamlit serves at /media is refused to another
    browser and to a request without cookies, and every fetch of it is an export_download record."""
    from data import audit
    from deploy.serve import Deployment

    db = tmp_path / "audit.sqlite"
    env = {"STOPHER2_SNAPSHOT": str(snapshot_file), "STOPHER2_MODEL_DIR": str(model_dir), "STOPHER2_AUDIT_DB": str(db)}
    with Deployment(2, env=env, run_dir=tmp_path / "run") as deployment:
        clicker = browser.new_context(viewport={"width": 1440, "height": 2000})
        page = clicker.new_page()
        page.goto(f"{deployment.url}/audit")
        page.get_by_text("chain intact").first.wait_for(timeout=90_000)
        with page.expect_download() as download:
            page.get_by_role("button", name="Download (CSV)").click()
        assert download.value.failure() is None and "who" in Path(download.value.path()).read_text()
        media = download.value.url
        assert "/media/" in media
        assert list(audit.read(path=db, action="export")["detail"]) == ["audit_log: stop-her2-audit.csv"]
        fetched = len(audit.read(path=db, action="export_download"))
        assert fetched >= 1  # Chromium fetches a download twice (nginx's log shows both): each is on record
        # the same URL: another browser, and no cookies at all, get nothing and leave no download record
        stranger = browser.new_context()
        assert stranger.request.get(media).status == 403
        assert urllib_status(media) == 403
        assert len(audit.read(path=db, action="export_download")) == fetched
        # the browser that clicked may fetch it again: on record again
        assert clicker.request.get(media).status == 200
        assert len(audit.read(path=db, action="export_download")) == fetched + 1
        stranger.close()
        clicker.close()


def urllib_status(url: str) -> int:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code
