"""The environment a test runs ``make up`` / ``make observe`` (scripts/up.sh, observe.sh) with.

Ports of its own, its own RUN_DIR and a short shutdown grace, so tests run side by side and stop
quickly; and none of the caller's settings that would send the stack somewhere else: a REDIS_URL
(``make up`` then uses that Redis), an API_METRICS_PORT, a PROMETHEUS_MULTIPROC_DIR.
"""

from __future__ import annotations

import os
from pathlib import Path

from devstack.procs import free_port

ELSEWHERE = ("REDIS_URL", "API_METRICS_PORT", "PROMETHEUS_MULTIPROC_DIR")


def stack_env(run_dir: Path | str, *, prometheus: bool = False, **settings: str) -> dict[str, str]:
    """This process's environment without :data:`ELSEWHERE`, with free ports (PROMETHEUS_PORT too
    when ``prometheus``) and ``settings`` (e.g. ``WORKERS="1"``, or a port of the test's own) last.
    Worker i serves its metrics on WORKER_METRICS_BASE + i - 1: all of those are free."""
    env = {name: value for name, value in os.environ.items() if name not in ELSEWHERE}
    workers = settings.get("WORKERS", env.get("WORKERS", ""))
    env.update(
        RUN_DIR=str(run_dir),
        PORT=str(free_port()),
        REDIS_PORT=str(free_port()),
        WORKER_METRICS_BASE=str(free_port(int(workers) if workers.isdigit() and 0 < int(workers) <= 16 else 2)),
        SHUTDOWN_GRACE_SECONDS="5",
        # only bounds a hang: with several test sessions on 2 cores the API took 90 s to start
        READY_TIMEOUT="300",
    )
    if prometheus:
        env["PROMETHEUS_PORT"] = str(free_port())
        env["REDIS_EXPORTER_PORT"] = str(free_port())
    env.update(settings)
    return env
