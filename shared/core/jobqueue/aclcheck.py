"""Whether Redis's ACL lets the worker's user run every command the worker's scripts call, checked
off the hot path (``lua/acl_check.lua``: ``redis.acl_check_cmd``, Redis 7.0+).

Why: Redis does not undo a script refused a command part-way (NOPERM): its writes before the
refused call stay. A claim refused its RPUSH after its LPOP, a finish refused its SET after its
LREM, a retry refused its LPUSH after writing the document back: each left a job in no list, found
only by the sweeper a minute or two after the ACL was fixed, or (an in-progress document the
sweeper does not requeue) never. So the worker checks every command its scripts call, as they call
it (the real key names: a user limited to some key patterns is refused a key as it is a command),
at start and on each heartbeat; while anything is refused it claims nothing and sends no outcome,
start, give back, reap or sweep, so no script of it can stop half-way, and says so (a log error
naming the command and the ACL user, and :func:`jobqueue.keys.acl_refused`, which the API's stall
check reads). It takes jobs again at the first heartbeat after the ACL is fixed.

What remains: an ACL narrowed between two checks (a heartbeat apart, at most 5 s) can still refuse
a script part-way; the worker then checks at once and stops. The hot scripts stay unchanged: a
check of their commands in each of them would cost Redis about as much as their own work.
``PUBLISH`` on the done channel is not checked: a finish calls it last, after every write, so its
refusal moves nothing half-way (README, Connecting to Redis: the channel only speeds up waits).

The API's scripts that write (a keyed submit, ``lua/store_keyed.lua``; a cancel; a wrong token
counted, ``lua/count_guess.lua``) are guarded the
same way by :class:`Guard`: an API process has no heartbeat, so the check runs on a call's way, at
most every :data:`GUARD_SECONDS` (every :data:`GUARD_REFUSED_SECONDS` while something is refused,
and at the next call after a NOPERM), and while it finds a refusal those calls answer it (503)
without sending anything. A plain submit is a MULTI/EXEC transaction, refused whole by Redis.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from importlib import resources

import redis

from . import keys
from .connections import acl_refusal
from .lanes import PLOTS
from .settings import Settings, redis_url_options

ACL_CHECK_LUA = resources.files(__package__).joinpath("lua", "acl_check.lua").read_text(encoding="utf-8")

GUARD_SECONDS = 30.0  # an API process checks its scripts' commands again after this
GUARD_REFUSED_SECONDS = 5.0  # ... or this soon while one is refused (the fix is seen within it)
RECORD_TTL_SECONDS = 60  # keys.acl_refused: a worker gone while refused leaves no lasting record
_PROBE = "acl-check"  # a job id, fingerprint, call id in the key names checked (no such key is touched)


@dataclass(frozen=True)
class Refusal:
    """One command Redis's ACL refuses the user, as the worker's scripts call it."""

    command: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.command[0].lower()

    def describe(self) -> str:
        """``the 'lpush' command (LPUSH hotqueue:jobs acl-check)``: the command, and the call it was
        checked as (Redis refuses a command, or a key outside the user's patterns, alike)."""
        return f"the '{self.name}' command ({' '.join(self.command)})"


def acl_user(settings: Settings) -> str:
    """The ACL user the service logs in as: REDIS_URL's, else Redis's ``default``."""
    return str(redis_url_options("REDIS_URL", settings.redis_url).get("username") or "default")


def worker_commands(settings: Settings, worker: str) -> list[tuple[str, ...]]:
    """Every command the worker's scripts (``lua/*.lua`` run by ``jobqueue.delivery`` for a worker:
    claim, start, finish, retry, beat, give back, reap, sweep) and its script calls send, with the key
    names they use. tests/worker/test_acl_check.py checks that none of the scripts' commands is missing."""
    name = settings.queue_name
    plots = keys.lane_queue_name(name, PLOTS)
    lanes = [(keys.queue(name), keys.delayed(name)), (keys.queue(plots), keys.delayed(plots))]
    processing = keys.processing(worker)
    hb, busy, plots_busy = keys.WORKERS_HEARTBEAT, keys.WORKERS_BUSY, keys.PLOTS_BUSY
    job, cache, kept = keys.job(_PROBE), keys.result_cache(_PROBE), keys.kept_answer(_PROBE)
    results = [keys.result(_PROBE), keys.result_by_request(_PROBE)]
    commands: list[tuple[str, ...]] = [
        ("EVALSHA", "0" * 40, "0"),
        ("SCRIPT", "LOAD", "return 1"),  # redis-py loads a script again after a restart
        ("SELECT", str(settings.redis_jobs_db)),
        ("SELECT", str(settings.redis_queue_db)),
        ("TIME",),
        # queue db: the lanes, the worker's processing list, the worker registry
        ("BLMOVE", lanes[0][0], processing, "LEFT", "RIGHT", "1"),
        ("LMOVE", lanes[1][0], processing, "LEFT", "RIGHT"),
        ("RPUSH", processing, _PROBE),
        ("LRANGE", processing, "0", "-1"),
        ("LPOS", processing, _PROBE),
        ("LREM", processing, "1", _PROBE),
        ("DEL", processing),
        ("ZADD", hb, "0", worker),
        ("ZREM", hb, worker),
        ("ZCARD", hb),
        ("ZRANGE", hb, "0", "-1"),
        ("ZRANGEBYSCORE", hb, "-inf", "0"),
        ("HSET", busy, worker, _PROBE),
        ("HGET", busy, worker),
        ("HDEL", busy, worker),
        ("HSET", plots_busy, worker, _PROBE),
        ("HGET", plots_busy, worker),
        ("HDEL", plots_busy, worker),
        ("HEXISTS", plots_busy, worker),
        ("HLEN", plots_busy),
        ("GET", keys.PLOTS_SKIPPED),
        ("SET", keys.PLOTS_SKIPPED, "0"),
        ("INCR", keys.PLOTS_SKIPPED),
        ("EXISTS", keys.REAPED),
        ("SMISMEMBER", keys.REAPED, _PROBE),
        ("SADD", keys.REAPED, _PROBE),
        ("SREM", keys.REAPED, _PROBE),
        ("GET", kept),
        ("SET", kept, "[]", "EX", "300"),
        ("SET", keys.SWEEP_LOCK, _PROBE, "NX", "EX", "30"),
        ("GET", keys.SWEEP_LOCK),
        # jobs db: documents, results, the cache, the indexes, the waiters' marks
        ("MGET", job),
        ("GET", job),
        ("PTTL", job),
        ("SET", job, "{}"),
        ("SET", job, "{}", "EX", "60"),
        ("GET", cache),
        ("SET", cache, _PROBE, "EX", "60"),
        ("ZREM", keys.ACTIVE_INDEX, _PROBE),
        # return_unfound (an id without a document, no jobs db recorded): did this db ever hold it?
        ("EXISTS", job),
        ("ZSCORE", keys.JOB_INDEX, _PROBE),
        ("ZSCORE", keys.ACTIVE_INDEX, _PROBE),
        ("ZRANGEBYSCORE", keys.ACTIVE_INDEX, "-inf", "0"),
        ("ZADD", keys.status_index("complete"), "0", _PROBE),
        ("ZADD", keys.status_index("failed"), "0", _PROBE),
        ("EXISTS", keys.waited(_PROBE), keys.ANNOUNCE_ALL),
        ("DEL", keys.waited(_PROBE)),
    ]
    for result in results:
        commands += [("SET", result, "x", "EX", "60"), ("EXPIRE", result, "60"), ("EXISTS", result)]
    for queue, delayed in lanes:
        commands += [
            ("LPOP", queue, "1"),
            ("RPUSH", queue, _PROBE),
            ("LPUSH", queue, _PROBE),
            ("LLEN", queue),
            ("LPOS", queue, _PROBE),
            ("ZADD", delayed, "0", _PROBE),
            ("ZREM", delayed, _PROBE),
            ("ZSCORE", delayed, _PROBE),
            ("ZRANGEBYSCORE", delayed, "-inf", "0", "LIMIT", "0", "100"),
        ]
    return commands


def api_commands(settings: Settings) -> list[tuple[str, ...]]:
    """Every command of the API's scripts that write, with the key names they use: a keyed submit
    (``lua/store_keyed.lua`` and ``write_new.lua``; the dispatcher's ``store`` after a lost answer),
    a cancel (the dispatcher's ``cancel``, ``final.lua``) and, while TOKEN_FAILURE_LIMIT is on, a
    wrong token counted against its client's budget (``lua/count_guess.lua``)."""
    name = settings.queue_name
    plots = keys.lane_queue_name(name, PLOTS)
    lanes = [(keys.queue(name), keys.delayed(name)), (keys.queue(plots), keys.delayed(plots))]
    job, idempotency = keys.job(_PROBE), keys.idempotency("", _PROBE)
    commands: list[tuple[str, ...]] = [
        ("EVALSHA", "0" * 40, "0"),
        ("SCRIPT", "LOAD", "return 1"),
        ("SELECT", str(settings.redis_jobs_db)),
        ("SELECT", str(settings.redis_queue_db)),
        ("GET", idempotency),
        ("SET", idempotency, _PROBE, "EX", "60"),
        ("GET", job),
        ("EXISTS", job),
        ("MSET", job, "{}"),
        ("SET", job, "{}", "EX", "60"),
        ("ZADD", keys.JOB_INDEX, "0", _PROBE),
        ("ZADD", keys.operation_index(_PROBE), "0", _PROBE),
        ("ZADD", keys.owner_index(_PROBE), "0", _PROBE),
        ("ZADD", keys.ACTIVE_INDEX, "0", _PROBE),
        ("ZREM", keys.ACTIVE_INDEX, _PROBE),
        ("ZADD", keys.status_index("cancelled"), "0", _PROBE),
        ("SET", keys.waited(_PROBE), "1", "EX", "60"),
        ("EXISTS", keys.waited(_PROBE), keys.ANNOUNCE_ALL),
        ("DEL", keys.waited(_PROBE)),
        ("SREM", keys.REAPED, _PROBE),
    ]
    for queue, delayed in lanes:
        commands += [("RPUSH", queue, _PROBE), ("LREM", queue, "1", _PROBE), ("ZREM", delayed, _PROBE)]
    if settings.token_failure_limit > 0:
        # the wrong-token budget (lua/count_guess.lua): refused its PEXPIRE after its ZADD, it left
        # the client's set of digests without a TTL
        budget = keys.wrong_tokens(_PROBE)
        commands += [
            ("TIME",),
            ("ZREMRANGEBYSCORE", budget, "-inf", "0"),
            ("ZCARD", budget),
            ("ZRANGE", budget, "0", "0", "WITHSCORES"),
            ("ZADD", budget, "0", _PROBE),
            ("PEXPIRE", budget, "60000"),
        ]
    return commands


class AclCheck:
    """The check of a list of commands (by default one worker's), on a client of the service's
    Redis user (one script call, no key touched)."""

    def __init__(
        self, client: redis.Redis, settings: Settings, worker: str, commands: list[tuple[str, ...]] | None = None
    ) -> None:
        self.client = client
        self.commands = commands if commands is not None else worker_commands(settings, worker)
        self._argv = [a for c in self.commands for a in (str(len(c)), *c)]
        self._script = client.register_script(ACL_CHECK_LUA)
        self.record_key = keys.acl_refused(worker)

    def refused(self) -> list[Refusal] | None:
        """The commands refused (empty: none), or None on a Redis that cannot check (before 7.0).
        Raises RedisError when Redis does not answer, or refuses the check's own script call (NOPERM)."""
        positions = self._script(keys=[], args=self._argv)
        if positions == [-1]:
            return None
        return [Refusal(self.commands[int(p) - 1]) for p in positions]

    def record(self, what: str | None) -> None:
        """Write what is refused where the API's stall check reads it (``what`` None: clear it). One
        plain command: refused too (the user's key patterns), the logs alone say it."""
        try:
            if what is None:
                self.client.delete(self.record_key)
            else:
                self.client.set(self.record_key, what, ex=RECORD_TTL_SECONDS)
        except redis.exceptions.RedisError:
            pass


def recorded(client: redis.Redis, workers: list[str]) -> dict[str, str]:
    """What Redis's ACL refuses each of ``workers`` (those that recorded a refusal), for the stall check."""
    if not workers:
        return {}
    found = client.mget([keys.acl_refused(w) for w in workers])
    return {w: str(v) for w, v in zip(workers, found) if v is not None}


def recorded_any(client: redis.Redis) -> dict[str, str]:
    """Every worker's recorded refusal (a record lives RECORD_TTL_SECONDS after its last write): for
    the stall check when no worker is alive, as one refused its heartbeat's commands has no heartbeat."""
    found = [str(k) for k in client.scan_iter(match=f"{keys.ACL_REFUSED_PREFIX}*", count=1000)]
    return recorded(client, [k[len(keys.ACL_REFUSED_PREFIX) :] for k in found])


class Guard:
    """The API's check of its scripts' commands (:func:`api_commands`), run on a call's way at most
    every GUARD_SECONDS: :meth:`ensure` raises the refusal (a NoPermissionError naming the
    command, answered 503) while one is found, so a keyed submit or a cancel never runs a script
    that would stop part-way. Costs a call one script call a GUARD_SECONDS, none in between."""

    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.check = AclCheck(client, settings, "", api_commands(settings))
        self._refused: list[Refusal] = []
        self._due = 0.0

    def ensure(self) -> None:
        now = time.monotonic()
        if now >= self._due:
            found = self.check.refused()  # Redis away or the check refused: raised, checked again next call
            self._refused = found or []  # None: a Redis before 7.0 cannot check; the call goes as before
            self._due = now + (GUARD_REFUSED_SECONDS if self._refused else GUARD_SECONDS)
        if self._refused:
            raise redis.exceptions.NoPermissionError(
                f"this user has no permissions to run {self._refused[0].describe()} (the service's ACL check)"
            )

    def saw(self, exc: BaseException) -> None:
        """A call met ``exc``: after a NOPERM (the ACL narrowed since the last check) check at the next call."""
        if acl_refusal(exc) is not None:
            self._due = 0.0
