"""`python -m benchmarks [--sizes 82,100000] [--repeats 5]`: speed and memory figures as one JSON object.

Not part of the test suite (targets live here, never in timed tests). For each cohort size, in
separate processes so that each peak memory is its own:

* build: `python -m data build` of a synthetic snapshot (seconds, peak RSS);
* imports: that snapshot exported as a CSV bundle and as Parquet, each imported again with
  `python -m data build --source csv|parquet` (seconds, peak RSS; with --imports);
* train: `python -m model train` on it (seconds, peak RSS; bootstrap refits as stated);
* pages: server-side render time with streamlit.testing AppTest, warm caches, median of `repeats`
  runs, for an empty Streamlit page, the patient page reopened (and its ratio to the empty page),
  the patient page for a patient not opened before (picked in the picker), the tumour board (every
  candidate screened and scored) and the cohorts page; peak RSS of that process.

`--profile PAGE` profiles one page's warm runs with cProfile instead (see `_profiled`).
`python -m benchmarks.load` measures many sessions on a real server.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EMPTY_PAGE = "import streamlit as st\nst.write('')\n"


def _child(args: list[str], env: dict) -> dict:
    """Run a child process; its wall time and peak resident memory (it runs alone, so RUSAGE_CHILDREN is its own)."""
    code = ("import resource, subprocess, sys, time, json\n"
            "t = time.perf_counter()\n"
            f"r = subprocess.run({args!r}, capture_output=True, text=True)\n"
            "s = time.perf_counter() - t\n"
            "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
            "print(json.dumps({'seconds': round(s, 2), 'peak_mib': round(peak / 1024), 'rc': r.returncode,"
            " 'stdout': r.stdout[-4000:], 'stderr': r.stderr[-2000:]}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if result["rc"] != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {result['stderr']}")
    return result


_PROFILE = None


def _profiled(path: str):
    """Profile every script run (it happens on AppTest's script thread, which cProfile in the main
    thread cannot see) by wrapping Streamlit's script execution; the stats go to `path` at exit."""
    import atexit
    import cProfile

    from streamlit.runtime.scriptrunner import script_runner

    global _PROFILE
    profile = _PROFILE = cProfile.Profile()
    original = script_runner.exec_func_with_error_handling

    def run(func, ctx):
        profile.enable()
        try:
            return original(func, ctx)
        finally:
            profile.disable()

    script_runner.exec_func_with_error_handling = run
    atexit.register(profile.dump_stats, path)


