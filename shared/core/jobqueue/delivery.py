"""Every Redis operation of a job's life: submit, cancel, claim, start, finish, retry, reap, sweep.

Submit is one MULTI/EXEC transaction (it only writes); every other operation is one command of one
atomic Lua script (``lua/dispatch.lua``, its header lists the key layout), loaded once per client
and run through redis-py's ``Script`` (which reloads it when Redis forgot it after a restart). A
worker's hot calls (claim, start, finish or retry, heartbeat) run the same commands from smaller
scripts made of only the pieces they use (:func:`worker_lua`); a keyed submit has its own too. The
API submits and cancels; workers do the rest.

Ownership of a job id is its presence in a worker's processing list ``processing:<worker>``
(queue db). A claim moves ids there from the queue list atomically; a worker's lease is its
heartbeat in ``workers:heartbeat``; the reaper moves the ids of a worker silent for longer than the
lease back to the front of the queue. Finishing removes the id from the processing list and writes
the final job document *in the same script*, and only if the id was still there and the document is
not already final: that fencing is why a job that ran twice still ends with exactly one final
result. The script ``SELECT``\\ s the jobs db for the documents (a script's SELECT stays inside the
script), so claim+read and finish+write are each one round trip.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
import uuid
from dataclasses import dataclass
from enum import Enum
from importlib import resources
from collections.abc import Callable, Sequence
from typing import Any

import redis

from . import aclcheck, keys, wire
from .jobs import Job, JobStatus, new_job_id, waited_ttl_seconds
from .lanes import DEFAULT, PLOTS
from .settings import Settings

log = logging.getLogger(__name__)

# After a lost answer where CLIENT KILL is refused: how long the check waits, once Redis answers a
# PING, for Redis to read what the first attempt had sent (one turn of its event loop, normally)
UNFENCED_SETTLE_SECONDS = 0.5
_unfenced_warned = False  # that warning is logged once a process
UNATOMIC_LOG_SECONDS = 60.0  # a submit run without MULTI (ACL): the error again this often
_unatomic_logged_at = -UNATOMIC_LOG_SECONDS

_INCLUDE = re.compile(r"^--@include ([a-z_]+\.lua)$", re.MULTILINE)


def _lua(name: str) -> str:
    """A script of ``lua/`` with its pieces in: each line ``--@include <piece>.lua`` is replaced by
    that file, so a write two scripts make (a new job's, ``write_new.lua``) is defined once."""
    return _included(resources.files(__package__).joinpath("lua", name).read_text(encoding="utf-8"))


def _included(text: str) -> str:
    return _INCLUDE.sub(lambda m: _lua(m.group(1)).rstrip("\n"), text)


DISPATCH_LUA = _lua("dispatch.lua")

# A worker's hot calls, once or twice a job, run the dispatcher's commands from scripts of their own,
# each made of only the pieces its commands use: every EVALSHA runs its script's top level first,
# and the dispatcher's creates some thirty functions, which cost Redis about as much as a claim's
# or a finish's own work (docs/delivery.md). Per command, the pieces it needs besides common.lua
# (the layout, lanes, db selection, time, arguments) and run.lua (which runs the commands named):
_WORKER_PIECES = {
    "claim": ("claim.lua",),
    "claim_held": ("claim.lua",),
    "start": ("fence.lua", "start.lua"),
    "finish": ("fence.lua", "final.lua", "record.lua"),
    "retry": ("fence.lua", "final.lua", "record.lua"),
    "beat": ("beat.lua",),
    "keep": (),  # a kept answer (run.lua)
}
_PIECE_ORDER = ("fence.lua", "final.lua", "claim.lua", "start.lua", "record.lua", "beat.lua")


def worker_lua(names: frozenset[str]) -> str | None:
    """The script of a worker's call joining the commands ``names`` (dispatch.lua's, same KEYS and
    ARGV), or None when one of them is not a worker's hot command (the dispatcher runs it)."""
    if not names <= _WORKER_PIECES.keys():
        return None
    wanted = {p for n in names for p in _WORKER_PIECES[n]}
    pieces = ["common.lua", *(p for p in _PIECE_ORDER if p in wanted), "run.lua"]
    return _included("\n".join(f"--@include {p}" for p in pieces) + "\n")


# a keyed submit's own script: the dispatcher's set-up (its functions, 22 keys and context
# arguments) cost Redis more than the submit's writes (docs/delivery.md)
STORE_KEYED_LUA = _lua("store_keyed.lua")


class Recorded(str, Enum):
    """What a finish or retry did: only ``OK`` means this worker's outcome is the job's."""

    OK = "ok"
    LOST = "lost"  # the id is not in our processing list any more (reaped, re-run elsewhere)
    DELETED = "deleted"  # the document is gone (deleted or expired)
    FINAL = "final"  # another attempt (or a cancel) already wrote a final document


class Started(str, Enum):
    OK = "ok"  # marked in-progress: run it
    CACHED = "cached"  # marked in-progress, and the cache holds its result
    SKIP = "skip"  # final or deleted: acked, not run
    GONE = "gone"  # not ours any more (the reaper gave it to another worker)


class Claim(tuple):
    """One claimed id: unpacks as ``(id, doc)`` (doc JSON, '' when the document is gone);
    ``reaped`` says the reaper took it from a dead worker, so it must be started (marked
    in-progress, its attempt counted) before it runs, however quick: a job that kills its worker
    is then counted each time and fails after JOB_MAX_ATTEMPTS instead of killing workers forever."""

    reaped: bool

    def __new__(cls, job_id: str, doc: str, reaped: bool = False) -> Claim:
        claim = super().__new__(cls, (job_id, doc))
        claim.reaped = reaped
        return claim


def _claims(flat: list) -> list[Claim]:
    return [Claim(i, d, bool(int(r))) for i, d, r in zip(flat[0::3], flat[1::3], flat[2::3])]


class KeyedState(str, Enum):
    """What a submit sent with an ``Idempotency-Key`` did (:meth:`Delivery.store_keyed`)."""

    STORED = "stored"  # a new job, stored with the key's record
    REPLAYED = "replayed"  # the key names a job already, of the same request: that one stands
    CONFLICT = "conflict"  # the key names a job of a different request: nothing stored


@dataclass(frozen=True)
class Keyed:
    state: KeyedState
    job_id: str  # the stored job, or the one the key named
    doc: str | None = None  # that job's document when replayed (None: deleted or expired since)


@dataclass(frozen=True)
class StartAnswer:
    state: Started
    cached_doc: str | None = None  # the source job's document when ``state`` is CACHED


@dataclass(frozen=True)
class Start:
    """Mark a claimed job in-progress (``job`` as it should read now); with the request's
    ``fingerprint``, look its result up in the cache."""

    job: Job
    fingerprint: str = ""


@dataclass(frozen=True)
class Finish:
    """Write ``job``'s final document. Its result goes inline in the document, or apart: ``blob``
    (PNG or large JSON) stored now, or ``shares`` (a cache hit: the stored result of an identical
    request, referenced, not copied). With ``fingerprint`` the job becomes its request's cache
    entry, and a blob is stored once per request rather than per job."""

    job: Job
    blob: bytes = b""
    shares: str = ""
    fingerprint: str = ""


@dataclass(frozen=True)
class Retry:
    """Write ``job`` back as submitted; queue its id again after ``delay`` seconds (0: at once)."""

    job: Job
    delay: float


Record = Finish | Retry


@dataclass(frozen=True)
class Waiting:
    by_lane: dict[str, int]  # ids queued per lane
    delayed: int  # retries waiting out their backoff (both lanes)
    oldest_id: str | None  # the longest-waiting queued id (the older lane head)

    @property
    def depth(self) -> int:
        return sum(self.by_lane.values())


class Delivery:
    """The dispatch script bound to one queue, one pair of dbs and one Redis client.

    Script commands select their dbs themselves, so the API may pass its jobs-db client for
    ``submit``, ``cancel`` and ``waiting``; the worker-side helpers that send plain commands
    (``wait_and_claim``, ``leave``, ``sweep``, ``try_lock_sweep``...) need the queue-db client.
    """

    def __init__(self, client: redis.Redis, settings: Settings):
        self.redis = client
        self.settings = settings
        self.queue_key = keys.queue(settings.queue_name)
        self.delayed_key = keys.delayed(settings.queue_name)
        plots = keys.lane_queue_name(settings.queue_name, PLOTS)
        self._script = client.register_script(DISPATCH_LUA)
        self._scripts: dict[frozenset[str], Any] = {}  # a worker's call's commands -> its script
        self._scripts_by_text: dict[str, Any] = {}
        self._db = int(client.connection_pool.connection_kwargs.get("db") or 0)
        # a blocking wait stays within the client's socket timeout (REDIS_URL's socket_timeout),
        # which redis-py applies to a blocking command's answer too: a longer wait timed out on the
        # socket, was sent again, timed out again, every time an idle worker waited
        socket_timeout = client.connection_pool.connection_kwargs.get("socket_timeout")
        self._longest_wait = max(0.01, round(float(socket_timeout) / 2, 3)) if socket_timeout else float("inf")
        self._lane_queues = {DEFAULT: self.queue_key, PLOTS: keys.queue(plots)}
        self._lanes = ((self.queue_key, self.delayed_key), (keys.queue(plots), keys.delayed(plots)))  # (list, retries)
        self._keys = [
            self.queue_key,
            self.delayed_key,
            keys.WORKERS_HEARTBEAT,
            keys.WORKERS_BUSY,
            keys.JOB_INDEX,
            keys.queue(plots),
            keys.delayed(plots),
            keys.PLOTS_SKIPPED,
            keys.PLOTS_BUSY,
            keys.ACTIVE_INDEX,
            keys.REAPED,
        ]
        self._context = [
            settings.redis_jobs_db,
            settings.redis_queue_db,
            keys.JOB_PREFIX,
            keys.RESULT_PREFIX,
            keys.PROCESSING_PREFIX,
            keys.JOB_DONE_CHANNEL,
            settings.job_ttl_seconds,
            keys.STATUS_INDEX_PREFIX,
            keys.OPERATION_INDEX_PREFIX,
            keys.WAITED_PREFIX,
            keys.ANNOUNCE_ALL,
        ]
        self._keyed_script = client.register_script(STORE_KEYED_LUA)
        self._keyed_keys = [  # after the idempotency key: store_keyed.lua's header lists them
            keys.JOB_INDEX,
            keys.ACTIVE_INDEX,
            self.queue_key,
            self.delayed_key,
            keys.queue(plots),
            keys.delayed(plots),
        ]
        self._keyed_context = [
            settings.redis_jobs_db,
            settings.redis_queue_db,
            keys.JOB_PREFIX,
            keys.OPERATION_INDEX_PREFIX,
            keys.WAITED_PREFIX,
        ]
        self._guard: aclcheck.Guard | None = None  # the API's ACL check of its scripts (made at first use)
        self._heads: dict[str, tuple[bytes, int]] = {}  # _evalsha's packed EVALSHA, keys and context, per script
        self._encoding = ("utf-8", "strict")

    def _script_for(self, command: str) -> Any:
        """The script that runs ``command`` (names joined by '+'): a worker's hot call's own
        (:func:`worker_lua`), else the dispatcher."""
        names = frozenset(command.split("+"))
        script = self._scripts.get(names)
        if script is None:
            text = worker_lua(names)
            if text is None:
                script = self._script
            elif text in self._scripts_by_text:  # 'claim' and 'claim_held', say: one script
                script = self._scripts_by_text[text]
            else:  # loaded at once: its first call, often a pipelined one, then finds it (no NOSCRIPT)
                script = self.redis.register_script(text)
                self.redis.script_load(text)
                self._scripts_by_text[text] = script
            self._scripts[names] = script
        return script

    def _run(self, command: str, *args: Any) -> Any:
        return self._script_for(command)(keys=self._keys, args=[*self._context, command, *args])

    def _run_kept(self, command: str, *args: Any, call_id: str | None = None) -> Any:
        """A script call that answers what it did even when sent again: a give back, reap or sweep
        whose answer was lost is re-sent by redis-py's retry and finds nothing left to do (it would
        answer 0: the jobs it moved missing from the worker's log and metrics); a retry finds the
        job taken by another worker (it would answer 'lost'). The call carries a key of its own
        (``call_id``, new by default; the worker passes the same one when it sends a call again
        itself), under which the script keeps its answer for a few minutes when it moved
        anything, and answers that again. Nothing is kept for a call that moved nothing.

        The first send goes through ``wire`` (never re-sent by redis-py), so that a lost answer is
        seen: one warning line, then the call is sent again, which may be retried freely."""
        kept = ("keep+" + command, keys.kept_answer(call_id or uuid.uuid4().hex), *args)
        try:
            return self._run_once(*kept)
        except wire.Unsure as lost:
            log.warning(
                "%s: the answer was lost (%s); sent again, it answers what the first send did",
                command.split("+", 1)[0],
                lost.__cause__,
            )
            return self._run(*kept)

    def _run_once(self, command: str, *args: Any) -> Any:
        """A script call never sent twice: for commands that claim. redis-py's retry re-sends a call
        whose answer was lost, and a second claim takes a second batch while the ids the first one
        moved sit in this worker's processing list, unseen, their lease kept by its heartbeat. This
        raises ``wire.Unsure`` instead, and the worker gives back everything it holds."""
        call = self._evalsha(command, *args)
        try:
            return wire.pipelined(self.redis, [call])[0]
        except redis.exceptions.NoScriptError:  # Redis restarted: nothing ran; load it, call again
            self.redis.script_load(self._script_for(command).script)
            return wire.pipelined(self.redis, [call])[0]

    def _evalsha(self, command: str, *args: Any) -> wire.Packed:
        """A script call as one command for ``wire``: EVALSHA, the keys and the context (packed once
        per script per Delivery, in ``_heads`` by sha: two thirds of a call's arguments), then the
        command and its arguments."""
        sha = self._script_for(command).sha
        packed = self._heads.get(sha)
        if packed is None:
            encoder = self.redis.connection_pool.get_encoder()
            self._encoding = (encoder.encoding, encoder.encoding_errors)
            head = ("EVALSHA", sha, str(len(self._keys)), *self._keys, *map(str, self._context))
            packed = self._heads[sha] = (wire.pack_args(head, *self._encoding), len(head))
        rest = [a if isinstance(a, bytes) else str(a) for a in (command, *args)]
        return wire.packed(*packed, rest, *self._encoding)

    # --- producer side (the API) -----------------------------------------------------------
    def submit(self, operation: str, params: dict[str, Any], lane: str = DEFAULT, owner: str | None = None) -> Job:
        """Store a new job's document, index it and queue its id in its lane, all or nothing: once
        this returns, the job will reach a final status. ``params`` must be validated already."""
        job = self.new_job(operation, params, lane, owner)
        self.store([job])
        return job

    @staticmethod
    def new_job(operation: str, params: dict[str, Any], lane: str = DEFAULT, owner: str | None = None) -> Job:
        """A new job's document, not stored yet (:meth:`store` stores it)."""
        return Job(
            id=new_job_id(), operation=operation, params=params, submitted_at=time.time(), lane=lane, owner=owner
        )

    def store(self, jobs: list[Job], waited: Sequence[str] = ()) -> None:
        """Store, index and queue new jobs in one MULTI/EXEC transaction (the API coalesces
        concurrent submits into one). Redis refuses a transaction (out of memory, cannot persist,
        read-only replica) as a whole, so a refusal stores none of them; once this returns, every
        one will reach a final status.

        Plain writes that decide nothing, so a transaction rather than a script: as atomic, and it
        costs Redis half of what a script call did per job (no script set-up, no conversion of each
        call into and out of Lua). One command of each kind for the whole batch: at 8 jobs a call
        the API spends 20 µs a job packing and parsing instead of 36 (four commands a job); packed
        in one join (``wire``) instead of through redis-py's pipeline, a call of 9 jobs costs the
        API 118 µs instead of 190.

        Applied at most once: when the transaction's answer is lost (the connection drops after it
        was sent, or redis-py's socket timeout expires while Redis stalls) it may have been applied
        or not, and sending it again (as redis-py's retry of a pipeline does) would queue the ids
        twice and put a finished job back to ``submitted``. So then the script's ``store`` command
        writes the batch only if none of its documents exists (the transaction is all or nothing,
        so one would if it applied), and that call, being idempotent, may be retried freely. The first
        attempt cannot apply after that check: its connection is closed with a reset (``wire``:
        what its kernel had not sent is dropped), and before the check the API kills, in Redis, the
        connection that sent it (:meth:`_fence`), so what reached Redis but was not read yet (a
        stalled Redis's socket buffer, a proxy's) is thrown away unread. The normal path stays one
        transaction, one round trip, no script: the connection's id is learnt when it connects
        (``wire.learn_client_id``), and the WATCH of the first document (one command a call, about
        0.4 µs of Redis CPU, 1.5% of a 16-job transaction's) covers the fallback where the kill is
        refused.

        ``waited``: ids of jobs a request will wait for (``POST /submit?wait=``): their marks
        (``keys.waited``) go in the same transaction, so their end is announced. (A batch stored by
        the fallback script carries no marks: its waiters are woken by the API's safety sweep.)"""
        if not jobs:
            return
        jobs_db, queue_db = str(self.settings.redis_jobs_db), str(self.settings.redis_queue_db)
        commands: list[tuple[str, ...]] = []
        if self._db != int(jobs_db):
            commands.append(("SELECT", jobs_db))
        # one command of each kind for the whole batch (MSET, one ZADD per index, one RPUSH per lane):
        # per job that is ~4x less packing and reply parsing in the API and fewer dispatches in Redis
        docs: list[str] = []
        scored: list[str] = []
        by_operation: dict[str, list[str]] = {}
        by_owner: dict[str, list[str]] = {}  # named tokens only: a tokenless batch adds no command
        lanes: dict[str, list[str]] = {}
        for job in jobs:
            score = repr(job.submitted_at)
            docs += (keys.job(job.id), job.to_json())
            scored += (score, job.id)
            by_operation.setdefault(job.operation, []).extend((score, job.id))
            if job.owner:
                by_owner.setdefault(job.owner, []).extend((score, job.id))
            lanes.setdefault(self._lane_queues.get(job.lane, self.queue_key), []).append(job.id)
        commands.append(("MSET", *docs))
        commands.append(("ZADD", keys.JOB_INDEX, *scored))
        for operation, pairs in by_operation.items():
            commands.append(("ZADD", keys.operation_index(operation), *pairs))
        for name, pairs in by_owner.items():
            commands.append(("ZADD", keys.owner_index(name), *pairs))
        commands.append(("ZADD", keys.ACTIVE_INDEX, *scored))
        ttl = str(waited_ttl_seconds(self.settings.max_wait_seconds))
        for job_id in waited:  # a submit that waits: its job's end is announced (keys.waited)
            commands.append(("SET", keys.waited(job_id), "1", "EX", ttl))
        commands.append(("SELECT", queue_db))
        for queue_key, ids in lanes.items():
            commands.append(("RPUSH", queue_key, *ids))
        if self._db != int(queue_db):  # the connection goes back to the pool in the db it came in
            commands.append(("SELECT", str(self._db)))
        # WATCH the first document (when this connection is in the jobs db): the retry's store
        # writes it, so a first attempt Redis had only partly read then cannot apply after it
        watch = keys.job(jobs[0].id) if self._db == int(jobs_db) else None
        try:
            try:
                wire.transaction(self.redis, commands, watch)
            except redis.exceptions.WatchError:  # only FLUSHDB touches a new id's key: nothing applied
                wire.transaction(self.redis, commands, watch)
        except wire.Unatomic as ran:
            _ran_without_multi(ran, len(jobs))
        except wire.Unsure as lost:
            fields = [f for job, doc in zip(jobs, docs[1::2]) for f in _new_job_fields(job, doc)]
            try:
                self._fence(lost.client_id)
                stored_now = self._run("store", *fields)
            except redis.exceptions.RedisError as exc:  # no answer to the check either: still unknown
                raise wire.Unsure(
                    f"the answer was lost ({lost.__cause__}) and so was the check's ({exc}); "
                    "the jobs may or may not have been stored"
                ) from exc
            log.warning(
                "submit: a transaction's answer was lost (%s); %s",
                lost.__cause__,
                "it had not applied, stored now" if stored_now else "it had applied, not sent again",
                extra={"jobs": len(jobs)},
            )

    def store_keyed(self, job: Job, key: str, fingerprint: str, key_seconds: int, waited: bool = False) -> Keyed:
        """Store a new job sent with an ``Idempotency-Key`` unless the key (``key``: its Redis name,
        ``keys.idempotency``) names a job already: the job and the key's record in one script call
        (``lua/store_keyed.lua``, a script of its own: the dispatcher's set-up cost Redis more than
        the submit), so of two attempts with one key, whichever Redis runs second answers the
        first's job, in any order. Safe to send again (redis-py's retry after a lost answer): the
        same job id finds its own record and answers ``stored``. redis-py's ``Script`` loads the
        script again when Redis forgot it (a restart, ``SCRIPT FLUSH``): nothing ran then.
        ``waited``: mark the answered job waited for (``POST /submit?wait=``)."""
        guard = self.acl_guard()
        try:
            state, job_id, doc = self._keyed_script(**self.keyed_call(job, key, fingerprint, key_seconds, waited))
        except redis.exceptions.ResponseError as exc:
            guard.saw(exc)
            raise
        return Keyed(KeyedState(state), job_id, doc or None)

    def acl_guard(self) -> aclcheck.Guard:
        """The API's scripts that write run only while Redis's ACL allows every command they call
        (``jobqueue.aclcheck.Guard``): refused part-way, a script's earlier writes stay. Raises the
        refusal (NoPermissionError); the wrong-token budget (``jobqueue_api.guesses``) calls it too."""
        if self._guard is None:
            self._guard = aclcheck.Guard(self.redis, self.settings)
        self._guard.ensure()
        return self._guard

    def keyed_call(self, job: Job, key: str, fingerprint: str, key_seconds: int, waited: bool = False) -> dict:
        """The keys and arguments of :meth:`store_keyed`'s script call (``STORE_KEYED_LUA``)."""
        ttl = waited_ttl_seconds(self.settings.max_wait_seconds) if waited else 0
        return {
            "keys": [key, *self._keyed_keys],
            "args": [*self._keyed_context, fingerprint, key_seconds, ttl, *_new_job_fields(job, job.to_json())],
        }

    def _fence(self, sender: int | None) -> None:
        """Make sure a transaction whose answer was lost can no longer apply: ``CLIENT KILL ID`` of
        the connection that sent it. Redis runs one command at a time, so when the kill runs either
        that connection's EXEC has run already (the check then finds the documents) or it has not,
        and then it never will: ``clientKillCommand`` frees the client at once (``freeClient``, Redis
        7.0 src/networking.c), closing its socket with whatever Redis had not read of it yet and
        discarding its queued MULTI (``freeClientMultiState``) and WATCHes. That holds in any order
        Redis serves its connections in; the WATCH alone did not (after a stall Redis may serve the
        check's connection before it reads the WATCH: docs/delivery.md). 0 killed (Redis had freed
        it already) is as good. An id of a Redis that restarted since may name another client: it is
        disconnected once and reconnects.

        Refused (an ACL user without ``client|kill``, a managed Redis or proxy that forbids CLIENT)
        or the id unknown, this does what it can: a PING (Redis runs again), then
        ``UNFENCED_SETTLE_SECONDS`` for Redis to read what was waiting (the first attempt's WATCH
        then still aborts its EXEC), and a warning, once a process, naming the missing permission."""
        if sender is not None:
            try:
                self.redis.client_kill_filter(_id=sender)
                return
            except redis.exceptions.ResponseError as refused:
                why = f"CLIENT KILL was refused ({refused})"
        else:
            why = "the connection's id is unknown (CLIENT ID was refused)"
        global _unfenced_warned
        if not _unfenced_warned:
            _unfenced_warned = True
            log.warning(
                "submit: %s, so after a lost answer the check waits %.1f s instead of fencing the "
                "first attempt; a job could then be queued twice. Allow the Redis user "
                "+client|id +client|kill (README, Connecting to Redis)",
                why,
                UNFENCED_SETTLE_SECONDS,
            )
        self.redis.ping()
        time.sleep(UNFENCED_SETTLE_SECONDS)

    def cancel(self, job: Job) -> bool:
        """Cancel a queued job: False if it is no longer queued (a worker has it). ``job`` becomes
        the cancelled document either way, so the caller can answer with it."""
        job.status = JobStatus.CANCELLED
        job.finished_at = time.time()
        guard = self.acl_guard()
        try:
            return bool(self._run("cancel", job.id, job.to_json(), repr(job.submitted_at)))
        except redis.exceptions.ResponseError as exc:
            guard.saw(exc)
            raise

    # --- consumer side (workers) -----------------------------------------------------------
    def claim(self, worker: str, n: int) -> list[Claim]:
        """Claim up to ``n`` ids; (id, doc JSON or ''). Never sent twice (``wire.Unsure``)."""
        return _claims(self._run_once("claim", worker, n))

    def wait_and_claim(self, worker: str, n: int, timeout: float) -> list[Claim]:
        """An idle worker's wait: block up to ``timeout`` (at most half the client's socket timeout)
        for an id (BLMOVE into the processing list) and claim it, with more up to ``n`` in all, in
        one round trip. The claim is pipelined behind the BLMOVE on the same connection, so Redis
        runs it the moment the BLMOVE returns instead of after the worker has read that answer and
        sent the claim. It claims whatever the processing list holds, so an id moved by an attempt
        whose answer was lost (redis-py retries a call after a dropped connection) is claimed too,
        never left held unseen. Empty after a timeout."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.blmove(self.queue_key, keys.processing(worker), min(timeout, self._longest_wait), "LEFT", "RIGHT")
        # EVALSHA itself: a Script in a pipeline would cost a SCRIPT EXISTS round trip each time
        pipe.evalsha(
            self._script_for("claim_held").sha, len(self._keys), *self._keys, *self._context, "claim_held", worker, n
        )
        moved, claimed = pipe.execute(raise_on_error=False)
        if isinstance(claimed, redis.exceptions.NoScriptError):  # Redis restarted: load it, claim again
            claimed = self._run("claim_held", worker, n)
        for answer in (moved, claimed):
            if isinstance(answer, Exception):
                raise answer
        return _claims(claimed)

    def finish_then_wait(
        self,
        worker: str,
        finishes: list[Finish],
        n: int,
        timeout: float,
        recorded: Callable[[list[Recorded]], None],
    ) -> list[Claim]:
        """Record ``finishes`` and go back to waiting, in one write: the finish call, then an idle
        worker's wait (:meth:`wait_and_claim`: the BLMOVE and the claim behind it). For a worker whose
        last claim found its lanes empty: what :meth:`record_many` with a claim would find is then
        usually nothing, and it would cost a round trip (and Redis a wake-up and an empty claim)
        before the wait. Redis writes the finishes at once (a long poll sees them final); the
        caller learns what they did (``recorded``, called with their answers) when the wait ends,
        within ``timeout``: counting them as soon as their answer came, while the client and the
        API were busy with the job's answer, made the round trip slower (docs/benchmarks-history.md, ninth session). A
        due retry or a plots job does not end the wait (the BLMOVE watches the default lane): the
        claim behind it takes them when it ends, as for any idle worker.

        Never sent twice: the finish's answer lost raises ``wire.Unsure`` (the caller records again
        alone, and gives back what it may hold); the wait's lost once the finishes' answer came,
        the wait is sent again and its claim answers everything the processing list holds, as
        :meth:`wait_and_claim` does after a lost answer."""
        command = "+".join("finish" for _ in finishes)
        args = [a for f in finishes for a in _record_args(worker, f)]
        wait = min(timeout, self._longest_wait)
        sent: list[wire.Command | wire.Packed] = [
            self._evalsha(command, *args),
            ("BLMOVE", self.queue_key, keys.processing(worker), "LEFT", "RIGHT", repr(wait)),
            self._evalsha("claim_held", worker, n),
        ]
        got: list[Any] = []

        def read(conn: Any) -> list[Any]:
            for _ in sent:
                got.append(wire.reply(conn))
            return got

        try:
            first, moved, claimed = wire.exchange(self.redis, sent, read)
        except wire.Unsure:
            if not got or isinstance(got[0], Exception):
                raise
            recorded(_recorded(got[0], len(finishes)))  # recorded: only the wait was lost
            return self.wait_and_claim(worker, n, timeout)
        if not isinstance(first, Exception):
            recorded(_recorded(first, len(finishes)))
        if isinstance(first, redis.exceptions.NoScriptError):  # Redis restarted: nothing of ours ran
            self.redis.script_load(self._script_for(command).script)
            recorded(self.record_many(worker, list(finishes))[0])
            return _claims(self._run("claim_held", worker, n))  # what the BLMOVE moved, and more
        if isinstance(claimed, redis.exceptions.NoScriptError):  # the claim's script alone forgotten
            claimed = self._run("claim_held", worker, n)
        for answer in (first, moved, claimed):
            if isinstance(answer, Exception):
                raise answer
        return _claims(claimed)

    def pending(self) -> bool:
        """Anything queued or waiting out a retry backoff (a burst worker stops when not)."""
        waiting = self.waiting()
        return bool(waiting.depth or waiting.delayed)

    def waiting(self) -> Waiting:
        """What waits to be claimed, in both lanes (metrics, ``GET /queue``)."""
        depth, plots, delayed, oldest = self._run("waiting")
        return Waiting({DEFAULT: int(depth), PLOTS: int(plots)}, int(delayed), oldest or None)

    def start(self, worker: str, start: Start) -> StartAnswer:
        return _start_answer(self._run("start", *_start_args(worker, start)))

    def record(self, worker: str, record: Record) -> Recorded:
        """Finish or retry one job (fenced: see the module docstring)."""
        return Recorded(self._run(_command(record), *_record_args(worker, record)))

    def record_and_start(self, worker: str, record: Record, start: Start) -> tuple[Recorded, StartAnswer]:
        """Record job i and start job i+1 in one script call: a busy worker's one round trip per job."""
        recorded, started = self._run(
            _command(record) + "+start", *_record_args(worker, record), *_start_args(worker, start)
        )
        return Recorded(recorded), _start_answer(started)

    def start_many(self, worker: str, starts: list[Start]) -> list[StartAnswer]:
        """Start a claimed batch in one script call: one answer per job, in order. The jobs are
        started last to first, so ``workers:busy`` names the first, the one the worker runs now."""
        if len(starts) == 1:
            return [self.start(worker, starts[0])]
        backwards = starts[::-1]
        raw = self._run("+".join(["start"] * len(starts)), *[a for s in backwards for a in _start_args(worker, s)])
        return [_start_answer(r) for r in raw[::-1]]

    def record_and_start_many(
        self, worker: str, records: list[Record], starts: list[Start], call_id: str | None = None
    ) -> tuple[list[Recorded], list[StartAnswer]]:
        """Finish or retry jobs and start the next ones in one script call (a worker starts jobs just
        before it reaches them, with the outcomes waiting then); as :meth:`start_many`, the first
        job to start is started last, so ``workers:busy`` names it. With ``call_id`` the call keeps
        its answer (:meth:`_run_kept`): a worker passes one when the call retries a job."""
        command = "+".join([_command(r) for r in records] + ["start"] * len(starts))
        args = [a for r in records for a in _record_args(worker, r)] + [
            a for s in starts[::-1] for a in _start_args(worker, s)
        ]
        raw = self._run_kept(command, *args, call_id=call_id) if call_id else self._run(command, *args)
        answers = raw if len(records) + len(starts) > 1 else [raw]
        started = [_start_answer(a) for a in answers[len(records) :]]
        return [Recorded(a) for a in answers[: len(records)]], started[::-1]

    def record_many(
        self, worker: str, records: list[Record], claim: int = 0, call_id: str | None = None
    ) -> tuple[list[Recorded], list[Claim]]:
        """Finish or retry several jobs in one script call (each fenced on its own) and, when
        ``claim`` > 0, claim up to that many next ids in the same call: a busy worker's round trips
        per batch are this and :meth:`start_many`, whatever the batch size. With ``call_id`` the
        call keeps its answer (:meth:`_run_kept`); a call that claims is never sent again, so it
        keeps none."""
        if claim and call_id:
            raise ValueError("a call that claims is never sent twice: it keeps no answer")
        command = "+".join([_command(r) for r in records] + (["claim"] if claim else []))
        args = [a for r in records for a in _record_args(worker, r)] + ([worker, claim] if claim else [])
        if call_id:
            raw = self._run_kept(command, *args, call_id=call_id)
        else:
            raw = (self._run_once if claim else self._run)(command, *args)
        answers = raw if len(records) + (1 if claim else 0) > 1 else [raw]
        flat = answers[len(records)] if claim else []
        return [Recorded(a) for a in answers[: len(records)]], _claims(flat)

    def heartbeat(self, worker: str) -> None:
        """Renew the worker's lease at Redis's time (in the script: a beat sent again writes the
        time it arrives, never an older one over a claim's newer beat)."""
        self._run("beat", worker)

    def reap(self, lease_seconds: float, min_uptime: float | None = None, seen_up: float = 0.0) -> tuple[int, int]:
        """Requeue the ids of workers silent for longer than the lease: (ids moved, workers reaped).

        Safe with any number of reapers at once: the script is atomic, a second reaper finds nothing.
        Skipped until both Redis has been up and the caller has seen it take its beats for a lease:
        ``seen_up``, how long the caller has seen Redis answer and accept writes without a break
        and keep its script cache (:meth:`scripts_forgotten`). After a Redis restart, or once Redis
        accepts writes again after refusing them (``maxmemory``, ``MISCONF``: every worker's beats
        were refused alike), live workers then get the time to heartbeat before anyone is declared
        dead (before: a refusal longer than a lease had the first reaper whose beat went through
        requeue live workers' jobs, which ran twice). Redis's uptime comes from ``INFO``, which an
        ACL user without ``@dangerous`` (a managed Redis's default, the README's ``-@dangerous``) is
        refused: then ``seen_up`` alone decides (before: the refusal stopped every reap and sweep,
        so a dead worker's job stayed in progress for good).
        """
        uptime = self.redis_uptime()
        uptime = seen_up if uptime is None else min(uptime, seen_up)
        if uptime < (lease_seconds if min_uptime is None else min_uptime):
            return (0, 0)
        moved, dead = self._run_kept("reap", repr(float(lease_seconds)))
        return int(moved), int(dead)

    def redis_uptime(self) -> float | None:
        """Redis's ``uptime_in_seconds`` (``INFO server``), or None when its ACL refuses our user ``INFO``."""
        try:
            return float(self.redis.info("server").get("uptime_in_seconds", 0))
        except redis.exceptions.NoPermissionError:
            return None

    def scripts_forgotten(self, worker: str) -> bool:
        """Whether Redis no longer holds ``worker``'s marker script, loading it again if so: Redis
        starts with an empty script cache, so this is true after every restart (and failover,
        ``SCRIPT FLUSH``), even one that happened between two of the worker's calls and that it never
        saw fail. A user refused ``INFO`` (``-@dangerous``) may run ``SCRIPT EXISTS`` and ``SCRIPT
        LOAD``; without this, a restart restoring heartbeats older than a lease let the reaper
        requeue a live worker's job, which ran twice. The marker is the worker's own: a shared one
        is loaded again by the first worker to look, hiding the restart from the others. False when
        the ACL refuses these too (no sign then, as before)."""
        body = f"return '{worker.encode().hex()}' -- atx-jobqueue: a Redis restart empties the script cache"
        try:
            if self.redis.script_exists(hashlib.sha1(body.encode()).hexdigest())[0]:
                return False
            self.redis.script_load(body)
        except redis.exceptions.NoPermissionError:
            return False
        return True

    def give_back(self, worker: str, job_ids: list[str]) -> int:
        """Return claimed-but-unstarted ids to the front of the queue (graceful shutdown)."""
        if not job_ids:
            return 0
        return int(self._run_kept("give_back", worker, *job_ids))

    def return_unfound(self, worker: str, job_ids: list[str]) -> list[str]:
        """Claimed ids without a document in this worker's jobs db, while no API recorded its jobs
        db (``jobqueue.jobsdb``): those the jobs db never indexed go back to the front of their lane
        (the API may keep them in another db; they are not ours to drop). Returns them; the others
        (deleted or expired here) stay claimed, for the start to ack."""
        if not job_ids:
            return []
        return list(self._run_kept("return_unfound", worker, *job_ids))

    def give_back_all(self, worker: str) -> int:
        """Return every id the worker holds to the front of the queue, whatever state its document is
        in (a started one is re-run). A worker does this when it cannot progress what it holds.
        Works while Redis is out of memory: the script's first write (LREM) frees, so Redis lets it run."""
        return self.give_back(worker, self.redis.lrange(keys.processing(worker), 0, -1))

    def leave(self, worker: str) -> int:
        """On exit: give back whatever is still held, and drop the heartbeat."""
        n = self.give_back_all(worker)
        pipe = self.redis.pipeline()
        pipe.zrem(keys.WORKERS_HEARTBEAT, worker)
        pipe.hdel(keys.WORKERS_BUSY, worker)
        pipe.hdel(keys.PLOTS_BUSY, worker)
        pipe.execute()
        return n

    def sweep(self, jobs: redis.Redis, older_than: float, chunk: int = 500) -> int:
        """Requeue jobs stuck ``submitted`` in no list (their producer died between its two writes).

        Scans the index of jobs not final yet (``jobs:active``: few, whatever the history; the whole
        listing index held a week of finished jobs, each read every minute) for jobs submitted more
        than ``older_than`` seconds ago whose status is still ``submitted``; a snapshot of the lists
        filters out the ones plainly queued before their documents are read, and for each remaining
        one an atomic script checks every list again before pushing it. Returns how many.
        """
        now = _server_now(self.redis)
        queued: set[str] = set()
        for lane_queue, lane_delayed in self._lanes:  # both lanes: a queued plots job costs no script call
            queued.update(self.redis.lrange(lane_queue, 0, -1))
            queued.update(self.redis.zrange(lane_delayed, 0, -1))
        for worker in self.redis.zrange(keys.WORKERS_HEARTBEAT, 0, -1):
            queued.update(self.redis.lrange(keys.processing(worker), 0, -1))
        requeued = 0
        start = 0
        while True:
            ids = jobs.zrangebyscore(keys.ACTIVE_INDEX, "-inf", now - older_than, start=start, num=chunk)
            if not ids:
                break
            start += len(ids)
            unseen = [i for i in ids if i not in queued]  # a queued job's document is not read
            for job_id, raw in zip(unseen, jobs.mget([keys.job(i) for i in unseen]) if unseen else ()):
                if raw is None or Job.status_of(raw) is not JobStatus.SUBMITTED:
                    continue
                requeued += int(self._run_kept("sweep_one", job_id))
        return requeued

    def try_lock_sweep(self, seconds: float) -> bool:
        """One sweeper at a time across all workers: a key with a TTL, taken with SET NX. Its value
        is new each time, so a SET NX sent again after its answer was lost (redis-py's retry), which
        finds the key taken, can tell the lock is its own (read back only when refused)."""
        token = uuid.uuid4().hex
        if self.redis.set(keys.SWEEP_LOCK, token, nx=True, ex=max(1, int(seconds))):
            return True
        return self.redis.get(keys.SWEEP_LOCK) == token


