"""`python -m benchmarks.load [--sessions 20] [--seconds 120]`: many sessions on one server, as one JSON object.

Starts `streamlit run app.py` (headless, on a free port, on the snapshot and models named by the usual
environment variables), then opens `--sessions` websocket sessions at once. Each speaks Streamlit's
own protocol, as the browser does: it asks for the patient page of a random patient
(`/patient?patient=…`), waits for the script-finished message, and asks again, for `--seconds`.
A page time is from the request to the server's "finished" message, so it is the server's render,
queueing behind the other sessions, and the transfer of every element; the browser's drawing is not
in it (the browser journeys cover that). With `--think`, sessions arrive spread over the first think
time and pause between pages (exponential, `--think` s on average). Counted as errors: an exception or st.error element in
the page, a run that does not finish successfully, a dropped connection, a page slower than
`--timeout`.

Not part of the test suite. Prints pages served, errors, page time percentiles, pages per second and
the server's peak memory.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import itertools
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import websockets
from streamlit.proto.Alert_pb2 import Alert
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

REPO = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_server(port: int, log: Path | None = None, script: Path = REPO / "app.py") -> subprocess.Popen:
    """A server whose output goes to a file (a pipe nobody reads would block it once full)."""
    log = log or Path(tempfile.gettempdir()) / f"stop-her2-load-{port}.log"
    with open(log, "w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(script), "--server.headless", "true",
             "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false"],
            cwd=REPO, stdout=out, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return server
        except OSError:
            time.sleep(0.5)
    server.kill()
    raise RuntimeError(f"the server did not start: {log.read_text()[-3000:]}")


def _peak_mib(pid: int) -> int:
    """Peak resident memory of a live process (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024
    return -1


def _problems(msg: ForwardMsg) -> list[str]:
    """What in one message counts as an error on the page."""
    if msg.WhichOneof("type") != "delta" or msg.delta.WhichOneof("type") != "new_element":
        return []
    element = msg.delta.new_element
    kind = element.WhichOneof("type")
    if kind == "exception":
        return [f"exception: {element.exception.type}: {element.exception.message[:200]}"]
    if kind == "alert" and element.alert.format == Alert.ERROR:
        return [f"error message: {element.alert.body[:200]}"]
    return []


async def _open_page(ws, patient_id: str, timeout: float) -> tuple[float, list[str]]:
    back = BackMsg()
    back.rerun_script.query_string = f"patient={patient_id}"
    back.rerun_script.page_name = "patient"
    start = time.perf_counter()
    await ws.send(back.SerializeToString())
    problems: list[str] = []
    async with asyncio.timeout(timeout):
        while True:
            msg = ForwardMsg()
            msg.ParseFromString(await ws.recv())
            problems += _problems(msg)
            if msg.WhichOneof("type") == "script_finished":
                if msg.script_finished == ForwardMsg.FINISHED_EARLY_FOR_RERUN:
                    continue  # st.rerun() (a deep link's first run goes through app.py): the page follows
                if msg.script_finished not in (ForwardMsg.FINISHED_SUCCESSFULLY,
                                               ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY):
                    problems.append(f"script finished with status {msg.script_finished}")
                return time.perf_counter() - start, problems


def _cookie_value(headers, name: str) -> str | None:
    """The value a response's Set-Cookie headers give `name` (the last one wins, as in a browser)."""
    value = None
    for header in headers.get_all("Set-Cookie") or []:
        key, _, rest = header.partition("=")
        if key.strip() == name:
            value = rest.split(";", 1)[0]
    return value


def _served_by(base: str, headers: dict, timeout: float) -> str | None:
    req = urllib.request.Request(f"{base}/_stcore/health", headers=headers)
    with urllib.request.urlopen(req, timeout=timeout) as r:
        from deploy.serve import ROUTE_COOKIE

        return _cookie_value(r.headers, ROUTE_COOKIE)


async def _session(base: str, ids: list[str], until: float, timeout: float, seed: int, out: dict,
                   think: float = 0.0, proxied: bool = False) -> None:
    """One person's tab: pages back to back (or with reading pauses). Behind nginx (`proxied`) it keeps the
    cookies nginx sets, as a browser does, reconnects when its connection drops (Streamlit's frontend
    does) and notes which replica served each connection and each plain request."""
    from deploy.serve import ROUTE_COOKIE

    from data.downloads import BROWSER_COOKIE

    rng = random.Random(seed)
    if think:  # users arrive over the first think time, not all in the same millisecond
        await asyncio.sleep(rng.uniform(0, think))
    cookies: dict[str, str] = {}
    if proxied:  # the first page load: nginx gives the browser its cookies
        def first_load():
            with urllib.request.urlopen(f"{base}/", timeout=timeout) as r:
                return {name: v for name in (BROWSER_COOKIE, ROUTE_COOKIE) if (v := _cookie_value(r.headers, name))}
        cookies = await asyncio.to_thread(first_load)
    url = base.replace("http://", "ws://") + "/_stcore/stream"
    track = out["routes"].setdefault(seed, [])
    for connection in itertools.count():
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())} if proxied else None
        last_patient = None
        try:
            async with websockets.connect(url, subprotocols=["streamlit"], max_size=None,
                                          additional_headers=headers) as ws:
                if proxied:
                    cookies[ROUTE_COOKIE] = _cookie_value(ws.response.headers, ROUTE_COOKIE) or cookies.get(ROUTE_COOKIE)
                    track.append(("websocket", connection, cookies.get(ROUTE_COOKIE)))
                for nth in itertools.count():  # at least one page, then until time is up
                    patient_id = rng.choice(ids)
                    try:
                        seconds, problems = await _open_page(ws, patient_id, timeout)
                    except TimeoutError:
                        out["errors"].append(f"{patient_id}: no answer within {timeout:g} s")
                        return
                    out["pages"].append({"session": seed, "connection": connection, "nth": nth,
                                         "at_s": round(time.monotonic() - out["started"] - seconds, 2),
                                         "seconds": round(seconds, 3), "patient_id": patient_id,
                                         "new_patient": patient_id != last_patient})
                    last_patient = patient_id
                    out["errors"].extend(f"{patient_id}: {p}" for p in problems)
                    if proxied:  # a plain request with the browser's cookies must reach the same replica
                        jar = {"Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())}
                        cookies[ROUTE_COOKIE] = await asyncio.to_thread(_served_by, base, jar, timeout)
                        track.append(("request", connection, cookies[ROUTE_COOKIE]))
                    if time.monotonic() >= until:
                        return
                    if think:  # reading the page before opening the next: exponential pauses, `think` s on average
                        pause = rng.expovariate(1 / think)
                        if time.monotonic() + pause >= until:
                            return
                        await asyncio.sleep(pause)
        except (OSError, websockets.WebSocketException) as exc:
            if not proxied or time.monotonic() >= until:
                out["errors"].append(f"connection: {exc!r}")
                return
            out["reconnects"].append({"session": seed, "at_s": round(time.monotonic() - out["started"], 2),
                                      "after": repr(exc)[:120]})
            await asyncio.sleep(1.0)  # Streamlit's frontend waits about a second before it reconnects


async def _run(bases: list[str], sessions: int, seconds: float, timeout: float, ids: list[str],
               think: float = 0.0, proxied: bool = False, kill=None) -> dict:
    """`sessions` sessions spread over the servers (or all through the one proxy), each staying on its own."""
    out: dict = {"errors": [], "pages": [], "reconnects": [], "routes": {}, "started": time.monotonic()}
    until = time.monotonic() + seconds
    tasks = [_session(bases[seed % len(bases)], ids, until, timeout, seed, out, think, proxied)
             for seed in range(sessions)]
    if kill:
        tasks.append(kill(out))
    await asyncio.gather(*tasks)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.load", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=120)
    parser.add_argument("--timeout", type=float, default=60, help="a page slower than this is an error")
    parser.add_argument("--think", type=float, default=0.0,
                        help="mean pause in seconds between one page and the next (default 0: back to back)")
    parser.add_argument("--replicas", type=int, default=1,
                        help="app servers on this machine, sessions spread over them and staying on theirs")
    parser.add_argument("--nginx", action="store_true",
                        help="serve the replicas through nginx as deployed (python -m deploy): sessions keep "
                             "nginx's cookies; reports which replica served each session")
    parser.add_argument("--kill-replica-after", type=float, default=None, metavar="S",
                        help="with --nginx: kill the first replica S seconds in (sessions must reconnect to another)")
    args = parser.parse_args(argv)
    if args.kill_replica_after is not None and not args.nginx:
        parser.error("--kill-replica-after needs --nginx")

    from data import audit
    from data.store import Snapshot, snapshot_path

    snap = Snapshot(snapshot_path())
    ids = snap.query("SELECT patient_id FROM patients")["patient_id"].tolist()
    n_patients = len(ids)
    snap.close()
    audit_before = len(audit.read(action="view_patient"))
    killed: list[dict] = []
    if args.nginx:
        from deploy.serve import Deployment

        deployment = Deployment(args.replicas).start()
        bases, pids = [deployment.url], lambda: [p.pid for p in deployment.replicas.values()]

        async def kill(out):
            if args.kill_replica_after is None:
                return
            await asyncio.sleep(args.kill_replica_after)
            port = await asyncio.to_thread(deployment.kill, 0)
            killed.append({"port": port, "at_s": round(time.monotonic() - out["started"], 2)})

        stop = deployment.stop
    else:
        ports = [_free_port() for _ in range(args.replicas)]
        servers = [_start_server(port) for port in ports]
        bases, pids, kill = [f"http://127.0.0.1:{port}" for port in ports], lambda: [s.pid for s in servers], None

        def stop():
            for server in servers:
                server.terminate()
                server.wait(timeout=30)
    try:
        # one page per server first: a server's cold start (model and caches) is not what this measures
        warm = asyncio.run(_run(bases, args.replicas, 0, args.timeout * 5, ids[:1], proxied=args.nginx))
        result = asyncio.run(_run(bases, args.sessions, args.seconds, args.timeout, ids, args.think,
                                  proxied=args.nginx, kill=kill))
        peaks = [_peak_mib(pid) for pid in pids()]
        health_events = list(deployment.events) if args.nginx else []
    finally:
        stop()
    times = sorted(p["seconds"] for p in result["pages"])
    q = statistics.quantiles(times, n=100, method="inclusive") if len(times) >= 2 else [float("nan")] * 99
    # after the arrivals: every session's first page (0.6 s, a new session's setup) lands in the first think
    # time, which overloads one process while they arrive
    settled = sorted(p["seconds"] for p in result["pages"] if p["at_s"] >= 0.2 * args.seconds)
    q2 = statistics.quantiles(settled, n=100, method="inclusive") if len(settled) >= 2 else [float("nan")] * 99
    # every patient opened in a connection is one view_patient record (ui/components.record_view)
    opened = sum(p["new_patient"] for p in warm["pages"] + result["pages"])
    recorded = len(audit.read(action="view_patient")) - audit_before
    chain_ok, chain_message = audit.verify()
    report = {
        "patients_in_snapshot": n_patients, "sessions": args.sessions, "seconds": args.seconds,
        "think_s": args.think, "replicas": args.replicas, "through_nginx": args.nginx,
        "machine": {"cpus": os.cpu_count()},
        "warm_up_page_s": max((p["seconds"] for p in warm["pages"]), default=None),
        "pages_served": len(times), "pages_per_second": round(len(times) / args.seconds, 2),
        "errors": len(result["errors"]) + len(warm["errors"]), "first_errors": (warm["errors"] + result["errors"])[:10],
        "page_s": {"median": round(statistics.median(times), 3) if times else None, "p95": round(q[94], 3),
                   "p99": round(q[98], 3), "max": round(times[-1], 3) if times else None},
        "page_s_after_first_fifth": {"pages": len(settled), "median": round(statistics.median(settled), 3)
                                     if settled else None, "p95": round(q2[94], 3)},
        "server_peak_mib": peaks,
        "audit": {"patients_opened": opened, "view_records_written": recorded, "lost": max(opened - recorded, 0),
                  "chain_intact": chain_ok, "verify": chain_message[:200]},
        "slowest_pages": sorted(result["pages"], key=lambda p: -p["seconds"])[:8],
    }
    if args.nginx:
        report["stickiness"] = _stickiness(result, killed)
        report["routes"] = {seed: " ".join(f"{kind[0]}{c}:{r}" for kind, c, r in track)
                            for seed, track in result["routes"].items()}
        report["killed"], report["reconnects"], report["health_check"] = killed, len(result["reconnects"]), health_events
    print(json.dumps(report, indent=2))
    bad = (result["errors"] or warm["errors"] or not times or recorded < opened or not chain_ok
           or (args.nginx and report["stickiness"]["moved_without_a_failure"]))
    return 1 if bad else 0


def _stickiness(result: dict, killed: list[dict]) -> dict:
    """Did every session stay on its replica (its websocket and its plain requests alike), and did the
    sessions of a killed replica reconnect, to another replica or to the killed one's restarted process?"""
    dead = {str(k["port"]) for k in killed}
    count = collections.Counter()
    for track in result["routes"].values():
        if not track:
            continue
        by_connection: dict[int, list] = {}
        for _, connection, replica in track:
            by_connection.setdefault(connection, []).append(replica)
        first = by_connection[min(by_connection)][0]
        count["on_the_killed_replica"] += first in dead
        later = [r[0] for c, r in sorted(by_connection.items()) if c > min(by_connection)]
        if first in dead:  # its moves have a cause (a plain request between pages may move before the websocket)
            if later:
                count["reconnected_to_another_replica" if later[0] != first else
                      "reconnected_to_the_restarted_replica"] += 1
        else:  # a session whose replica never failed stays on it, connection after connection
            count["moved_without_a_failure"] += any(r != first for _, _, r in track)
    return {"sessions": len(result["routes"]), "on_the_killed_replica": count["on_the_killed_replica"],
            "reconnected_to_another_replica": count["reconnected_to_another_replica"],
            "reconnected_to_the_restarted_replica": count["reconnected_to_the_restarted_replica"],
            "moved_without_a_failure": count["moved_without_a_failure"],
            "per_replica": dict(sorted(collections.Counter(t[0][2] for t in result["routes"].values() if t).items()))}


if __name__ == "__main__":
    raise SystemExit(main())
