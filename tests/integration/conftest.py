"""Fixtures shared by the import and command-line tests."""
import shutil
from pathlib import Path

import pytest

from data.bundle import export_bundle


@pytest.fixture(scope="module")
def bundle_dir(snapshot, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("bundle")
    export_bundle(snapshot, folder)
    return folder


@pytest.fixture
def live_folder(tmp_path, monkeypatch, snapshot_file) -> Path:
    """A snapshot folder with one live snapshot (a copy of the session's), as the app would see it."""
    folder = tmp_path / "snapshots"
    monkeypatch.setenv("STOPHER2_SNAPSHOT_DIR", str(folder))
    monkeypatch.delenv("STOPHER2_SNAPSHOT", raising=False)
    folder.mkdir()
    from data.store import publish

    target = folder / "synthetic-first.duckdb"
    shutil.copy(snapshot_file, target)
    publish(target)
    return folder


def assert_same_views(expected, actual) -> None:
    """Every contract view of two snapshots holds the same rows (what a researcher querying them would see)."""
    import pandas as pd

    from data.build import CONTRACT

    for view in CONTRACT:
        a = expected.query(f"SELECT * FROM {view} ORDER BY ALL")
        b = actual.query(f"SELECT * FROM {view} ORDER BY ALL")
        pd.testing.assert_frame_equal(a, b, obj=view)
