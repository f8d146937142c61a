"""The secrets a demo deployment makes for itself appear whole, once, whoever starts first.

A CI run saw the 4-writer audit test fail once: with a plain O_EXCL create, a second process could
read the key file after the first had created it and before it had written it, and chain its records
with an empty key. These tests hold the three key files to "whole or not at all".
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from data import audit
from data.keyfile import KeyFileDamaged, local_key
from model import artifacts
from services import access

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _no_configured_keys(monkeypatch):
    monkeypatch.delenv(audit.KEY_ENV, raising=False)
    monkeypatch.delenv(artifacts.KEY_ENV, raising=False)


@pytest.mark.parametrize("content", ["", "\n", "0123abcd"])
def test_an_empty_or_cut_key_file_is_refused_with_a_sentence_not_used(tmp_path, content):
    (tmp_path / "trail.db.key").write_text(content)
    with pytest.raises(audit.AuditUnavailable, match="trail.db.key is damaged"):
        audit.chain_key(tmp_path / "trail.db")
    (tmp_path / ".signing_key").write_text(content)
    with pytest.raises(artifacts.ModelUnavailable, match="signing_key is damaged"):
        artifacts.signing_key(tmp_path)
    (tmp_path / access.DEMO_KEY_FILE).write_text(content)
    with pytest.raises(access.AccessConfigError, match="pseudonym_key is damaged"):
        access.pseudonym_key({}, demo=True, folder=tmp_path)


def test_the_audit_record_is_refused_not_chained_with_an_empty_key(tmp_path):
    db = tmp_path / "trail.db"
    (tmp_path / "trail.db.key").write_text("")
    with pytest.raises(audit.AuditUnavailable):
        audit.record("a@x.org", "clinician", "view_patient", path=db)
    assert not db.exists() or audit.read(path=db).empty


def test_a_key_is_made_once_readable_by_its_owner_only_and_leaves_no_temporary_file(tmp_path):
    first = local_key(tmp_path / "k")
    assert first == local_key(tmp_path / "k") and len(first) == 64
    assert (tmp_path / "k").stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["k"]


def test_many_processes_starting_together_all_get_the_same_whole_key(tmp_path):
    # each process waits for a shared start signal, then races to make and read the key
    go = tmp_path / "go"
    code = ("import sys, time\nfrom pathlib import Path\nfrom data.keyfile import local_key\n"
            "go = Path(sys.argv[1])\n"
            "while not go.exists(): time.sleep(0.001)\n"
            "print(local_key(Path(sys.argv[2])).decode())\n")
    outcomes = []
    for round_ in range(5):
        key_file = tmp_path / f"key{round_}"
        go.unlink(missing_ok=True)
        procs = [subprocess.Popen([sys.executable, "-c", code, str(go), str(key_file)], cwd=REPO,
                                  env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE, text=True)
                 for _ in range(8)]
        go.touch()
        keys = {p.communicate(timeout=60)[0].strip() for p in procs}
        assert all(p.returncode == 0 for p in procs)
        outcomes.append(keys)
    assert all(len(keys) == 1 and len(next(iter(keys))) == 64 for keys in outcomes), outcomes
    with pytest.raises(KeyFileDamaged):
        (tmp_path / "bad").write_text("x")
        local_key(tmp_path / "bad")
