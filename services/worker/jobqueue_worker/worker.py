"""One worker process: claim ids, run jobs, write exactly one final result each.

The loop (see docs/delivery.md): claim a small batch atomically (ids move from the queue into this
worker's processing list, their documents come back in the same round trip), then for each job run
it and send one pipelined round trip that both finishes it and starts the next. The batch holds no
more than the worker expects to finish in :data:`BATCH_TARGET_SECONDS` (measured from recent jobs;
one at a time for slow ones), so the queue shows the real backlog and slow jobs spread over all
workers. A housekeeping thread keeps the heartbeat (the lease), runs the reaper and the sweeper.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import socket
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

import redis
from atx_analysis.registry import Registry

from jobqueue import keys
from jobqueue.connections import describe, jobs_redis, queue_redis
from jobqueue.delivery import Delivery, Finish, Record, Recorded, Retry, Start, StartAnswer, Started
from jobqueue.errors import PermanentError, failure_message
from jobqueue.fingerprint import request_fingerprint
from jobqueue.jobs import Job, JobStatus
from jobqueue.results import PlacedResult, place
from jobqueue.settings import Settings

from .data import DataSource
from .metrics import WorkerMetrics, metrics
from .timelimit import Alarm, GraceExpired, JobTimeout

log = logging.getLogger("jobqueue.worker")
T = TypeVar("T")

BATCH_TARGET_SECONDS = 0.1   # a worker holds at most about this much work
MAX_BATCH = 32
IDLE_WAIT_SECONDS = 1.0      # BLMOVE timeout: how soon an idle worker notices SIGTERM
SWEEP_INTERVAL_SECONDS = 60.0
LOG_SUMMARY_SECONDS = 10.0
REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
                redis.exceptions.BusyLoadingError, redis.exceptions.ReadOnlyError)


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass
class Claimed:
    """One claimed id on its way through the worker."""

    id: str
    doc: str                       # JSON as claimed ('' when the document is gone)
    job: Job | None = None         # the in-progress job, from ``doc``
    cache_key: str = ""
    started: float = 0.0           # perf_counter at start (batch sizing)
    unreadable: bool = False       # ``doc`` did not parse: record it failed, run nothing
    outcome: str = "?"             # complete | cached | failed | retried | interrupted
    elapsed: float | None = None   # seconds the operation ran (None: it did not run)


class Worker:
    def __init__(self, settings: Settings, catalogue: Registry, data: DataSource | None = None,
                 worker_id: str | None = None, metrics_: WorkerMetrics | None = None):
        self.settings = settings
        self.catalogue = catalogue
        self.id = worker_id or new_worker_id()
        self.queue = queue_redis(settings)
        self.delivery = Delivery(self.queue, settings)
        self.data = data or DataSource(settings.data_path, lambda: self.stopping, **settings.data_options())
        self.metrics = metrics_ or metrics()
        self.metrics.prime(catalogue.names())
        self.stopping = False
        self.avg_job_seconds: float | None = None
        self.alarm: Alarm | None = None
        self._stop_housekeeping = threading.Event()
        self._grace_deadline: float | None = None
        self.counts: dict[str, int] = {}

    # --- lifecycle ------------------------------------------------------------------------
    def request_stop(self, signum: int | None = None, frame: Any = None) -> None:
        """SIGTERM/SIGINT: claim nothing new, finish the job in hand within the grace."""
        if not self.stopping:
            log.info("stopping: finishing the job in hand", extra={"worker": self.id, "signal": signum})
        self.stopping = True
        if self._grace_deadline is None:
            self._grace_deadline = time.monotonic() + self.settings.shutdown_grace_seconds
            if self.alarm is not None:
                self.alarm.set_grace(self.settings.shutdown_grace_seconds)

    def work(self, burst: bool = False, install_signals: bool = True) -> int:
        """Run until SIGTERM/SIGINT (or, with ``burst``, until the queue is drained). Returns 0."""
        if threading.current_thread() is threading.main_thread():
            self.alarm = Alarm()
            if install_signals:
                signal.signal(signal.SIGTERM, self.request_stop)
                signal.signal(signal.SIGINT, self.request_stop)
        housekeeping = threading.Thread(target=self._housekeeping, name="housekeeping", daemon=True)
        housekeeping.start()
        log.info("worker started", extra={"worker": self.id, "queue": self.delivery.queue_key,  # a stall's first clue
                                          "queue_db": self.settings.redis_queue_db,
                                          "jobs_db": self.settings.redis_jobs_db, "redis": describe(self.settings)})
        backoff = _Backoff()
        while not self.stopping:
            try:
                batch = self._claim_batch(burst)
                backoff.reset()
                if batch is None:        # burst mode: nothing left anywhere
                    break
                if batch:
                    self._process(batch)
            except REDIS_ERRORS as exc:
                delay = backoff.next()
                log.warning("redis unavailable; retrying", extra={"worker": self.id, "error": str(exc),
                                                                  "retry_in": round(delay, 2)})
                self._sleep(delay)
            except Exception:   # a bug must not kill the loop; what we hold goes back via the lease
                log.exception("worker loop error", extra={"worker": self.id})
                self._sleep(backoff.next())
        self._stop_housekeeping.set()
        housekeeping.join(timeout=5)
        self._leave()
        log.info("worker stopped", extra={"worker": self.id})
        return 0

    def _leave(self) -> None:
        """Give back what we still hold (unstarted ids) and drop our heartbeat; retried briefly."""
        deadline = time.monotonic() + 5
        while True:
            try:
                n = self.delivery.leave(self.id)
                if n:
                    log.info("gave back claimed jobs", extra={"worker": self.id, "count": n})
                return
            except REDIS_ERRORS as exc:
                if time.monotonic() > deadline:
                    log.warning("could not give back claimed jobs; the reaper will after the lease",
                                extra={"worker": self.id, "error": str(exc)})
                    return
                time.sleep(0.2)

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < end:
            time.sleep(min(0.05, max(end - time.monotonic(), 0)))

    # --- claiming -------------------------------------------------------------------------
    def batch_size(self) -> int:
        if self.avg_job_seconds is None:
            return 1
        return max(1, min(MAX_BATCH, int(BATCH_TARGET_SECONDS / max(self.avg_job_seconds, 1e-6))))

    def _claim_batch(self, burst: bool) -> list[Claimed] | None:
        n = self.batch_size()
        items = self.delivery.claim(self.id, n)
        if not items:
            if burst:
                if self.delivery.pending():
                    time.sleep(0.02)   # retries waiting out their backoff
                    return []
                return None
            job_id = self.delivery.wait_one(self.id, IDLE_WAIT_SECONDS)
            if job_id is None:
                return []
            items = self.delivery.claim(self.id, n - 1, held=[job_id])
        return [Claimed(i, d) for i, d in items]

    # --- processing -----------------------------------------------------------------------
    def _process(self, batch: list[Claimed]) -> None:
        """Run a claimed batch: start the first, then one round trip per job that records it and
        starts the next. When stopping, unstarted ids go back to the front of the queue."""
        pending = deque(batch)
        current: Claimed | None = pending.popleft()
        first = self._prepare_start(current)
        answer: StartAnswer | None = self._send(lambda: self.delivery.start(self.id, first), current.id)
        while current is not None and answer is not None:
            record = self._run(current, answer)
            nxt = pending.popleft() if pending and not self.stopping else None
            start = self._prepare_start(nxt) if nxt is not None else None
            recorded, answer = self._record(current, record, start)
            if record is not None:
                self._after_final(current, recorded)
            if current.started:
                self._learn(time.perf_counter() - current.started)
            current = nxt
        if pending:
            self._send_give_back([c.id for c in pending])

    def _record(self, item: Claimed, record: Record | None,
                start: Start | None) -> tuple[Recorded | None, StartAnswer | None]:
        """Record ``item``'s outcome and start the next job, in one round trip when there are both."""
        if record is not None and start is not None:
            return self._send(lambda: self.delivery.record_and_start(self.id, record, start), item.id)
        if record is not None:
            return self._send(lambda: self.delivery.record(self.id, record), item.id), None
        if start is not None:
            return None, self._send(lambda: self.delivery.start(self.id, start), start.job.id)
        return None, None

    def _prepare_start(self, item: Claimed) -> Start:
        """The in-progress document for a claimed id (attempt counted), and its cache key."""
        item.started = time.perf_counter()
        if not item.doc:   # deleted or expired since it was queued: the start script acks it
            item.job = Job(id=item.id, operation="?", params={})
            return Start(item.job)
        try:
            job = Job.from_json(item.doc)
        except (ValueError, TypeError, KeyError) as exc:
            # unreadable: record it as failed (runs nothing) rather than crash on it again and again
            log.error("unreadable job document", extra={"job_id": item.id, "error": str(exc)})
            job = Job(id=item.id, operation="?", params={}, error=f"unreadable job document: {exc}")
            item.unreadable = True
        job.status = JobStatus.IN_PROGRESS
        job.started_at = time.time()
        job.attempts += 1
        job.worker = self.id
        item.job = job
        if self.settings.result_cache and not item.unreadable:
            item.cache_key = self._cache_key(job)
        return Start(job, item.cache_key)

    def _cache_key(self, job: Job) -> str:
        """Only deterministic dataset operations are cached (never ``sleep``)."""
        try:
            op = self.catalogue.get(job.operation)
            if not op.needs_dataset:
                return ""
            params = op.validate(job.params)
            self.data.get()
        except Exception:   # unknown op / bad params / no data: the run reports it
            return ""
        job.dataset = self.data.identity
        fp = request_fingerprint(job.operation, params, job.dataset)
        return keys.result_cache(fp) if fp else ""

    def _run(self, item: Claimed, answer: StartAnswer) -> Record | None:
        """Decide what to do with a started job, do it, and return how to record it (None: not ours)."""
        if answer.state in (Started.SKIP, Started.GONE):
            log.info("job not run", extra={"job_id": item.id, "reason": "final or deleted"
                                           if answer.state is Started.SKIP else "claim lost to the reaper"})
            return None
        job = item.job
        assert job is not None
        if item.unreadable:
            return self._fail(item, job.error or "unreadable job document")
        if answer.state is Started.CACHED:
            assert answer.cached_doc is not None
            return self._answer_from_cache(item, Job.from_json(answer.cached_doc))
        if job.attempts > self.settings.job_max_attempts:
            return self._fail(item, f"gave up after {job.attempts - 1} attempts (the worker was lost each time)")
        log.debug("job started", extra={"job_id": job.id, "operation": job.operation, "attempt": job.attempts})
        t0 = time.perf_counter()
        try:
            placed = self._execute(job)
        except Exception as exc:
            return self._classify(item, exc, time.perf_counter() - t0)
        return self._complete(item, placed, time.perf_counter() - t0)

    def _execute(self, job: Job) -> PlacedResult:
        """Run the operation under the time limit; the result placed inline or as a blob."""
        self.metrics.busy.set(1)
        try:
            op = self.catalogue.get(job.operation)
            dataset = self.data.get() if op.needs_dataset else None
            if op.needs_dataset:
                job.dataset = self.data.identity
            if self.alarm is not None:
                with self.alarm.limit(self.settings.job_timeout_seconds):
                    result = op.run(dataset, job.params)
            else:
                result = op.run(dataset, job.params)
            return place(result, op.produces_png)
        finally:
            self.metrics.busy.set(0)

    def _classify(self, item: Claimed, exc: Exception, elapsed: float) -> Record:
        """Fail at once what would fail again; retry with backoff what may not (while attempts remain)."""
        job = item.job
        assert job is not None
        if isinstance(exc, PermanentError):  # jobqueue.errors: the next attempt would fail the same way
            return self._fail(item, failure_message(exc), elapsed)
        if isinstance(exc, JobTimeout):
            return self._fail(item, f"time limit of {self.settings.job_timeout_seconds:g} s exceeded", elapsed)
        if isinstance(exc, GraceExpired):
            log.warning("shutdown grace over; giving the job back", extra={"job_id": job.id})
            return self._retry(item, "interrupted by worker shutdown", delay=0.0, count=False)
        message = failure_message(exc)
        if job.attempts < self.settings.job_max_attempts:
            delay = self.settings.job_retry_backoff_seconds * 2 ** (job.attempts - 1)
            delay = min(delay, 300.0) * random.uniform(0.8, 1.2)
            log.warning("job attempt failed; retrying", extra={"job_id": job.id, "error": message,
                                                                "attempt": job.attempts, "retry_in": round(delay, 3)})
            return self._retry(item, message, delay, elapsed=elapsed)
        return self._fail(item, message, elapsed, exc_info=exc)

    def _complete(self, item: Claimed, placed: PlacedResult, elapsed: float) -> Finish:
        job = item.job
        assert job is not None
        job.status = JobStatus.COMPLETE
        job.finished_at = time.time()
        job.error = None
        job.result = placed.inline
        job.result_type = placed.result_type
        item.outcome, item.elapsed = "complete", elapsed
        return Finish(job, blob=placed.blob, cache_key=item.cache_key)

    def _answer_from_cache(self, item: Claimed, source: Job) -> Finish:
        job = item.job
        assert job is not None
        job.status = JobStatus.COMPLETE
        job.finished_at = time.time()
        job.result = source.result
        job.result_type = source.result_type
        job.cached_from = source.cached_from or source.id
        job.dataset = source.dataset
        item.outcome = "cached"
        return Finish(job, copy_from=source.result_ref or "")

    def _fail(self, item: Claimed, message: str, elapsed: float | None = None,
              exc_info: BaseException | bool = False) -> Finish:
        job = item.job
        assert job is not None
        job.status = JobStatus.FAILED
        job.finished_at = time.time()
        job.error = message
        item.outcome, item.elapsed = "failed", elapsed
        log.warning("job failed", extra={"job_id": job.id, "operation": job.operation, "error": message},
                    exc_info=exc_info)
        return Finish(job)

    def _retry(self, item: Claimed, message: str, delay: float, count: bool = True,
               elapsed: float | None = None) -> Retry:
        job = item.job
        assert job is not None
        job.status = JobStatus.SUBMITTED
        job.error = message
        job.worker = None
        if not count:
            job.attempts -= 1
        item.outcome, item.elapsed = ("retried" if count else "interrupted"), elapsed
        return Retry(job, delay)

    def _after_final(self, item: Claimed, recorded: Recorded | None) -> None:
        job = item.job
        op = job.operation if job else "?"
        if recorded is not Recorded.OK:
            log.info("job outcome discarded", extra={"job_id": item.id, "operation": op,
                                                     "reason": recorded.value if recorded else None})
            return
        outcome, elapsed = item.outcome, item.elapsed
        self.metrics.done(op, outcome, elapsed)
        self.counts[outcome] = self.counts.get(outcome, 0) + 1
        if outcome in ("complete", "cached") and log.isEnabledFor(logging.DEBUG):
            # one line per success only at DEBUG (a no-op job costs less than a log line); the
            # housekeeping thread logs a summary every LOG_SUMMARY_SECONDS; failures always log.
            log.debug("job " + outcome, extra={"job_id": item.id, "operation": op, "attempt": job.attempts if job else None,
                                               "seconds": None if elapsed is None else round(elapsed, 6)})

    def _learn(self, seconds: float) -> None:
        """Track job time: up at once on a slow job, down gently, so batches never hoard slow work."""
        avg = self.avg_job_seconds
        if avg is None or seconds > avg:
            self.avg_job_seconds = seconds
        else:
            self.avg_job_seconds = 0.8 * avg + 0.2 * seconds

    # --- Redis round trips that must not be lost ------------------------------------------
    def _send(self, call: Callable[[], T], job_id: str) -> T:
        """Run ``call``; on a Redis outage keep retrying (the outcome is in memory) until the grace ends.

        Re-running after an ambiguous failure is safe: a finish that had already applied answers
        "lost", which only means this process does not record the outcome twice.
        """
        backoff = _Backoff()
        while True:
            try:
                return call()
            except REDIS_ERRORS as exc:
                if self.stopping and self._grace_deadline is not None and time.monotonic() > self._grace_deadline:
                    raise
                delay = backoff.next()
                log.warning("redis unavailable while recording a job; retrying",
                            extra={"worker": self.id, "error": str(exc), "retry_in": round(delay, 2),
                                   "job_id": job_id})
                time.sleep(delay)

    def _send_give_back(self, ids: list[str]) -> None:
        try:
            n = self.delivery.give_back(self.id, ids)
            log.info("gave back unstarted jobs", extra={"worker": self.id, "count": n})
        except REDIS_ERRORS:
            pass   # still in our processing list: _leave retries, else the reaper requeues them

    # --- housekeeping thread: heartbeat (lease), reaper, sweeper --------------------------
    def _housekeeping(self) -> None:
        lease = self.settings.job_lease_seconds
        beat_every = max(0.05, min(lease / 3, 5.0))
        reap_every = max(0.1, lease / 2)
        next_reap = 0.0
        next_sweep = time.monotonic() + random.uniform(0, SWEEP_INTERVAL_SECONDS)
        jobs_client: redis.Redis | None = None
        next_summary = time.monotonic() + LOG_SUMMARY_SECONDS
        reported: dict[str, int] = {}
        while not self._stop_housekeeping.is_set():
            now = time.monotonic()
            if now >= next_summary:
                next_summary = now + LOG_SUMMARY_SECONDS
                counts = dict(self.counts)
                delta = {k: v - reported.get(k, 0) for k, v in counts.items() if v != reported.get(k, 0)}
                if delta:
                    log.info("jobs processed", extra={"worker": self.id, "last_seconds": LOG_SUMMARY_SECONDS, **delta})
                reported = counts
            try:
                self.delivery.heartbeat(self.id)
                if now >= next_reap:
                    next_reap = now + reap_every
                    moved, dead = self.delivery.reap(lease)
                    if moved or dead:
                        self.metrics.requeued.inc(moved)
                        log.warning("requeued jobs of silent workers", extra={"worker": self.id, "count": moved,
                                                                              "dead_workers": dead})
                if now >= next_sweep:
                    next_sweep = now + SWEEP_INTERVAL_SECONDS
                    if self.delivery.try_lock_sweep(SWEEP_INTERVAL_SECONDS / 2):
                        jobs_client = jobs_client or jobs_redis(self.settings)
                        n = self.delivery.sweep(jobs_client, older_than=max(60.0, lease))
                        if n:
                            log.warning("requeued submitted jobs found in no list", extra={"count": n})
            except REDIS_ERRORS as exc:
                log.debug("housekeeping: redis unavailable", extra={"error": str(exc)})
            except Exception:
                log.exception("housekeeping failed")
            self._stop_housekeeping.wait(beat_every)


class _Backoff:
    def __init__(self, first: float = 0.1, cap: float = 5.0):
        self.first, self.cap, self.current = first, cap, first

    def next(self) -> float:
        delay = self.current * random.uniform(0.8, 1.2)
        self.current = min(self.current * 2, self.cap)
        return delay

    def reset(self) -> None:
        self.current = self.first
