"""One ``jobqueue-api`` (gunicorn, its real entry point) on a free loopback port, for tests that need
the API process and nothing else of the stack: started, waited for, stopped with SIGTERM as the
kubelet stops it, and its log checked for tracebacks afterwards.

:class:`devstack.stack.Stack` starts the whole local stack (Redis, workers, API); this is the small
piece for tests that bring their own Redis.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .paths import BIN
from .procs import Proc, free_port, stop, wait_http


@dataclass
class ApiServer:
    url: str
    port: int
    proc: Proc
    env: dict[str, str]
    metrics_dir: Path


def api_env(redis_url: str, port: int, metrics_dir: Path, processes: int = 2, **extra: str | None) -> dict[str, str]:
    """The environment the API tests run it with: loopback, diagnostic operations on, quiet logs.
    An ``extra`` value of None removes the variable (to test a default the caller's shell may set)."""
    env = {
        **os.environ,
        "PORT": str(port),
        "BIND_HOST": "127.0.0.1",
        "WEB_CONCURRENCY": str(processes),
        "REDIS_URL": redis_url,
        "DIAGNOSTIC_OPERATIONS": "1",
        "LOG_LEVEL": "WARNING",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }
    for name, value in extra.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


@contextlib.contextmanager
def api_server(
    redis_url: str,
    workdir: Path,
    processes: int = 2,
    check_log: bool = True,
    stop_timeout: float = 30.0,
    **extra: str | None,
) -> Iterator[ApiServer]:
    """A running API; on exit SIGTERM (SIGKILL after ``stop_timeout``) and, with ``check_log``, no
    ``Traceback`` in what it wrote."""
    workdir.mkdir(parents=True, exist_ok=True)
    given = extra.pop("PROMETHEUS_MULTIPROC_DIR", None)
    metrics_dir = Path(given) if given else workdir / "api-metrics"
    metrics_dir.mkdir(exist_ok=True)
    port = free_port()
    env = api_env(redis_url, port, metrics_dir, processes, **extra)
    log_path = workdir / "api.log"
    with open(log_path, "ab") as log:
        popen = subprocess.Popen(
            [str(BIN / "jobqueue-api")], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    proc = Proc("api", popen, log_path, port)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", proc)
        yield ApiServer(f"http://127.0.0.1:{port}", port, proc, env, metrics_dir)
    finally:
        stop(popen, stop_timeout, term_group=False)  # the master alone, as the kubelet signals PID 1
    if check_log:
        output = proc.log_text()
        assert "Traceback" not in output, output[-3000:]
