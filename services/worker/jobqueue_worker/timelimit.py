"""Stopping a job that runs too long, or past the shutdown grace, with SIGALRM in the main thread.

The job runs in the main thread; an interval timer raises :class:`JobTimeout` (or
:class:`GraceExpired`) inside it at the earliest deadline. Python delivers the signal between
bytecodes, so a job stuck inside one long C call (a pandas kernel) stops when that call returns.
Deadlines raise only while a job runs, never inside the worker's own Redis I/O.
"""

from __future__ import annotations

import signal
import time
from contextlib import contextmanager
from collections.abc import Iterator


class JobTimeout(Exception):
    """The attempt exceeded JOB_TIMEOUT_SECONDS."""


class GraceExpired(Exception):
    """SIGTERM came and the job did not finish within SHUTDOWN_GRACE_SECONDS."""


class Alarm:
    def __init__(self) -> None:
        self.job_deadline: float | None = None
        self.grace_deadline: float | None = None
        self.in_job = False
        signal.signal(signal.SIGALRM, self._fire)

    def _arm(self) -> None:
        if not self.in_job:
            signal.setitimer(signal.ITIMER_REAL, 0)
            return
        pending = [d for d in (self.job_deadline, self.grace_deadline) if d is not None]
        if not pending:
            signal.setitimer(signal.ITIMER_REAL, 0)
            return
        signal.setitimer(signal.ITIMER_REAL, max(min(pending) - time.monotonic(), 0.001))

    def _fire(self, signum, frame) -> None:
        if not self.in_job:
            return
        now = time.monotonic()
        if self.grace_deadline is not None and now >= self.grace_deadline:
            self.in_job = False
            raise GraceExpired()
        if self.job_deadline is not None and now >= self.job_deadline:
            self.in_job = False
            raise JobTimeout()
        self._arm()

    def set_grace(self, seconds: float) -> None:
        self.grace_deadline = time.monotonic() + seconds
        self._arm()

    @contextmanager
    def limit(self, seconds: float) -> Iterator[None]:
        self.job_deadline = time.monotonic() + seconds
        self.in_job = True
        self._arm()
        try:
            yield
        finally:
            self.in_job = False
            self.job_deadline = None
            signal.setitimer(signal.ITIMER_REAL, 0)
