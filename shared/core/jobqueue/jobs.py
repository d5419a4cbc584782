"""The job model: one JSON document per job in the jobs db, owned by :class:`JobStore`.

Documents are JSON (never ``str()``/``eval``). The status values keep the tutorial's contract
(``submitted``, ``in-progress``, ``complete``, ``failed``) and add ``cancelled``.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any
from collections.abc import Iterable

import redis

from . import keys

JOB_ID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
# A page cursor is "<score>_<job id>" (_encode_cursor: a submit time's repr). Only that form is
# one: float() also read "-1", " 1" and "1e3", cursors no page ever gave, and the spec's pattern
# (the same regex) said they were 400s.
CURSOR_RE = re.compile(r"^[0-9]{1,17}(\.[0-9]{1,17})?_" + JOB_ID_RE.pattern.strip("^$") + "$")


class JobStatus(str, Enum):
    SUBMITTED = "submitted"
    IN_PROGRESS = "in-progress"
    COMPLETE = "complete"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset({JobStatus.COMPLETE, JobStatus.FAILED, JobStatus.CANCELLED})

# json.dumps with any option builds a new encoder each call; one made once writes the same text
_encode = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


# the variant nibble of a random UUID: its first two bits are 10 (RFC 4122), the other two random
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def new_job_id() -> str:
    """A random (version 4) UUID in its canonical text form, as ``str(uuid.uuid4())`` writes it:
    122 random bits from ``os.urandom``, version digit 4, variant 10xx. Formatted from the hex
    digits directly: ``uuid.UUID``'s checks and properties were 2% of a submit's CPU."""
    digits = os.urandom(16).hex()
    return f"{digits[:8]}-{digits[8:12]}-4{digits[13:16]}-{_VARIANT[digits[16]]}{digits[17:20]}-{digits[20:]}"


def is_valid_job_id(value: str) -> bool:
    # fullmatch: with match(), the pattern's ``$`` also matches before a final newline ("<uuid>\n")
    return isinstance(value, str) and JOB_ID_RE.fullmatch(value) is not None


@dataclass
class Job:
    id: str
    operation: str
    params: dict[str, Any]
    status: JobStatus = JobStatus.SUBMITTED
    submitted_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    attempts: int = 0
    worker: str | None = None
    error: str | None = None
    result: Any = None
    result_ref: str | None = None  # key of a stored result (PNG or large JSON)
    result_type: str = "application/json"
    dataset: str | None = None  # identity (content hash) of the data it ran on
    cached_from: str | None = None  # id of the job whose result answered this one ('' if another user's)
    lane: str = "default"  # which queue it waits in (jobqueue.lanes)
    owner: str | None = None  # name of the API_TOKENS token that submitted it

    def to_json(self) -> str:
        """The stored document. A shallow copy, not ``dataclasses.asdict``'s deep one (a tenth of
        the cost, which matters on the submit and finish paths); nothing else holds ``params``."""
        doc = self.__dict__.copy()
        doc["status"] = self.status.value
        return _encode(doc)

    @classmethod
    def from_json(cls, text: str | bytes) -> Job:
        doc = json.loads(text)
        doc["status"] = JobStatus(doc["status"])
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in doc.items() if k in known})

    @staticmethod
    def status_of(text: str | bytes) -> JobStatus | None:
        """Only the status of a stored document (None if unreadable), without building a Job."""
        try:
            return JobStatus(json.loads(text)["status"])
        except (ValueError, TypeError, KeyError):
            return None

    def public(self) -> dict[str, Any]:
        """What GET /status/<id> shows: the tutorial's keys plus ours, and ``owner`` when a named
        token submitted it (so the admin sees whose job it is; without named tokens the document
        is the same as before)."""
        doc = {
            "job_id": self.id,
            "id": self.id,
            "status": self.status.value,
            "operation": self.operation,
            "params": self.params,
            "input": {"operation": self.operation, "params": self.params},
            "submitted_at": self.submitted_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "attempts": self.attempts,
            "worker": self.worker,
            "error": self.error,
            "result": self.result,
            "result_type": self.result_type,
            "dataset": self.dataset,
            "cached": self.cached_from is not None,
            "cached_from": self.cached_from or None,  # '' when the source is another user's
        }
        if self.owner is not None:
            doc["owner"] = self.owner
        return doc


@dataclass
class Page:
    """One page of a listing, newest first. ``next_cursor`` continues it (None: nothing older)."""

    jobs: list[Job]
    next_cursor: str | None
    next_offset: int | None = None  # the same position as a rank, for ``offset`` paging


# A waited job's mark outlives the longest wait the API allows (``MAX_WAIT_SECONDS``) by this much,
# whatever the waiter's own wait: a mark is never shortened by a later, shorter waiter on the same
# job; one outliving its waiter costs at most one announcement nobody hears.
WAITED_MARGIN_SECONDS = 10


def waited_ttl_seconds(max_wait_seconds: float) -> int:
    """TTL of a waited job's mark (``keys.waited``)."""
    return int(max_wait_seconds) + WAITED_MARGIN_SECONDS


