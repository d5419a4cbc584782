"""Drain, steady and round-trip runs of one peer: the measuring loop shared by every queue.

* drain: N jobs queued, workers started and warmed (gate), released; the clock runs from the
  release until every result is readable and has been checked.
* steady: on the same warm workers, one client submits M jobs one by one (each a separate call,
  as clients do) while the workers run; the clock runs from the first submit to the last result.
* round trip: one job at a time, submit then wait for its result; p50/p99 over K jobs.

Completion is detected without loading Redis: while the broker still holds jobs only its length is
read; then the newest jobs are checked, then everything once (which is also the verification).
"""

from __future__ import annotations

import statistics
import time
import uuid
from typing import Any
from collections.abc import Callable

import redis

from .base import Job, Peer

POLL_SECONDS = 0.002
CHUNK = 1000


def flush(redis_url: str) -> None:
    redis.Redis.from_url(redis_url).flushall()


def wait_all(peer: Peer, handles: list[Any], timeout: float) -> float:
    """Block until every handle has a readable result; returns the time (perf_counter) it happened."""
    deadline = time.perf_counter() + timeout
    pending = list(handles)
    finished_at = time.perf_counter()
    while pending:
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{peer.name}: {len(pending)} of {len(handles)} jobs unfinished after {timeout}s")
        if not peer.alive():
            raise RuntimeError(f"{peer.name}: a worker process died (see .run/bench/logs/{peer.run}-*.log)")
        if peer.backlog() > 0:
            time.sleep(POLL_SECONDS)
            continue
        tail = pending[-64:]
        if not all(peer.check(tail)):
            time.sleep(POLL_SECONDS)
            continue
        finished_at = time.perf_counter()
        rest = pending[:-64]
        pending = []
        for start in range(0, len(rest), CHUNK):
            chunk = rest[start : start + CHUNK]
            pending += [h for h, ok in zip(chunk, peer.check(chunk)) if not ok]
    return finished_at


def verify(peer: Peer, handles: list[Any], jobs: list[Job], expected: Callable[[Job], Any] | None) -> None:
    """Every job has its result; when ``expected`` is given, the right one (a wrong answer fails the run)."""
    got: list[Any] = []
    for start in range(0, len(handles), CHUNK):
        got += peer.results(handles[start : start + CHUNK])
    missing = sum(r is None for r in got)
    if missing:
        raise AssertionError(f"{peer.name}: {missing} jobs without a result")
    if expected is not None:
        for job, result in zip(jobs, got):
            want = expected(job)
            if want is not None and result != want:
                raise AssertionError(f"{peer.name}: {job} gave {result}, expected {want}")


def drain_and_steady(
    peer: Peer,
    jobs: list[Job],
    steady_jobs: list[Job] | None = None,
    expected: Callable[[Job], Any] | None = None,
    timeout: float = 300.0,
) -> dict[str, float]:
    """One worker start: a drain of ``jobs``, then (optionally) a steady run of ``steady_jobs``."""
    flush(peer.redis_url)
    run = f"{peer.name}-{peer.processes}p-{uuid.uuid4().hex[:8]}"
    t = time.perf_counter()
    handles = peer.submit_many(jobs)
    out: dict[str, float] = {"prefill_seconds": time.perf_counter() - t}
    t = time.perf_counter()
    peer.start(run)
    try:
        peer.wait_ready()
        out["ready_seconds"] = time.perf_counter() - t
        started = time.perf_counter()
        peer.release()
        started = peer.started_at(started)
        finished = wait_all(peer, handles, timeout)
        out["drain_jobs"] = len(jobs)
        out["drain_seconds"] = finished - started
        out["drain_rate"] = len(jobs) / (finished - started)
        verify(peer, handles, jobs, expected)
        if steady_jobs:
            started = time.perf_counter()
            handles = [peer.submit_one(op, params) for op, params in steady_jobs]
            out["steady_submit_rate"] = len(steady_jobs) / (time.perf_counter() - started)
            finished = wait_all(peer, handles, timeout)
            out["steady_jobs"] = len(steady_jobs)
            out["steady_rate"] = len(steady_jobs) / (finished - started)
            verify(peer, handles, steady_jobs, expected)
    finally:
        t = time.perf_counter()
        peer.stop()
        out["stop_seconds"] = time.perf_counter() - t
    return out


def round_trips(peer: Peer, job: Job, count: int, warmup: int = 20, timeout: float = 120.0) -> dict[str, float]:
    """Latency of ``count`` sequential submit-then-wait jobs on one warm worker process."""
    flush(peer.redis_url)
    run = f"{peer.name}-rt-{uuid.uuid4().hex[:8]}"
    peer.start(run)
    try:
        peer.wait_ready(timeout)
        peer.release()
        op, params = job
        for _ in range(warmup):
            peer.round_trip(op, params)
        samples = []
        phases: dict[str, list[float]] = {}
        for _ in range(count):
            peer.phases = {}
            t = time.perf_counter()
            peer.round_trip(op, params)
            samples.append(time.perf_counter() - t)
            for name, seconds in peer.phases.items():
                phases.setdefault(name, []).append(seconds)
    finally:
        peer.stop()
    out = {
        "count": count,
        "p50_ms": percentile(samples, 50) * 1e3,
        "p99_ms": percentile(samples, 99) * 1e3,
        "mean_ms": statistics.fmean(samples) * 1e3,
    }
    for name, values in phases.items():  # where the time goes, for peers that say (ours: HTTP submit, wait)
        out[f"{name}_p50_ms"] = percentile(values, 50) * 1e3
        out[f"{name}_p99_ms"] = percentile(values, 99) * 1e3
    return out


def percentile(samples: list[float], pct: float) -> float:
    ordered = sorted(samples)
    rank = max(0, min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1))))
    return ordered[rank]
