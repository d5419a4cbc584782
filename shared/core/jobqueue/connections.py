"""Redis clients built from Settings (one for the jobs db, one for the queue db), and which of
Redis's errors pass by themselves.

The db is decided here, never by the URL: redis-py's ``from_url`` lets a db in the URL override the
``db=`` it is given, which once sent the worker to one db while the API queued into another.
Settings refuses a URL whose db disagrees with REDIS_JOBS_DB, so dropping it here changes nothing
a user asked for.
"""

from __future__ import annotations

import re
from functools import partial

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from . import wire
from .settings import Settings, redis_url_options


def connection_options(settings: Settings, db: int) -> dict[str, object]:
    """Everything the URL says (host, port, user, TLS, socket options) with ``db`` as given and
    REDIS_PASSWORD, when set, instead of a password in the URL."""
    options = redis_url_options("REDIS_URL", settings.redis_url)
    options["db"] = db
    if settings.redis_password:
        options["password"] = settings.redis_password
    return options


def _client(
    settings: Settings,
    db: int,
    decode: bool,
    max_connections: int | None = None,
    timeout: float | None = None,
    also_select: tuple[int, ...] = (),
) -> redis.Redis:
    options: dict[str, object] = {
        "socket_connect_timeout": 2.0,
        "health_check_interval": 15,
        "retry_on_timeout": True,
        # each connection learns its Redis client id as it connects (one command a connection): a
        # submit whose answer is lost fences the connection that sent it by that id (delivery.store);
        # ``also_select``: the other dbs its transactions write, tried as it connects (wire)
        "redis_connect_func": partial(wire.learn_client_id, also_select=also_select)
        if also_select
        else wire.learn_client_id,
    }
    if timeout is not None:
        # the API's reply timeout when the URL sets none: redis-py's own default is 5 s since 8.0
        # but None before it (the package accepts redis>=5), and None waits for ever
        options["socket_timeout"] = timeout
    options.update(connection_options(settings, db), decode_responses=decode)
    if max_connections:
        # a bounded pool: callers beyond it wait for a free connection (the API under gevent
        # serves hundreds of requests at once and must not open a Redis connection for each)
        return redis.Redis(
            connection_pool=redis.BlockingConnectionPool(max_connections=max_connections, timeout=5, **options)
        )
    return redis.Redis(connection_pool=redis.ConnectionPool(**options))


def jobs_redis(
    settings: Settings,
    decode: bool = True,
    max_connections: int | None = None,
    timeout: float | None = None,
    check_queue_db: bool = False,
) -> redis.Redis:
    """Client of the jobs db. ``decode=False`` for binary results (PNG). ``timeout``: the socket
    timeout when REDIS_URL sets none (the API passes REDIS_TIMEOUT_SECONDS; the worker passes none
    and keeps redis-py's). ``check_queue_db``: each connection also tries to SELECT the queue db as
    it connects, so a Redis without it refuses the connection (``wire.SetupRefused``, nothing sent)
    instead of a submit transaction applying all but its SELECT (the API's client, which submits)."""
    other = (settings.redis_queue_db,) if check_queue_db and settings.redis_queue_db != settings.redis_jobs_db else ()
    return _client(settings, settings.redis_jobs_db, decode, max_connections, timeout, other)


def queue_redis(settings: Settings, max_connections: int | None = None, timeout: float | None = None) -> redis.Redis:
    """Client of the queue db (queue list, processing lists, heartbeats)."""
    return _client(settings, settings.redis_queue_db, True, max_connections, timeout)


def quick_redis(settings: Settings, db: int, seconds: float) -> redis.Redis:
    """Client of ``db`` whose every call gives up after ``seconds``, once: no retry, whatever
    REDIS_URL's socket options say. For reads that must answer within a deadline of their caller's
    (a Prometheus scrape), where "Redis did not answer" is itself the answer."""
    options: dict[str, object] = {**connection_options(settings, db), "decode_responses": True}
    options.update(
        socket_timeout=seconds, socket_connect_timeout=seconds, retry_on_timeout=False, retry=Retry(NoBackoff(), 0)
    )
    return redis.Redis(connection_pool=redis.ConnectionPool(**options))


# Redis refuses writes, for a while, with these reply prefixes: OOM (used memory over maxmemory
# under noeviction), MISCONF (it cannot persist and stop-writes-on-bgsave-error is on), READONLY
# (a replica, e.g. during a failover). Reads still work; writes work again once the cause is gone.
WRITE_REFUSALS = {
    "OOM": "out of memory (maxmemory)",
    "MISCONF": "cannot persist to disk (MISCONF)",
    "READONLY": "read-only replica",
}
# Redis answers every command with an error, for a while, in these states: BUSY (a script has run
# past busy-reply-threshold; it answers again when the script ends or SCRIPT KILL stops it),
# MASTERDOWN (a replica whose link to its primary is down, with replica-serve-stale-data no),
# LOADING (just started, reading its dataset back from disk: seconds to minutes for a big one).
UNAVAILABLE_STATES = {
    "BUSY": "busy running a long script (BUSY)",
    "MASTERDOWN": "a replica that lost its primary (MASTERDOWN)",
    "LOADING": "loading its dataset into memory after a restart (LOADING)",
}
_UNREACHABLE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
# Redis 7.0's words for an ACL refusal inside a script, which carry no NOPERM prefix
_SCRIPT_NOPERM = "The user executing the script can't"


