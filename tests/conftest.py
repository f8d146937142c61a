"""Shared fixtures: one real synthetic snapshot per test session, in a temporary folder."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


@pytest.fixture(autouse=True)
def audit_db(tmp_path, monkeypatch) -> Path:
    """Every test writes its own audit trail, never the repository's."""
    path = tmp_path / "audit.sqlite"
    monkeypatch.setenv("STOPHER2_AUDIT_DB", str(path))
    return path


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL server for this test session (tests/postgres.py), stopped at the end."""
    from tests.postgres import Server

    server = Server()
    server.start()
    yield server
    server.close()


@pytest.fixture
def postgres_url(postgres_server, monkeypatch) -> str:
    """Point the shared stores at a fresh PostgreSQL database, with the chain key every host must share."""
    from data import audit, shared

    url = postgres_server.new_database()
    monkeypatch.setenv(shared.URL_ENV, url)
    monkeypatch.setenv(audit.KEY_ENV, "test-key-" + "k" * 40)
    return url


@pytest.fixture(scope="session")
def snapshot_file(tmp_path_factory) -> Path:
    from data.build import build_synthetic

    path = tmp_path_factory.mktemp("snapshots") / "current.duckdb"
    build_synthetic(82, seed=20230419, out=path)
    return path


@pytest.fixture(scope="session")
def snapshot(snapshot_file):
    from data.store import Snapshot

    snap = Snapshot(snapshot_file)
    yield snap
    snap.close()


@pytest.fixture
def live_snapshot_env(snapshot_file, monkeypatch):
    """Point the app at the test snapshot."""
    monkeypatch.setenv("STOPHER2_SNAPSHOT", str(snapshot_file))
    return snapshot_file


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory, snapshot) -> Path:
    """The 12-month model trained once on the session snapshot (200 bootstrap refits), as the app trains it."""
    from services import models

    folder = tmp_path_factory.mktemp("models")
    models.train_and_save(snapshot, 12, folder=folder)
    return folder


@pytest.fixture
def live_model_env(model_dir, monkeypatch):
    monkeypatch.setenv("STOPHER2_MODEL_DIR", str(model_dir))
    return model_dir


@pytest.fixture(scope="session")
def situations(snapshot) -> dict[str, str]:
    """One patient id for each situation the patient page must handle."""
    q = snapshot.query
    pick = {
        "stopped_stable": """SELECT s.patient_id FROM patient_summary s JOIN scan_history h USING (patient_id)
                             WHERE s.cohort = 2 AND s.status = 'in follow-up' AND NOT s.progressed
                             GROUP BY ALL HAVING max(h.n_target_lesions) > 0 ORDER BY 1 LIMIT 1""",
        "progressed": "SELECT patient_id FROM patient_summary WHERE progressed ORDER BY 1 LIMIT 1",
        "continuing": "SELECT patient_id FROM patient_summary WHERE cohort = 1 ORDER BY 1 LIMIT 1",
        "no_target_lesions": """SELECT patient_id FROM scan_history GROUP BY patient_id
                                HAVING max(n_target_lesions) = 0 ORDER BY 1 LIMIT 1""",
    }
    out = {}
    for name, sql in pick.items():
        rows = q(sql)
        assert not rows.empty, f"the test cohort has no patient for situation {name}"
        out[name] = rows.iloc[0, 0]
    return out


def pytest_collection_modifyitems(config, items):
    for item in items:
        folder = Path(str(item.fspath)).parent.name
        if folder in {"unit", "integration", "app", "browser"}:
            item.add_marker(getattr(pytest.mark, folder))


os.environ.setdefault("STREAMLIT_BROWSER_GATHER_USAGE_STATS", "false")
