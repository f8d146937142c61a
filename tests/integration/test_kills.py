"""Kills at each stage of an import and of training: what everyone sees never changes half-way, the next
start removes what the killed process left, and a killed trainer takes its worker processes with it."""
import hashlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from data.store import POINTER, STAGING_PREFIX, clean_leftovers, snapshot_path, staging_prefix
from tests.conftest import REPO

#: A script that imports `source` and SIGKILLs itself at `stage`: a progress message containing it, or
#: "before publish" (the finished file is in the folder, the pointer not yet moved) or "after publish".
KILLER = """
import os, signal, sys
import data.build as build
from data import importing
source, stage = sys.argv[1], sys.argv[2]
die = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
if stage == "before publish":
    build.publish = die
elif stage == "after publish":
    original = build.publish
    build.publish = lambda *a, **k: (original(*a, **k), die())
def progress(fraction, message):
    if stage in message:
        die()
importing.run_import("csv", source, progress=progress)
"""
BEFORE_SWAP = ["reading the csv source", "building the snapshot", "writing patients", "writing lesion_measurements",
               "deriving RECIST", "creating the contract views", "checking every contract view", "before publish"]


def _sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def temporary(tmp_path, monkeypatch):
    """The system's temporary folder, for this test alone (where an import stages a CSV folder)."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def _killed_import(folder: Path, bundle: Path, stage: str) -> None:
    done = subprocess.run([sys.executable, "-c", KILLER, str(bundle), stage], cwd=REPO, capture_output=True,
                          text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(REPO), "STOPHER2_SNAPSHOT_DIR":
                                                       str(folder), "TMPDIR": tempfile.gettempdir()})
    assert done.returncode == -signal.SIGKILL, (stage, done.returncode, done.stderr[-2000:])


@pytest.mark.parametrize("stage", BEFORE_SWAP)
def test_an_import_killed_before_the_swap_leaves_the_live_snapshot_as_it_was(live_folder, bundle_dir, stage,
                                                                             temporary):
    live = snapshot_path()
    before = _sha(live), (live_folder / POINTER).read_text()
    _killed_import(live_folder, bundle_dir, stage)
    assert snapshot_path() == live and (_sha(live), (live_folder / POINTER).read_text()) == before
    staged = [p.name for p in temporary.iterdir()]
    # the killed import's staging folder (none when it died while reading the first file)
    assert len(staged) == (stage != "reading the csv source") and all(n.startswith(STAGING_PREFIX) for n in staged)
    running = Path(tempfile.mkdtemp(prefix=staging_prefix()))  # an import still running (this process)
    clean_leftovers(now=time.time() + 10 * 24 * 3600)  # the next start, long after: nothing half-made stays
    assert [p.name for p in temporary.iterdir()] == [running.name]
    left = sorted(p.name for p in live_folder.iterdir())
    assert not [n for n in left if n.endswith((".tmp", ".wal"))], left
    finished = [n for n in left if n.endswith(".duckdb") and n != live.name]
    if stage == "before publish":  # a complete snapshot that was never made live, with its report
        assert len(finished) == 1 and (live_folder / finished[0]).with_suffix(".report.csv").exists()
    else:
        assert finished == [], left


def test_an_import_killed_just_after_the_swap_is_live_with_its_report(live_folder, bundle_dir, temporary):
    live = snapshot_path()
    _killed_import(live_folder, bundle_dir, "after publish")
    new = snapshot_path()
    assert new != live and new.with_suffix(".report.csv").exists()
    assert len(list(temporary.iterdir())) == 1  # its staging folder, until the next start
    clean_leftovers()
    assert list(temporary.iterdir()) == []


def _children(pid: int) -> set[int]:
    """Every process whose parent chain leads to `pid` or that loky started for it (by command line)."""
    out = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                cmd = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == pid and b"loky" in cmd:
                out.add(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_killed_trainer_takes_its_worker_processes_with_it(live_folder, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "STOPHER2_SNAPSHOT_DIR": str(live_folder),
           "STOPHER2_MODEL_DIR": str(tmp_path / "models")}
    trainer = subprocess.Popen([sys.executable, "-m", "model", "train", "--boot", "400"], cwd=REPO, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    workers: set[int] = set()
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and trainer.poll() is None:
            workers = _children(trainer.pid)
            if len(workers) >= 2:
                break
            time.sleep(0.2)
        assert workers, "the trainer never started its bootstrap workers"
        trainer.send_signal(signal.SIGKILL)
        trainer.wait()
        deadline = time.monotonic() + 60  # joblib's default left them for 300 s; they now check every second
        while time.monotonic() < deadline and any(_alive(w) for w in workers):
            time.sleep(0.5)
        assert not any(_alive(w) for w in workers), f"worker processes outlived the killed trainer: {workers}"
    finally:
        for w in workers:
            try:
                os.kill(w, signal.SIGKILL)
            except OSError:
                pass
        if trainer.poll() is None:
            trainer.kill()