def _ran_without_multi(ran: wire.Unatomic, jobs: int) -> None:
    """A submit transaction whose MULTI the ACL refused: Redis ran its commands one by one. All of
    them applied: the jobs are stored and queued, so the submit stands (answering 503 had the client
    submit again: a duplicate), and an error says to allow MULTI (once a minute). One refused too:
    part of it applied (a document, maybe not its queue entry, which the workers' sweeper then adds),
    and MULTI's refusal is raised, as before (docs/api.md)."""
    global _unatomic_logged_at
    failed = [r for r in ran.replies if isinstance(r, redis.exceptions.ResponseError)]
    if failed:
        raise ran.refusal from None
    now = time.monotonic()
    if now - _unatomic_logged_at >= UNATOMIC_LOG_SECONDS:
        _unatomic_logged_at = now
        log.error(
            "submit: the Redis ACL refuses MULTI (NOPERM): each submit's commands ran one by one, not as "
            "one transaction; all applied. Allow the Redis user +multi +exec (README, Connecting to Redis)",
            extra={"jobs": jobs, "error": str(ran.refusal)},
        )


def _new_job_fields(job: Job, doc: str) -> tuple[str, ...]:
    """A new job as the script's ``write_new`` reads it: id, document, submit time, operation, lane
    and its owner's index key ('' for a job without an owner: no entry written)."""
    owner_key = keys.owner_index(job.owner) if job.owner else ""
    return (job.id, doc, repr(job.submitted_at), job.operation, job.lane, owner_key)


