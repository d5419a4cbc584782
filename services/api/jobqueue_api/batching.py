"""Concurrent calls of one API process share one Redis call (a group commit): submits share one
MULTI/EXEC transaction, status reads one MGET.

Under load, the cost of a request's Redis work is its round trip (packing, a send, a wake-up of
Redis, a receive, Redis's own per-call overhead), not the work inside the call. A caller that finds
no call in flight makes one at once, alone; callers arriving while a call is in flight queue up,
and when it returns the first of them makes one call for the whole queue (at most ``max_batch``),
then hands over to the next waiter if more arrived meanwhile. No timer: an idle API answers as fast
as before, a busy one makes fewer, larger calls.

Before it takes the queue, the caller about to make the call yields once (``time.sleep(0)``: one
turn of gevent's event loop, or of the GIL under threads), so the requests this process is already
handling reach the queue and go in this call rather than in a call of their own right after it.
Without it, at 32 clients the submit calls settled at 2-3 jobs (the waiters woken by one call each
took the next call's lead almost alone); with it, at about 16 (one per client of the process), and
the API's CPU per submit fell from about 290 to 235 µs, Redis's from 20 to 15.
Status reads yield only when another request of the process is under way (``company``:
:class:`UnderWay` counts them under ``jobqueue-api``): a lone reader has nobody to wait for, and its
yield (a turn of the event loop, with its ``epoll_wait``) was about 1.5% of the API's CPU a round
trip. Submits always yield: at 32 clients most of the requests that would join a call have not yet
reached the app when its lead is ready (their bytes wait in the kernel until the event loop turns),
so counting only those in the app let leads go alone; the API's CPU per submit rose from 148 to
192 µs and Redis's from 13 to 20 (bench_api, same run against bare Flask: 0.96x its requests/s
against 1.20x).

With ``linger`` (status reads), a lead whose last call carried several items also waits, at most
that long, until as many are queued: the clients of one process send their next requests a little
apart, and a yield alone took the first of them alone and the rest in the next call.

Every caller returns only once the call that carried its item has returned, so a 202 still means
"stored and queued"; an error (Redis down, out of memory) reaches every caller of that call, and a
Redis refusal discards the whole transaction, so then none of them was stored. With
``fails_queue``, an error it picks (Redis not answering) also answers every caller still queued.
A lead stopped during its call by something other than an error (its greenlet killed by gunicorn's
graceful-shutdown timeout, ``KeyboardInterrupt``) re-raises that itself; its batch's other callers
get :class:`LeadLost` instead (a 503: their items may or may not have been applied), never the
stop meant for the lead, which would end their requests without a response.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import redis

T = TypeVar("T")
R = TypeVar("R")

# Jobs per call at most: about 10 µs of Redis time each (grouped writes), so one call holds Redis
# for well under a millisecond, and a burst of submits still goes out in several calls.
MAX_BATCH = 64


class LeadLost(redis.exceptions.ConnectionError):
    """The caller making this batch's call was stopped before it returned (killed, interrupted):
    the call may or may not have been applied. A ConnectionError, so the API answers it with its
    503 for a Redis that did not answer; a submit answers it as stored or not (``submission.store``)."""


class NotSent(redis.exceptions.ConnectionError):
    """Queued behind a call that failed (``fails_queue``): this caller's item never went to Redis.
    Distinct from the call's own error, which may have been applied: a submit answers one 503
    ("nothing stored, submit again") and the other 504 ("may be stored, check first")."""


class _Pending(Generic[T, R]):
    __slots__ = ("done", "error", "gone", "item", "lead", "result")

    def __init__(self, item: T):
        self.item = item
        self.done: threading.Event | None = None  # set when done (or failed), or to hand over the lead
        self.error: BaseException | None = None
        self.result: R | None = None
        self.lead = False  # handed the lead: make the call for the queue, this item first
        self.gone = False  # its caller stopped waiting (its greenlet was killed)


class GroupCall(Generic[T, R]):
    """``call(item)`` returns ``run_many(batch)[i]`` once a call of ``run_many`` on a batch holding
    ``item`` (at index i) has returned, or raises what it raised. ``run_many`` may return None when
    it has nothing to return (every caller then gets None).

    Works with threads and with gevent's patched ``threading`` (greenlets) alike.
    """

    _event = threading.Event  # what a waiter waits on (a test makes one that is interrupted)

    def __init__(
        self,
        run_many: Callable[[list[T]], Sequence[R] | None],
        max_batch: int = MAX_BATCH,
        fails_queue: Callable[[BaseException], bool] | None = None,
        linger: float = 0.0,
        company: Callable[[], bool] | None = None,
    ):
        self._run_many = run_many
        self._company = company  # whether another request could join (None: assume so)
        self._max_batch = max_batch
        self._fails_queue = fails_queue  # errors that end the waiters' calls too (see _run_batch)
        self._linger = linger  # how long a lead may wait for the last call's company
        self._last = 1  # items the last call carried
        self._filled: threading.Event | None = None  # set when the lingering lead's queue is full
        self._lock = threading.Lock()
        self._queue: deque[_Pending[T, R]] = deque()
        self._busy = False  # a caller holds the lead (a call is in flight or about to be)
        self.calls = 0  # calls made (tests and benchmarks read it)

    @property
    def waiting(self) -> int:
        """Callers queued behind the call in flight."""
        return len(self._queue)

    def call(self, item: T) -> R | None:
        entry: _Pending[T, R] = _Pending(item)
        with self._lock:
            self._queue.append(entry)
            if self._busy:
                entry.done = self._event()
                if self._filled is not None and len(self._queue) >= self._last:
                    self._filled.set()
            else:
                self._busy = entry.lead = True
        if not entry.lead:
            self._wait(entry)
            if not entry.lead:
                if entry.error is not None:
                    raise entry.error
                return entry.result
        return self._run_batch(entry)

    def _wait(self, entry: _Pending[T, R]) -> None:
        assert entry.done is not None
        try:
            entry.done.wait()
        except BaseException:
            with self._lock:
                entry.gone = True
                if entry.lead:  # handed the lead as it was killed: pass it on
                    self._hand_over()
            raise

    def _run_batch(self, own: _Pending[T, R]) -> R | None:
        """One call for the queue's head (``own`` is first); wake its callers; hand over."""
        error: BaseException | None = None
        batch: list[_Pending[T, R]] = []
        try:
            if self._company is None or self._company():
                time.sleep(0)  # let the requests already under way join (module docstring)
            self._wait_for_company()
            with self._lock:
                self._filled = None
                while self._queue and len(batch) < self._max_batch:
                    entry = self._queue.popleft()
                    if not entry.gone or entry is own:
                        batch.append(entry)
            self.calls += 1
            self._last = len(batch)
            results = self._run_many([entry.item for entry in batch])
            if results is not None:
                for entry, result in zip(batch, results):
                    entry.result = result
        except BaseException as exc:
            error = exc
        finally:
            shared = error
            if error is not None and not isinstance(error, Exception):  # a stop meant for the lead only
                shared = LeadLost(
                    f"the call was interrupted ({type(error).__name__}); it may or may not have been applied"
                )
            for entry in batch:
                if entry is not own:
                    entry.error = shared
                    assert entry.done is not None
                    entry.done.set()
            with self._lock:
                if not batch:  # interrupted while gathering: ``own`` is still queued
                    own.gone = True
                if error is not None and self._fails_queue is not None and self._fails_queue(error):
                    self._fail_queue(error)
                self._hand_over()
        if error is not None:
            raise error
        return own.result

    def _wait_for_company(self) -> None:
        """With ``linger``: when the last call carried several items (several clients of this
        process are in the middle of their exchanges), wait up to ``linger`` seconds until as many
        are queued. Their next requests reach the process a little apart; without it the first
        goes alone and the others in the next call (1, 3, 1, 3 ...). A lone client's calls carry one
        item, so it never waits."""
        with self._lock:
            if self._linger <= 0 or self._last < 2 or len(self._queue) >= self._last:
                return
            self._filled = filled = self._event()
        filled.wait(self._linger)

    def _fail_queue(self, error: BaseException) -> None:
        """Answer every waiter with ``error`` (lock held): when Redis did not answer one call, the
        next would most likely wait out the same timeout, and its callers would have waited twice.
        (:meth:`_queued_error` says with what: their items were not in the failed call.)"""
        while self._queue:
            entry = self._queue.popleft()
            entry.error = self._queued_error(error)
            if entry.done is not None:
                entry.done.set()

    def _queued_error(self, error: BaseException) -> BaseException:
        """What a caller still queued gets when the call ahead fails (``fails_queue``)."""
        return error

    def _hand_over(self) -> None:
        """Give the lead to the first live waiter, or drop it (lock held)."""
        while self._queue and self._queue[0].gone:
            self._queue.popleft()
        if not self._queue:
            self._busy = False
            return
        head = self._queue[0]
        head.lead = True
        assert head.done is not None
        head.done.set()


