"""Start line for peer workers: each process loads its data, says so, and waits to be released.

The driver queues the jobs first, waits until every worker process has announced itself (data
loaded, imports done), then releases them all at once and starts the clock. So a drain measures
draining, not Python start-up or CSV parsing (cold start is measured on its own, issue 6 item 5).
Control keys live in their own db (``CONTROL_DB``) that no peer or product code uses.
"""

from __future__ import annotations

import os
import time

import redis

CONTROL_DB = 15


def _control(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, db=CONTROL_DB, decode_responses=True)


def announce_and_wait() -> None:
    """Called by a peer worker process once it is warm; returns when the driver says go."""
    run = os.environ.get("BENCH_RUN")
    if not run:
        return  # started by hand, not by the harness: no gate
    client = _control(os.environ["BENCH_REDIS_URL"])
    client.incr(f"bench:{run}:ready")
    client.blpop([f"bench:{run}:go"], timeout=0)


def wait_ready(url: str, run: str, expected: int, timeout: float = 120.0, procs=()) -> None:
    client = _control(url)
    deadline = time.monotonic() + timeout
    while int(client.get(f"bench:{run}:ready") or 0) < expected:
        for proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited with {proc.returncode} before it was ready")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{run}: workers not ready after {timeout}s")
        time.sleep(0.01)


def release(url: str, run: str, count: int) -> None:
    _control(url).rpush(f"bench:{run}:go", *(["go"] * count))
