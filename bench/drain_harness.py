"""Reusable pieces of the drain benchmarks: a Redis of its own, N jobs written the way the API
writes them, workers started and warm, and a clock from "all ids queued" to "every result readable".

Used by ``bench_drain.py``; other benchmarks (peers, steady load) can import the same functions.
A run: job documents are written first (as ``POST /submit`` does), the workers are started and
wait idle (so process start-up is not timed), then every id is pushed in one go and the clock runs
until every job document says ``complete``. All workers of all kinds use the same Redis, the same
job documents and the same operation dispatch (``jobqueue.catalogue``).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from jobqueue import keys  # noqa: E402
from jobqueue.connections import jobs_redis, queue_redis  # noqa: E402
from jobqueue.jobs import Job  # noqa: E402
from jobqueue.queue import JobQueue  # noqa: E402
from jobqueue.settings import Settings, load_settings  # noqa: E402
from devstack.procs import stop_all  # noqa: E402
from devstack.redis_server import RedisServer  # noqa: E402

PY = sys.executable
RAW_READY = "bench:raw-ready"  # bench-only key (queue db): raw loop processes count themselves in


def start_redis(workdir: str | None = None) -> RedisServer:
    """A redis-server on a free loopback port, AOF everysec as deployed."""
    return RedisServer(Path(workdir or tempfile.mkdtemp(prefix="bench-redis-"))).start()


def bench_env(redis_url: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "REDIS_URL": redis_url,
            "DIAGNOSTIC_OPERATIONS": "1",
            "WORKER_METRICS_PORT": "0",
            "LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "0",
        }
    )
    env.update(extra)
    return env


def settings_of(env: dict[str, str]) -> Settings:
    return load_settings(env)


def reset(settings: Settings) -> None:
    jobs_redis(settings).flushall()


def write_jobs(settings: Settings, n: int, operation: str, params: dict) -> list[str]:
    """N job documents exactly as the API stores them (not yet queued)."""
    client = jobs_redis(settings)
    ids = []
    pipe = client.pipeline(transaction=False)
    for i in range(n):
        job = Job(id=__import__("uuid").uuid4().__str__(), operation=operation, params=dict(params))
        pipe.set(keys.job(job.id), job.to_json())
        pipe.zadd(keys.JOB_INDEX, {job.id: job.submitted_at})
        ids.append(job.id)
        if i % 1000 == 999:
            pipe.execute()
    pipe.execute()
    return ids


def push(settings: Settings, ids: list[str]) -> None:
    queue = JobQueue(queue_redis(settings), settings.queue_name)
    for start in range(0, len(ids), 5000):
        queue.put(*ids[start : start + 5000])


def wait_complete(settings: Settings, ids: list[str], timeout: float = 300.0) -> None:
    """Until every document says complete (failed or missing ones raise: a benchmark must be right)."""
    q = queue_redis(settings)
    jobs = jobs_redis(settings)
    qkey = keys.queue(settings.queue_name)
    deadline = time.monotonic() + timeout
    remaining = list(ids)
    while remaining:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(remaining)} jobs not complete after {timeout} s")
        if q.llen(qkey) > 0:
            time.sleep(0.002)
            continue
        still = []
        for start in range(0, len(remaining), 2000):
            chunk = remaining[start : start + 2000]
            for jid, raw in zip(chunk, jobs.mget([keys.job(j) for j in chunk])):
                if raw is None:
                    raise RuntimeError(f"job {jid} vanished")
                if '"status":"complete"' not in raw:
                    if '"status":"failed"' in raw:
                        raise RuntimeError(f"job {jid} failed: {raw[:300]}")
                    still.append(jid)
        remaining = still
        if remaining:
            time.sleep(0.002)


def start_ours(env: dict[str, str], processes: int) -> list[subprocess.Popen]:
    """One ``jobqueue-worker`` with WORKER_CONCURRENCY=processes (its supervisor forks them)."""
    env = dict(env, WORKER_CONCURRENCY=str(processes))
    exe = str(Path(PY).with_name("jobqueue-worker"))
    return [subprocess.Popen([exe], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]


def ours_ready(settings: Settings, processes: int) -> bool:
    return queue_redis(settings).zcard(keys.WORKERS_HEARTBEAT) >= processes


def start_raw(env: dict[str, str], processes: int) -> list[subprocess.Popen]:
    script = str(Path(__file__).with_name("raw_hotqueue_loop.py"))
    return [
        subprocess.Popen([PY, script], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(processes)
    ]


def raw_ready(settings: Settings, processes: int) -> bool:
    return int(queue_redis(settings).get(RAW_READY) or 0) >= processes


def wait_until(predicate, procs: list[subprocess.Popen], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if any(p.poll() is not None for p in procs):
            raise RuntimeError("a worker exited before it was ready")
        if time.monotonic() > deadline:
            raise TimeoutError("workers not ready")
        time.sleep(0.02)


KINDS = {"ours": (start_ours, ours_ready), "raw": (start_raw, raw_ready)}


def drain_once(
    redis_url: str, kind: str, processes: int, n: int, operation: str = "sleep", params: dict | None = None
) -> float:
    """Seconds from pushing ``n`` ids to all ``n`` results readable, with warm workers of ``kind``."""
    env = bench_env(redis_url)
    settings = settings_of(env)
    reset(settings)
    ids = write_jobs(settings, n, operation, params if params is not None else {"seconds": 0})
    start, ready = KINDS[kind]
    procs = start(env, processes)
    try:
        wait_until(lambda: ready(settings, processes), procs)
        t0 = time.perf_counter()
        push(settings, ids)
        wait_complete(settings, ids)
        return time.perf_counter() - t0
    finally:
        stop_all(procs, 30.0)


def median(values: list[float]) -> float:
    return statistics.median(values)