class SubmitBatcher(GroupCall[Any, "BaseException | None"]):
    """``submit(item)`` returns once ``store_many`` has stored ``item`` with the rest of its batch;
    it raises what ``store_many`` raised, or the refusal ``store_many`` returned for this item (the
    rate limit is counted in the same call: ``submission.store_admitted``)."""

    def __init__(
        self,
        store_many: Callable[[list[Any]], Sequence[BaseException | None] | None],
        max_batch: int = MAX_BATCH,
        fails_queue: Callable[[BaseException], bool] | None = None,
        company: Callable[[], bool] | None = None,
    ):
        super().__init__(store_many, max_batch, fails_queue, company=company)

    def _queued_error(self, error: BaseException) -> BaseException:
        # a 503 ("nothing stored"), not the failed call's own error (504: it may have applied)
        return NotSent(f"not sent: the call ahead of it failed ({error})")

    def submit(self, item: Any) -> None:
        refused = self.call(item)
        if refused is not None:
            raise refused


class UnderWay:
    """The requests this process is answering now: each counted by :meth:`counted` from the app's call
    until the server closes its body (WSGI's ``close()``, once the answer is written; a file sent
    with sendfile, until the app returns it). Until an app is counted (the Flask test client, a
    GroupCall on its own) nothing is known, and :meth:`company` answers yes."""

    def __init__(self) -> None:
        self.count = 0
        self.known = False

    def company(self) -> bool:
        """Whether another request of this process is under way (one that could join a call)."""
        return self.count > 1 or not self.known

    def counted(self, app: Callable) -> Callable:
        """The WSGI app ``app``, each of its requests counted while under way."""
        self.known = True

        def wrapped(environ: dict, start_response: Callable) -> Any:
            self.count += 1
            try:
                body = app(environ, start_response)
            except BaseException:
                self.count -= 1
                raise
            wrapper = environ.get("wsgi.file_wrapper")
            if wrapper is not None and isinstance(body, wrapper):  # left as it is, for sendfile
                self.count -= 1
                return body
            return _Counted(body, self)

        return wrapped


class _Counted:
    """A request's body, uncounting the request when the server closes it."""

    __slots__ = ("_body", "_under_way")

    def __init__(self, body: Any, under_way: UnderWay):
        self._body = body
        self._under_way: UnderWay | None = under_way

    def __iter__(self) -> Any:
        return iter(self._body)

    def close(self) -> None:
        under_way, self._under_way = self._under_way, None
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            if under_way is not None:
                under_way.count -= 1


UNDER_WAY = UnderWay()  # this process's (gunicorn forks one per worker process)
