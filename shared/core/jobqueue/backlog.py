"""The queue as the API sees it: how much waits, how old the oldest is, which workers are alive, and
whether the queue is stalled, meaning jobs wait and no worker will take them.

A stall has always the same face (202s, then jobs that stay ``submitted``), whatever its cause: no
worker, a worker on another Redis db (its heartbeat lands in that db, so none shows here), or a
worker on another ``QUEUE_NAME`` or another ``REDIS_JOBS_DB`` than the API's (alive and idle while jobs
wait: such a worker claims nothing, see ``jobqueue.jobsdb``), or a worker whose Redis ACL user is
refused a command its scripts call (it claims nothing either, and records what: ``jobqueue.aclcheck``). ``/help``, ``/healthz?detail=1``
and the metrics all read it from here, so they agree.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field

import redis

from . import aclcheck, keys
from .delivery import Delivery
from .lanes import DEFAULT, PLOTS
from .settings import Settings


@dataclass(frozen=True)
class Backlog:
    queue: str  # the Redis list, hotqueue:<QUEUE_NAME>
    queue_db: int
    waiting: int  # ids in the queue, not yet claimed
    in_progress: int  # ids in workers' processing lists
    oldest_waiting_seconds: float  # 0 when nothing waits
    workers_alive: int  # heartbeat within the lease, in this queue db
    workers_busy: int  # of those, running a job now
    stalled_after: float  # how long jobs may wait unclaimed before it counts as a stall
    by_lane: dict[str, int] = field(default_factory=dict)  # waiting per lane (cheap, plots)
    idle_is_stall: bool = True  # idle workers beside these jobs tell of a stall (:func:`idle_is_stall`)
    # what Redis's ACL refuses workers (jobqueue.aclcheck): the live ones, or, with none live, any
    # that recorded a refusal in the last minute (one refused its heartbeat's commands has no heartbeat)
    acl_refused: tuple[str, ...] = ()

    @property
    def workers_idle(self) -> int:
        return max(0, self.workers_alive - self.workers_busy)

    @property
    def stalled(self) -> str | None:
        """Why waiting jobs are not being taken, or None when they are (or nothing waits)."""
        if self.waiting == 0 or self.oldest_waiting_seconds < self.stalled_after:
            return None
        return stall_reason(
            self.queue, self.queue_db, self.workers_alive, self.workers_idle, self.idle_is_stall, self.acl_refused
        )

    def to_dict(self) -> dict:
        doc = asdict(self)
        doc.pop("stalled_after")
        doc.pop("idle_is_stall")
        doc.pop("acl_refused")
        doc["oldest_waiting_seconds"] = round(self.oldest_waiting_seconds, 3)
        doc["workers_idle"] = self.workers_idle
        doc["stalled"] = self.stalled is not None
        doc["stalled_reason"] = self.stalled
        return doc


def idle_is_stall(by_lane: dict[str, int], plots_held: int, heartbeats: int) -> bool:
    """Whether live workers idle beside the waiting jobs tell of a stall: yes while jobs wait in the
    default lane, or plots wait with fewer held than the plots cap (one less than the workers with a
    heartbeat, at least one: ``lua/claim.lua``); at the cap a worker idles on purpose, kept for
    cheap jobs, while plots wait."""
    cap = max(1, heartbeats - 1)
    return by_lane.get(DEFAULT, 0) > 0 or (by_lane.get(PLOTS, 0) > 0 and plots_held < cap)


def stall_reason(
    queue: str,
    queue_db: int,
    workers_alive: int,
    workers_idle: int,
    idle_stalls: bool = True,
    acl_refused: tuple[str, ...] = (),
) -> str | None:
    """Why jobs that wait are not taken (``queue``: the Redis list), or None when a worker will take
    them: the one wording of a stall, for ``/help``, ``/healthz?detail=1`` and ``GET /queue`` (the web
    page, ``jobqueue info``). Idle workers tell of one only when ``idle_stalls``
    (:func:`idle_is_stall`). ``acl_refused``: what Redis's ACL refuses live workers, which then take
    no job, idle or holding one (:func:`jobqueue.aclcheck.recorded`)."""
    if acl_refused:
        return (
            f"{len(acl_refused)} {'live ' if workers_alive else ''}worker(s) take no jobs: the Redis ACL refuses "
            f"their user {acl_refused[0]} (NOPERM); give that user the command, or the key pattern "
            "(ACL SETUSER <user> +<command>): they take jobs again at their next heartbeat"
        )
    if workers_alive == 0:
        return (
            f"no live worker has a heartbeat in Redis db {queue_db}: start workers, or make their "
            "REDIS_URL, REDIS_QUEUE_DB and QUEUE_NAME match the API's"
        )
    if workers_idle and idle_stalls:
        return (
            f"{workers_idle} live worker(s) are idle while jobs wait in {queue}: they listen "
            "on another queue, or keep jobs in another db; make their QUEUE_NAME and REDIS_JOBS_DB match "
            "the API's (a worker on another REDIS_JOBS_DB logs so)"
        )
    return None


def count_in_progress(queue: redis.Redis) -> int:
    """Ids in workers' processing lists (claimed, not finished), whoever holds them."""
    processing = list(queue.scan_iter(match=f"{keys.PROCESSING_PREFIX}*", count=1000))
    if not processing:
        return 0
    pipe = queue.pipeline(transaction=False)
    for key in processing:
        pipe.llen(key)
    return sum(pipe.execute())


def read_backlog(
    settings: Settings, queue: redis.Redis, jobs: redis.Redis, delivery: Delivery | None = None
) -> Backlog:
    """A few Redis reads (raises RedisError when Redis is unreachable)."""
    now = time.time()
    waiting = (delivery or Delivery(queue, settings)).waiting()  # both lanes
    pipe = queue.pipeline(transaction=False)
    pipe.zrangebyscore(keys.WORKERS_HEARTBEAT, now - settings.job_lease_seconds, "+inf")
    pipe.hkeys(keys.WORKERS_BUSY)
    pipe.zcard(keys.WORKERS_HEARTBEAT)
    pipe.hlen(keys.PLOTS_BUSY)
    alive, busy, heartbeats, plots_held = pipe.execute()
    in_progress = count_in_progress(queue)
    age = 0.0
    if waiting.oldest_id:
        raw = jobs.get(keys.job(waiting.oldest_id))
        if raw:
            try:
                age = max(0.0, now - float(json.loads(raw)["submitted_at"]))
            except (ValueError, KeyError, TypeError):
                age = 0.0
    alive_ids = set(alive)
    refused = aclcheck.recorded(queue, sorted(alive_ids)) if waiting.depth else {}
    if waiting.depth and not alive_ids:
        # a worker refused a command its heartbeat needs (TIME, EVALSHA, SCRIPT) has no heartbeat
        # but still records the refusal: "no live worker ... match the API's" blamed the wrong thing
        refused = aclcheck.recorded_any(queue)
    return Backlog(
        queue=keys.queue(settings.queue_name),
        queue_db=settings.redis_queue_db,
        waiting=waiting.depth,
        in_progress=in_progress,
        oldest_waiting_seconds=age,
        workers_alive=len(alive_ids),
        workers_busy=len(alive_ids.intersection(busy)),
        stalled_after=settings.job_lease_seconds,
        by_lane=dict(waiting.by_lane),
        idle_is_stall=idle_is_stall(waiting.by_lane, plots_held, heartbeats),
        acl_refused=tuple(refused.values()),
    )
