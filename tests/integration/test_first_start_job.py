"""The first start is the server's job: a session that leaves does not stop it, the next one finds it."""
from data.store import has_snapshot
from services import models, snapshots


def test_the_first_start_finishes_after_the_session_that_started_it_left_and_runs_once(tmp_path, monkeypatch):
    monkeypatch.delenv("STOPHER2_SNAPSHOT", raising=False)
    monkeypatch.setenv("STOPHER2_SNAPSHOT_DIR", str(tmp_path / "snapshots"))
    monkeypatch.setenv("STOPHER2_MODEL_DIR", str(tmp_path / "models"))
    from data import build

    builds, fitted = [], []
    real = build.build_synthetic
    monkeypatch.setattr(build, "build_synthetic", lambda **kw: (builds.append(1), real(**kw))[1])
    started = snapshots.first_start_job(on_fitted=lambda sid, detail: fitted.append((sid, detail)))
    # the session that started it is gone (nothing waits on the job); a second visitor arrives
    later = snapshots.first_start_job()
    assert later is started
    assert later.wait(300) and later.state == "done", later.error
    assert has_snapshot() and builds == [1]
    assert len(fitted) == 1 and "landmark model fitted" in fitted[0][1]
    assert models.find(fitted[0][0], models.LANDMARK) is not None  # the first page's estimate is ready
