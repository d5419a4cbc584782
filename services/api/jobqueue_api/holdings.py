"""Per-client cap on the jobs a client holds in Redis (``MAX_JOBS_PER_CLIENT``; 0, the default,
turns it off and costs a submit nothing).

Why: the rate limit bounds how fast a client submits, not what it keeps. Every job stays in Redis
from its submit until its document expires (``JOB_TTL_SECONDS`` after it ends, a week by default)
or is deleted, about 1.4 KB with its result, so one client within the chart's 600 a minute fills
its 350 MB Redis in hours, and every submit is then a 503 for everyone. So what a client holds is
every job of it whose document is still in Redis, unfinished or not: that is what takes the
memory. Unfinished jobs alone would not bound it (they end in seconds; their results stay).

A client is the rate limiter's (``ratelimit.client_of``: its token's name, else its address). Its
jobs are a sorted set (``keys.held``: job id -> submitted time) that one script call per client
(``lua/hold.lua``) checks and adds to atomically, before the batch is stored: so all API processes
and pods together never let a client hold more than the cap, concurrent submits included, and a
refused submit stores nothing. An entry stops counting once its document is gone: the workers'
sweeper drops entries of expired jobs (the set is under the listing indexes' pattern), and a
submit that finds the cap reached looks at the client's :data:`LOOK` oldest entries (of those
over :data:`SETTLED_SECONDS` old) and drops those whose document expired or was deleted. A job whose store failed for sure is given back; one
whose store may have applied (a lost answer) stays counted until the check finds it gone.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from importlib import resources

import redis

from jobqueue import keys, wire
from jobqueue.http import REFUSAL_HEADER
from jobqueue.jobs import Job

from .errors import ApiError

HOLD_LUA = resources.files("jobqueue").joinpath("lua", "hold.lua").read_text(encoding="utf-8")
HOLD_SHA = hashlib.sha1(HOLD_LUA.encode()).hexdigest()
LOOK = 100  # oldest entries a submit at the cap checks for documents gone (~100 PTTLs, tens of µs)
# an entry this much older than a submit is settled: its job was stored, or never will be (a submit
# is bounded by REDIS_TIMEOUT_SECONDS, at most 300 s; twice that and a minute); a newer one without
# its document may be one another API process is storing now: dropping it let the client past its cap
SETTLED_SECONDS = 660


def hold(client: redis.Redis, cap: int, jobs: Sequence[Job], clients: Sequence[str | None]) -> list[ApiError | None]:
    """Hold each job of ``jobs`` against its client's cap (``clients``, in order; None: not
    counted), one script call per client in one round trip; for each, None if now held, else the
    429 to answer it with."""
    refusals: list[ApiError | None] = [None] * len(jobs)
    if cap <= 0:
        return refusals
    by_client: dict[str, list[int]] = {}
    for i, who in enumerate(clients):
        if who is not None:
            by_client.setdefault(who, []).append(i)
    if not by_client:
        return refusals
    prefix = keys.job("")
    sent: list[tuple[str, ...]] = []
    for who, at in by_client.items():
        now = jobs[at[0]].submitted_at
        settled = repr(now - SETTLED_SECONDS)
        ids = tuple(jobs[i].id for i in at)
        sent.append(("EVALSHA", HOLD_SHA, "1", keys.held(who), str(cap), prefix, str(LOOK), repr(now), settled, *ids))
    try:
        replies = wire.repeatable(client, sent)  # safe to send again: a job id is held once
    except redis.exceptions.NoScriptError:
        client.script_load(HOLD_LUA)
        replies = wire.repeatable(client, sent)
    for at, (admitted, _held, wait_ms) in zip(by_client.values(), replies):
        for i in at[int(admitted) :]:
            refusals[i] = refusal(cap, int(wait_ms))
    return refusals


def release(client: redis.Redis, jobs: Sequence[Job], clients: Sequence[str | None]) -> None:
    """Give back jobs held whose store failed for sure (nothing stored): best effort, since a
    place left taken is found free again at the cap (its document is not there)."""
    by_client: dict[str, list[str]] = {}
    for job, who in zip(jobs, clients):
        if who is not None:
            by_client.setdefault(who, []).append(job.id)
    if not by_client:
        return
    try:
        wire.repeatable(client, [("ZREM", keys.held(who), *ids) for who, ids in by_client.items()])
    except redis.exceptions.RedisError:
        pass


def refusal(cap: int, wait_ms: int) -> ApiError:
    """The 429 of a client at its cap. ``Retry-After`` only when known: when the soonest-expiring
    of its oldest finished jobs frees a place (none finished yet: nothing says when one will). It
    carries :data:`REFUSAL_HEADER`, so the ``jobqueue`` client says so at once rather than retrying
    for minutes what frees up in hours."""
    how = "delete finished jobs you no longer need (DELETE /jobs/<id>)"
    extra = {}
    if wait_ms >= 0:
        retry = max(1, math.ceil(wait_ms / 1000))
        extra["retry_after"] = retry
        how += f", or retry in {retry} s, when the first of them expires"
    else:
        how += ", or wait for them to finish and their results to expire (JOB_TTL_SECONDS)"
    err = ApiError(
        429,
        "too_many_jobs_held",
        f"this client already holds {cap} jobs in the job store (MAX_JOBS_PER_CLIENT); {how}",
        limit=cap,
        **extra,
    )
    if wait_ms >= 0:
        err.headers["Retry-After"] = str(extra["retry_after"])
    err.headers[REFUSAL_HEADER] = "too_many_jobs_held"
    return err
