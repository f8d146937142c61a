"""Several replicas behind a real nginx (Debian's package), as `python -m deploy` starts them: sticky
sessions, the websocket, a replica killed mid-run, and downloads only for the browser that clicked."""
import asyncio
import subprocess
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from data import audit, downloads
from deploy import gate
from deploy.serve import NGINX, ROUTE_COOKIE, Deployment, render

MEDIA = "/media/" + "a1" * 28 + ".csv"


def _nginx_accepts(conf: str, tmp_path) -> subprocess.CompletedProcess:
    (tmp_path / "nginx.conf").write_text(conf)
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp_path / sub).mkdir(exist_ok=True)
    return subprocess.run([NGINX, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"),
                           "-e", str(tmp_path / "error.log")], capture_output=True, text=True)


def test_nginx_is_installed():
    assert Path(NGINX).exists(), f"no nginx at {NGINX}: apt-get install -y nginx (the README's test command does)"


def test_the_configuration_is_valid_nginx_and_a_replica_marked_down_takes_no_pinned_browsers(tmp_path):
    up = render("127.0.0.1:18080", [18601, 18602], 18700, tmp_path)
    assert _nginx_accepts(up, tmp_path).returncode == 0, _nginx_accepts(up, tmp_path).stderr
    assert '"18601" replica_18601;' in up and '"18602" replica_18602;' in up
    down = render("127.0.0.1:18080", [18601, 18602], 18700, tmp_path, down={18602})
    assert _nginx_accepts(down, tmp_path).returncode == 0
    assert '"18602" replica_18602;' not in down and "server 127.0.0.1:18602 max_fails=1 fail_timeout=5s down;" in down
    assert "auth_request /_download_gate;" in down  # /media is never served without the gate


@pytest.mark.parametrize("path, cookie", [
    (MEDIA, ""),                                           # no cookie at all
    (MEDIA, "stopher2_browser=" + "0" * 32),               # another browser
    ("/media/../_stcore/health", None),                    # not a media path
    ("/media/" + "a1" * 28 + ".csv?x=1", None),            # a query string smuggled in
    (MEDIA, "stopher2_browser=\"; bad"),                   # a cookie header that does not parse
    (MEDIA, "stopher2_browser=" + "F" * 32),               # not the shape nginx gives
])
def test_the_gate_refuses_a_download_not_granted_to_this_browser(path, cookie, audit_db, tmp_path, monkeypatch):
    monkeypatch.setenv("STOPHER2_DOWNLOADS_DB", str(tmp_path / "downloads.sqlite"))
    owner = "f" * 32
    downloads.grant("a1" * 28, owner, "dr.a@example.org", "clinician", "visit_summary: x.html", patient_id="STH-0001")
    assert gate.decide(path, f"stopher2_browser={owner}" if cookie is None else cookie) == 403
    assert audit.read(action="export_download").empty


def test_the_gate_lets_the_owner_through_once_on_record_and_not_after_the_grant_expires(audit_db, tmp_path,
                                                                                        monkeypatch):
    monkeypatch.setenv("STOPHER2_DOWNLOADS_DB", str(tmp_path / "downloads.sqlite"))
    owner = "e" * 32
    downloads.grant("a1" * 28, owner, "dr.a@example.org", "clinician", "visit_summary: x.html", patient_id="STH-0001")
    assert gate.decide(MEDIA, f"other=1; stopher2_browser={owner}") == 200
    rec = audit.read(action="export_download")
    assert list(rec["who"]) == ["dr.a@example.org"] and list(rec["patient_id"]) == ["STH-0001"]
    assert rec["detail"].iloc[0] == "visit_summary: x.html"
    later = datetime.now(UTC) + timedelta(minutes=downloads.GRANT_MINUTES + 1)
    assert downloads.granted(MEDIA, owner, now=later) is None


def test_the_gate_fails_closed_when_the_download_cannot_be_recorded(audit_db, tmp_path, monkeypatch):
    monkeypatch.setenv("STOPHER2_DOWNLOADS_DB", str(tmp_path / "downloads.sqlite"))
    owner = "d" * 32
    downloads.grant("a1" * 28, owner, "dr.a@example.org", "clinician", "visit_summary: x.html")

    def refuse(*a, **k):
        raise audit.AuditUnavailable("disk full")

    monkeypatch.setattr(audit, "record", refuse)
    assert gate.decide(MEDIA, f"stopher2_browser={owner}") == 503
    monkeypatch.setenv("STOPHER2_DOWNLOADS_DB", str(tmp_path))  # a folder: the grants cannot be read
    assert gate.decide(MEDIA, f"stopher2_browser={owner}") == 503


def test_the_file_id_is_the_one_streamlit_serves_the_bytes_at():
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    from streamlit.runtime.media_file_storage import MediaFileKind

    payload = b"patient_id,estimate\nSTH-0001,0.8\n"
    storage = MemoryMediaFileStorage("/media")
    file_id = storage.load_and_get_id(payload, "text/csv", MediaFileKind.DOWNLOADABLE, "x.csv")
    assert downloads.streamlit_file_id(payload, "text/csv", "x.csv") == file_id
    assert downloads.MEDIA_PATH.match(storage.get_url(file_id))


