"""The whole service as real processes, for fault and load tests: Redis, workers, the API under gunicorn.

``Stack`` starts ``jobqueue-worker`` and ``jobqueue-api`` subprocesses (the installed console
scripts) against a :class:`RedisServer`, each in its own session so a signal reaches exactly the
process meant, with logs under the test's temp dir. Everything binds 127.0.0.1. ``close()`` (or
leaving the ``with`` block) stops every process it started, SIGKILLing what does not stop, so a
failing test leaves nothing behind. All waits are bounded: :func:`wait_until` raises with a message.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import redis
import requests

from tests.support.redis_server import RedisServer, free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SAMPLE = REPO_ROOT / "data" / "traffic_incidents_sample.csv"
FINAL = {"complete", "failed", "cancelled"}


def wait_until(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.05):
    """Poll ``predicate`` until it returns something truthy; TimeoutError naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def children(pid: int) -> list[int]:
    """Direct children of a process (Linux /proc)."""
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                out += [int(p) for p in fh.read().split()]
    except (FileNotFoundError, ProcessLookupError):
        pass
    return out


def alive(pid: int) -> bool:
    """Running (a zombie does not count: it has exited but nobody reaped it yet)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


@dataclass
class Proc:
    """One started process: its Popen, a name and its log file."""

    name: str
    popen: subprocess.Popen
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.pid, sig)

    def kill9(self) -> None:
        """SIGKILL, then reap it: what an OOM kill or a lost node looks like to the others."""
        self.signal(signal.SIGKILL)
        self.popen.wait(10)

    def wait_exit(self, timeout: float) -> int:
        return self.popen.wait(timeout)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the whole session, SIGKILL it after ``timeout``; never leaves an orphan behind."""
        if self.alive():
            self._signal_group(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        self._signal_group(signal.SIGKILL)
        try:
            self.popen.wait(5)
        except subprocess.TimeoutExpired:
            pass

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.pid, sig)    # start_new_session=True: the group id is the pid
        except (ProcessLookupError, PermissionError):
            pass


@dataclass
class Stack:
    """Redis + workers + API for one test. ``env`` overrides apply to every process started."""

    workdir: Path
    redis: RedisServer
    env: dict[str, str] = field(default_factory=dict)
    workers: list[Proc] = field(default_factory=list)
    api: Proc | None = None
    api_port: int = 0
    _count: int = 0

    def base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "PROMETHEUS"))}
        env.update({
            "REDIS_URL": self.redis.url,
            "REDIS_PASSWORD": self.redis.password,
            "DATA_PATH": str(SAMPLE),
            "DATA_CACHE_DIR": str(self.workdir / "data-cache"),
            "DIAGNOSTIC_OPERATIONS": "1",
            "JOB_LEASE_SECONDS": "2",
            "SHUTDOWN_GRACE_SECONDS": "20",
            "JOB_MAX_ATTEMPTS": "50",      # kill -9 again and again: never give up for that reason here
            "WORKER_METRICS_PORT": "0",
            "WORKER_CONCURRENCY": "1",
            "BIND_HOST": "127.0.0.1",
            "LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
        })
        env.update(self.env)
        return env

    def _spawn(self, name: str, argv: list[str], extra: dict[str, str]) -> Proc:
        self._count += 1
        log = self.workdir / "logs" / f"{self._count:03d}-{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        env = {**self.base_env(), **extra}
        with open(log, "wb") as fh:
            popen = subprocess.Popen(argv, env=env, cwd=self.workdir, stdout=fh, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        return Proc(name, popen, log)

    # --- workers --------------------------------------------------------------------------
    def start_worker(self, **extra: str) -> Proc:
        proc = self._spawn("worker", [str(BIN / "jobqueue-worker")], extra)
        self.workers.append(proc)
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
        env = {"PORT": str(self.api_port), "WEB_CONCURRENCY": str(web_concurrency),
               "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir), **extra}
        self.api = self._spawn("api", [str(BIN / "jobqueue-api")], env)
        self.wait_api(timeout)
        return self.api

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def wait_api(self, timeout: float = 60.0, path: str = "/healthz") -> None:
        def up() -> bool:
            if self.api is None or not self.api.alive():
                raise RuntimeError(f"the API exited:\n{self.api.log_text()[-3000:] if self.api else ''}")
            try:
                return requests.get(self.url + path, timeout=1).status_code == 200
            except requests.RequestException:
                return False

        wait_until(up, timeout, f"the API at {self.url}{path}", interval=0.1)

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

    # --- Redis access for checks ----------------------------------------------------------
    def jobs_client(self) -> redis.Redis:
        return self.redis.client(db=int(self.base_env().get("REDIS_JOBS_DB", "0")), socket_timeout=10)

    def queue_client(self) -> redis.Redis:
        return self.redis.client(db=int(self.base_env().get("REDIS_QUEUE_DB", "1")), socket_timeout=10)

    def job_docs(self, job_ids: Iterable[str]) -> dict[str, dict]:
        """Job documents straight from Redis (fast for thousands; the API is checked separately)."""
        import json

        from jobqueue import keys

        ids = list(job_ids)
        r = self.jobs_client()
        out: dict[str, dict] = {}
        for i in range(0, len(ids), 1000):
            chunk = ids[i:i + 1000]
            for job_id, raw in zip(chunk, r.mget([keys.job(j) for j in chunk])):
                if raw is not None:
                    out[job_id] = json.loads(raw)
        return out

    def wait_all_final(self, job_ids: Iterable[str], timeout: float) -> dict[str, dict]:
        """Until every job is final; returns the documents. The error lists what is still open."""
        ids = list(job_ids)
        deadline = time.monotonic() + timeout
        while True:
            docs = self.job_docs(ids)
            open_ = [j for j in ids if docs.get(j, {}).get("status") not in FINAL]
            if not open_:
                return docs
            if time.monotonic() > deadline:
                sample = {j: docs.get(j, {}).get("status", "<missing>") for j in open_[:5]}
                raise TimeoutError(f"{len(open_)} of {len(ids)} jobs not final after {timeout:g} s, e.g. {sample}")
            time.sleep(0.2)

    # --- lifecycle ------------------------------------------------------------------------
    def close(self) -> None:
        procs = [*self.workers, *([self.api] if self.api else [])]
        for p in procs:                       # SIGTERM everyone first, then wait: shutdowns overlap
            if p.alive():
                p._signal_group(signal.SIGTERM)
        for p in procs:
            p.stop(timeout=15)

    def __enter__(self) -> "Stack":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class running_stack:  # noqa: N801  (used as a context manager, like open())
    """A fresh Redis plus a Stack in ``workdir``, torn down on exit: ``with running_stack(d) as s``."""

    def __init__(self, workdir: Path, password: str = "", **env: str):
        self.workdir = Path(workdir)
        self.password = password
        self.env = env

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
