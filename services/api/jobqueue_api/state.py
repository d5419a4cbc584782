"""What a running API process holds: settings, Redis clients, the catalogue and the dataset.

Built once by :func:`jobqueue_api.create_app` and kept in ``app.extensions["jobqueue"]``; routes
reach it with :func:`current`. Nothing here talks to Redis at construction time, so the app starts
(and answers ``/healthz`` and 503s) while Redis is down.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import redis
from flask import current_app

from atx_analysis.cache import file_stamp, worth_retrying
from atx_analysis.registry import Registry
from jobqueue import keys, wire
from jobqueue.connections import jobs_redis, queue_redis
from jobqueue.delivery import Delivery
from jobqueue.jobs import JobStore, waited_ttl_seconds
from jobqueue.settings import Settings

from .batching import UNDER_WAY, GroupCall, SubmitBatcher
from .bounds import BoundedRedis, RedisDeadline, bounded
from .green import in_background
from .guesses import TokenGuesses
from .idempotency import KeyedSubmits
from .submission import store_admitted

log = logging.getLogger("jobqueue.api")


# How often, at most, a process without its dataset looks at DATA_PATH again (one stat, on a request
# that needs the data) to see whether it changed since the load failed (atx_analysis.cache.worth_retrying).
DATA_RETRY_SECONDS = 3.0


@dataclass
class DatasetSlot:
    """The dataset, or why it is not there (readiness and /data report the reason)."""

    dataset: Any = None
    error: str | None = "not loaded"
    loaded_at: float | None = None  # unix time the dataset was loaded (the web page's data view)
    # the file is there but the loader refused it: the workers wait for it to change too, so a job
    # submitted now would wait (submission.refuse_without_data answers 503 instead); a missing file
    # is not refused: the workers wait for it to appear
    refused: bool = False
    # files refused so far on this path: more than one means the replacement of a refused file was
    # refused too, which the 503 says rather than repeating the first advice as if nothing happened
    refusals: int = 0
    # a changed file is being loaded on a background thread: the 503 says so instead of "fix the file"
    reloading: bool = False
    # what a failed load tried, so that :meth:`refresh` can try again once the file changed
    path: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    failed_on: tuple[int, int, int, int] | None = None  # the file's stamp when the load failed
    next_look: float = 0.0  # time.monotonic() of the next look
    looking: threading.Lock = field(default_factory=threading.Lock)
    loading: bool = False  # a load of this process is under way (refresh starts one at a time)

    @property
    def loaded(self) -> bool:
        return self.dataset is not None

    def refresh(self) -> DatasetSlot:
        """Load DATA_PATH again if it changed since the load failed: a fixed (or newly arrived) file
        kept /readyz, /data and every submit at 503 until the API was restarted. Costs nothing once
        loaded, and one stat every :data:`DATA_RETRY_SECONDS` until then; a loaded dataset is never
        replaced (the workers keep theirs, docs/data.md). The load runs on a native thread, one at
        a time per process, and this returns at once with the slot as it is: run by the request that
        noticed, a full-size parse held the process's event loop (every request it serves) for tens
        of seconds, until gunicorn killed it for a missed heartbeat and the next process began again."""
        if self.dataset is not None or self.path is None or time.monotonic() < self.next_look:
            return self
        with self.looking:  # only the check and the mark: never held across the stat or the load
            if self.loading or time.monotonic() < self.next_look:
                return self
            self.loading = True
        try:
            changed = worth_retrying(self.path, self.failed_on)
        except BaseException:
            self.loading = False
            raise
        if not changed:
            self.next_look, self.loading = time.monotonic() + DATA_RETRY_SECONDS, False
            return self
        # readiness and /data say so meanwhile; a submit is answered as before the change (refused)
        self.error = f"loading {self.path}, changed since the last load failed ({self.error})"
        self.reloading = True
        try:
            in_background(self._load_in_background, self.path, self.options)
        except BaseException:
            self.loading = self.reloading = False
            raise
        return self

    def _load_in_background(self, path: str, options: dict[str, Any]) -> None:
        try:
            load_dataset_into(self, path, **options)
        finally:
            self.next_look, self.loading, self.reloading = time.monotonic() + DATA_RETRY_SECONDS, False, False


@dataclass
class ApiState:
    settings: Settings
    catalogue: Registry
    jobs: redis.Redis
    jobs_binary: redis.Redis
    queue: redis.Redis
    store: JobStore
    delivery: Delivery
    submits: SubmitBatcher  # concurrent submits share one Redis call, rate limit included (batching.py)
    reads: GroupCall[str, str | None]  # concurrent status reads share one MGET (batching.py)
    # the reads before a long poll's wait: each also marks its job waited for (keys.waited), in the
    # same round trip, so the job's end is announced (only waited jobs are)
    waited_reads: GroupCall[str, str | None]
    keyed: KeyedSubmits  # submits sent with an Idempotency-Key: one script call each (idempotency.py)
    guesses: TokenGuesses  # wrong tokens per client address within a sliding window (guesses.py)
    data: DatasetSlot = field(default_factory=DatasetSlot)
    waiter: Any = None  # jobqueue_api.waiting.DoneWaiter, started lazily after fork
    plot_gate: Any = None  # jobqueue_api.routes.analysis.PlotGate: sync plot cap and PNG cache


# Redis connections per client per API process: under gevent hundreds of requests run at once
# (1,000 long polls woken by one publish, a burst of submits); they share this many connections.
REDIS_POOL_SIZE = 32
# How long a status read may wait for the reads of the other clients this process is serving to
# join its MGET (only while the last MGET carried several: batching.GroupCall._wait_for_company).
READ_LINGER_SECONDS = 0.0005


def build_state(settings: Settings, catalogue: Registry) -> ApiState:
    # every call ends within REDIS_TIMEOUT_SECONDS, whatever Redis does (bounds.py); the socket
    # timeout (when REDIS_URL sets none) is half of it, so a submit whose answer a stall swallowed
    # still has time to check whether it was stored (jobqueue.delivery) and answer 202
    bound = settings.redis_timeout_seconds
    sock = bound / 2
    # its connections try the queue db as they connect: a Redis without it (databases 1) then refuses
    # the submit before anything is sent, rather than storing the job and answering 503 (wire)
    jobs = BoundedRedis.around(
        jobs_redis(settings, max_connections=REDIS_POOL_SIZE, timeout=sock, check_queue_db=True), bound
    )
    jobs_binary = BoundedRedis.around(
        jobs_redis(settings, decode=False, max_connections=REDIS_POOL_SIZE, timeout=sock), bound
    )
    delivery = Delivery(jobs, settings)
    store = JobStore(jobs, settings.job_ttl_seconds, binary=jobs_binary)
    # the group commit's transaction goes through the pool itself (jobqueue.wire): bounded as a whole
    store_many = bounded(
        partial(
            store_admitted,
            delivery,
            jobs,
            settings.submit_rate_limit,
            window_seconds=settings.submit_rate_window_seconds,
            max_jobs=settings.max_jobs_per_client,
        ),
        bound,
    )
    return ApiState(
        settings=settings,
        catalogue=catalogue,
        jobs=jobs,
        jobs_binary=jobs_binary,
        queue=BoundedRedis.around(queue_redis(settings, max_connections=REDIS_POOL_SIZE, timeout=sock), bound),
        store=store,
        delivery=delivery,
        # a submit call's lead always yields for company; a read's only when others are under way
        # (batching.py's module docstring says why)
        submits=SubmitBatcher(store_many, fails_queue=_silent),
        reads=GroupCall(
            bounded(partial(read_documents, jobs), bound),
            fails_queue=_unreachable,
            linger=READ_LINGER_SECONDS,
            company=UNDER_WAY.company,
        ),
        waited_reads=GroupCall(
            bounded(partial(read_documents_waited, jobs, waited_ttl_seconds(settings.max_wait_seconds)), bound),
            fails_queue=_unreachable,
            linger=READ_LINGER_SECONDS,
            company=UNDER_WAY.company,
        ),
        keyed=KeyedSubmits(
            delivery,
            jobs,
            settings.submit_rate_limit,
            bound,
            settings.job_ttl_seconds,
            window_seconds=settings.submit_rate_window_seconds,
            max_jobs=settings.max_jobs_per_client,
        ),
        guesses=TokenGuesses(
            jobs, settings.token_failure_limit, settings.token_failure_window_seconds, acl_guard=delivery.acl_guard
        ),
    )


def read_documents(jobs: redis.Redis, job_ids: list[str]) -> list[str | None]:
    """``JobStore.get_raw_many``'s one ``MGET`` (the status reads' group call), sent by ``wire.read``
    without redis-py's per-command layers: 24-27 µs of the API's CPU a call instead of 40-50 in a
    loop, 2% of its CPU a round trip. ``jobs`` is the decoding client; the caller bounds the call."""
    return wire.read(jobs, ("MGET", *[keys.job(job_id) for job_id in job_ids])) if job_ids else []


def read_documents_waited(jobs: redis.Redis, ttl: int, job_ids: list[str]) -> list[str | None]:
    """:func:`read_documents` for long polls about to wait: each job's mark (``keys.waited``, ``ttl``
    seconds) set before the ``MGET``, in the same round trip (``wire.repeatable``), so a finish that
    runs after the ``MGET`` sees the mark and announces the job, and one that ran before it is in the
    documents read."""
    if not job_ids:
        return []
    marks = [("SET", keys.waited(job_id), "1", "EX", str(ttl)) for job_id in job_ids]
    return wire.repeatable(jobs, [*marks, ("MGET", *[keys.job(job_id) for job_id in job_ids])])[-1]


def _unreachable(exc: BaseException) -> bool:
    """Redis did not answer (as opposed to refusing): the reads queued behind get the 503 at once."""
    return isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError))


def _silent(exc: BaseException) -> bool:
    """Redis answered nothing within the bound: the submits queued behind (none of them sent yet, so
    none stored) get the 503 at once instead of waiting out a second bound in the next call. A
    dropped connection is not this: the next call, on a new connection, usually goes through."""
    return isinstance(exc, RedisDeadline)


def load_dataset_into(slot: DatasetSlot, path: str, **load_options: Any) -> None:
    """Load DATA_PATH; a failure is recorded (readiness says why) rather than fatal, and the file's
    stamp kept, so that :meth:`DatasetSlot.refresh` loads it again once it changed."""
    from atx_analysis.dataset import load_dataset

    slot.path, slot.options = path, load_options
    slot.failed_on = file_stamp(path)
    try:
        slot.dataset = load_dataset(path, **load_options)
        slot.error, slot.refused = None, False
        slot.loaded_at = time.time()
        log.info(
            "dataset loaded",
            extra={
                "path": path,
                "rows": getattr(slot.dataset, "rows", None),
                "from_cache": getattr(slot.dataset, "from_cache", None),
                "cache_file": getattr(slot.dataset, "cache_file", None),
            },
        )
        if hasattr(slot.dataset, "date_warning") and (warning := slot.dataset.date_warning()):
            log.warning("dataset dates unusable", extra={"path": path, "detail": warning})
        if hasattr(slot.dataset, "reading_warning") and (guess := slot.dataset.reading_warning()):
            log.warning("dataset dates guessed", extra={"path": path, "detail": guess})
    except Exception as exc:  # DataFormatError, missing file, permissions: all mean "not ready"
        slot.dataset, slot.error = None, f"cannot load {path}: {exc}"
        slot.refused = os.path.exists(path)
        slot.refusals += slot.refused
        log.error(
            "dataset not loaded",
            extra={
                "path": path,
                "error": str(exc),
                "retry": f"loaded again once the file changes (checked every {DATA_RETRY_SECONDS:g} s)",
            },
        )


def current() -> ApiState:
    return current_app.extensions["jobqueue"]
