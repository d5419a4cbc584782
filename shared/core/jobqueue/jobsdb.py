"""Which jobs db the API uses, recorded in the queue db, so a worker configured with another
``REDIS_JOBS_DB`` notices before it claims a job.

An API and a worker that share the queue db (``REDIS_QUEUE_DB``) but not ``REDIS_JOBS_DB`` used to
stall every job: the worker took each id from the queue, found no document in its own jobs db,
warned and dropped the id, and the job stayed ``submitted`` for ever. Now each API process records
its jobs db under :func:`keys.jobs_db` (one key per ``QUEUE_NAME``) when it starts and every
:data:`RECORD_SECONDS` after, with a TTL of :data:`RECORD_TTL_SECONDS`; a worker reads it on every
heartbeat and, while it names another db than the worker's own, claims nothing (the ids stay queued
for a worker that can run them), logs an error naming both dbs, and keeps its heartbeat, so the
API's stall check (``jobqueue_queue_stalled``, ``JobQueueStalled``) reports live workers idle while
jobs wait. It resumes on its own once the two agree.

No record (an API from before this key, every API stopped for longer than the TTL, a Redis
restarted without its data, a worker whose last check came just before the API's first record)
means nothing to compare with: the worker claims as it always did, until it claims an id whose
document its jobs db lacks. Then the record decides (the worker reads it again at once):

- it names the worker's db: the job was deleted or expired while queued; the id is acked (dropped);
- it names another db: the mismatch above; every id the worker holds goes back to the queue;
- there is none: an id the worker's jobs db never indexed either (``jobs:by-submitted``,
  ``jobs:active``) goes back to the front of its lane, and the worker takes no job for up to
  :data:`UNRECORDED_WAIT_SECONDS`, waiting for a record that says which (a running API writes one
  within seconds); one the indexes know was deleted or expired here and is dropped. After that wait
  without a record (an API from before it) ids without a document are dropped again, as before.
"""

from __future__ import annotations

import logging
import threading

import redis
from redis.client import NEVER_DECODE

from . import keys
from .connections import tls_hint
from .settings import Settings

log = logging.getLogger("jobqueue.jobsdb")

RECORD_SECONDS = 30.0  # an API process refreshes its record this often
RETRY_SECONDS = 5.0  # ... or this soon after a write that failed (Redis down at start)
RECORD_TTL_SECONDS = 120  # a record nobody refreshes (every API gone) lapses after this
# a worker that met an id without a document and no record takes nothing for up to this long
UNRECORDED_WAIT_SECONDS = 2 * RECORD_SECONDS


def record(queue: redis.Redis, settings: Settings) -> int | None:
    """Write this API's jobs db for its queue (refreshing the TTL); return the db recorded before it
    when that was another one (another API on this queue keeps jobs elsewhere), else None."""
    pipe = queue.pipeline(transaction=False)
    pipe.execute_command("GET", keys.jobs_db(settings.queue_name), **{NEVER_DECODE: True})
    pipe.set(keys.jobs_db(settings.queue_name), str(settings.redis_jobs_db), ex=RECORD_TTL_SECONDS)
    before, _ = pipe.execute()
    previous = _as_db(before)
    return previous if previous is not None and previous != settings.redis_jobs_db else None


def recorded(queue: redis.Redis, settings: Settings) -> int | None:
    """The jobs db the APIs recorded for this worker's queue, or None when none did."""
    return _as_db(queue.execute_command("GET", keys.jobs_db(settings.queue_name), **{NEVER_DECODE: True}))


def _as_db(raw: object) -> int | None:
    """A db number from the record's raw bytes (read undecoded: bytes that are not UTF-8 would raise
    in a decoding client); anything but ASCII digits is no record. ``str.isdigit`` passed "²" to
    ``int`` (ValueError: the worker's housekeeping and the API's recorder thread failed on it) and
    read "٣" as db 3."""
    if raw is None:
        return None
    text = raw if isinstance(raw, bytes) else str(raw).encode("utf-8", "replace")
    return int(text) if text.isascii() and text.isdigit() else None


def unrecorded_message(settings: Settings) -> str:
    return (
        f"a job id in queue {settings.queue_name!r} has no document in this worker's jobs db "
        f"(REDIS_JOBS_DB={settings.redis_jobs_db}) nor in its index, and no API has recorded which db it "
        "keeps jobs in: the id went back to the queue, and this worker takes none until an API records "
        f"its db (at most {UNRECORDED_WAIT_SECONDS:g} s); if the API's REDIS_JOBS_DB differs, give both "
        "the same"
    )


def conflict_message(settings: Settings, api_db: int) -> str:
    return (
        f"REDIS_JOBS_DB is {settings.redis_jobs_db} here, but the API keeps the jobs of queue "
        f"{settings.queue_name!r} in db {api_db}: this worker would find no job document for any id it "
        f"took, so it takes none until both say the same (set REDIS_JOBS_DB={api_db} here, or give the "
        "API this worker's REDIS_JOBS_DB, and restart the one you changed)"
    )


class Recorder:
    """An API process's background record (a daemon thread: a greenlet under gunicorn's gevent
    worker). Started after the fork, with a Redis client of its own; never raises."""

    def __init__(self, queue: redis.Redis, settings: Settings) -> None:
        self.queue = queue
        self.settings = settings
        self.stop = threading.Event()
        self._warned: set[int] = set()
        self._failing = False

    def start(self) -> Recorder:
        threading.Thread(target=self._run, name="jobs-db-recorder", daemon=True).start()
        return self

    def once(self) -> bool:
        """One write; True when it went through."""
        try:
            other = record(self.queue, self.settings)
        except redis.exceptions.RedisError as exc:
            if not self._failing:
                hint = tls_hint(self.settings.redis_url, exc)
                log.warning(
                    "cannot record the jobs db for the workers yet",
                    extra={"error": str(exc), **({"hint": hint} if hint else {})},
                )
            self._failing = True
            return False
        self._failing = False
        if other is not None and other not in self._warned:
            self._warned.add(other)
            log.warning(
                "another API recorded another jobs db for this queue",
                extra={
                    "queue": keys.queue(self.settings.queue_name),
                    "jobs_db": self.settings.redis_jobs_db,
                    "other_jobs_db": other,
                    "hint": "every API and worker of one QUEUE_NAME needs the same REDIS_JOBS_DB",
                },
            )
        return True

    def _run(self) -> None:
        while not self.stop.is_set():
            ok = self.once()
            self.stop.wait(RECORD_SECONDS if ok else RETRY_SECONDS)
