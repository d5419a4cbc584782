"""Whether this worker's REDIS_JOBS_DB is the API's (``jobqueue.jobsdb`` records the API's): while
they differ, or may (an id without a document and no record yet), the worker takes no jobs, so none
is dropped for a document it looks for in the wrong db."""

from __future__ import annotations

import logging
import time

import redis

from jobqueue.jobsdb import UNRECORDED_WAIT_SECONDS, conflict_message, recorded, unrecorded_message
from jobqueue.settings import Settings

log = logging.getLogger("jobqueue.worker")

STALLED = "while REDIS_JOBS_DB may differ from the API's"  # why a stalled worker gives back what it holds
CONFLICT_LOG_SECONDS = 60.0  # while the API's jobs db differs from ours, the error again this often


class JobsDbGate:
    """The API's jobs db as last read, against ours: ``conflict`` (the API's db when it is not ours)
    and ``unrecorded_since`` (when an id without a document met no record)."""

    def __init__(self, client: redis.Redis, settings: Settings, worker: str, queue_key: str) -> None:
        self.client = client
        self.settings = settings
        self.worker = worker
        self.queue_key = queue_key
        self.conflict: int | None = None
        self._logged_at = 0.0
        # when it first put back an id without a document while the API had recorded no jobs db:
        # it takes nothing until a record says which db, UNRECORDED_WAIT_SECONDS at most
        self.unrecorded_since: float | None = None

    def stalled(self) -> bool:
        """Take no jobs: the API keeps them in another REDIS_JOBS_DB, or may (an id without a
        document and no record, for UNRECORDED_WAIT_SECONDS at most)."""
        return self.conflict is not None or (
            self.unrecorded_since is not None and time.monotonic() - self.unrecorded_since < UNRECORDED_WAIT_SECONDS
        )

    def waited_out(self) -> bool:
        """The wait for a record is over without one (an API from before the record): as before it."""
        return self.unrecorded_since is not None and not self.stalled()

    def check(self) -> int | None:
        """Compare our REDIS_JOBS_DB with the one the API recorded for our queue; set
        :attr:`conflict` and say so when that changes (the error again every CONFLICT_LOG_SECONDS
        while it lasts); a record ends a wait for one (:attr:`unrecorded_since`). Returns the
        recorded db (None: none). Raises RedisError when Redis does not answer."""
        api_db = recorded(self.client, self.settings)
        jobs_db = self.settings.redis_jobs_db
        if api_db is not None and self.unrecorded_since is not None:
            self.unrecorded_since = None
            log.info(
                "the API recorded its jobs db: no longer waiting for it",
                extra={"worker": self.worker, "jobs_db": jobs_db, "api_jobs_db": api_db},
            )
        conflict = api_db if api_db is not None and api_db != jobs_db else None
        now = time.monotonic()
        if conflict is not None and (conflict != self.conflict or now - self._logged_at >= CONFLICT_LOG_SECONDS):
            self._logged_at = now
            log.error(
                "REDIS_JOBS_DB differs from the API's: taking no jobs",
                extra={
                    "worker": self.worker,
                    "jobs_db": jobs_db,
                    "api_jobs_db": conflict,
                    "queue": self.queue_key,
                    "hint": conflict_message(self.settings, conflict),
                },
            )
        elif conflict is None and self.conflict is not None:
            log.info(
                "REDIS_JOBS_DB agrees with the API's again: taking jobs",
                extra={"worker": self.worker, "jobs_db": jobs_db, "api_jobs_db": api_db},
            )
        self.conflict = conflict
        return api_db

    def wait_for_record(self, returned: list[str]) -> None:
        """Ids without a document our db never indexed went back to their lane with no record to
        say which db the API uses: take nothing until one does (UNRECORDED_WAIT_SECONDS at most)."""
        if self.unrecorded_since is None:
            self.unrecorded_since = time.monotonic()
        log.error(
            "no job document in REDIS_JOBS_DB and no jobs db recorded by the API: taking no jobs",
            extra={
                "worker": self.worker,
                "jobs_db": self.settings.redis_jobs_db,
                "queue": self.queue_key,
                "returned": returned,
                "wait_seconds": UNRECORDED_WAIT_SECONDS,
                "hint": unrecorded_message(self.settings),
            },
        )