def _prefix(exc: BaseException) -> str:
    """An error reply's first word, also after redis-py's "... of pipeline caused error: "."""
    return str(exc).rpartition("caused error: ")[2].split(" ", 1)[0]


def write_refusal(exc: BaseException) -> str | None:
    """The refusal's prefix (``OOM``, ``MISCONF``, ``READONLY``) when Redis refused a write, else None.

    A refusal inside a script keeps its prefix, so this also reads the errors of our Lua commands
    (which refuse at their first write: nothing of such a call was applied), and so does one inside
    a transaction (redis-py puts "Command # n (...) of pipeline caused error: " before it; Redis then
    discarded the whole transaction)."""
    if isinstance(exc, redis.exceptions.OutOfMemoryError):
        return "OOM"
    if isinstance(exc, redis.exceptions.ReadOnlyError):
        return "READONLY"
    if isinstance(exc, redis.exceptions.ResponseError):
        prefix = _prefix(exc)
        return prefix if prefix in WRITE_REFUSALS else None
    return None


def unavailable_state(exc: BaseException) -> str | None:
    """``BUSY``, ``MASTERDOWN`` or ``LOADING`` (:data:`UNAVAILABLE_STATES`) when Redis refused the
    command for that state, else None. redis-py drops the prefix of MASTERDOWN (its MasterDownError)
    and of LOADING (BusyLoadingError, a ConnectionError); BUSY keeps it."""
    if isinstance(exc, redis.exceptions.MasterDownError):
        return "MASTERDOWN"
    if isinstance(exc, redis.exceptions.BusyLoadingError):
        return "LOADING"
    if isinstance(exc, redis.exceptions.ResponseError):
        prefix = _prefix(exc)
        return prefix if prefix in UNAVAILABLE_STATES else None
    return None


def acl_refusal(exc: BaseException) -> str | None:
    """When Redis's ACL refused the service's user a command or a key (NOPERM: the deployment's
    configuration, neither the request's fault nor a state that passes by itself), what it refused
    ("the 'get' command", "a key", or "a command" when the reply names none), else None. Only the
    command's name: the reply's user name stays in the log."""
    if not isinstance(exc, redis.exceptions.ResponseError):
        return None
    text = str(exc)
    if not (isinstance(exc, redis.exceptions.NoPermissionError) or _prefix(exc) == "NOPERM" or _SCRIPT_NOPERM in text):
        return None
    named = re.search(r"run the '([A-Za-z|_ -]{1,40})' command", text)
    if named:
        return f"the '{named.group(1)}' command"
    return "a key" if "key" in text else "a command"


def db_refusal(exc: BaseException) -> bool:
    """Redis has no such db (``databases`` below REDIS_JOBS_DB or REDIS_QUEUE_DB: many managed Redis
    have one): ``SELECT`` refused as a connection is set up (``wire.SetupRefused``) or in a script."""
    return isinstance(exc, redis.exceptions.RedisError) and any(
        words in str(exc) for words in ("DB index is out of range", "invalid DB index")
    )


def is_transient(exc: BaseException) -> bool:
    """True for Redis errors that pass without anyone changing the request: unreachable, loading,
    timing out, refusing writes for now, or busy / without its primary for now. Retry those;
    anything else is a bug or bad input (an ACL refusal, :func:`acl_refusal`, is neither)."""
    return isinstance(exc, _UNREACHABLE) or write_refusal(exc) is not None or unavailable_state(exc) is not None


def tls_hint(redis_url: str, exc: BaseException) -> str:
    """What to add to a timeout's message when REDIS_URL asks for TLS (``rediss://``), else "".

    A Redis without TLS reads the client's TLS handshake as the start of a command and waits for the
    rest, so it never answers: both programs said only "Timeout connecting to server" or "Redis did
    not answer within 5 s", exactly as for a Redis that is down. Computed only once a call has
    failed, so the path that works pays nothing."""
    if not (isinstance(exc, redis.exceptions.TimeoutError) and redis_url.strip().lower().startswith("rediss://")):
        return ""
    return (
        "REDIS_URL is rediss:// (TLS), and a Redis that does not speak TLS never answers the TLS handshake: "
        "if this Redis has no TLS port, write redis:// instead"
    )


def describe(settings: Settings) -> str:
    """Where the service's Redis is, for logs and /help, without the password."""
    o = redis_url_options("REDIS_URL", settings.redis_url)
    host = str(o.get("host", "localhost"))
    if ":" in host:  # an IPv6 address keeps its brackets, or redis://::1:6379 reads as no URL at all
        host = f"[{host}]"
    where = o.get("path") or f"{host}:{o.get('port', 6379)}"
    scheme = settings.redis_url.split("://", 1)[0]
    return f"{scheme}://{where}"
