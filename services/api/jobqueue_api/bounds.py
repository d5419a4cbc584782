"""Every Redis call of the API ends within REDIS_TIMEOUT_SECONDS, whatever Redis does.

A Redis that hangs (a stopped process, a node lost without a reset, a proxy that accepts and never
answers) holds a call until redis-py gives up, and redis-py's own bound is its socket timeout times
the attempts of its nested retries: the command is retried, and so are the reconnect and the
connection's handshake (``Retry.call_with_retry`` in ``Redis._execute_command``,
``AbstractConnection.connect`` and ``check_health``). Measured against a stopped redis-server: 20 s
for a status read with redis-py's default 5 s socket timeout, 8 s with ``socket_timeout=2`` in
REDIS_URL, and a waiting submit 26 s. A socket timeout alone cannot bound a call.

So under ``jobqueue-api`` (gevent) each call runs inside a ``gevent.Timeout`` of its own: when it
fires, the call raises :class:`RedisDeadline` (a ``redis.exceptions.TimeoutError``, so the API's
503 ``redis_unavailable`` answers it, and the grouped reads fail their queue at once; a submit
whose transaction it interrupted may be stored, and is answered 504 instead: ``submission.store``). The timeout
is raised inside redis-py as a BaseException, which its retry does not catch, and redis-py closes a
connection interrupted mid-call (``send_packed_command`` and ``read_response`` disconnect on any
BaseException; ``ConnectionPool.get_connection`` releases one interrupted while connecting), so no
half-read connection goes back to the pool. Outside gevent (the Flask test client, ``flask run``)
nothing is bounded here and the socket timeout is what holds.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import redis
import redis.client

from .green import patched

T = TypeVar("T")

# The bound of read-only diagnostics (``/readyz``, ``/healthz?detail=1``, ``/help``'s queue line;
# REDIS_TIMEOUT_SECONDS when that is less): their Redis reads take well under a millisecond, a probe
# must fail before the kubelet's own timeout (1 s by default, 3 s in the chart and k8s/), and
# someone asking "what is wrong?" while Redis hangs should hear it at once, not 5 s later
DIAGNOSTIC_SECONDS = 1.0


def diagnostic(redis_timeout_seconds: float) -> contextlib.AbstractContextManager[None]:
    """:func:`within` the diagnostics' bound."""
    return within(min(DIAGNOSTIC_SECONDS, redis_timeout_seconds))


class RedisDeadline(redis.exceptions.TimeoutError):
    """Redis did not answer within the API's bound (REDIS_TIMEOUT_SECONDS)."""


@contextlib.contextmanager
def within(seconds: float) -> Iterator[None]:
    """Raise :class:`RedisDeadline` when the block has not finished after ``seconds`` (under gevent;
    a plain block otherwise). Blocks nest: each converts only its own timer."""
    if not patched():
        yield
        return
    import gevent

    timer = gevent.Timeout(seconds)
    timer.start()
    try:
        yield
    except gevent.Timeout as fired:
        if fired is not timer:
            raise
        raise RedisDeadline(f"Redis did not answer within {seconds:g} s") from None
    finally:
        timer.close()


def bounded(fn: Callable[..., T], seconds: float) -> Callable[..., T]:
    """``fn`` whose every call ends within ``seconds`` (:func:`within`), for calls that go to Redis
    other than through a client's commands (the group commit's ``wire`` transaction)."""
    if not patched():
        return fn

    @functools.wraps(fn)
    def call(*args: Any, **kwargs: Any) -> T:
        with within(seconds):
            return fn(*args, **kwargs)

    return call


class _BoundedPipeline(redis.client.Pipeline):
    bound = 5.0

    def execute(self, raise_on_error: bool = True) -> list[Any]:
        with within(self.bound):
            return super().execute(raise_on_error)


class BoundedRedis(redis.Redis):
    """A client whose commands and pipelines each end within ``bound`` seconds; its pub/sub is not
    bounded (the done-channel listener waits for messages on purpose)."""

    bound = 5.0
    _timeout: Any = None  # gevent.Timeout, set by :meth:`around`

    @classmethod
    def around(cls, client: redis.Redis, seconds: float) -> redis.Redis:
        """A bounded client on ``client``'s pool; ``client`` itself where nothing can be bounded."""
        if not patched():
            return client
        import gevent

        bounded_client = cls(connection_pool=client.connection_pool)
        bounded_client.bound = seconds
        bounded_client._timeout = gevent.Timeout
        return bounded_client

    def execute_command(self, *args: Any, **options: Any) -> Any:
        # :func:`within` written out: this runs for every command of the API (a status read's MGET)
        timer = self._timeout(self.bound)
        timer.start()
        try:
            return super().execute_command(*args, **options)
        except self._timeout as fired:
            if fired is not timer:
                raise
            raise RedisDeadline(f"Redis did not answer within {self.bound:g} s") from None
        finally:
            timer.close()

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> redis.client.Pipeline:
        pipe = _BoundedPipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)
        pipe.bound = self.bound
        return pipe
