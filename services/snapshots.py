"""The live snapshot: built on the very first start (once, even when several processes start together), by a
job the server owns (services/jobs.py), so that closing the tab that started it strands no one."""
from __future__ import annotations

from collections.abc import Callable

from data import shared
from data.store import Snapshot, has_snapshot, snapshot_dir, snapshot_path
from services import jobs


def ensure_built(progress: Callable[[float, str], None] | None = None) -> bool:
    """Build the synthetic snapshot if there is none yet; True when this call built it.

    A lock (a file lock in the snapshot folder, or a PostgreSQL advisory lock when several hosts share the
    folder: data/shared.py) makes the second process wait for the first one's build and then find the
    snapshot instead of building another.
    """
    if has_snapshot():
        return False
    from data.build import build_synthetic

    with shared.exclusive("build", snapshot_dir()):
        if has_snapshot():
            return False
        build_synthetic(progress=progress)
        return True


def first_start_job(on_fitted: Callable[[str, str], None] | None = None) -> jobs.Job:
    """The server's first-start job for this snapshot folder: build the synthetic snapshot if there is none,
    then fit its landmark model (every page's estimate), with progress every session can show.
    `on_fitted(snapshot_id, detail)` is told when the model had to be fitted (the audit record)."""

    def work(progress: jobs.Progress) -> None:
        from services import models

        progress(0.0, "starting the build (or waiting for another process that is building it)")
        ensure_built(progress=lambda fraction, message: progress(0.9 * fraction, message))
        progress(0.9, "fitting the landmark model (every estimate on the pages)")
        snap = Snapshot(snapshot_path())
        try:
            snapshot_id = str(snap.info()["snapshot_id"])
            models.ensure_landmark(snap, snapshot_id, on_trained=None if on_fitted is None else
                                   lambda detail: on_fitted(snapshot_id, detail))
        finally:
            snap.close()

    # asked only while there is no snapshot: a finished job whose snapshot is gone builds again
    return jobs.run_once(f"first-start:{snapshot_dir()}", work, again_if_done=True)
