"""Long polls (``?wait=``): wake a waiting request the moment its job reaches a final status.

Workers publish a job's id and final document on ``keys.JOB_DONE_CHANNEL`` when it ends, if someone
waits for it: the read before a wait marks the job in the same round trip (``keys.waited``; the API
passes its marking grouped reads as ``read``), a waiting submit in its store's transaction. Each API
process runs one subscriber (started on first use, so after gunicorn forks; a greenlet under
gevent) that hands the document to the requests waiting for that id and wakes them: one Redis
connection per process however many wait, and no read per waiter. A second loop reads every
waited-for job in one ``MGET`` each ``SAFETY_POLL_SECONDS`` and wakes those that are final or gone,
so a finish nobody announced (a worker killed between its write and its publish, a message lost
while the subscriber reconnects) costs about a second, never a stuck request.

A wait that runs out reads its job once more (bounded to ``END_READ_SECONDS``): the answer is the
job as it is then, and a Redis lost during the wait is a 503, not the first read's document
answered 200 as if the job were still known to be waiting.

At most ``max_waiters`` requests wait per process (``MAX_WAITERS``); beyond that a poll answers at
once with the job's current state, as if ``wait`` had run out, and the client simply polls again.

``POST /submit?wait=`` registers (:class:`Expected`) before its job is stored: the id exists before
the group commit, so the job's only finish can come no earlier than the registration, and the
waiter needs no first read to catch a job that finished before it started waiting.

A waiting request whose client has gone (its connection closed or reset, seen by the same sweep
each second, :func:`_client_gone`) stops waiting then and answers, to nobody, what its wait's end
would give: under gevent nothing else tells a waiting request that its client left, and such
requests held their ``max_waiters`` places (and their sockets) to the end of their wait, so a
client that opened a thousand ``?wait=60`` polls and closed them at once left every other
client's polls answered at once, without waiting, for a minute.

A process told to stop (SIGTERM: ``shutdown.py``) calls :meth:`DoneWaiter.close`: every waiting
request answers at once with what it would get at its wait's end, and a new wait does not wait
(a status poll's last look at its job is bounded to half a second: on a hung Redis it answers the
job as last read).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Callable

import redis

from jobqueue.jobs import Job, JobStore

from .bounds import within
from .metrics import LONG_POLLS, LONG_POLLS_REFUSED

log = logging.getLogger("jobqueue.api")

SAFETY_POLL_SECONDS = 1.0
CLOSING_READ_SECONDS = 0.5  # a stopping process's last look at a polled job (a read takes < 1 ms)
END_READ_SECONDS = 1.0  # a poll's read at its wait's end: a hung Redis answers 503 this long after the wait
_SWEEP_CHUNK = 500


class _Waiter(threading.Event):
    """One waiting request: set when its job may be final; ``doc`` is the final document when
    the done message carried it."""

    doc: str | None = None
    client: object = None  # the request's connection (gunicorn's socket), watched by the sweep
    gone = False  # its client closed the connection: the wait ends


class DoneWaiter:
    def __init__(self, store: JobStore, max_waiters: int = 1000):
        self._store = store
        self.max_waiters = max_waiters
        self._lock = threading.Lock()
        self._waiting: dict[str, list[_Waiter]] = defaultdict(list)
        self._count = 0
        self._threads: list[threading.Thread] = []
        self._subscribed = threading.Event()
        self._closing = False

    # --- request side ------------------------------------------------------------------
    def wait_final(
        self,
        job_id: str,
        timeout: float,
        read: Callable[[str], str | None] | None = None,
        client: object = None,
        last_read: Callable[[str], str | None] | None = None,
    ) -> Job | None:
        """The job once final, or as it is after ``timeout`` seconds (at once when this process
        already holds ``max_waiters`` or is stopping, or once ``client``, the request's connection,
        has closed); None if it does not exist. ``read(job_id)`` reads the stored
        document (the API passes its grouped status reads, so concurrent long polls' reads share
        MGETs); a GET of its own without it. ``last_read`` reads it once the wait has run out (the
        API's plain grouped reads: the job need not be marked waited for again); ``read`` without it."""
        get = self._store.get if read is None else _parsed(read)
        waiter = self.register(job_id, client)
        if waiter is None:
            return get(job_id)
        try:
            job = get(job_id)
            deadline = time.monotonic() + timeout
            while job is not None and not job.status.is_final and not self._closing:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not waiter.wait(remaining) or waiter.gone:
                    break
                doc, waiter.doc = waiter.doc, None
                waiter.clear()
                if doc is not None:
                    job = Job.from_json(doc)
                else:
                    job = _last_look(get, job_id, job) if self._closing else get(job_id)
            if job is not None and not job.status.is_final and not self._closing and not waiter.gone:
                # the wait ran out: the job as it is now (in progress, say), and a Redis lost meanwhile
                # raises here (503), where the first read's document answered 200 as if all were well
                with within(END_READ_SECONDS):
                    job = (get if last_read is None else _parsed(last_read))(job_id)
        finally:
            self.unregister(job_id, waiter)
        return job

    def register(self, job_id: str, client: object = None) -> _Waiter | None:
        """A waiter set whenever ``job_id`` may have become final (or ``client``, the request's
        connection, has closed: ``gone``); None when this process already holds ``max_waiters``."""
        self._ensure_threads()
        waiter = _Waiter()
        waiter.client = client
        with self._lock:
            if self._closing:
                return None
            if self._count >= self.max_waiters:
                LONG_POLLS_REFUSED.inc()
                return None
            self._waiting[job_id].append(waiter)
            self._count += 1
        LONG_POLLS.inc()
        return waiter

    def unregister(self, job_id: str, waiter: _Waiter) -> None:
        with self._lock:
            waiters = self._waiting.get(job_id)
            if waiters is None or waiter not in waiters:
                return
            waiters.remove(waiter)
            self._count -= 1
            if not waiters:
                del self._waiting[job_id]
        LONG_POLLS.dec()

    def close(self) -> None:
        """The process is stopping: wake every waiting request to answer now, as at its wait's end,
        and let no new one wait."""
        with self._lock:
            self._closing = True
            waiters = [waiter for waiters in self._waiting.values() for waiter in waiters]
        for waiter in waiters:
            waiter.set()  # its doc untouched: a done message just delivered is still used

    @property
    def closing(self) -> bool:
        return self._closing

    @property
    def waiting(self) -> int:
        return self._count

    @property
    def subscribed(self) -> bool:
        """The done-channel subscriber holds its subscription now (a publish from now on reaches it)."""
        return self._subscribed.is_set()

    def wait_subscribed(self, timeout: float) -> bool:
        """Tests use this to know a publish from now on will be seen."""
        self._ensure_threads()
        return self._subscribed.wait(timeout)

    def expect(self, client: object = None) -> Expected:
        return Expected(self, client)

    # --- background loops --------------------------------------------------------------
    def _ensure_threads(self) -> None:
        if self._threads and all(t.is_alive() for t in self._threads):
            return
        with self._lock:
            if not self._threads or not all(t.is_alive() for t in self._threads):
                self._threads = [
                    threading.Thread(target=fn, name=name, daemon=True)
                    for fn, name in ((self._listen, "jobqueue-done-listener"), (self._sweep, "jobqueue-done-sweeper"))
                ]
                for thread in self._threads:
                    thread.start()

    def _notify(self, job_id: str, doc: str | None = None) -> None:
        with self._lock:
            waiters = list(self._waiting.get(job_id, ()))
        for waiter in waiters:
            waiter.doc = doc
            waiter.set()

    def _listen(self) -> None:
        backoff = 0.1
        warned = False  # once per outage, not once per retry
        while True:
            pubsub = None
            try:
                pubsub = self._store.subscribe_done()
                # Redis's answer to the SUBSCRIBE first: a refusal (NOPERM, an ACL user without the
                # channel) raises here, so ``subscribed`` never claims a subscription Redis refused
                pubsub.get_message(timeout=5.0)
                self._subscribed.set()
                backoff, warned = 0.1, False
                while True:
                    message = pubsub.get_message(timeout=5.0)
                    if message and message.get("type") == "message":
                        self._notify(*JobStore.done_message(message["data"]))
            except Exception as exc:  # Redis gone: the sweeper still catches finished jobs
                if not warned:
                    log.warning("done-channel subscriber lost Redis; reconnecting", extra={"error": str(exc)})
                    warned = True
                self._subscribed.clear()
                time.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
            finally:
                try:
                    if pubsub is not None:
                        pubsub.close()
                except Exception:
                    pass

    def _sweep(self) -> None:
        while True:
            time.sleep(SAFETY_POLL_SECONDS)
            with self._lock:
                ids = list(self._waiting)
                watched = [w for waiters in self._waiting.values() for w in waiters if w.client is not None]
            for waiter in watched:
                if not waiter.gone and _client_gone(waiter.client):
                    waiter.gone = True
                    waiter.set()
            try:
                for start in range(0, len(ids), _SWEEP_CHUNK):
                    chunk = ids[start : start + _SWEEP_CHUNK]
                    live = {job.id: job for job in self._store.get_many(chunk)}
                    for job_id in chunk:
                        job = live.get(job_id)
                        if job is None or job.status.is_final:  # gone, or finished unannounced
                            self._notify(job_id, None)
            except Exception:  # Redis away: the waiters' own deadlines still hold
                continue


# Linux's TCP states (include/net/tcp_states.h) in which the peer has closed or reset the connection
_PEER_CLOSED = frozenset({7, 8, 9})  # TCP_CLOSE, TCP_CLOSE_WAIT, TCP_LAST_ACK
_TCP_INFO = getattr(socket, "TCP_INFO", None)  # Linux only


def _client_gone(sock: object) -> bool:
    """Whether the client of a waiting request closed (or reset) its connection: the connection's
    TCP state, read without touching its data (a pipelined request behind the poll stays unread).
    A client that only half-closed (shut its sending side and reads on) counts as gone too, and
    loses nothing: the wait ends with the answer its end would give. False where the state cannot
    be read (not Linux, not TCP)."""
    if _TCP_INFO is None:
        return False
    try:
        state = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, 1)  # type: ignore[attr-defined]
    except (OSError, AttributeError):
        return False
    return bool(state) and state[0] in _PEER_CLOSED


