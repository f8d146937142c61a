"""The command line does what the README says: --out writes only that file, --arm-map is taken, a data
cut-off must be a date the data can have, errors are one sentence with exit code 2, and what changes what
everyone sees is on record."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from data import audit
from data.store import snapshot_path
from tests.conftest import REPO

FIXTURES = REPO / "tests" / "fixtures"


def cli(*args, env=None, module="data"):
    done = subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})}, timeout=600)
    return done.returncode, done.stdout, done.stderr


@pytest.fixture
def bundle(bundle_dir) -> Path:
    return bundle_dir


@pytest.fixture
def live(live_folder) -> dict:
    return {"STOPHER2_SNAPSHOT_DIR": str(live_folder)}


def test_out_writes_only_that_file_for_a_real_source(bundle, live, tmp_path):
    before = snapshot_path()
    out = tmp_path / "elsewhere.duckdb"
    code, _, err = cli("build", "--source", "csv", bundle, "--out", out, env=live)
    assert code == 0, err
    assert out.exists() and snapshot_path() == before
    assert len(list(Path(live["STOPHER2_SNAPSHOT_DIR"]).glob("*.duckdb"))) == 1  # nothing new made live


def test_arm_map_is_an_option_of_the_sdtm_import_and_refused_for_csv(tmp_path, bundle):
    out = tmp_path / "sdtm.duckdb"
    code, _, err = cli("build", "--source", "sdtm", FIXTURES / "sdtm-pharmaverse", "--arm-map",
                       "Pbo=2,Xan_Lo=1,Xan_Hi=1", "--out", out)
    assert code == 0, err[-2000:]
    assert out.exists()
    code, _, err = cli("check", "--source", "csv", bundle, "--arm-map", "A=1")
    assert code == 2 and "takes no option arm_map" in err and "Traceback" not in err


@pytest.mark.parametrize("cutoff, said", [("2999-01-01", "in the future"), ("1900-01-01", "before the first enrolment"),
                                          ("31/12/2025", "not a date written YYYY-MM-DD")])
def test_a_data_cutoff_the_data_cannot_have_is_refused_and_nothing_changes(bundle, live, cutoff, said):
    before = snapshot_path()
    code, _, err = cli("build", "--source", "csv", bundle, "--data-cutoff", cutoff, env=live)
    assert code == 2 and said in err and "Traceback" not in err
    assert snapshot_path() == before


def test_training_where_nobody_stopped_is_one_sentence(tmp_path):
    from data import synth
    from data.build import build_snapshot

    tables = synth.generate(30, seed=2)
    tables["patients"]["cohort"] = 1
    path = tmp_path / "continuing.duckdb"
    build_snapshot(tables, source="synthetic", out=path, data_cutoff=synth.P["data_cutoff"])
    code, _, err = cli("train", "--boot", "5", module="model",
                       env={"STOPHER2_SNAPSHOT": str(path), "STOPHER2_MODEL_DIR": str(tmp_path / "m")})
    assert code == 2 and "cannot train: too few patients" in err and "Traceback" not in err


def test_rollback_to_a_damaged_file_is_a_sentence_and_a_rollback_is_on_record(live, audit_db):
    folder = Path(live["STOPHER2_SNAPSHOT_DIR"])
    (folder / "broken-1.duckdb").write_bytes(b"not a database" * 1000)
    before = snapshot_path()
    code, _, err = cli("rollback", "broken-1", env=live)
    assert code == 2 and "cannot be read" in err and "Traceback" not in err and snapshot_path() == before
    code, out, err = cli("rollback", "synthetic-first", env=live)
    assert code == 0, err
    rows = audit.read(action="rollback")
    assert len(rows) == 1 and rows["who"].iloc[0].startswith("cli:") and rows["snapshot_id"].iloc[0] == "synthetic-first"


def test_leftovers_of_killed_imports_are_removed_at_the_next_start_and_a_live_snapshot_has_its_report(
        bundle, live, monkeypatch):
    import time

    from data import importing
    from data.store import LEFTOVER_AGE_SECONDS, clean_leftovers

    folder = Path(live["STOPHER2_SNAPSHOT_DIR"])
    old = folder / ".csv-20260101T000000-abcdef.duckdb.csv-20260101T000000-abcdef.tmp"
    old.write_bytes(b"x" * 1000)
    young = folder / ".csv-now.duckdb.csv-now.tmp"  # an import running right now: kept
    young.write_bytes(b"x")
    orphan = folder / "csv-gone.report.csv"
    orphan.write_text("severity\n")
    stale = time.time() - LEFTOVER_AGE_SECONDS - 60
    os.utime(old, (stale, stale))
    assert sorted(clean_leftovers()) == sorted([old.name, orphan.name])
    assert young.exists()
    import data.build as build

    seen = {}
    original = build.publish

    def publish(path, keep=5):  # the report must already be beside the file when the pointer moves
        seen["report"] = importing.report_path(Path(path)).exists()
        original(path, keep)

    monkeypatch.setattr(build, "publish", publish)
    importing.run_import("csv", bundle)
    assert seen["report"]
