"""The queue as core and worker tests drive it: settings on the test Redis, a job store, a way to
submit, and stand-ins for the worker's operations and data. The ``harness`` fixture (tests/conftest.py)
gives a :class:`Harness` on the session's Redis."""

from __future__ import annotations

import os
import threading
import time
from types import SimpleNamespace

from atx_analysis.registry import Operation, Param, Registry
from devstack.paths import BIN
from devstack.paths import SAMPLE as SAMPLE_PATH

from jobqueue.catalogue import SLEEP
from jobqueue.connections import jobs_redis, queue_redis
from jobqueue.delivery import Delivery
from jobqueue.jobs import JobStore
from jobqueue.queue import JobQueue
from jobqueue.settings import load_settings

WORKER_EXE = str(BIN / "jobqueue-worker")
SAMPLE = str(SAMPLE_PATH)


def make_env(redis_url: str, **extra: str) -> dict[str, str]:
    env = {
        "REDIS_URL": redis_url,
        "DIAGNOSTIC_OPERATIONS": "1",
        "WORKER_METRICS_PORT": "0",
        "JOB_RETRY_BACKOFF_SECONDS": "0.05",
        "LOG_LEVEL": "DEBUG",
        "DATA_PATH": SAMPLE,
    }
    env.update(extra)
    return env


def proc_env(redis_url: str, **extra: str) -> dict[str, str]:
    return {**os.environ, **make_env(redis_url, **extra)}


class Harness:
    def __init__(self, redis_url: str, **extra: str):
        self.env = make_env(redis_url, **extra)
        self.settings = load_settings(self.env)
        self.jobs = jobs_redis(self.settings)
        self.queue_client = queue_redis(self.settings)
        self.store = JobStore(self.jobs, self.settings.job_ttl_seconds)
        self.queue = JobQueue(self.queue_client, self.settings.queue_name)

    @property
    def delivery(self) -> Delivery:
        return Delivery(self.jobs, self.settings)

    def submit(self, operation: str, params: dict | None = None) -> str:
        """What the API does: store the document and queue its id in one transaction."""
        return self.delivery.submit(operation, params or {}).id

    def with_settings(self, **changes) -> Harness:
        self.settings = self.settings.replace(**changes)
        return self


class FakeData:
    """Stands in for the analysis package's Dataset until it lands: an identity and a row count."""

    def __init__(self, identity: str = "sha256:test-data"):
        self.dataset = SimpleNamespace(identity=identity, rows=3)
        self.loaded = True

    @property
    def identity(self) -> str:
        return self.dataset.identity

    def get(self):
        return self.dataset


def operations(*extra: Operation) -> Registry:
    return Registry().merged(SLEEP, *extra)


def op(name: str, func, needs_dataset: bool = False, produces_png: bool = False, params=()) -> Operation:
    return Operation(
        name=name,
        func=func,
        description=name,
        params=tuple(params),
        needs_dataset=needs_dataset,
        produces_png=produces_png,
    )


__all__ = ["SAMPLE", "WORKER_EXE", "FakeData", "Harness", "Param", "op", "operations", "proc_env"]


def wait_blocked(client, timeout: float = 60.0) -> None:
    """Until some client of this Redis is blocked on BLMOVE (an idle worker's wait)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(c.get("cmd") == "blmove" and "b" in c.get("flags", "") for c in client.client_list()):
            return
        time.sleep(0.01)
    raise AssertionError("nobody blocked on BLMOVE")


def run_burst(worker, timeout: float = 30.0) -> None:
    """``worker.work(burst=True)`` on a thread, as a test's worker: stopped if still working after
    ``timeout`` seconds, so a stuck worker fails the test's assertions instead of hanging it."""
    thread = threading.Thread(target=worker.work, kwargs={"burst": True, "install_signals": False})
    thread.start()
    thread.join(timeout=timeout)
    if thread.is_alive():
        worker.request_stop()
        thread.join(timeout=10)