@pytest.fixture(scope="module")
def deployment(snapshot_file, model_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("deploy")
    env = {"STOPHER2_SNAPSHOT": str(snapshot_file), "STOPHER2_MODEL_DIR": str(model_dir),
           "STOPHER2_AUDIT_DB": str(folder / "audit.sqlite")}
    with Deployment(2, env=env, run_dir=folder / "run") as d:
        d.audit_db = folder / "audit.sqlite"
        yield d


def _get(url: str, cookie: str = "") -> tuple[int, dict]:
    req = urllib.request.Request(url, headers={"Cookie": cookie} if cookie else {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, {c.split("=", 1)[0]: c.split("=", 1)[1].split(";")[0] for c in r.headers.get_all("Set-Cookie")}
    except urllib.error.HTTPError as exc:
        return exc.code, {}


def test_a_browser_is_pinned_to_one_replica_and_a_download_url_without_its_cookie_is_refused(deployment):
    status, cookies = _get(deployment.url + "/")
    assert status == 200 and set(cookies) >= {downloads.BROWSER_COOKIE, ROUTE_COOKIE}
    assert cookies[ROUTE_COOKIE] in {str(p) for p in deployment.ports}
    jar = "; ".join(f"{k}={v}" for k, v in cookies.items())
    for _ in range(8):
        assert _get(deployment.url + "/_stcore/health", jar)[1][ROUTE_COOKIE] == cookies[ROUTE_COOKIE]
    # straight at /media: refused by nginx for anyone without a grant, the page's own cookies included
    assert _get(deployment.url + MEDIA)[0] == 403
    assert _get(deployment.url + MEDIA, jar)[0] == 403


def test_sessions_stay_on_their_replica_and_move_with_a_reconnect_when_it_is_killed(deployment, snapshot):
    """The load test's own sessions (benchmarks/load.py): 4 tabs for 30 s, the first tab's replica killed after 10 s."""
    from benchmarks import load

    ids = snapshot.query("SELECT patient_id FROM patients ORDER BY 1 LIMIT 12")["patient_id"].tolist()
    before = len(audit.read(path=deployment.audit_db, action="view_patient"))
    killed = []

    async def kill(out):  # the replica the first session is on: the kill always has sessions to move
        await asyncio.sleep(10)
        port = int(next(track for track in out["routes"].values() if track)[0][2])
        killed.append({"port": await asyncio.to_thread(deployment.kill, deployment.ports.index(port))})

    result = asyncio.run(load._run([deployment.url], 4, 30, 90, ids, think=1.5, proxied=True, kill=kill))
    assert result["errors"] == [] and len(result["pages"]) >= 8
    sticky = load._stickiness(result, killed)
    assert sticky["moved_without_a_failure"] == 0, result["routes"]
    # each of the killed replica's sessions came back, on the other replica or on the restarted process
    assert sticky["on_the_killed_replica"] >= 1
    assert (sticky["reconnected_to_another_replica"] + sticky["reconnected_to_the_restarted_replica"]
            == sticky["on_the_killed_replica"]), result["routes"]
    assert len(result["reconnects"]) >= sticky["on_the_killed_replica"]
    opened = sum(p["new_patient"] for p in result["pages"])
    assert len(audit.read(path=deployment.audit_db, action="view_patient")) - before >= opened
    assert audit.verify(deployment.audit_db)[0]
    assert any("exited: taken out of service" in e for e in deployment.events), deployment.events


def test_replicas_sharing_postgresql_keep_one_audit_trail(snapshot_file, model_dir, snapshot, postgres_url,
                                                          tmp_path):
    """Two replicas (as on two hosts) write one audit trail in PostgreSQL: every patient opened on either is
    on record once, in one intact chain, and nothing is written to a local audit file."""
    from benchmarks import load

    env = {"STOPHER2_SNAPSHOT": str(snapshot_file), "STOPHER2_MODEL_DIR": str(model_dir),
           "STOPHER2_AUDIT_DB": str(tmp_path / "audit.sqlite")}  # the URL and key come from the fixture
    ids = snapshot.query("SELECT patient_id FROM patients ORDER BY 1 LIMIT 12")["patient_id"].tolist()
    with Deployment(2, env=env, run_dir=tmp_path / "run") as d:
        result = asyncio.run(load._run([d.url], 4, 15, 90, ids, think=1.0, proxied=True))
    assert result["errors"] == [] and len(result["pages"]) >= 4
    replicas = {track[0][2] for track in result["routes"].values() if track}
    assert len(replicas) == 2, result["routes"]  # least_conn spread the 4 sessions over both
    opened = sum(p["new_patient"] for p in result["pages"])
    assert len(audit.read(action="view_patient")) >= opened
    assert audit.verify()[0]
    assert not (tmp_path / "audit.sqlite").exists()


def test_nginx_tells_the_replica_the_request_came_through_it_and_a_client_cannot_forge_that(tmp_path):
    """Every request nginx passes on carries the deployment's gate secret (the app offers signed-in downloads
    only then); a client's own X-Stopher2-Gate header is replaced, on the websocket path too."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from deploy.serve import free_port

    seen = []

    class Echo(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            seen.append((self.path, self.headers.get(downloads.GATE_HEADER)))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    backend = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    port = free_port()
    conf = render(f"127.0.0.1:{port}", [backend.server_address[1]], free_port(), tmp_path, gate_secret="g" * 64)
    assert _nginx_accepts(conf, tmp_path).returncode == 0
    nginx = subprocess.Popen([NGINX, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-e",
                              str(tmp_path / "error.log"), "-g", "daemon off;"])
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, (tmp_path / "error.log").read_text()
        for path in ("/", "/_stcore/stream", "/patient?patient=STH-0001"):
            req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={downloads.GATE_HEADER: "forged"})
            urllib.request.urlopen(req, timeout=5).close()
    finally:
        nginx.terminate()
        nginx.wait(10)
        backend.shutdown()
    assert seen and all(header == "g" * 64 for _, header in seen), seen
    assert {p for p, _ in seen} >= {"/", "/_stcore/stream", "/patient?patient=STH-0001"}
