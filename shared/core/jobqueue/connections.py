"""Redis clients built from Settings (one for the jobs db, one for the queue db), and which of
Redis's errors pass by themselves."""

from __future__ import annotations

import redis

from .settings import Settings


def _client(settings: Settings, db: int, decode: bool, max_connections: int | None = None) -> redis.Redis:
    kwargs: dict[str, object] = {
        "db": db,
        "decode_responses": decode,
        "socket_connect_timeout": 2.0,
        "health_check_interval": 15,
        "retry_on_timeout": True,
    }
    if settings.redis_password:
        kwargs["password"] = settings.redis_password
    if max_connections:
        # a bounded pool: callers beyond it wait for a free connection (the API under gevent
        # serves hundreds of requests at once and must not open a Redis connection for each)
        kwargs.update(max_connections=max_connections, timeout=5)
        pool = redis.BlockingConnectionPool.from_url(settings.redis_url, **kwargs)
        return redis.Redis(connection_pool=pool)
    return redis.Redis.from_url(settings.redis_url, **kwargs)


def jobs_redis(settings: Settings, decode: bool = True, max_connections: int | None = None) -> redis.Redis:
    """Client of the jobs db. ``decode=False`` for binary results (PNG)."""
    return _client(settings, settings.redis_jobs_db, decode, max_connections)


def queue_redis(settings: Settings, max_connections: int | None = None) -> redis.Redis:
    """Client of the queue db (queue list, processing lists, heartbeats)."""
    return _client(settings, settings.redis_queue_db, True, max_connections)


# Redis refuses writes, for a while, with these reply prefixes: OOM (used memory over maxmemory
# under noeviction), MISCONF (it cannot persist and stop-writes-on-bgsave-error is on), READONLY
# (a replica, e.g. during a failover). Reads still work; writes work again once the cause is gone.
WRITE_REFUSALS = {"OOM": "out of memory (maxmemory)", "MISCONF": "cannot persist to disk (MISCONF)",
                  "READONLY": "read-only replica"}
_UNREACHABLE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


def write_refusal(exc: BaseException) -> str | None:
    """The refusal's prefix (``OOM``, ``MISCONF``, ``READONLY``) when Redis refused a write, else None.

    A refusal inside a script keeps its prefix, so this also reads the errors of our Lua commands
    (which refuse at their first write: nothing of such a call was applied)."""
    if isinstance(exc, redis.exceptions.OutOfMemoryError):
        return "OOM"
    if isinstance(exc, redis.exceptions.ReadOnlyError):
        return "READONLY"
    if isinstance(exc, redis.exceptions.ResponseError):
        prefix = str(exc).split(" ", 1)[0]
        return prefix if prefix in WRITE_REFUSALS else None
    return None


def is_transient(exc: BaseException) -> bool:
    """True for Redis errors that pass without anyone changing the request: unreachable, loading,
    timing out, or refusing writes for now. Retry those; anything else is a bug or bad input."""
    return isinstance(exc, _UNREACHABLE) or write_refusal(exc) is not None
