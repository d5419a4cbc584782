"""Helpers for the API tests: settings on the test Redis, a submit through the test client, and a
stand-in worker that finishes jobs the way the real one reports them.

``finish`` writes the final job document and publishes "<id>\n<document>" on ``keys.JOB_DONE_CHANNEL``,
which is the worker's whole contract with the API's long poll. ``run_jobs_in_thread`` claims ids
from the queue list (BLMOVE into a processing list, as the real worker does) and finishes them.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

import pytest
import redis

from devstack.api_server import ApiServer, api_server
from devstack.paths import SAMPLE
from devstack.redis_server import RedisServer, find_redis_server
from jobqueue import keys
from jobqueue.jobs import Job, JobStatus, JobStore
from jobqueue.settings import Settings, load_settings


def make_settings(redis_url: str, **env: str) -> Settings:
    """Settings as the API tests run with: the given Redis, diagnostic operations, the sample."""
    base = {"REDIS_URL": redis_url, "DIAGNOSTIC_OPERATIONS": "1", "DATA_PATH": str(SAMPLE)}
    base.update(env)
    return load_settings(base)


def app_counting_flask(redis_url: str, **env: str):
    """An app (no dataset) and the list its Flask dispatch appends to per request: empty after a
    request means the request was answered below Flask (fastpath.py)."""
    from jobqueue_api import create_app

    app = create_app(make_settings(redis_url, **env), load_data=False)
    calls: list[int] = []
    real = app.full_dispatch_request

    def counted():
        calls.append(1)
        return real()

    app.full_dispatch_request = counted  # type: ignore[method-assign]
    return app, calls


def submit(client, operation="sleep", params=None, path="/submit") -> str:
    """``POST /submit`` through the Flask test client; the job id (anything but a 202 fails)."""
    response = client.post(path, json={"operation": operation, "params": params or {}})
    assert response.status_code == 202, response.get_json()
    return response.get_json()["job_id"]


def finish(
    jobs: redis.Redis,
    job_id: str,
    *,
    status: JobStatus = JobStatus.COMPLETE,
    result=None,
    error: str | None = None,
    result_ref: str | None = None,
    result_type: str = "application/json",
    ttl: int = 3600,
) -> Job:
    store = JobStore(jobs, ttl)
    job = store.get(job_id)
    assert job is not None, job_id
    job.status = status
    job.started_at = job.started_at or time.time()
    job.finished_at = time.time()
    job.attempts = max(job.attempts, 1)
    job.worker = "test-worker"
    job.result, job.error, job.result_ref, job.result_type = result, error, result_ref, result_type
    store.save(job)
    jobs.publish(keys.JOB_DONE_CHANNEL, job_id + "\n" + job.to_json())
    return job


def run_jobs_in_thread(
    jobs: redis.Redis,
    queue: redis.Redis,
    queue_name: str = "jobs",
    count: int = 1,
    delay: float = 0.0,
    timeout: float = 60.0,
) -> threading.Thread:
    """Process ``count`` queued jobs (``sleep``: result {"slept": seconds}) in a background thread."""

    def work() -> None:
        processing = keys.processing("test-worker")
        deadline = time.monotonic() + timeout
        done = 0
        while done < count and time.monotonic() < deadline:
            job_id = queue.blmove(keys.queue(queue_name), processing, 0.2, "LEFT", "RIGHT")
            if job_id is None:
                continue
            time.sleep(delay)
            job = JobStore(jobs, 3600).get(job_id)
            finish(jobs, job_id, result={"slept": job.params.get("seconds", 0.0)})
            queue.lrem(processing, 1, job_id)
            done += 1

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


def metric_value(text: str, name: str, labels: dict[str, str] | None = None) -> float | None:
    """The value of one sample in a Prometheus exposition, or None."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in (labels or {}).items()):
                return sample.value
    return None


def metric_sum(text: str, name: str, labels: dict[str, str] | None = None) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in (labels or {}).items()):
                total += sample.value
    return total


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def spawn(fn, *args) -> Future:
    """``fn(*args)`` on a daemon thread: a test that fails by leaving it blocked still ends."""
    future: Future = Future()

    def run():
        try:
            future.set_result(fn(*args))
        except BaseException as exc:
            future.set_exception(exc)

    threading.Thread(target=run, daemon=True).start()
    return future


@contextlib.contextmanager
def redis_and_api(
    workdir: Path, redis_options: dict | None = None, redis_config: dict | None = None, **api_options
) -> Iterator[tuple[RedisServer, ApiServer]]:
    """A real redis-server (``RedisServer(**redis_options)``, then ``CONFIG SET redis_config``) and
    the real API on it (``api_server(**api_options)``), both under ``workdir``; skips without
    redis-server."""
    if find_redis_server() is None:
        pytest.skip("no redis-server")
    server = RedisServer(workdir / "redis", **(redis_options or {})).start()
    try:
        for name, value in (redis_config or {}).items():
            server.client().config_set(name, value)
        with api_server(server.url, workdir / "api", **api_options) as api:
            yield server, api
    finally:
        server.stop()
