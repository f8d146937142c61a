"""Long work owned by the server, not by a browser tab: the first-start build and the model training.

A job runs in a thread of the server process, started by whichever session needs it first; every later
session finds the same job and shows the same progress. Closing the tab that started it changes nothing
(the thread does not belong to the tab), a job is never started twice in a process (one registry, one
lock), and two processes are kept from doing the same work by the file locks the work itself takes
(services/snapshots.py, services/models.py): the second one's job waits on the lock, says so, and then
finds the result. A job that failed keeps its message until someone asks again, which starts it anew.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

_LOG = logging.getLogger("stopher2.jobs")
Progress = Callable[[float, str], None]


@dataclass
class Job:
    name: str
    fraction: float = 0.0
    message: str = "starting"
    state: str = "running"  # running, done, failed
    error: str | None = None
    _done: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def running(self) -> bool:
        return self.state == "running"

    def progress(self, fraction: float, message: str) -> None:
        self.fraction, self.message = min(max(float(fraction), 0.0), 1.0), message

    def wait(self, timeout: float | None = None) -> bool:
        """True once the job has finished (done or failed)."""
        return self._done.wait(timeout)


_jobs: dict[str, Job] = {}
_lock = threading.Lock()


def get(name: str) -> Job | None:
    with _lock:
        return _jobs.get(name)


def run_once(name: str, work: Callable[[Progress], object], again_if_done: bool = False) -> Job:
    """The job called `name`: the running one, else `work` started now in a server thread. A finished job
    is returned as it is, unless it failed or `again_if_done` (the caller found its result gone)."""
    with _lock:
        job = _jobs.get(name)
        if job is not None and (job.running or (job.state == "done" and not again_if_done)):
            return job
        job = _jobs[name] = Job(name)

    def run():
        try:
            work(job.progress)
            job.progress(1.0, "done")
            job.state = "done"
        except Exception as exc:  # noqa: BLE001 - the job's message is what every waiting session reads
            _LOG.exception("job %s failed", name)
            job.state, job.error = "failed", str(exc) or type(exc).__name__
        finally:
            job._done.set()

    threading.Thread(target=run, name=f"job:{name}", daemon=True).start()
    return job
