"""The job model: one JSON document per job in the jobs db, owned by :class:`JobStore`.

Documents are JSON (never ``str()``/``eval``). The status values keep the tutorial's contract
(``submitted``, ``in-progress``, ``complete``, ``failed``) and add ``cancelled``.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Iterable

import redis

from . import keys

JOB_ID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


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


def new_job_id() -> str:
    return str(uuid.uuid4())


def is_valid_job_id(value: str) -> bool:
    return bool(JOB_ID_RE.match(value))


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
    result_ref: str | None = None          # key of a stored result (PNG or large JSON)
    result_type: str = "application/json"
    dataset: str | None = None             # identity (content hash) of the data it ran on
    cached_from: str | None = None         # id of the job whose result answered this one

    def to_json(self) -> str:
        """The stored document. A shallow copy, not ``dataclasses.asdict``'s deep one (a tenth of
        the cost, which matters on the submit and finish paths); nothing else holds ``params``."""
        doc = self.__dict__.copy()
        doc["status"] = self.status.value
        return json.dumps(doc, separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> "Job":
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
        """What GET /status/<id> shows: the tutorial's keys plus ours."""
        return {
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
            "cached_from": self.cached_from,
        }


class JobStore:
    """Reads and writes job documents in the jobs db. Each key it touches comes from :mod:`keys`."""

    def __init__(self, client: redis.Redis, ttl_seconds: int):
        self.redis = client
        self.ttl_seconds = ttl_seconds

    def create(self, operation: str, params: dict[str, Any], dataset: str | None = None) -> Job:
        job = Job(id=new_job_id(), operation=operation, params=params, dataset=dataset)
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(keys.job(job.id), job.to_json())
        pipe.zadd(keys.JOB_INDEX, {job.id: job.submitted_at})
        pipe.execute()
        return job

    def get(self, job_id: str) -> Job | None:
        raw = self.redis.get(keys.job(job_id))
        return None if raw is None else Job.from_json(raw)

    def get_many(self, job_ids: Iterable[str]) -> list[Job]:
        ids = list(job_ids)
        if not ids:
            return []
        raws = self.redis.mget([keys.job(i) for i in ids])
        return [Job.from_json(r) for r in raws if r is not None]

    def save(self, job: Job) -> None:
        """Write the document; a final job gets the TTL, as does its stored result."""
        pipe = self.redis.pipeline(transaction=True)
        if job.status.is_final:
            pipe.set(keys.job(job.id), job.to_json(), ex=self.ttl_seconds)
            if job.result_ref:
                pipe.expire(job.result_ref, self.ttl_seconds)
        else:
            pipe.set(keys.job(job.id), job.to_json())
        pipe.execute()

    def recent_ids(self, offset: int = 0, limit: int = 50) -> list[str]:
        """Newest first, from the index (entries of expired jobs are pruned by the caller)."""
        return self.redis.zrevrange(keys.JOB_INDEX, offset, offset + limit - 1)

    def delete(self, job_id: str) -> bool:
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(keys.job(job_id), keys.result(job_id))
        pipe.zrem(keys.JOB_INDEX, job_id)
        removed = pipe.execute()[0]
        return bool(removed)
