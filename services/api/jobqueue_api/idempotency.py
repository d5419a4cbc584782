"""``Idempotency-Key`` on ``POST /submit`` (and ``POST /jobs``): a submit that can be sent again.

A client whose submit got no answer (a 504 while Redis hung, a dropped connection, a timeout)
cannot know whether its job was stored. Sent with an ``Idempotency-Key``, the same request can
simply be sent again: the job and a record of the key are stored in one atomic script call
(``Delivery.store_keyed``), so whichever attempt Redis runs second finds the first's record and
answers its job, in whatever order Redis serves them. Semantics after the IETF httpapi draft "The
Idempotency-Key HTTP Header Field" (draft-ietf-httpapi-idempotency-key-header-06) and Stripe's API:

- the value is a Structured Field String (``"..."``, RFC 8941) or, as most clients send it, the
  bare text; 1-255 visible ASCII characters, else 400 ``invalid_idempotency_key``;
- the key is judged before the body, so a malformed key and no job (``{}``) is a harmless question
  whether this API honours keys: ``invalid_idempotency_key`` here, ``missing_operation`` from an API
  (or a proxy) that ignores the header (the project's client asks it after a lost answer);
- a repeat of the same request (same operation and parameters, as validated: key order, spacing
  and defaults written out do not matter; ``?wait=`` may differ) answers the key's job, marked
  ``Idempotent-Replayed: true``; a different request under a used key is a 422
  ``idempotency_key_reused`` (the draft's status), nothing stored;
- keys are scoped per caller: the token's name under ``API_TOKENS``, else one scope for everyone
  (no tokens, or ``API_TOKEN`` alone: one trust domain), so one user's key never reaches another's
  job;
- a key is kept ``KEY_SECONDS`` (24 h, Stripe's), or ``JOB_TTL_SECONDS`` when that is shorter;
  after that the same key stores a new job;
- every answer that honoured the key carries it back in ``Idempotency-Key``: a client learns that
  this server deduplicates (an older one ignores the header), so a re-send is safe.

There is no "request still in flight" state (the draft's 409): the record is written by the call
that stores the job, so a concurrent attempt either finds it or stores first.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from typing import Any

import redis

from jobqueue import keys, wire
from jobqueue.delivery import Delivery, KeyedState
from jobqueue.jobs import Job

from . import holdings, metrics, ratelimit
from .batching import LeadLost
from .bounds import RedisDeadline, within
from .errors import ApiError

HEADER = "Idempotency-Key"
ENVIRON = "HTTP_IDEMPOTENCY_KEY"
REPLAYED = "Idempotent-Replayed"
MAX_LENGTH = 255
KEY_SECONDS = 24 * 3600
VISIBLE = frozenset(chr(c) for c in range(0x21, 0x7F))


def parse(raw: str) -> str:
    """The key a header value carries: a quoted Structured Field String (``\\"`` and ``\\\\``
    escapes, printable ASCII) or bare visible ASCII without quotes or commas (a comma is what two
    header lines joined make). Anything else, empty or longer than MAX_LENGTH, is a 400."""
    value = raw.strip(" \t")
    if value.startswith('"'):
        key = _sf_string(value)
    else:
        key = value if value and set(value) <= VISIBLE and '"' not in value and "," not in value else None
    if key is None or not 0 < len(key) <= MAX_LENGTH:
        raise ApiError(
            400,
            "invalid_idempotency_key",
            f"{HEADER} must be 1-{MAX_LENGTH} visible ASCII characters, bare or as a quoted string "
            '(e.g. a UUID: Idempotency-Key: "8e03978e-40d5-43e8-bc93-6894a57f9324")',
        )
    return key


def _sf_string(value: str) -> str | None:
    """RFC 8941 sParse-String of the whole value, or None."""
    out = []
    i = 1
    while i < len(value):
        c = value[i]
        if c == "\\":
            if i + 1 >= len(value) or value[i + 1] not in '"\\':
                return None
            out.append(value[i + 1])
            i += 2
            continue
        if c == '"':
            return "".join(out) if i == len(value) - 1 else None
        if not " " <= c <= "~":
            return None
        out.append(c)
        i += 1
    return None


@dataclass
class Keyed:
    """One request's key: as sent (echoed back), where Redis keeps it, and the request's fingerprint."""

    sent: str
    name: str
    fingerprint: str
    replayed: bool = False

    def headers(self) -> list[tuple[str, str]]:
        """What an answer that honoured the key carries."""
        out = [(HEADER, self.sent)]
        if self.replayed:
            out.append((REPLAYED, "true"))
        return out


def keyed(raw: str, owner: str | None, job: Job) -> Keyed:
    """The request's key (``raw``: the header as sent), scoped to ``owner`` (a named token's name,
    or None: the one shared scope), with the fingerprint of the job it asks for."""
    request = json.dumps([job.operation, job.params], sort_keys=True, separators=(",", ":"))
    return Keyed(
        raw.strip(" \t"), keys.idempotency(owner or "", parse(raw)), hashlib.sha256(request.encode()).hexdigest()
    )


# Failures after which the script may have run: anything between sending it and reading its answer.
# (A submit with a key is answered 504 for each: re-sending it with the same key is always safe.)
UNSURE = (RedisDeadline, LeadLost, wire.Unsure, redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


def not_sent(exc: BaseException) -> bool:
    """A failure of :data:`UNSURE`'s redis-py classes that sent nothing: no connection could be made
    (refused, no such socket, its set-up refused, connecting timed out) or Redis answered LOADING
    (it ran nothing). These are the usual 503 (Redis unreachable): they were answered 504, "did not
    answer in time, the job may have been stored", within milliseconds of a refused connection. (Had
    an earlier attempt of redis-py's retries been sent, resending with the same key is still safe.)"""
    if isinstance(exc, (wire.SetupRefused, redis.exceptions.BusyLoadingError)):
        return True
    if not isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)) or isinstance(
        exc, wire.Unsure
    ):
        return False
    cause = exc.__cause__ or exc.__context__
    return isinstance(cause, (ConnectionRefusedError, FileNotFoundError)) or str(exc).startswith("Timeout connecting")


