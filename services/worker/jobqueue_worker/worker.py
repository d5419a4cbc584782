"""One worker process: claim ids, run jobs, write exactly one final result each.

The loop (see docs/delivery.md): claim a small batch atomically (ids move from the queue into this
worker's processing list, their documents come back in the same round trip), start the batch's
jobs in one call (marked in-progress), run them, and record their outcomes in one call that also
claims the next batch. Jobs this worker expects to finish within :data:`FLUSH_SECONDS` skip the
start: nobody would see their in-progress state, and writing it was most of their Redis cost. The
batch holds no more than the worker expects to finish in :data:`BATCH_TARGET_SECONDS` (measured
from recent jobs; one at a time for slow ones), so the queue shows the real backlog and slow jobs
spread over all workers. A housekeeping thread keeps the heartbeat (the lease), runs the reaper and
the sweeper.
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
from dataclasses import dataclass, replace
from typing import Any, TypeVar
from collections.abc import Callable

import redis
from atx_analysis import cache as data_cache
from atx_analysis.registry import Registry

from jobqueue.connections import (
    acl_refusal,
    db_refusal,
    describe,
    is_transient,
    jobs_redis,
    queue_redis,
    tls_hint,
    unavailable_state,
    write_refusal,
)
from jobqueue.delivery import Claim, Delivery, Finish, Record, Recorded, Retry, Start, StartAnswer, Started
from jobqueue.errors import failure_message, is_permanent
from jobqueue.fingerprint import request_fingerprint
from jobqueue.jobs import Job, JobStatus, JobStore
from jobqueue.lanes import PLOTS
from jobqueue.results import PlacedResult, place
from jobqueue.settings import Settings
from jobqueue.wire import SetupRefused

from .aclgate import AclGate, log_refusal
from .data import DataSource
from .jobsdbgate import STALLED, JobsDbGate
from .metrics import WorkerMetrics, metrics
from .timelimit import Alarm, GraceExpired, JobTimeout

log = logging.getLogger("jobqueue.worker")
T = TypeVar("T")

BATCH_TARGET_SECONDS = 0.1  # a worker holds at most about this much work
MAX_BATCH = 32
FLUSH_SECONDS = 0.005  # a finished job waits at most this long to be recorded with others
PROMOTE_SECONDS = 0.02  # a quick job still running after this is started from another thread
IDLE_WAIT_SECONDS = 1.0  # BLMOVE timeout (a SIGTERM ends an idle worker's wait at once: _Interrupted)
EXIT_SECONDS = 1.0  # once the loop ends: at most this to stop the threads and give back what is held
SWEEP_INTERVAL_SECONDS = 60.0
LOG_SUMMARY_SECONDS = 10.0


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass
class Claimed:
    """One claimed id on its way through the worker."""

    id: str
    doc: str  # JSON as claimed ('' when the document is gone)
    reaped: bool = False  # the reaper took it from a dead worker: always started first
    job: Job | None = None  # the in-progress job, from ``doc``
    fingerprint: str = ""  # of the request, when its result may come from the cache
    started: float = 0.0  # perf_counter at start (batch sizing)
    unreadable: bool = False  # ``doc`` did not parse: record it failed, run nothing
    quick: bool = False  # expected within FLUSH_SECONDS: run without a start call
    promoted: bool = False  # a quick job that ran long, started while it ran
    outcome: str = "?"  # complete | cached | failed | retried | interrupted
    elapsed: float | None = None  # seconds the operation ran (None: it did not run)


class Worker:
    def __init__(
        self,
        settings: Settings,
        catalogue: Registry,
        data: DataSource | None = None,
        worker_id: str | None = None,
        metrics_: WorkerMetrics | None = None,
    ):
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
        self.op_seconds: dict[str, float] = {}  # per operation, learnt as avg_job_seconds is
        self.alarm: Alarm | None = None
        self._stop_housekeeping = threading.Event()
        self._grace_deadline: float | None = None
        self.counts: dict[str, int] = {}
        self._prefetched: list[Claimed] = []
        self._found_none = False  # the last outcomes' call claimed and found the queue empty
        self._claim_in_doubt = False  # a claim's answer was lost: ids may sit in our processing list
        self._lanes_empty = False  # the claim of the batch in hand got fewer ids than it asked for
        self._claimed_at = 0.0  # perf_counter when that claim answered
        self._idle_after = False  # the batch in hand may end with a finish that waits (_finish_then_wait)
        self._burst = False
        self._running: tuple[Claimed, float] | None = None  # the quick job running now, since when
        self._running_lock = threading.Lock()  # its document is not changed while the promoter reads it
        # while the API's REDIS_JOBS_DB is not ours, or may not be: claim nothing
        self.jobs_db = JobsDbGate(self.queue, settings, self.id, self.delivery.queue_key)
        # while Redis's ACL refuses our user a command our scripts call: no script of ours runs
        # that writes, so none can stop half-way
        self.acl = AclGate(self.queue, settings, self.id)
        # the main thread waits on Redis with no job in hand: a SIGTERM may end that wait at once
        self._interruptible = False

    # --- lifecycle ------------------------------------------------------------------------
    def request_stop(self, signum: int | None = None, frame: Any = None) -> None:
        """SIGTERM/SIGINT: claim nothing new, finish the job in hand within the grace. As a signal
        handler, with no job in hand, it also ends the Redis call the loop waits on (_Interrupted):
        a Redis that hangs kept a worker with nothing to do waiting out its socket timeouts."""
        if not self.stopping:
            log.info("stopping: finishing the job in hand", extra={"worker": self.id, "signal": signum})
        self.stopping = True
        if self._grace_deadline is None:
            self._grace_deadline = time.monotonic() + self.settings.shutdown_grace_seconds
            if self.alarm is not None:
                self.alarm.set_grace(self.settings.shutdown_grace_seconds)
        if signum is not None and self._interruptible:
            self._interruptible = False
            raise _Interrupted

    def work(self, burst: bool = False, install_signals: bool = True) -> int:
        """Run until SIGTERM/SIGINT (or, with ``burst``, until the queue is drained). Returns 0, or
        2 in burst mode when the API keeps jobs in another REDIS_JOBS_DB, or may (``jobsdbgate``), or
        Redis's ACL refuses our user a command our scripts call (``aclgate``)."""
        if threading.current_thread() is threading.main_thread():
            self.alarm = Alarm()
            if install_signals:
                signal.signal(signal.SIGTERM, self.request_stop)
                signal.signal(signal.SIGINT, self.request_stop)
        housekeeping = threading.Thread(target=self._housekeeping, name="housekeeping", daemon=True)
        housekeeping.start()
        promoter = threading.Thread(target=self._promote, name="promoter", daemon=True)
        promoter.start()
        log.info(
            "worker started",
            extra={
                "worker": self.id,
                "queue": self.delivery.queue_key,  # a stall's first clue
                "queue_db": self.settings.redis_queue_db,
                "jobs_db": self.settings.redis_jobs_db,
                "redis": describe(self.settings),
            },
        )
        self._burst = burst
        try:
            self.jobs_db.check()
            self.acl.check()
        except redis.exceptions.RedisError:
            pass  # unreachable: the loop's first call says so, and the heartbeats check again
        exit_code = 0
        try:
            exit_code = self._loop(burst)
        except _Interrupted:
            # a SIGTERM while idle: whatever the cut-off call claimed is in our processing list, for
            # _leave; its connection may hold a reply not read yet, so none is used again
            self.queue.connection_pool.disconnect()
        self._interruptible = False
        self._exit(housekeeping, promoter)
        return exit_code

    def _loop(self, burst: bool) -> int:
        """Claim and run until stopping; the exit code (2: a burst run that can take nothing).
        Everything but :meth:`_process` (a job in hand) is interruptible by SIGTERM."""
        backoff = _Backoff()
        holding = False  # after an error: ids may sit in our processing list that nobody runs
        while not self.stopping:
            self._interruptible = True
            try:
                if self.acl.refused is not None:
                    # hold what we hold (a give back refused part-way could strand it) and claim nothing
                    if burst:  # a drain that can take nothing would never end
                        return 2
                    self._sleep(IDLE_WAIT_SECONDS)  # the heartbeat thread checks again
                    continue
                if holding or self._claim_in_doubt:
                    self._prefetched = []  # claimed before the error: given back with the rest
                    self._give_back_held()
                    holding = self._claim_in_doubt = False
                if self.jobs_db.stalled():
                    if self._prefetched:  # claimed with the last outcomes: back to the queue, not held
                        self._prefetched = []
                        self._give_back_held(STALLED)
                    if burst:  # a drain that can take nothing would never end
                        return 2
                    self._sleep(IDLE_WAIT_SECONDS)  # the heartbeat thread checks again
                    continue
                batch = self._claim_batch(burst)
                backoff.reset()
                if batch is None:  # burst mode: nothing left anywhere
                    break
                if batch and any(not item.doc for item in batch):  # rare: ids without a document
                    batch = self._return_unfound(batch)
                if batch and self.jobs_db.stalled():  # learnt while the claim waited, or from an id without a document
                    self._prefetched = []
                    self._give_back_held(STALLED)
                    continue
                if batch:
                    self._interruptible = False  # a job in hand: it finishes within the grace
                    self._process(batch)
            except Exception as exc:
                # Our heartbeat keeps the lease of what we hold, so nobody else would run it: give it
                # all back (next turn) before claiming again, whatever went wrong.
                self._interruptible = False
                holding = True
                delay = backoff.next()
                if acl_refusal(exc):
                    log_refusal(exc, self.id, delay)
                    self.acl.recheck()
                elif isinstance(exc, SetupRefused) or db_refusal(exc):  # a traceback a retry, before
                    fix = (
                        "REDIS_URL's user and password or REDIS_PASSWORD"  # a wrong password said "unavailable"
                        if getattr(exc, "command", None) == "AUTH"
                        else "REDIS_URL, REDIS_JOBS_DB or REDIS_QUEUE_DB"
                    )
                    log.error(
                        f"redis refuses this worker's settings: fix {fix}; retrying",
                        extra={"worker": self.id, "error": str(exc).split(" script: ")[0], "retry_in": round(delay, 2)},
                    )
                elif is_transient(exc):
                    log.warning(
                        "redis unavailable or refusing writes; retrying",
                        extra={
                            "worker": self.id,
                            "error": str(exc),
                            "retry_in": round(delay, 2),
                            "cause": write_refusal(exc) or unavailable_state(exc) or "unreachable",
                            **({"hint": hint} if (hint := tls_hint(self.settings.redis_url, exc)) else {}),
                        },
                    )
                else:  # a bug must not kill the loop
                    log.exception("worker loop error", extra={"worker": self.id})
                self._interruptible = True
                self._sleep(delay)
        self._interruptible = False
        return 0

    def _exit(self, housekeeping: threading.Thread, promoter: threading.Thread) -> None:
        """Stop the threads, give back what we hold and drop our heartbeat, within EXIT_SECONDS.
        With Redis gone that is a bound, not a wait: whatever we hold stays in our processing list,
        and the reaper of a live worker requeues it once our lease lapses (at-least-once)."""
        deadline = time.monotonic() + EXIT_SECONDS
        self._stop_housekeeping.set()
        # half the time at most: a thread stuck in a Redis call must not use up the give back's
        threads_done = deadline - EXIT_SECONDS / 2
        for thread in (housekeeping, promoter):
            thread.join(timeout=max(0.0, threads_done - time.monotonic()))
        # in a thread of its own: one Redis call that hangs (a socket timeout, retried) outlasts the bound
        leaving = threading.Thread(target=self._leave, args=(deadline,), name="leave", daemon=True)
        leaving.start()
        leaving.join(timeout=max(0.0, deadline - time.monotonic()))
        if leaving.is_alive():
            log.warning(
                "could not give back claimed jobs; the reaper will after the lease",
                extra={"worker": self.id, "error": f"Redis did not answer within {EXIT_SECONDS:g} s"},
            )
        log.info("worker stopped", extra={"worker": self.id})

    def _return_unfound(self, batch: list[Claimed]) -> list[Claimed]:
        """Claimed ids whose document our jobs db lacks: the API's record, read again now, decides
        (jobqueue.jobsdb). Our db: deleted or expired, the start acks them. Another db: the caller
        gives the batch back. None: the ids our db never indexed go back to the front of their lane
        and we stall, waiting for a record (after UNRECORDED_WAIT_SECONDS without one, as ours)."""
        api_db = self.jobs_db.check()
        if api_db is not None or self.jobs_db.waited_out():
            return batch
        unfound = [item.id for item in batch if not item.doc]
        back = self.delivery.return_unfound(self.id, unfound)
        if not back:  # every one known to our indexes: deleted or expired here
            return batch
        self.jobs_db.wait_for_record(back)
        returned = set(back)
        return [item for item in batch if item.id not in returned]

    def _grace_over(self) -> bool:
        """Stopping, and the shutdown grace has ended: what is still retried gives up."""
        return self.stopping and self._grace_deadline is not None and time.monotonic() > self._grace_deadline

    def _leave(self, deadline: float) -> None:
        """Give back what we still hold (unstarted ids) and drop our heartbeat; retried until ``deadline``.
        While the ACL refuses a command of ours, neither: a give back refused part-way could strand
        an id, so the ids stay in our processing list and the reaper requeues them after the lease."""
        if self.acl.refused is not None:
            self.acl.recheck()
        if self.acl.refused is not None:
            log.warning(
                "leaving the jobs it holds to the reaper: the Redis ACL refuses a command of the give back",
                extra={"worker": self.id, "refused": self.acl.refused},
            )
            return
        while True:
            try:
                n = self.delivery.leave(self.id)
                if n:
                    log.info("gave back claimed jobs", extra={"worker": self.id, "count": n})
                return
            except redis.exceptions.RedisError as exc:
                if not is_transient(exc) or time.monotonic() + 0.1 > deadline:
                    log.warning(
                        "could not give back claimed jobs; the reaper will after the lease",
                        extra={"worker": self.id, "error": str(exc)},
                    )
                    return
                time.sleep(0.1)

    def _give_back_held(self, why: str = "after an error") -> None:
        n = self.delivery.give_back_all(self.id)
        if n:
            log.warning(f"gave back the jobs it held {why}", extra={"worker": self.id, "count": n})

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
        if self._prefetched:  # claimed with the last batch's outcomes
            batch, self._prefetched = self._prefetched, []
            return batch
        n = self.batch_size()
        # the call that recorded the last outcomes has just claimed and found nothing: block at once
        items = [] if self._found_none and not burst else self.delivery.claim(self.id, n)
        self._found_none = False
        if not items:
            if burst:
                if self.delivery.pending():
                    time.sleep(0.02)  # retries waiting out their backoff
                    return []
                return None
            # the blocking pop and the claim of what it moved: one round trip
            items = self.delivery.wait_and_claim(self.id, n, IDLE_WAIT_SECONDS)
            self._found_none = not items  # it timed out having claimed nothing: block again at once
        self._claimed(len(items), n)
        return _claimed(items)

    def _claimed(self, got: int, asked: int) -> None:
        self._lanes_empty = got < asked
        self._claimed_at = time.perf_counter()

    # --- processing -----------------------------------------------------------------------
    def _process(self, batch: list[Claimed]) -> None:
        """Run a claimed batch. Outcomes wait at most FLUSH_SECONDS to be recorded together (a slow
        job is recorded at once: its batch is one job); a job is started (marked in-progress) only
        shortly before it runs, with the jobs expected to be reached within FLUSH_SECONDS after it,
        in the same call that records the outcomes waiting then; the call that records the batch's
        last outcomes claims the next batch. So a busy worker makes a round trip per FLUSH_SECONDS
        of work at most (one or two per batch of no-op jobs), and a worker killed -9 has started
        little that it did not run. Quick jobs (see :meth:`_is_quick`) are never started. When
        stopping, the job in hand (the first) finishes; the others go back to the front of the
        queue, their attempt not counted."""
        starts = [self._prepare_start(item) for item in batch]
        # its claim found the lanes empty and it holds no plots job (more may wait): see _flush
        self._idle_after = self._lanes_empty and not any(i.job is not None and i.job.lane == PLOTS for i in batch)
        answers: list[StartAnswer | None] = [_UNSTARTED if item.quick else None for item in batch]
        waiting: list[tuple[Claimed, Record]] = []
        untouched: list[str] = []  # not started when stopping: nothing was written about them
        oldest = 0.0
        for index, item in enumerate(batch):
            if self.stopping and index > 0:  # the first is the job in hand: it still runs
                rest = list(zip(batch[index:], answers[index:]))
                started = [
                    c
                    for c, a in rest
                    if a is not None
                    and a is not _UNSTARTED
                    and a.state in (Started.OK, Started.CACHED)
                    and not c.unreadable
                ]
                # each goes back to the front of the queue: reversed keeps their order
                waiting += [
                    (c, self._retry(c, "interrupted by worker shutdown", 0.0, count=False)) for c in reversed(started)
                ]
                untouched = [c.id for c, a in rest if a is None or a is _UNSTARTED]
                break
            if answers[index] is None:
                chunk = self._start_chunk(batch, answers, index)
                now = [starts[chunk[0]]] + [_ahead(starts[k]) for k in chunk[1:]]
                for k, start_answer in zip(chunk, self._flush(waiting, False, now)):
                    answers[k] = start_answer
                waiting = []
            answer = answers[index]
            assert answer is not None
            item.started = time.perf_counter()
            if item.job is not None:
                item.job.started_at = time.time()  # when it really began (the start said: its chunk)
            record = self._run(item, answer)
            ran = item.job.operation if item.job and item.elapsed is not None else None  # not a cache hit
            self._learn(time.perf_counter() - item.started, ran)
            if record is not None:
                if not waiting:
                    oldest = time.perf_counter()
                waiting.append((item, record))
            last = index == len(batch) - 1
            starts_next = not last and answers[index + 1] is None  # that call will record these too
            if waiting and (last or (not starts_next and time.perf_counter() - oldest >= FLUSH_SECONDS)):
                self._flush(waiting, claim_next=last)
                waiting = []
        if untouched:  # first: the started ones, put back at the front next, stay ahead of them
            self._send_give_back(untouched)
        if waiting:
            self._flush(waiting, claim_next=False)

    def _start_chunk(self, batch: list[Claimed], answers: list[StartAnswer | None], index: int) -> list[int]:
        """Which jobs to start now: the one at ``index`` and the unstarted ones after it that the
        worker expects to reach within FLUSH_SECONDS (quick ones count their time, need no start)."""
        chunk: list[int] = []
        ahead = 0.0
        for k in range(index, len(batch)):
            if chunk and ahead > FLUSH_SECONDS:
                break
            if answers[k] is None:
                chunk.append(k)
            job = batch[k].job
            expected = self.op_seconds.get(job.operation) if job else None
            ahead += expected if expected is not None else (self.avg_job_seconds or 2 * FLUSH_SECONDS)
        return chunk

    def _flush(
        self, waiting: list[tuple[Claimed, Record]], claim_next: bool, starts: list[Start] | None = None
    ) -> list[StartAnswer]:
        """Record the waiting outcomes; with ``claim_next``, claim the next batch in the same call;
        with ``starts``, start those jobs in the same call (their answers are returned)."""
        self.acl.hold(self._grace_over)
        if not waiting:
            # a start alone that fails is not retried here: the work loop gives the batch back
            return self.delivery.start_many(self.id, starts) if starts else []
        records = [record for _, record in waiting]
        # A call that retries a job keeps its answer in Redis under an id of its own, sent again
        # (redis-py's retry or this worker's) it answers what it did: the job it queued again may
        # have been started by another worker meanwhile, and it would answer 'lost'. Such a call
        # claims nothing (a claim is never sent twice); the next claim is its own call.
        call_id = uuid.uuid4().hex if any(isinstance(r, Retry) for r in records) else None
        claim = [self.batch_size() if claim_next and not self.stopping and call_id is None else 0]
        if (
            claim[0]
            and not starts
            and self._idle_after
            and not self._burst
            and time.perf_counter() - self._claimed_at <= FLUSH_SECONDS
        ):
            return self._finish_then_wait(waiting, claim[0])

        def call() -> tuple[list[Recorded], list[Claim], list[StartAnswer]]:
            if starts:  # starting again after an ambiguous failure is harmless: same document
                recorded, started = self.delivery.record_and_start_many(self.id, records, starts, call_id)
                return recorded, [], started
            n, claim[0] = claim[0], 0  # a retried call only records: never claim twice
            if n:  # until its answer arrives, Redis may have claimed ids this process never learns
                self._claim_in_doubt = True
            recorded, claimed = self.delivery.record_many(self.id, records, claim=n, call_id=call_id)
            if n:
                self._claim_in_doubt = False
                self._found_none = not claimed
                self._claimed(len(claimed), n)
            return recorded, claimed, []

        recorded, claimed, started = self._send(call, waiting[0][0].id)
        for (item, _), outcome in zip(waiting, recorded):
            self._after_final(item, outcome)
        if claimed:
            self._prefetched = _claimed(claimed)
        return started

    def _finish_then_wait(self, waiting: list[tuple[Claimed, Record]], n: int) -> list[StartAnswer]:
        """The last outcomes of a batch whose claim found the lanes empty, a moment ago: recorded in
        the same write as the idle worker's wait (``Delivery.finish_then_wait``), instead of a call
        that records and claims, which would usually find nothing and then wait. A round trip a job
        fewer for a worker kept busy one job at a time (the tutorial's submit-and-wait loop). The
        outcomes are counted (metrics, log) when the wait ends: at most IDLE_WAIT_SECONDS later."""
        finishes = [record for _, record in waiting if isinstance(record, Finish)]
        assert len(finishes) == len(waiting)  # a call that retries a job keeps its answer: not here
        recorded: list[list[Recorded]] = []

        def after(outcomes: list[Recorded]) -> None:
            recorded.append(outcomes)
            for (item, _), outcome in zip(waiting, outcomes):
                self._after_final(item, outcome)

        self._claim_in_doubt = True  # until the wait answers, Redis may have claimed ids for us
        try:
            claimed = self.delivery.finish_then_wait(self.id, finishes, n, IDLE_WAIT_SECONDS, after)
        except redis.exceptions.RedisError as exc:
            if recorded or not _retried(exc):
                raise  # the work loop gives back whatever the wait may have claimed
            # the finish's answer was lost: record again (a first send that applied answers "ok"),
            # then the work loop gives back what the wait may have claimed
            self._flush(waiting, claim_next=False)
            return []
        self._claim_in_doubt = False
        self._found_none = not claimed
        self._claimed(len(claimed), n)
        if claimed:
            self._prefetched = _claimed(claimed)
        return []

    def _prepare_start(self, item: Claimed) -> Start:
        """The in-progress document for a claimed id (attempt counted), and its cache key."""
        item.started = time.perf_counter()
        if not item.doc:  # deleted or expired since it was queued: the start script acks it
            item.job = Job(id=item.id, operation="?", params={})
            return Start(item.job)
        try:
            job = Job.from_json(item.doc)
        except (ValueError, TypeError, KeyError) as exc:
            # unreadable: record it as failed (runs nothing) rather than crash on it again and again
            log.error("unreadable job document", extra={"job_id": item.id, "error": str(exc)})
            job = Job(id=item.id, operation="?", params={}, error=f"unreadable job document: {exc}")
            item.unreadable = True
        claimed_status = job.status
        job.status = JobStatus.IN_PROGRESS
        job.started_at = time.time()
        job.attempts += 1
        job.worker = self.id
        item.job = job
        if self.settings.result_cache and not item.unreadable:
            item.fingerprint = self._fingerprint(job)
        item.quick = self._is_quick(item, claimed_status)
        return Start(job, item.fingerprint)

    def _is_quick(self, item: Claimed, claimed_status: JobStatus) -> bool:
        """Run without a start call: a fresh job (submitted, not taken from a dead worker) of an
        operation this worker has seen finish within FLUSH_SECONDS, with no cache lookup to make.
        Its attempt is written with its final document; if this process dies while running it, the
        reaper marks the id, so the next worker starts it properly and the attempt counts."""
        if item.reaped or item.unreadable or item.fingerprint or claimed_status is not JobStatus.SUBMITTED:
            return False
        seconds = self.op_seconds.get(item.job.operation) if item.job else None
        return seconds is not None and seconds <= FLUSH_SECONDS

    def _fingerprint(self, job: Job) -> str:
        """Only deterministic dataset operations are cached (never ``sleep``)."""
        try:
            op = self.catalogue.get(job.operation)
            if not op.needs_dataset:
                return ""
            params = op.validate(job.params)
            self.data.get()
        except Exception:  # unknown op / bad params / no data: the run reports it
            return ""
        job.dataset = self.data.identity
        return (
            request_fingerprint(
                job.operation,
                params,
                job.dataset,
                data_cache.loader_version(getattr(self.data, "load_options", {}).get("day_first")),
            )
            or ""
        )

    def _run(self, item: Claimed, answer: StartAnswer) -> Record | None:
        """Decide what to do with a started job, do it, and return how to record it (None: not ours)."""
        if answer.state is Started.SKIP and not item.doc:
            # no document for a claimed id, and _return_unfound kept it: the API recorded our db, or
            # our indexes know the id (deleted or expired while queued), or no API recorded a db for
            # UNRECORDED_WAIT_SECONDS (one from before the record: maybe another REDIS_JOBS_DB)
            log.warning(
                "job not run: no job document",
                extra={
                    "job_id": item.id,
                    "jobs_db": self.settings.redis_jobs_db,
                    "hint": (
                        f"deleted or expired while queued, or the API keeps jobs in another db than this "
                        f"worker's REDIS_JOBS_DB ({self.settings.redis_jobs_db}): give both the same "
                        "REDIS_JOBS_DB and REDIS_QUEUE_DB"
                    ),
                },
            )
            return None
        if answer.state in (Started.SKIP, Started.GONE):
            log.info(
                "job not run",
                extra={
                    "job_id": item.id,
                    "reason": "final or deleted" if answer.state is Started.SKIP else "claim lost to the reaper",
                },
            )
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
            if item.quick:
                self._running = (item, time.monotonic())
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
            if self._running is not None:  # the job may change from here on: no promotion now
                with self._running_lock:
                    self._running = None

    def _classify(self, item: Claimed, exc: Exception, elapsed: float) -> Record:
        """Fail at once what would fail again; retry with backoff what may not (while attempts remain)."""
        job = item.job
        assert job is not None
        if is_permanent(exc):  # jobqueue.errors: the next attempt would fail the same way
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
            log.warning(
                "job attempt failed; retrying",
                extra={"job_id": job.id, "error": message, "attempt": job.attempts, "retry_in": round(delay, 3)},
            )
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
        return Finish(job, blob=placed.blob, fingerprint=item.fingerprint)

    def _answer_from_cache(self, item: Claimed, source: Job) -> Finish:
        job = item.job
        assert job is not None
        job.status = JobStatus.COMPLETE
        job.finished_at = time.time()
        job.result = source.result
        job.result_type = source.result_type
        # a named token's user is not told another user's job id ('' still says "cached")
        job.cached_from = (source.cached_from or source.id) if _may_see(job, source) else ""
        job.dataset = source.dataset
        item.outcome = "cached"
        return Finish(job, shares=source.result_ref or "", fingerprint=item.fingerprint)

    def _fail(
        self, item: Claimed, message: str, elapsed: float | None = None, exc_info: BaseException | bool = False
    ) -> Finish:
        job = item.job
        assert job is not None
        job.status = JobStatus.FAILED
        job.finished_at = time.time()
        job.error = message
        item.outcome, item.elapsed = "failed", elapsed
        log.warning(
            "job failed", extra={"job_id": job.id, "operation": job.operation, "error": message}, exc_info=exc_info
        )
        return Finish(job)

    def _retry(
        self, item: Claimed, message: str, delay: float, count: bool = True, elapsed: float | None = None
    ) -> Retry:
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
            log.info(
                "job outcome discarded",
                extra={"job_id": item.id, "operation": op, "reason": recorded.value if recorded else None},
            )
            return
        outcome, elapsed = item.outcome, item.elapsed
        self.metrics.done(op, outcome, elapsed)
        self.counts[outcome] = self.counts.get(outcome, 0) + 1
        if outcome in ("complete", "cached") and log.isEnabledFor(logging.DEBUG):
            # one line per success only at DEBUG (a no-op job costs less than a log line); the
            # housekeeping thread logs a summary every LOG_SUMMARY_SECONDS; failures always log.
            log.debug(
                "job " + outcome,
                extra={
                    "job_id": item.id,
                    "operation": op,
                    "attempt": job.attempts if job else None,
                    "seconds": None if elapsed is None else round(elapsed, 6),
                },
            )

    def _learn(self, seconds: float, operation: str | None = None) -> None:
        """Track job time: up at once on a slow job, down gently, so batches never hoard slow work
        (and a job of an operation that was slow lately is started, so its in-progress state shows)."""
        self.avg_job_seconds = _follow(self.avg_job_seconds, seconds)
        if operation is not None:
            self.op_seconds[operation] = _follow(self.op_seconds.get(operation), seconds)

    # --- Redis round trips that must not be lost ------------------------------------------
    def _send(self, call: Callable[[], T], job_id: str) -> T:
        """Record an outcome (``call``); while Redis is away or refusing writes keep retrying (the
        outcome is in memory) until the shutdown grace ends.

        Re-running after an ambiguous failure is safe: a finish that had already applied finds its
        own document and answers "ok" without writing again; a call that retries a job keeps its
        answer (see :meth:`_flush`) and answers it again. Out of memory
        does not stop a record: its script frees first (HDEL/LREM), and Redis lets a script that
        has written go on.
        """
        backoff = _Backoff()
        while True:
            self.acl.hold(self._grace_over)
            try:
                return call()
            except redis.exceptions.RedisError as exc:
                if not _retried(exc):
                    raise
                if self._grace_over():
                    raise
                delay = backoff.next()
                if acl_refusal(exc):
                    log_refusal(exc, self.id, delay, job_id)
                    self.acl.recheck()
                    time.sleep(delay)
                    continue
                log.warning(
                    "redis unavailable while recording a job; retrying",
                    extra={"worker": self.id, "error": str(exc), "retry_in": round(delay, 2), "job_id": job_id},
                )
                time.sleep(delay)

    def _send_give_back(self, ids: list[str]) -> None:
        if self.acl.refused is not None:
            return  # held: _leave gives them back once the ACL allows, else the reaper requeues them
        try:
            n = self.delivery.give_back(self.id, ids)
            log.info("gave back unstarted jobs", extra={"worker": self.id, "count": n})
        except redis.exceptions.RedisError:
            pass  # still in our processing list: _leave retries, else the reaper requeues them

    # --- promoter thread: quick jobs that turn out slow ------------------------------------
    def _promote(self) -> None:
        """Start a quick job that has run for PROMOTE_SECONDS: the estimate was wrong (a ``sleep``
        of 2 s after many of 0 s), so its in-progress state is worth showing and its attempt worth
        counting before it ends. The main thread is busy running it, hence this thread; the start
        script's fence makes a start that arrives after the job's finish a no-op."""
        while not self._stop_housekeeping.wait(PROMOTE_SECONDS / 2 if self._running else 0.1):
            running = self._running
            if running is None or running[0].promoted or time.monotonic() - running[1] < PROMOTE_SECONDS:
                continue
            if self.acl.refused is not None:  # its start could stop half-way: it ends unstarted
                continue
            with self._running_lock:  # held while sending: the job's document must not change meanwhile
                if self._running is not running:
                    continue
                item = running[0]
                item.promoted = True
                try:
                    assert item.job is not None
                    self.delivery.start(self.id, Start(item.job))
                except Exception as exc:  # not started: the job still ends with one result
                    log.debug("could not start a long quick job", extra={"job_id": item.id, "error": str(exc)})

    # --- housekeeping thread: heartbeat (lease), reaper, sweeper --------------------------
    def _housekeeping(self) -> None:
        lease = self.settings.job_lease_seconds
        beat_every = max(0.05, min(lease / 3, 5.0))
        reap_every = max(0.1, lease / 2)
        next_reap = 0.0
        next_sweep = time.monotonic() + random.uniform(0, SWEEP_INTERVAL_SECONDS)
        jobs_client: redis.Redis | None = None
        next_summary = time.monotonic() + LOG_SUMMARY_SECONDS
        # since when Redis has taken our beats without a break, refusal or restart: the reaper judges
        # other workers' silence only once it has itself seen a lease of beats go through
        seen_up_since: float | None = None
        reported: dict[str, int] = {}
        while not self._stop_housekeeping.is_set():
            now = time.monotonic()
            if now >= next_summary:
                next_summary = now + LOG_SUMMARY_SECONDS
                counts = dict(self.counts)
                delta = {k: v - reported.get(k, 0) for k, v in counts.items() if v != reported.get(k, 0)}
                if delta:
                    log.info("jobs processed", extra={"worker": self.id, "last_seconds": LOG_SUMMARY_SECONDS, **delta})
                    if getattr(
                        self.data, "loaded", False
                    ):  # jobs free big temporaries; glibc would keep them per process
                        from atx_analysis.dataset import release_after_jobs

                        release_after_jobs()
                reported = counts
            try:
                self.acl.check()  # first: a heartbeat refused (ZADD) must not keep it from running
                self.delivery.heartbeat(self.id)
                # a restart between two beats leaves no error to see; an emptied script cache says it
                if self.delivery.scripts_forgotten(self.id) or seen_up_since is None:
                    seen_up_since = now
                self.jobs_db.check()
                # no reap or sweep while the ACL refuses us a command: refused part-way, one could strand ids
                if self.acl.refused is None and now >= next_reap:
                    next_reap = now + reap_every
                    moved, dead = self.delivery.reap(lease, seen_up=now - seen_up_since)
                    if moved or dead:
                        self.metrics.requeued.inc(moved)
                        log.warning(
                            "requeued jobs of silent workers",
                            extra={"worker": self.id, "count": moved, "dead_workers": dead},
                        )
            except Exception as exc:
                if self._housekeeping_failed(exc, beat_every):
                    seen_up_since = None
            # its own step: a heartbeat refused at maxmemory (ZADD) must not keep it from freeing memory
            if self.acl.refused is None and now >= next_sweep:
                next_sweep = now + SWEEP_INTERVAL_SECONDS
                try:
                    jobs_client = jobs_client or jobs_redis(self.settings)
                    self._sweep(jobs_client, older_than=max(60.0, lease))
                except Exception as exc:
                    if self._housekeeping_failed(exc, beat_every):
                        seen_up_since = None
            self._stop_housekeeping.wait(beat_every)

    def _sweep(self, jobs_client: redis.Redis, older_than: float) -> None:
        """Drop index entries of expired jobs, then requeue jobs stuck ``submitted`` in no list.

        The drop only removes (ZREM, which Redis lets through at ``maxmemory``: it is no "denyoom"
        command), so it runs even when Redis is full and refuses the sweep lock (SET NX): then each
        worker drops on its own turn, and an entry another one dropped first is no work. The requeue
        writes (LPUSH), so it waits for the lock, and for memory."""
        try:
            locked = self.delivery.try_lock_sweep(SWEEP_INTERVAL_SECONDS / 2)
        except redis.exceptions.RedisError as exc:
            if write_refusal(exc) != "OOM":
                raise
            locked = None
        if locked is False:
            return
        sec, usec = jobs_client.time()
        dropped = JobStore(jobs_client, self.settings.job_ttl_seconds).drop_expired_entries(sec + usec / 1e6)
        if dropped:
            log.info("dropped index entries of expired jobs", extra={"count": dropped, "redis_full": locked is None})
        if locked:
            n = self.delivery.sweep(jobs_client, older_than=older_than)
            if n:
                log.warning("requeued submitted jobs found in no list", extra={"count": n})

    def _housekeeping_failed(self, exc: Exception, beat_every: float) -> bool:
        """Log a housekeeping step's failure once where it belongs; True when Redis was away or
        refusing (the reaper's clock of Redis's uptime starts again)."""
        if acl_refusal(exc):
            if self.acl.refused is None:  # else the gate says it, once a minute (it did each beat)
                log_refusal(exc, self.id, beat_every)
        elif is_transient(exc):
            log.debug("housekeeping: redis unavailable or refusing writes", extra={"error": str(exc)})
            return True
        else:
            log.exception("housekeeping failed")
        return False


