"""A stalled queue is visible: jobs waiting with no worker taking them show in ``/help``,
``/healthz?detail=1`` and ``jobqueue_queue_stalled`` (the alert's input), whatever the cause (no
worker, a worker on another db, a worker on another queue name), and each worker's start log says
which db and key it listens on. Real redis-server, the API under gunicorn, real worker processes."""

from __future__ import annotations

import json

import pytest
import requests

from devstack.procs import wait_until
from devstack.stack import running_stack

pytestmark = pytest.mark.slow


def _detail(stack) -> dict:
    return requests.get(stack.url + "/healthz?detail=1", timeout=5).json()["queue"]


def _started_line(proc) -> dict:
    for line in proc.log_text().splitlines():
        if line.startswith("{") and json.loads(line).get("msg") == "worker started":
            return json.loads(line)
    return {}


def test_stalled_queue_shows_everywhere_until_a_matching_worker_takes_it(tmp_path):
    with running_stack(tmp_path, JOB_LEASE_SECONDS="2") as stack:
        stack.start_api(web_concurrency=1)
        assert requests.get(stack.url + "/healthz", timeout=5).json() == {"status": "ok"}  # probe stays cheap
        r = requests.post(stack.url + "/submit", json={"operation": "top_locations", "params": {"n": 3}}, timeout=5)
        assert r.status_code == 202
        job_id = r.json()["job_id"]
        fresh = _detail(stack)
        assert fresh["waiting"] == 1 and fresh["stalled"] is False  # not a stall yet: within the lease

        # 1. no worker at all
        q = wait_until(lambda: (d := _detail(stack))["stalled"] and d, 60, "the stall to show")
        assert q["workers_alive"] == 0 and q["oldest_waiting_seconds"] >= 2
        assert q["queue"] == "hotqueue:jobs" and q["queue_db"] == 1 and "no live worker" in q["stalled_reason"]
        text = requests.get(stack.url + "/help", timeout=5).text
        assert "Queue: 1 waiting in hotqueue:jobs (Redis db 1)" in text
        assert "WARNING: the queue is stalled: no live worker" in text
        assert requests.get(stack.url + "/help?format=json", timeout=5).json()["queue"]["stalled"] is True
        metrics = requests.get(stack.url + "/metrics", timeout=5).text
        assert 'jobqueue_queue_stalled{queue="jobs"} 1.0' in metrics

        # 2. a worker on another db: its heartbeat is in db 3, so this queue still has none
        other_db = stack.start_worker(REDIS_QUEUE_DB="3")
        wait_until(lambda: _started_line(other_db), 60, "the db-3 worker's start line")
        line = _started_line(other_db)
        assert (line["queue"], line["queue_db"], line["jobs_db"]) == ("hotqueue:jobs", 3, 0), line
        assert line["redis"] == stack.redis.url
        assert _detail(stack)["workers_alive"] == 0 and _detail(stack)["stalled"]

        # 3. a worker on another queue name, same db: alive and idle while the job waits
        other_name = stack.start_worker(QUEUE_NAME="other")
        wait_until(lambda: _detail(stack)["workers_alive"] == 1, 60, "the other-queue worker's heartbeat")
        assert _started_line(other_name)["queue"] == "hotqueue:other"
        q = _detail(stack)
        assert q["stalled"] and q["workers_idle"] == 1 and "QUEUE_NAME" in q["stalled_reason"], q
        assert requests.get(f"{stack.url}/status/{job_id}", timeout=5).json()["status"] == "submitted"

        # 4. a matching worker: the job runs and the stall clears
        stack.start_worker()
        done = requests.get(f"{stack.url}/status/{job_id}?wait=60", timeout=70).json()
        assert done["status"] == "complete", done
        q = _detail(stack)
        assert q["waiting"] == 0 and q["stalled"] is False and q["stalled_reason"] is None
        assert "WARNING" not in requests.get(stack.url + "/help", timeout=5).text
        assert 'jobqueue_queue_stalled{queue="jobs"} 0.0' in requests.get(stack.url + "/metrics", timeout=5).text


def test_healthz_detail_without_redis_still_answers_200(tmp_path):
    with running_stack(tmp_path) as stack:
        stack.start_api(web_concurrency=1)
        stack.redis.stop()
        r = requests.get(stack.url + "/healthz?detail=1", timeout=10)
        assert r.status_code == 200 and r.json() == {"status": "ok", "redis": False, "queue": None}
        assert "Queue: Redis unreachable" in requests.get(stack.url + "/help", timeout=10).text
