"""Redis clients built from Settings: one for the jobs db, one for the queue db."""

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