def _last_look(get: Callable[[str], Job | None], job_id: str, held: Job) -> Job | None:
    """The job for a poll answered because the process is stopping: as it is now if Redis says so
    within ``CLOSING_READ_SECONDS``, else as last read (``held``): its client polls again, on a new
    connection, and reaches a process that can tell. Re-read under the full bound, a hung Redis turned that answer into a
    503 after REDIS_TIMEOUT_SECONDS and held the process's exit as long."""
    try:
        with within(CLOSING_READ_SECONDS):
            return get(job_id)
    except redis.exceptions.RedisError:
        return held


def _parsed(read: Callable[[str], str | None]) -> Callable[[str], Job | None]:
    def get(job_id: str) -> Job | None:
        raw = read(job_id)
        return None if raw is None else Job.from_json(raw)

    return get


def _is_final(doc: str) -> bool:
    status = Job.status_of(doc)
    return status is not None and status.is_final


class Expected:
    """A wait for a job that is not stored yet (``POST /submit?wait=``): :meth:`register` it between
    the job's creation and its store, :meth:`final_document` after the store, :meth:`close` (or the
    ``with`` block) in any case."""

    def __init__(self, done: DoneWaiter, client: object = None):
        self._done = done
        self._client = client  # the request's connection: the wait ends when its client leaves
        self._waiter: _Waiter | None = None
        self._subscribed = False
        self.job_id = ""

    def register(self, job: Job) -> None:
        """Wait for ``job``. Called again (a submit whose Idempotency-Key named an earlier job),
        it waits for that job instead, and reads it once first: it may have ended already."""
        again = self._waiter is not None
        self.close()
        self.job_id = job.id
        self._done._ensure_threads()
        self._subscribed = self._done.subscribed and not again  # before the waiter exists, so never optimistic
        self._waiter = self._done.register(job.id, self._client)

    def final_document(self, timeout: float, read: Callable[[str], str | None]) -> str | None:
        """The job's stored document once final, if that is within ``timeout`` seconds; otherwise
        None (also when refused or closing, or when the job is gone). ``read(job_id)`` reads the stored
        document; it is used only when the done message did not carry one (a bare id, the safety
        sweep) or when the subscriber was not subscribed yet at registration (a finish before it
        subscribed is not announced to it: one read once it is)."""
        waiter = self._waiter
        if waiter is None:
            return None
        deadline = time.monotonic() + timeout
        if not self._subscribed:
            # not past the sweep's period: a subscription that does not come (Redis refusing it)
            # must not hold the answer for the whole wait; the sweep wakes the waiter from here on
            self._done.wait_subscribed(min(timeout, SAFETY_POLL_SECONDS))
            doc = read(self.job_id)
            if doc is None or _is_final(doc):
                return doc
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not waiter.wait(remaining) or waiter.gone:
                return None
            doc, waiter.doc = waiter.doc, None
            waiter.clear()
            if doc is None:
                if self._done.closing:
                    return None  # the process is stopping: the submit answers its 202 now
                doc = read(self.job_id)
            if doc is None or _is_final(doc):
                return doc

    def close(self) -> None:
        if self._waiter is not None:
            self._done.unregister(self.job_id, self._waiter)
            self._waiter = None

    def __enter__(self) -> Expected:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
