"""`python -m deploy [--replicas 2] [--port 8080]`: nginx in front of N app replicas on this machine.

What it starts, and why each piece:

* N `streamlit run app.py` replicas on 127.0.0.1 (free ports), all reading the same snapshot, model and
  audit folders from the usual environment variables, and sharing one cookie secret
  ($STOPHER2_COOKIE_SECRET, else a key made once beside the audit trail) so that a browser moved to
  another replica keeps its sign-in;
* the download gate (deploy/gate.py) on 127.0.0.1, which nginx asks before serving an export's file;
* nginx (Debian's package) from deploy/nginx.conf.template: sticky sessions by a cookie, the websocket
  upgrade, passive failure detection;
* the active health check: every `HEALTH_EVERY_S` each replica's `/_stcore/health`; a replica whose
  process exited, or that misses `UNANSWERED_CHECKS` checks in a row, is taken out of nginx's routing (a
  reload: no connection to the others drops), started again if it exited, and put back once healthy.
  The sessions it held reconnect (Streamlit's own reconnect) and land on a healthy replica.

Replicas bind to 127.0.0.1 only: nothing reaches a replica, or its `/media` URLs, except through nginx.
"""
from __future__ import annotations

import argparse
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from data import audit, downloads
from data.keyfile import local_key
from deploy import gate

REPO = Path(__file__).resolve().parent.parent
TEMPLATE = Path(__file__).resolve().parent / "nginx.conf.template"
NGINX = os.environ.get("NGINX", shutil.which("nginx") or "/usr/sbin/nginx")
HEALTH_EVERY_S = 2.0
#: Health checks in a row a live replica may miss (at HEALTH_TIMEOUT_S each) before it is taken out.
UNANSWERED_CHECKS, HEALTH_TIMEOUT_S = 3, 2.0
#: Streamlit's own upload limit (server.maxUploadSize, MB): nginx must not refuse what the app accepts.
MAX_UPLOAD_MB = 200
#: The cookie nginx pins a browser to its replica with (the replica's port).
ROUTE_COOKIE = "stopher2_route"
_LOG = logging.getLogger("stopher2.deploy")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def render(listen: str, ports: list[int], gate_port: int, run: Path, down: set[int] = frozenset(),
           gate_secret: str = "") -> str:
    """nginx.conf for these replicas. A port in `down` takes no new browsers and loses its pinned ones."""
    up = [p for p in ports if p not in down]
    values = {
        "run": str(run), "listen": listen, "gate_port": str(gate_port), "max_upload_mb": str(MAX_UPLOAD_MB),
        "cookie": downloads.BROWSER_COOKIE, "route_cookie": ROUTE_COOKIE,
        "gate_header": downloads.GATE_HEADER, "gate_secret": gate_secret,
        "routes": "\n".join(f'        "{p}" replica_{p};' for p in up),
        "servers": "\n".join(f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=5s{' down' if p in down else ''};"
                             for p in ports),
        "single_upstreams": "\n".join(f"    upstream replica_{p} {{ server 127.0.0.1:{p}; }}" for p in up),
    }
    return re.sub(r"\{(" + "|".join(values) + r")\}", lambda m: values[m[1]], TEMPLATE.read_text())


def cookie_secret() -> str:
    configured = os.environ.get("STOPHER2_COOKIE_SECRET")
    if configured:
        return configured
    return local_key(audit.audit_path().with_name("cookie_secret.key")).decode()


def healthy(port: int, timeout: float = HEALTH_TIMEOUT_S) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=timeout) as r:
            return r.status == 200
    except OSError:
        return False


