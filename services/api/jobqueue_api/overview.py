"""``GET /queue``: the queue at a glance, for the web page's overview and ``jobqueue info``.

One pipelined read of the queue db (depth, delayed retries, heartbeats, what each worker runs),
whether the queue is stalled and why (in :mod:`jobqueue.backlog`'s words), and a bounded look at
recently submitted jobs for the last 15 minutes' outcomes. Cheap enough to poll every few seconds: the outcome counts are cached per process for :data:`RECENT_CACHE_SECONDS`.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from jobqueue import aclcheck, keys
from jobqueue.backlog import count_in_progress, idle_is_stall, stall_reason
from jobqueue.jobs import JobStatus

WINDOW_SECONDS = 15 * 60
BUCKET_SECONDS = 60
LOOKBACK_SECONDS = 60 * 60  # jobs finishing in the window were submitted at most this long ago
MAX_RECENT_DOCS = 1000  # bound on job documents read for the outcome chart
RECENT_CACHE_SECONDS = 5.0

_cache_lock = threading.Lock()
_cache: dict[int, tuple[float, dict[str, Any]]] = {}


def queue_overview(state) -> dict[str, Any]:
    settings = state.settings
    name = settings.queue_name
    now = time.time()
    waiting = state.delivery.waiting()
    depth, oldest_id, delayed = waiting.depth, waiting.oldest_id, waiting.delayed
    pipe = state.queue.pipeline(transaction=False)
    pipe.zrange(keys.WORKERS_HEARTBEAT, 0, -1, withscores=True)
    pipe.hgetall(keys.WORKERS_BUSY)
    pipe.hlen(keys.PLOTS_BUSY)
    beats, busy, plots_held = pipe.execute()
    in_progress = count_in_progress(state.queue)
    oldest_age = None
    if oldest_id:
        oldest = state.store.get(oldest_id)
        oldest_age = max(0.0, now - oldest.submitted_at) if oldest else None
    lease = settings.job_lease_seconds
    workers = []
    for worker_id, beat in sorted(beats, key=lambda wb: -wb[1]):
        age = max(0.0, now - beat)
        workers.append(
            {
                "id": worker_id,
                "heartbeat_age_seconds": round(age, 1),
                "alive": age <= lease,
                "job_id": busy.get(worker_id) or None,
                "busy": bool(busy.get(worker_id)),
            }
        )
    alive = sum(1 for w in workers if w["alive"])
    idle = sum(1 for w in workers if w["alive"] and not w["busy"])
    # as /help and /healthz?detail=1 judge it (jobqueue.backlog), but "no worker alive" at once: the
    # page and `jobqueue info` say so while the first job waits, not a lease later
    waited_a_lease = depth > 0 and oldest_age is not None and oldest_age >= lease
    stalled = None
    if waited_a_lease or (alive == 0 and depth + delayed > 0):
        idle_stalls = idle_is_stall(waiting.by_lane, plots_held, len(beats))
        refused = aclcheck.recorded(state.queue, [w["id"] for w in workers if w["alive"]])
        if alive == 0:  # refused its heartbeat's commands, a worker has none (jobqueue.backlog)
            refused = aclcheck.recorded_any(state.queue)
        stalled = stall_reason(
            keys.queue(name), settings.redis_queue_db, alive, idle, idle_stalls, tuple(refused.values())
        )
    return {
        "queue": name,
        "depth": depth,
        "depth_by_lane": waiting.by_lane,
        "in_progress": in_progress,
        "delayed_retries": delayed,
        "oldest_waiting_seconds": None if oldest_age is None else round(oldest_age, 1),
        "workers_alive": alive,
        "workers": workers,
        "stalled": stalled is not None,
        "stalled_reason": stalled,
        "lease_seconds": lease,
        "recent": recent_outcomes(state, now),
        "time": now,
    }


def recent_outcomes(state, now: float) -> dict[str, Any]:
    """Jobs completed and failed per minute over the last 15 minutes (cached a few seconds)."""
    key = id(state)
    with _cache_lock:
        hit = _cache.get(key)
        if hit and now - hit[0] < RECENT_CACHE_SECONDS:
            return hit[1]
    ids = state.store.submitted_since(now - LOOKBACK_SECONDS, MAX_RECENT_DOCS)
    start = now - WINDOW_SECONDS
    n = WINDOW_SECONDS // BUCKET_SECONDS
    complete, failed = [0] * n, [0] * n
    for i in range(0, len(ids), 250):
        for job in state.store.get_many(ids[i : i + 250]):
            if job.finished_at is None or job.finished_at < start:
                continue
            slot = min(n - 1, int((job.finished_at - start) // BUCKET_SECONDS))
            if job.status is JobStatus.COMPLETE:
                complete[slot] += 1
            elif job.status is JobStatus.FAILED:
                failed[slot] += 1
    doc = {
        "window_seconds": WINDOW_SECONDS,
        "bucket_seconds": BUCKET_SECONDS,
        "start": start,
        "complete": complete,
        "failed": failed,
        "sampled": len(ids) >= MAX_RECENT_DOCS,
    }
    with _cache_lock:
        _cache[key] = (now, doc)
    return doc
