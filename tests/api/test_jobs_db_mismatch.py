"""An API and a worker that share the queue db but not REDIS_JOBS_DB (e.g. REDIS_JOBS_DB=2, the
README's way to keep apart from tutorial data, given to the API only). The worker used to take each
id, find no document in its db and drop it: every job stayed ``submitted`` for ever. Now the API
records its jobs db in the queue db (jobqueue.jobsdb) and the worker, seeing another, takes nothing,
logs an error naming both dbs, and shows as a live idle worker in the API's stall check; a worker
with the API's db then runs the job. Real redis-server, the API under gunicorn, worker processes."""

from __future__ import annotations

import json

import pytest
import requests

from devstack.paths import BIN
from devstack.procs import free_port, wait_http, wait_until
from devstack.stack import running_stack
from jobqueue import keys

pytestmark = pytest.mark.slow


def _lines(proc, msg: str) -> list[dict]:
    return [
        doc
        for line in proc.log_text().splitlines()
        if line.startswith("{") and (doc := json.loads(line)).get("msg") == msg
    ]


def test_a_worker_on_another_jobs_db_takes_nothing_and_the_stall_names_it(tmp_path):
    with running_stack(tmp_path, JOB_LEASE_SECONDS="2", REDIS_JOBS_DB="2") as stack:
        stack.start_api(web_concurrency=2)
        queue = stack.queue_client()
        wait_until(lambda: queue.get(keys.jobs_db("jobs")) == "2", 30, "the API's record of its jobs db")
        wrong = stack.start_worker(REDIS_JOBS_DB="0")
        msg = "REDIS_JOBS_DB differs from the API's: taking no jobs"
        wait_until(lambda: _lines(wrong, msg), 60, f"the worker's error\n{wrong.log_text()[-2000:]}")
        (error,) = _lines(wrong, msg)
        assert (error["level"], error["jobs_db"], error["api_jobs_db"]) == ("error", 0, 2), error
        assert "REDIS_JOBS_DB=2" in error["hint"]

        r = requests.post(stack.url + "/submit", json={"operation": "top_locations", "params": {"n": 3}}, timeout=5)
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]
        detail = lambda: requests.get(stack.url + "/healthz?detail=1", timeout=5).json()["queue"]  # noqa: E731
        q = wait_until(lambda: (d := detail())["stalled"] and d, 30, "the stall to show")
        assert q["workers_alive"] == 1 and q["workers_idle"] == 1 and "REDIS_JOBS_DB" in q["stalled_reason"], q
        assert queue.lrange(keys.queue("jobs"), 0, -1) == [job_id]  # still queued, not taken and dropped
        assert not _lines(wrong, "job not run: no job document")
        assert wrong.alive()

        stack.start_worker(REDIS_JOBS_DB="2")
        done = requests.get(f"{stack.url}/status/{job_id}?wait=60", timeout=70).json()
        assert done["status"] == "complete" and len(done["result"]["top_locations"]) == 3, done


def test_a_second_api_with_another_jobs_db_warns(tmp_path):
    """Two API replicas of one queue that disagree: the record flips, and the later one says so."""
    with running_stack(tmp_path, REDIS_JOBS_DB="2") as stack:
        first = stack.start_api(web_concurrency=1)
        queue = stack.queue_client()
        wait_until(lambda: queue.get(keys.jobs_db("jobs")) == "2", 30, "the first API's record")
        port = free_port()
        second = stack._spawn(
            "api", [str(BIN / "jobqueue-api")], {"PORT": str(port), "WEB_CONCURRENCY": "1", "REDIS_JOBS_DB": "3"}
        )
        stack.workers.append(second)  # stopped with the stack
        wait_http(f"http://127.0.0.1:{port}/healthz", second)
        msg = "another API recorded another jobs db for this queue"
        wait_until(lambda: _lines(second, msg), 30, f"the second API's warning\n{second.log_text()[-2000:]}")
        (warning,) = _lines(second, msg)
        assert (warning["jobs_db"], warning["other_jobs_db"]) == (3, 2), warning
        assert first.alive()