def _pages(repeats: int, only: str | None = None) -> dict:
    """In this process: AppTest render times (warm) and this process's peak memory."""
    from streamlit.testing.v1 import AppTest

    def timed(make, prepare=None) -> list[float]:
        at = make()
        if prepare:
            prepare(at)
        at.run()  # cold: fills the caches
        if at.exception:
            raise RuntimeError([e.value for e in at.exception])
        if _PROFILE is not None:  # profile the warm runs only
            _PROFILE.clear()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            at.run()
            times.append(time.perf_counter() - start)
        return times

    app = str(REPO / "app.py")

    def page(path, **params):
        def prepare(at):
            for k, v in params.items():
                at.query_params[k] = v
            at.switch_page(path)
        return prepare

    from data.store import Snapshot, snapshot_path

    snap = Snapshot(snapshot_path())
    first = snap.query("SELECT min(patient_id) AS p FROM patients")["p"].iloc[0]

    def another_patient_each_run() -> list[float]:
        """Warm caches, but a patient not seen before on every run, picked in the picker (as a user does)."""
        ids = snap.query("SELECT patient_id FROM patients USING SAMPLE 50 ROWS (reservoir, 7) "
                         "ORDER BY patient_id")["patient_id"].tolist()
        at = AppTest.from_file(app, default_timeout=1800)
        page("pages/patient.py", patient=ids[0])(at)
        at.run()
        if _PROFILE is not None:
            _PROFILE.clear()
        times = []
        for pid in ids[1:repeats + 1]:
            search = [t for t in at.text_input if t.key == "patient_search"]
            if search:  # a large cohort: the user types the id first
                search[0].set_value(pid).run()
            start = time.perf_counter()
            at.selectbox(key="patient_picker").set_value(pid).run()
            times.append(time.perf_counter() - start)
            if at.exception or at.selectbox(key="patient_picker").value != pid:
                raise RuntimeError(f"patient {pid} did not open: {[e.value for e in at.exception]}")
        return times

    out = {}
    if only == "patient_new":
        out[only] = statistics.median(another_patient_each_run())
        return out
    if only:  # profiling one page: its warm runs only
        out[only] = statistics.median(timed(lambda: AppTest.from_file(app, default_timeout=1800),
                                            page(f"pages/{only}.py", **({"patient": first} if only == "patient" else {}))))
        return out
    empty = timed(lambda: AppTest.from_string(EMPTY_PAGE, default_timeout=600))
    out["empty_page_s"] = statistics.median(empty)
    for name, path, params in (("patient_page_s", "pages/patient.py", {"patient": first}),
                               ("tumor_board_page_s", "pages/tumor_board.py", {}),
                               ("cohorts_page_s", "pages/cohorts.py", {})):
        out[name] = statistics.median(timed(lambda: AppTest.from_file(app, default_timeout=1800), page(path, **params)))
    out["patient_page_over_empty"] = out["patient_page_s"] / out["empty_page_s"]
    out["patient_page_another_patient_s"] = statistics.median(another_patient_each_run())
    out["peak_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}


def measure(n: int, repeats: int, folder: Path, boot: int, imports: bool = False,
            train_and_pages: bool = True) -> dict:
    snapshot = folder / f"bench-{n}.duckdb"
    models = folder / f"models-{n}"
    env = {**os.environ, "STOPHER2_SNAPSHOT": str(snapshot), "STOPHER2_MODEL_DIR": str(models),
           "STOPHER2_AUDIT_DB": str(folder / "audit.sqlite"), "PYTHONPATH": str(REPO)}
    result = {"patients": n}
    build = _child([sys.executable, "-m", "data", "build", "--patients", str(n), "--out", str(snapshot)], env)
    result["build"] = {"seconds": build["seconds"], "peak_mib": build["peak_mib"]}
    if imports:
        result["imports"] = {}
        for kind in ("csv", "parquet"):
            exported = folder / f"export-{kind}-{n}"
            _child([sys.executable, "-m", "data", "export", "--format", kind, "--out", str(exported)],
                   {**env, "STOPHER2_SNAPSHOT": str(snapshot)})
            again = _child([sys.executable, "-m", "data", "build", "--source", kind, str(exported), "--out",
                            str(folder / f"import-{kind}-{n}.duckdb")], env)
            result["imports"][kind] = {"seconds": again["seconds"], "peak_mib": again["peak_mib"]}
    if not train_and_pages:
        return result
    train = _child([sys.executable, "-m", "model", "train", "--boot", str(boot)], env)
    result["train"] = {"seconds": train["seconds"], "peak_mib": train["peak_mib"], "bootstrap_refits": boot}
    pages = subprocess.run([sys.executable, "-m", "benchmarks", "--pages-only", "--repeats", str(repeats)],
                           capture_output=True, text=True, env=env, cwd=REPO)
    if pages.returncode != 0:
        raise RuntimeError(pages.stderr[-3000:])
    result["pages"] = json.loads(pages.stdout.strip().splitlines()[-1])
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="82,100000", help="comma-separated cohort sizes")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--boot", type=int, default=None,
                        help="bootstrap refits when training (default 200; 20 above 5,000 patients)")
    parser.add_argument("--imports", action="store_true",
                        help="also export each snapshot as CSV and Parquet and time importing them again")
    parser.add_argument("--build-only", action="store_true",
                        help="the build (and with --imports, the imports) only: no training, no pages")
    parser.add_argument("--pages-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--profile", metavar="PAGE",
                        help="profile one page's warm runs (patient, patient_new: a new patient each run, tumor_board, "
                             "cohorts) on the live snapshot (or $STOPHER2_SNAPSHOT); cProfile stats to benchmarks-PAGE.prof")
    args = parser.parse_args(argv)
    if args.profile:
        _profiled(f"benchmarks-{args.profile}.prof")
        print(json.dumps(_pages(args.repeats, only=args.profile)))
        return 0
    if args.pages_only:
        print(json.dumps(_pages(args.repeats)))
        return 0
    started = time.perf_counter()
    out = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}, "sizes": []}
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(s) for s in args.sizes.split(",")):
            boot = args.boot or (200 if n <= 5000 else 20)
            print(f"measuring {n:,} patients", file=sys.stderr, flush=True)
            out["sizes"].append(measure(n, args.repeats, Path(tmp), boot, imports=args.imports,
                                        train_and_pages=not args.build_only))
    if len(out["sizes"]) >= 2 and not args.build_only:
        small, large = out["sizes"][0]["pages"], out["sizes"][-1]["pages"]
        out["patient_page_large_over_small"] = round(large["patient_page_s"] / small["patient_page_s"], 3)
        out["patient_page_another_patient_large_over_small"] = round(
            large["patient_page_another_patient_s"] / small["patient_page_another_patient_s"], 3)
    out["targets"] = {"patient_page_large_over_small": "<= 1.2", "patient_page_s": "< 0.5 warm",
                      "tumor_board_page_s": "< 2 at 100,000", "cohorts_page_s": "< 2 at 100,000",
                      "peak_mib": "< 1536", "build peak_mib": "< 500 at 20,000; < 2048 at 100,000",
                      "imports peak_mib": "< 2048 at 100,000"}
    out["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