class Deployment:
    """The running set: `with Deployment(2) as d: d.url ...`. `kill(i)` ends replica i as a crash would."""

    def __init__(self, replicas: int = 2, port: int | None = None, address: str = "127.0.0.1",
                 run_dir: Path | None = None, env: dict | None = None):
        self.port = port or free_port()
        self.listen = f"{address}:{self.port}"
        self.ports = [free_port() for _ in range(replicas)]
        self.run = Path(run_dir or tempfile.mkdtemp(prefix="stopher2-deploy-"))
        self.env = {**os.environ, **(env or {})}
        self.replicas: dict[int, subprocess.Popen] = {}
        self.down: set[int] = set()
        self._unanswered: dict[int, int] = {}
        self.events: list[str] = []  # what the health check did, with times: for the operator and the load test
        self._stop = threading.Event()
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.listen.startswith("0.0.0.0") else self.listen.rsplit(":", 1)[0]
        return f"http://{host}:{self.port}"

    # ------------------------------------------------------------------ the pieces
    def _start_replica(self, port: int) -> subprocess.Popen:
        log = open(self.run / f"replica-{port}.log", "a")  # noqa: SIM115 - the process keeps it
        env = {**self.env, "STREAMLIT_SERVER_COOKIE_SECRET": self.secret, downloads.GATE_SECRET_ENV: self.gate_secret,
               "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
        return subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(REPO / "app.py"), "--server.headless", "true",
             "--server.address", "127.0.0.1", "--server.port", str(port)],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def _write_conf(self) -> Path:
        conf = self.run / "nginx.conf"
        tmp = conf.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds the gate secret
        with os.fdopen(fd, "w") as f:
            f.write(render(self.listen, self.ports, self.gate_port, self.run, self.down, self.gate_secret))
        os.replace(tmp, conf)
        return conf

    def _nginx(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([NGINX, "-p", str(self.run), "-c", str(self.run / "nginx.conf"),
                               "-e", str(self.run / "error.log"), *args], capture_output=True, text=True)

    def _reload(self) -> None:
        self._write_conf()
        done = self._nginx("-s", "reload")
        if done.returncode:
            _LOG.error("nginx reload failed: %s", done.stderr.strip())

    def start(self, wait_s: float = 180) -> Deployment:
        if not Path(NGINX).exists():
            raise RuntimeError(f"nginx not found at {NGINX}: `apt-get install -y nginx` (Debian's package)")
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.run / sub).mkdir(parents=True, exist_ok=True)
        self.secret = cookie_secret()
        self.gate_secret = secrets.token_hex(32)  # new at every start: only this nginx and these replicas know it
        self.gate_port = free_port()
        self.gate = gate.serve(self.gate_port)
        for port in self.ports:
            self.replicas[port] = self._start_replica(port)
        deadline = time.monotonic() + wait_s
        while not all(healthy(p) for p in self.ports):
            dead = [p for p, proc in self.replicas.items() if proc.poll() is not None]
            if dead or time.monotonic() > deadline:
                self.stop()
                log = (self.run / f"replica-{(dead or self.ports)[0]}.log").read_text()[-3000:]
                raise RuntimeError(f"a replica did not start: {log}")
            time.sleep(0.3)
        self._write_conf()
        check = self._nginx("-t")
        if check.returncode:
            self.stop()
            raise RuntimeError(f"nginx refused its configuration: {check.stderr.strip()}")
        self.nginx = subprocess.Popen([NGINX, "-p", str(self.run), "-c", str(self.run / "nginx.conf"),
                                       "-e", str(self.run / "error.log"), "-g", "daemon off;"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        while not _listening(self.port):
            if self.nginx.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"nginx did not start: {(self.run / 'error.log').read_text()[-2000:]}")
            time.sleep(0.1)
        self._checker = threading.Thread(target=self._health_loop, name="health-check", daemon=True)
        self._checker.start()
        return self

    # ------------------------------------------------------------------ the health check
    def _health_loop(self) -> None:
        while not self._stop.wait(HEALTH_EVERY_S):
            self.check_once()

    def check_once(self) -> None:
        """One round of the health check. A replica whose process has exited is taken out at once and
        started again; one that is alive but does not answer is taken out after `UNANSWERED_CHECKS` checks
        in a row (a replica busy with a burst of pages answers late, and taking it out would move its
        browsers onto the other replicas for nothing)."""
        with self._lock:
            for port in self.ports:
                proc = self.replicas[port]
                exited = proc.poll() is not None
                ok = not exited and healthy(port)
                self._unanswered[port] = 0 if ok else self._unanswered.get(port, 0) + 1
                if port not in self.down and (exited or self._unanswered[port] >= UNANSWERED_CHECKS):
                    self.down.add(port)
                    self._note(f"replica {port} {'exited' if exited else 'stopped answering its health check'}: "
                               "taken out of service")
                    self._reload()
                if exited:
                    self._note(f"replica {port} had exited (code {proc.returncode}): started again")
                    self.replicas[port] = self._start_replica(port)
                if ok and port in self.down:
                    self.down.discard(port)
                    self._note(f"replica {port} healthy again: back in service")
                    self._reload()

    def _note(self, what: str) -> None:
        self.events.append(f"{time.strftime('%H:%M:%S')} {what}")
        _LOG.warning(what)

    def kill(self, index: int) -> int:
        """End replica `index` at once (SIGKILL), as a crash or a lost host would; returns its port."""
        port = self.ports[index]
        os.killpg(self.replicas[port].pid, signal.SIGKILL)
        self.replicas[port].wait()
        return port

    # ------------------------------------------------------------------ stop
    def stop(self) -> None:
        self._stop.set()
        nginx = getattr(self, "nginx", None)
        if nginx and nginx.poll() is None:
            nginx.terminate()
            _wait(nginx)
        for proc in self.replicas.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                _wait(proc)
        server = getattr(self, "gate", None)
        if server:
            server.shutdown()
            server.server_close()

    def __enter__(self) -> Deployment:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def _wait(proc: subprocess.Popen) -> None:
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--address", default="0.0.0.0", help="where nginx listens (replicas: 127.0.0.1 only)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    deployment = Deployment(args.replicas, args.port, args.address)
    print(f"starting {args.replicas} replicas and nginx (logs in {deployment.run}) ...", flush=True)
    deployment.start()
    print(f"serving at {deployment.url} (replicas on ports {deployment.ports}); Ctrl-C stops", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        deployment.stop()
    return 0