class KeyedSubmits:
    """Stores submits that carry a key: one script call each (not the group commit's transaction,
    whose jobs decide nothing), bounded like every Redis call of the API, with the rate limit
    counted first (a 429 stored nothing; a repeat counts as a submit, as on Stripe)."""

    def __init__(
        self,
        delivery: Delivery,
        counts: redis.Redis,
        limit: int,
        bound: float,
        job_ttl: int,
        window_seconds: int = 60,
        max_jobs: int = 0,
    ):
        self.delivery = delivery
        self.max_jobs = max_jobs
        self.counts = counts
        self.limit = limit
        self.window_seconds = window_seconds
        self.bound = bound
        self.key_seconds = min(KEY_SECONDS, job_ttl)

    def store(self, job: Job, client: str | None, key: Keyed, root: str, waited: bool = False) -> Job:
        """Store ``job`` under ``key`` and return the job to answer with: ``job``, or the one the
        key named (``key.replayed`` set). 422 for a key used by a different request; 504 (with
        this attempt's id, the key echoed) when Redis may or may not have run the call."""
        try:
            with within(self.bound):
                if client is not None and self.limit > 0:
                    refused = ratelimit.admit(self.counts, self.limit, [client], self.window_seconds)[0]
                    if refused is not None:
                        raise refused
                held = client is not None and self.hold(job, client, key)
                try:
                    answer = self.delivery.store_keyed(job, key.name, key.fingerprint, self.key_seconds, waited)
                except UNSURE:
                    raise  # the job may be stored: it stays held until a check finds it gone
                except Exception:
                    if held:
                        holdings.release(self.counts, [job], [client])
                    raise
                if held and answer.state is not KeyedState.STORED:  # the key's job was answered: this one is not kept
                    holdings.release(self.counts, [job], [client])
        except UNSURE as exc:
            if not_sent(exc):
                raise
            err = ApiError(
                504,
                "redis_timeout",
                f"the job store (Redis) did not answer in time ({exc}); the job may have been stored: "
                f"send the same request again with the same {HEADER}, which answers the job that was "
                "stored, or stores it now: one job either way",
                job_id=job.id,
            )
            err.headers["Location"] = f"{root.rstrip('/')}/status/{job.id}"
            err.headers[HEADER] = key.sent
            raise err from exc
        if answer.state is KeyedState.CONFLICT:
            err = ApiError(
                422,
                "idempotency_key_reused",
                f"this {HEADER} was sent with a different request (another operation or other "
                "parameters); use a new key for a new request",
                job_id=answer.job_id,
            )
            err.headers[HEADER] = key.sent
            raise err
        if answer.state is KeyedState.STORED:
            metrics.count_submitted([job.operation])
            return job
        key.replayed = True
        return Job.from_json(answer.doc) if answer.doc else replace(job, id=answer.job_id)

    def hold(self, job: Job, client: str, key: Keyed) -> bool:
        """Whether ``job`` is now held against its client's ``MAX_JOBS_PER_CLIENT`` (``holdings.py``;
        False when the cap is off). At the cap, a repeat of a key already stored is let through
        (it stores nothing, and answers the key's job); anything else is the 429."""
        if self.max_jobs <= 0:
            return False
        refused = holdings.hold(self.counts, self.max_jobs, [job], [client])[0]
        if refused is None:
            return True
        if not self.counts.exists(key.name):
            raise refused
        return False


def store(state: Any, job: Job, client: str | None, key: Keyed, root: str, register: Any = None) -> Job:
    """``state.keyed.store`` for the submit view and the path below Flask (fastpath.py) alike:
    the job to answer with. ``register`` (a waiting submit's ``Expected.register``): the job was
    registered before the store; a replay registers the job the key named instead."""
    answered = state.keyed.store(job, client, key, root, register is not None)
    if answered is not job and register is not None:
        register(answered)  # wait for the job the key named instead
    return answered


def with_key_headers(response: Any, key: Keyed | None) -> Any:
    """``response`` (a Flask response) with the key's headers, if the request had one."""
    if key is not None:
        for name, value in key.headers():
            response.headers[name] = value
    return response
