"""Redis clients built from Settings: one for the jobs db, one for the queue db.

The db is decided here, never by the URL: redis-py's ``from_url`` lets a db in the URL override the
``db=`` it is given, which once sent the worker to one db while the API queued into another.
Settings refuses a URL whose db disagrees with REDIS_JOBS_DB, so dropping it here changes nothing
a user asked for.
"""

from __future__ import annotations

import redis

from .settings import Settings, redis_url_options


def connection_options(settings: Settings, db: int) -> dict[str, object]:
    """Everything the URL says (host, port, user, TLS, socket options) with ``db`` as given and
    REDIS_PASSWORD, when set, instead of a password in the URL."""
    options = redis_url_options("REDIS_URL", settings.redis_url)
    options["db"] = db
    if settings.redis_password:
        options["password"] = settings.redis_password
    return options


def _client(settings: Settings, db: int, decode: bool) -> redis.Redis:
    options = {"socket_connect_timeout": 2.0, "health_check_interval": 15, "retry_on_timeout": True,
               **connection_options(settings, db), "decode_responses": decode}
    return redis.Redis(connection_pool=redis.ConnectionPool(**options))


def jobs_redis(settings: Settings, decode: bool = True) -> redis.Redis:
    """Client of the jobs db. ``decode=False`` for binary results (PNG)."""
    return _client(settings, settings.redis_jobs_db, decode)


def queue_redis(settings: Settings) -> redis.Redis:
    """Client of the queue db (queue list, processing lists, heartbeats)."""
    return _client(settings, settings.redis_queue_db, True)


def describe(settings: Settings) -> str:
    """Where the service's Redis is, for logs and /help, without the password."""
    o = redis_url_options("REDIS_URL", settings.redis_url)
    where = o.get("path") or f"{o.get('host', 'localhost')}:{o.get('port', 6379)}"
    scheme = settings.redis_url.split("://", 1)[0]
    return f"{scheme}://{where}"