def _retried(exc: BaseException) -> bool:
    """A job's outcome in memory is sent again after this error: Redis's passing states, and its ACL
    refusing our user (NOPERM), which an operator fixes: retrying then neither fails the job nor
    charges it another attempt."""
    return is_transient(exc) or acl_refusal(exc) is not None


_UNSTARTED = StartAnswer(Started.OK)  # a quick job's "start": run it, nothing was written


def _ahead(start: Start) -> Start:
    """A job started ahead of the one about to run: in-progress, but its attempt is counted by its
    final document (or by its own start after a reaper took it back), not now, so a worker killed
    -9 does not charge an attempt to jobs it had not begun."""
    return Start(replace(start.job, attempts=start.job.attempts - 1), start.fingerprint)


def _follow(estimate: float | None, seconds: float) -> float:
    """Up at once, down gently."""
    if estimate is None or seconds > estimate:
        return seconds
    return 0.8 * estimate + 0.2 * seconds


def _claimed(items: list[Claim]) -> list[Claimed]:
    return [Claimed(c[0], c[1], getattr(c, "reaped", False)) for c in items]


class _Interrupted(BaseException):
    """Raised by the SIGTERM/SIGINT handler into the work loop while it waits on Redis with no job
    in hand (a BaseException: the loop's ``except Exception`` must not retry it). Ids a cut-off claim
    moved stay in the worker's processing list, which its exit gives back (or the reaper, later)."""


class _Backoff:
    def __init__(self, first: float = 0.1, cap: float = 5.0):
        self.first, self.cap, self.current = first, cap, first

    def next(self) -> float:
        delay = self.current * random.uniform(0.8, 1.2)
        self.current = min(self.current * 2, self.cap)
        return delay

    def reset(self) -> None:
        self.current = self.first


def _may_see(job: Job, source: Job) -> bool:
    """Whether the submitter of ``job`` may read ``source``'s id: the same user, or ``job`` has no
    owner (no named tokens, or the admin's token, which sees every job anyway)."""
    return job.owner is None or job.owner == source.owner