class JobStore:
    """Reads job documents (and their results) in the jobs db: the one way the API reads jobs.

    Writes that move a job through its life are :class:`jobqueue.delivery.Delivery`'s scripts;
    :meth:`create` and :meth:`save` are for tools and tests. Each key it touches comes from
    :mod:`keys`. ``binary`` is a client with ``decode_responses=False`` for stored results.
    """

    MAX_SCAN_PER_PAGE = 5000  # index entries one page reads at most while filtering

    def __init__(self, client: redis.Redis, ttl_seconds: int, binary: redis.Redis | None = None):
        self.redis = client
        self.ttl_seconds = ttl_seconds
        self.binary = binary

    # --- reading ---------------------------------------------------------------------------
    def get(self, job_id: str) -> Job | None:
        raw = self.redis.get(keys.job(job_id))
        return None if raw is None else Job.from_json(raw)

    def get_raw_many(self, job_ids: list[str]) -> list[str | None]:
        """The stored documents of ``job_ids`` in one MGET, in order (None where there is none):
        the API groups concurrent status reads into one of these (``jobqueue_api.batching``)."""
        return self.redis.mget([keys.job(i) for i in job_ids]) if job_ids else []

    def get_many(self, job_ids: Iterable[str]) -> list[Job]:
        ids = list(job_ids)
        if not ids:
            return []
        raws = self.redis.mget([keys.job(i) for i in ids])
        return [Job.from_json(r) for r in raws if r is not None]

    def result(self, job: Job) -> tuple[Any, str] | None:
        """A complete job's result: (JSON value or PNG bytes, content type); None if it expired."""
        from .results import read_result

        if self.binary is None:
            raise RuntimeError("JobStore(binary=...) is needed to read stored results")
        return read_result(self.binary, job)

    def page(
        self,
        status: str | None = None,
        operation: str | None = None,
        cursor: str | None = None,
        limit: int = 50,
        offset: int | None = None,
        owner: str | None = None,
    ) -> Page:
        """Jobs newest first, optionally only one status, one operation and/or one owner (a named
        token's user: their own index, so a busy class's other jobs cost their listing nothing).

        Each filter has its own index, so a page costs the same with 100 or 100,000 jobs: one per
        operation, one per final status, and one of the jobs not final yet (``submitted`` and
        ``in-progress``, filtered by their documents; they are few whatever the history, and a
        status change on the hot path then moves no index entry). With both filters the smaller
        index is read and the other filter applied to the documents. ``cursor`` (from the previous page) or ``offset`` (a
        rank) says where to continue. Entries of expired jobs are pruned on the way. A page may
        come back short with a cursor when MAX_SCAN_PER_PAGE entries did not fill it.

        An offset is a rank in :meth:`_ranked_index`, whichever index is read: with two filters the
        smaller one can change between pages (a status's index grows as jobs finish), and a rank in
        one read in the other skipped or repeated jobs.
        """
        index = self._index_for(status, operation, owner)
        ranked = self._ranked_index(status, operation, owner)
        after = _decode_cursor(cursor) if cursor else None
        if after is None and offset:
            before = self.redis.zrevrange(ranked, offset - 1, offset - 1, withscores=True)
            if not before:
                return Page([], None, None)
            after = (before[0][1], before[0][0])
        found: list[Job] = []
        scanned = pruned = 0
        last: tuple[float, str] | None = after
        exhausted = False
        chunk = max(limit * 2, 50)
        while len(found) < limit and scanned < self.MAX_SCAN_PER_PAGE:
            entries = self._entries_after(index, after, chunk)
            if not entries:
                exhausted = True
                break
            raws = self.redis.mget([keys.job(i) for i, _ in entries])
            gone: list[str] = []
            for (job_id, score), raw in zip(entries, raws):
                scanned += 1
                last = after = (score, job_id)
                if raw is None:
                    gone.append(job_id)
                    continue
                job = Job.from_json(raw)
                if (
                    (status is None or job.status.value == status)
                    and (operation is None or job.operation == operation)
                    and (owner is None or job.owner == owner)
                ):
                    found.append(job)
                    if len(found) == limit:
                        break
            if gone:  # one round trip for the chunk's expired jobs (one each took 2.6 s for 5,000)
                self._prune(gone, index)
                pruned += len(gone)
            if len(entries) < chunk and len(found) < limit:
                exhausted = True
                break
        if exhausted or last is None or not self._entries_after(index, last, 1):
            return Page(found, None, None)
        if offset is None:
            next_offset = None
        elif ranked == index:  # the entries this page passed, less the pruned ones, are the rank's step
            next_offset = offset + scanned - pruned
        else:
            next_offset = self._rank_through(ranked, last)
        return Page(found, _encode_cursor(last), next_offset)

    def submitted_since(self, since: float, limit: int) -> list[str]:
        """Ids of up to ``limit`` jobs submitted at or after ``since`` (epoch seconds), newest
        first: the listing's index read directly, one command (the overview's recent outcomes).
        An id whose job has expired may be among them; :meth:`get_many` skips it."""
        return self.redis.zrevrangebyscore(keys.JOB_INDEX, "+inf", since, start=0, num=limit)

    def _index_for(self, status: str | None, operation: str | None, owner: str | None) -> str:
        """The index to read: the filter's own, or with several the smallest of theirs (the
        documents are checked against every filter anyway; the active index holds two statuses)."""
        candidates = [
            index
            for index, wanted in (
                (_status_index(status or ""), status),
                (keys.operation_index(operation or ""), operation),
                (keys.owner_index(owner or ""), owner),
            )
            if wanted is not None
        ]
        if not candidates:
            return keys.JOB_INDEX
        if len(candidates) == 1:
            return candidates[0]
        pipe = self.redis.pipeline(transaction=False)
        for index in candidates:
            pipe.zcard(index)
        sizes = pipe.execute()
        return candidates[sizes.index(min(sizes))]

    @staticmethod
    def _ranked_index(status: str | None, operation: str | None, owner: str | None) -> str:
        """The index an ``offset`` counts entries of: the owner's, else the operation's (a job never
        leaves either while it lives), else the status's, else every job's. Chosen by the filters
        alone, never by size, so one listing's offsets mean the same on every page; with one filter
        (or none) it is the index the page reads."""
        if owner is not None:
            return keys.owner_index(owner)
        if operation is not None:
            return keys.operation_index(operation)
        if status is not None:
            return _status_index(status)
        return keys.JOB_INDEX

    def _rank_through(self, index: str, position: tuple[float, str]) -> int:
        """How many entries of ``index`` are at or newer than ``position`` (score, id): the offset
        that continues after it. One round trip; the equal-score entries are read only when the
        position is no member and shares its score with some (a job of the other filter only)."""
        score, job_id = position
        pipe = self.redis.pipeline(transaction=False)
        pipe.zrevrank(index, job_id)
        pipe.zcount(index, f"({score!r}", "+inf")
        pipe.zcount(index, score, score)
        rank, newer, tied = pipe.execute()
        if rank is not None:  # a member: every index scores a job by its submit time
            return rank + 1
        if not tied:
            return newer
        # same score: newer means a greater id (reverse lexical order, as _entries_after reads them)
        return newer + sum(1 for member in self.redis.zrangebyscore(index, score, score) if member > job_id)

    def _entries_after(self, index: str, after: tuple[float, str] | None, n: int) -> list[tuple[str, float]]:
        """Up to ``n`` (id, score) entries older than ``after`` (score, id), newest first."""
        if after is None:
            return self.redis.zrevrange(index, 0, n - 1, withscores=True)
        score, job_id = after
        out: list[tuple[str, float]] = []
        skip = 0
        while len(out) < n:
            got = self.redis.zrevrangebyscore(index, score, "-inf", start=skip, num=n + 16, withscores=True)
            if not got:
                break
            skip += len(got)
            # same score: members come in reverse lexical order; the cursor's own and the ones
            # before it were on earlier pages
            out.extend((i, s) for i, s in got if s < score or (s == score and i < job_id))
            if got[-1][1] < score:
                break
        return out[:n]

    def _prune(self, job_ids: list[str], index: str) -> None:
        """Drop expired jobs' entries (their documents are gone, so their statuses are unknown: all)."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.zrem(keys.JOB_INDEX, *job_ids)
        pipe.zrem(index, *job_ids)
        pipe.zrem(keys.ACTIVE_INDEX, *job_ids)
        for status in JobStatus:
            pipe.zrem(keys.status_index(status.value), *job_ids)
        pipe.execute()

    def drop_expired_entries(self, now: float, chunk: int = 500, most: int = 20_000) -> int:
        """Remove index entries whose job document has expired, from every index (the workers'
        sweeper, once a minute). Returns how many entries.

        Why: a document expires by its TTL but its entries (every job's, its status's, its
        operation's, its owner's) do not, and the listing prunes only the entries a page passes in
        the index it reads: newest first, so the oldest were never passed, and an operation's or an
        owner's entry was left even when they were. Each expired job kept about 500 bytes of Redis
        for good. Only entries submitted over ``ttl_seconds`` before ``now`` (Redis's clock) can
        belong to an expired job, since a document lives that long after it is final; at most
        ``most`` of them are checked a pass, ``chunk`` a round trip."""
        cutoff = now - self.ttl_seconds
        indexes = [keys.ACTIVE_INDEX, *self.redis.scan_iter(match=keys.indexes_pattern(), count=1000, _type="zset")]
        dropped = checked = 0
        for index in indexes:
            start = 0
            while checked < most:
                ids = self.redis.zrangebyscore(index, "-inf", cutoff, start=start, num=chunk)
                if not ids:
                    break
                checked += len(ids)
                pipe = self.redis.pipeline(transaction=False)
                for job_id in ids:
                    pipe.exists(keys.job(job_id))
                gone = [i for i, there in zip(ids, pipe.execute()) if not there]
                if gone:
                    dropped += self.redis.zrem(index, *gone)
                start += len(ids) - len(gone)  # the entries kept are still ahead of the next chunk
        return dropped

    # --- writing (tools and tests; the service writes through Delivery) --------------------
    def create(self, operation: str, params: dict[str, Any], dataset: str | None = None) -> Job:
        """Store a job *without* queueing it (a producer that then puts the id itself)."""
        job = Job(id=new_job_id(), operation=operation, params=params, dataset=dataset)
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(keys.job(job.id), job.to_json())
        pipe.zadd(keys.JOB_INDEX, {job.id: job.submitted_at})
        pipe.zadd(keys.ACTIVE_INDEX, {job.id: job.submitted_at})
        pipe.zadd(keys.operation_index(job.operation), {job.id: job.submitted_at})
        pipe.execute()
        return job

    def save(self, job: Job) -> None:
        """Write the document (a final job gets the TTL, as does its stored result: a document has a
        TTL exactly when it is final, which the scripts' fences rely on), keeping the status indexes
        in step."""
        pipe = self.redis.pipeline(transaction=True)
        if job.status.is_final:
            pipe.set(keys.job(job.id), job.to_json(), ex=self.ttl_seconds)
            if job.result_ref:
                pipe.expire(job.result_ref, self.ttl_seconds)
        else:
            pipe.set(keys.job(job.id), job.to_json())
        for status in JobStatus:
            pipe.zrem(keys.status_index(status.value), job.id)
        pipe.zrem(keys.ACTIVE_INDEX, job.id)
        pipe.zadd(_status_index(job.status.value), {job.id: job.submitted_at})
        pipe.execute()

    def delete(self, job_id: str, held_by: str | None = None) -> bool:
        """Delete a job, its stored result and its index entries (and, ``held_by``, its entry in that
        client's held jobs, ``keys.held``, so the place is free at once under MAX_JOBS_PER_CLIENT).

        Not a MULTI transaction: Redis at ``maxmemory`` refuses every command queued in one, so a
        delete, which only frees memory, was refused (503) exactly when it was wanted. Sent as one
        pipeline, document first: cut short, it leaves only index entries without a document, which
        the listing and the workers' sweeper drop (:meth:`drop_expired_entries`)."""
        job = self.get(job_id)
        pipe = self.redis.pipeline(transaction=False)
        pipe.delete(keys.job(job_id), keys.result(job_id))
        pipe.zrem(keys.JOB_INDEX, job_id)
        pipe.zrem(keys.ACTIVE_INDEX, job_id)
        for status in JobStatus:
            pipe.zrem(keys.status_index(status.value), job_id)
        if job is not None:
            pipe.zrem(keys.operation_index(job.operation), job_id)
            if job.owner:
                pipe.zrem(keys.owner_index(job.owner), job_id)
        if held_by:
            pipe.zrem(keys.held(held_by), job_id)
        removed = pipe.execute()[0]
        return bool(removed)

    def write_refused(self) -> str | None:
        """Why Redis refuses writes now (``OOM``, ``MISCONF``, ``READONLY``), or None when a small
        write goes through: a readiness check that sees what a submit would."""
        from .connections import write_refusal

        try:
            self.redis.set(keys.WRITE_PROBE, "1", ex=60)
        except redis.exceptions.ResponseError as exc:
            cause = write_refusal(exc)
            if cause is None:
                raise
            return cause
        return None

    @staticmethod
    def done_message(data: str | bytes) -> tuple[str, str | None]:
        """(job id, final document or None) of a message on the done channel: the worker sends
        "<id>\n<document>" so a long poll needs no read; a bare id (older publishers) has no document."""
        text = data.decode() if isinstance(data, bytes) else data
        job_id, _, doc = text.partition("\n")
        return job_id, doc or None

    def subscribe_done(self) -> redis.client.PubSub:
        """A pub/sub subscribed to jobs reaching a final status (long polls wait on it; see :meth:`done_message`)."""
        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(keys.JOB_DONE_CHANNEL)
        return pubsub


def _status_index(status: str) -> str:
    """The index holding the jobs of one status: its own for a final status, else the active one."""
    try:
        final = JobStatus(status).is_final
    except ValueError:
        final = True  # no such status: an index nobody writes, so an empty page
    return keys.status_index(status) if final else keys.ACTIVE_INDEX


def _encode_cursor(position: tuple[float, str]) -> str:
    score, job_id = position
    return f"{score!r}_{job_id}"


def _decode_cursor(cursor: str) -> tuple[float, str]:
    """(score, id) from a cursor; ValueError when it is not one this store made."""
    if not CURSOR_RE.fullmatch(cursor):
        raise ValueError(f"not a cursor: {cursor[:80]!r}")
    score, _, job_id = cursor.partition("_")
    return float(score), job_id
