"""The whole service as real processes: Redis, workers, the API under gunicorn.

``Stack`` starts ``jobqueue-worker`` and ``jobqueue-api`` subprocesses (the installed console
scripts) against a :class:`RedisServer`, each in its own session so a signal reaches exactly the
process meant, with logs under ``workdir``. Everything binds 127.0.0.1. ``close()`` (or leaving
the ``with`` block) stops every process it started, SIGKILLing what does not stop, so a failing
test or benchmark leaves nothing behind. All waits are bounded.

Fault tests, load tests, the fuzzers, the Prometheus end-to-end test and the worker measurement
for docs/autoscaling.md all use this one class; ``running_stack`` adds a Redis of its own.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import requests

from devstack.paths import BIN, SAMPLE
from devstack.procs import Proc, alive, children, free_port, spawn, stop_all, wait_http, wait_until
from devstack.redis_server import RedisServer

FINAL = {"complete", "failed", "cancelled"}

# What the fault tests run with: short leases so a killed worker's job is re-run within seconds,
# and no attempt limit hit because of the kill -9 loops themselves.
FAULT_ENV = {
    "JOB_LEASE_SECONDS": "2",
    "SHUTDOWN_GRACE_SECONDS": "20",
    "JOB_MAX_ATTEMPTS": "50",
}


@dataclass
class Stack:
    """Redis + workers + API. ``env`` overrides apply to every process started."""

    workdir: Path
    redis: RedisServer
    env: dict[str, str] = field(default_factory=dict)
    workers: list[Proc] = field(default_factory=list)
    api: Proc | None = None
    api_port: int = 0
    exporter: Proc | None = None
    _count: int = 0

    def base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "PROMETHEUS"))}
        env.update(
            {
                "REDIS_URL": self.redis.url,
                "REDIS_PASSWORD": self.redis.password,
                "DATA_PATH": str(SAMPLE),
                "DATA_CACHE_DIR": str(self.workdir / "data-cache"),
                "DIAGNOSTIC_OPERATIONS": "1",
                "WORKER_METRICS_PORT": "0",
                "WORKER_CONCURRENCY": "1",
                "BIND_HOST": "127.0.0.1",
                "LOG_LEVEL": "INFO",
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.env)
        return env

    def _spawn(self, name: str, argv: list[str], extra: dict[str, str], env: dict[str, str] | None = None) -> Proc:
        self._count += 1
        log = self.workdir / "logs" / f"{self._count:03d}-{name}.log"
        return spawn(argv, {**(self.base_env() if env is None else env), **extra}, log, name=name, cwd=self.workdir)

    # --- workers --------------------------------------------------------------------------
    def start_worker(self, metrics_path: str | None = None, **extra: str) -> Proc:
        """One ``jobqueue-worker``. With ``metrics_path`` it serves metrics on a port of its own
        and this returns once that answers (the worker serves them after loading the dataset)."""
        port = free_port() if metrics_path else 0
        if port:
            extra = {"WORKER_METRICS_PORT": str(port), **extra}
        proc = self._spawn("worker", [str(BIN / "jobqueue-worker")], extra)
        proc.port = port
        self.workers.append(proc)
        if metrics_path:
            wait_http(f"http://127.0.0.1:{port}{metrics_path}", proc)
        return proc

    def start_workers(self, n: int, **extra: str) -> list[Proc]:
        return [self.start_worker(**extra) for _ in range(n)]

    def live_workers(self) -> list[Proc]:
        return [w for w in self.workers if w.alive()]

    def worker_by_pid(self, pid: int) -> Proc | None:
        return next((w for w in self.workers if w.pid == pid), None)

    def wait_workers_registered(self, n: int, timeout: float = 60.0) -> None:
        """Until ``n`` workers have a heartbeat in Redis (they claim only after that)."""
        from jobqueue import keys

        q = self.queue_client()
        wait_until(lambda: q.zcard(keys.WORKERS_HEARTBEAT) >= n, timeout, f"{n} worker heartbeats")

    # --- API --------------------------------------------------------------------------------
    def start_api(self, web_concurrency: int = 2, timeout: float = 60.0, **extra: str) -> Proc:
        self.api_port = free_port()
        metrics_dir = self.workdir / "api-metrics"
        metrics_dir.mkdir(parents=True, exist_ok=True)
        env = {
            "PORT": str(self.api_port),
            "WEB_CONCURRENCY": str(web_concurrency),
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
            **extra,
        }
        self.api = self._spawn("api", [str(BIN / "jobqueue-api")], env)
        self.api.port = self.api_port
        self.wait_api(timeout)
        return self.api

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def wait_api(self, timeout: float = 60.0, path: str = "/healthz") -> None:
        """Until the API answers 200 on ``path`` (/healthz: /readyz also wants the dataset)."""
        if self.api is None:
            raise RuntimeError("the API was not started")
        wait_http(self.url + path, self.api, timeout)

    def api_worker_pids(self) -> list[int]:
        """The gunicorn worker processes: the leaves under the API's process tree."""
        assert self.api is not None
        leaves, todo = [], [self.api.pid]
        while todo:
            pid = todo.pop()
            kids = children(pid)
            if kids:
                todo += kids
            elif pid != self.api.pid:
                leaves.append(pid)
        return sorted(p for p in leaves if alive(p))

    def submit(self, operation: str, params: dict[str, Any]) -> str:
        """``POST /submit``; the job id (anything but a 202 fails)."""
        resp = requests.post(f"{self.url}/submit", json={"operation": operation, "params": params}, timeout=10)
        if resp.status_code != 202:
            raise AssertionError(f"submit answered {resp.status_code}: {resp.text}")
        return resp.json()["job_id"]

    def status(self, job_id: str) -> dict[str, Any]:
        return requests.get(f"{self.url}/status/{job_id}", timeout=10).json()

    # --- Redis exporter ---------------------------------------------------------------------
    def start_redis_exporter(self) -> Proc:
        """Debian's prometheus-redis-exporter, as the chart's optional redis_exporter sidecar."""
        binary = shutil.which("prometheus-redis-exporter")
        if binary is None:
            raise RuntimeError("no prometheus-redis-exporter (make setup installs it)")
        port = free_port()
        self.exporter = self._spawn(
            "redis-exporter",
            [binary, f"-redis.addr={self.redis.url}", f"-web.listen-address=127.0.0.1:{port}"],
            {},
            env=dict(os.environ),
        )
        self.exporter.port = port
        wait_http(f"http://127.0.0.1:{port}/metrics", self.exporter)
        return self.exporter

    # --- Redis access for checks ----------------------------------------------------------
    def jobs_client(self) -> redis.Redis:
        return self.redis.client(db=int(self.base_env().get("REDIS_JOBS_DB", "0")), socket_timeout=10)

    def queue_client(self) -> redis.Redis:
        return self.redis.client(db=int(self.base_env().get("REDIS_QUEUE_DB", "1")), socket_timeout=10)

    def job_docs(self, job_ids: Iterable[str]) -> dict[str, dict]:
        """Job documents straight from Redis (fast for thousands; the API is checked separately)."""
        from jobqueue import keys

        ids = list(job_ids)
        r = self.jobs_client()
        out: dict[str, dict] = {}
        for i in range(0, len(ids), 1000):
            chunk = ids[i : i + 1000]
            for job_id, raw in zip(chunk, r.mget([keys.job(j) for j in chunk])):
                if raw is not None:
                    out[job_id] = json.loads(raw)
        return out

    def wait_all_final(self, job_ids: Iterable[str], timeout: float) -> dict[str, dict]:
        """Until every job is final; returns the documents. The error lists what is still open."""
        ids = list(job_ids)
        state: dict[str, Any] = {}

        def all_final() -> bool:
            state["docs"] = docs = self.job_docs(ids)
            state["open"] = [j for j in ids if docs.get(j, {}).get("status") not in FINAL]
            return not state["open"]

        try:
            wait_until(all_final, timeout, f"{len(ids)} jobs to be final", interval=0.2)
        except TimeoutError:
            sample = {j: state["docs"].get(j, {}).get("status", "<missing>") for j in state["open"][:5]}
            raise TimeoutError(
                f"{len(state['open'])} of {len(ids)} jobs not final after {timeout:g} s, e.g. {sample}"
            ) from None
        return state["docs"]

    # --- lifecycle ------------------------------------------------------------------------
    def processes(self) -> list[Proc]:
        return [*self.workers, *(p for p in (self.api, self.exporter) if p is not None)]

    def logs(self, chars: int = 1500) -> str:
        """The tail of every process's log, for a failing test's output."""
        return "\n".join(f"--- {p.name}\n{p.log_tail(chars)}" for p in self.processes())

    def close(self) -> None:
        """SIGTERM everyone first, then wait: shutdowns overlap."""
        stop_all([p.popen for p in self.processes()], timeout=15)

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class running_stack:  # noqa: N801  (used as a context manager, like open())
    """A fresh Redis plus a Stack in ``workdir``, torn down on exit: ``with running_stack(d) as s``.

    The processes run with :data:`FAULT_ENV` unless ``env`` overrides it."""

    def __init__(self, workdir: Path, password: str = "", **env: str):
        self.workdir = Path(workdir)
        self.password = password
        self.env = {**FAULT_ENV, **env}

    def __enter__(self) -> Stack:
        self.redis = RedisServer(self.workdir / "redis", password=self.password).start()
        self.stack = Stack(self.workdir / "stack", self.redis, env=dict(self.env))
        self.stack.workdir.mkdir(parents=True, exist_ok=True)
        return self.stack

    def __exit__(self, *exc: object) -> None:
        try:
            self.stack.close()
        finally:
            self.redis.stop()