def _command(record: Record) -> str:
    return "finish" if isinstance(record, Finish) else "retry"


def _record_args(worker: str, record: Record) -> list[Any]:
    job = record.job
    if isinstance(record, Finish):
        if not job.status.is_final:
            raise ValueError(f"a finish writes a final document, not {job.status.value!r}")
        fp = record.fingerprint
        if record.blob:
            job.result_ref = keys.result_by_request(fp) if fp else keys.result(job.id)
        else:
            job.result_ref = record.shares or None
        return [
            job.id,
            worker,
            job.to_json(),
            record.blob,
            job.result_ref or "",
            keys.result_cache(fp) if fp else "",
            job.status.value,
            repr(job.submitted_at),
            job.lane,
        ]
    return [job.id, worker, job.to_json(), repr(float(record.delay)), job.lane]


def _recorded(raw: Any, count: int) -> list[Recorded]:
    return [Recorded(a) for a in (raw if count > 1 else [raw])]


def _start_args(worker: str, start: Start) -> list[Any]:
    return [
        start.job.id,
        worker,
        start.job.to_json(),
        keys.result_cache(start.fingerprint) if start.fingerprint else "",
    ]


def _start_answer(raw: list) -> StartAnswer:
    return StartAnswer(Started(raw[0]), raw[1] if len(raw) > 1 else None)


def _server_now(client: redis.Redis) -> float:
    sec, usec = client.time()
    return sec + usec / 1e6
