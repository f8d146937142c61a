"""The live snapshot: built on the very first start (once, even when several processes start together)."""
from __future__ import annotations

import fcntl
from collections.abc import Callable

from data.store import has_snapshot, snapshot_dir


def ensure_built(progress: Callable[[float, str], None] | None = None) -> bool:
    """Build the synthetic snapshot if there is none yet; True when this call built it.

    A file lock in the snapshot folder makes the second process wait for the first one's build and
    then find the snapshot instead of building another.
    """
    if has_snapshot():
        return False
    from data.build import build_synthetic

    folder = snapshot_dir()
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if has_snapshot():
            return False
        build_synthetic(progress=progress)
        return True
