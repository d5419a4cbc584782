"""Redis under memory pressure with the chart's own redis.conf (issue test 6): a real redis-server
started from the rendered ConfigMap (AOF, `save ""`, noeviction, a small `maxmemory`), the real API
under gunicorn and a real worker. At maxmemory a submit answers a 503 naming the cause, /readyz stays
200 (the pod keeps serving reads and deletes) and says redis_writable false, nothing is evicted
(evicted_keys stays 0, every accepted job keeps its document), and the service recovers when
memory is freed: every job accepted before finishes. (The API and worker side is core's;
tests/stack/test_redis_memory_pressure.py runs the same against devstack's Redis.)
Review finding 2.6: the chart had no maxmemory under the 512Mi limit, so Redis would be OOM-killed
instead, and its default RDB save rules were on. At maxmemory the workers' sweeper still drops the
index entries of expired jobs (ZREM is no "denyoom" command)."""

from __future__ import annotations

import re
import threading
import time

import pytest
import redis
import requests

from devstack.procs import free_port
from devstack.redis_server import find_redis_server
from devstack.stack import FAULT_ENV, Stack
from jobqueue import keys
from tests.deploy.local import ChartRedis
from tests.deploy.manifests import one, scenario_objects
from tests.support.redis_memory import fill_to_maxmemory

pytestmark = [pytest.mark.slow, pytest.mark.skipif(find_redis_server() is None, reason="no redis-server")]
PASSWORD = "memory-pressure-pw"


class _Server:
    """The chart's Redis in the shape devstack's Stack uses (url, password, client)."""

    def __init__(self, chart: ChartRedis):
        self.chart, self.url, self.password = chart, f"redis://127.0.0.1:{chart.port}", chart.password

    def client(self, db: int = 0, **kwargs) -> redis.Redis:
        return redis.Redis(port=self.chart.port, password=self.password, db=db, **kwargs)


def chart_conf(maxmemory: str) -> str:
    conf = one(scenario_objects("default"), "ConfigMap", "redis")["data"]["redis.conf"]
    assert re.search(r"^maxmemory-policy noeviction$", conf, re.M) and re.search(r'^save ""$', conf, re.M)
    conf, n = re.subn(r"^maxmemory \S+$", f"maxmemory {maxmemory}", conf, flags=re.M)
    assert n == 1, "the chart's redis.conf sets no maxmemory"
    return conf


def test_chart_redis_at_maxmemory_refuses_submits_evicts_nothing_and_recovers(tmp_path):
    server = ChartRedis(chart_conf("16mb"), tmp_path / "redis" / "data", free_port(), PASSWORD).start()
    stack = Stack(tmp_path / "stack", _Server(server), env={**FAULT_ENV, "JOB_LEASE_SECONDS": "5"})
    stack.workdir.mkdir(parents=True, exist_ok=True)
    try:
        jobs = stack.jobs_client()
        assert jobs.config_get("maxmemory")["maxmemory"] == str(16 * 1024 * 1024)
        stack.start_workers(1)
        stack.start_api(web_concurrency=1)
        stack.wait_workers_registered(1)
        api = requests.Session()
        bodies = [
            {"operation": "plot_top_locations", "params": {"n": 3 + i % 20}}
            if i % 2
            else {"operation": "incidents_by_road", "params": {"road": f"ROAD {i}"}}
            for i in range(30)
        ]
        accepted = []
        for body in bodies[:20]:
            r = api.post(stack.url + "/submit", json=body, timeout=10)
            assert r.status_code == 202, r.text
            accepted.append(r.json()["job_id"])
        filler = fill_to_maxmemory(jobs)
        refused = []
        for body in bodies[20:]:
            r = api.post(stack.url + "/submit", json=body, timeout=10)
            (accepted if r.status_code == 202 else refused).append(r.json()["job_id"] if r.status_code == 202 else r)
        assert refused, "no submit was refused at maxmemory"
        for r in refused:
            assert r.status_code == 503 and r.json()["error"] == "redis_out_of_memory", (r.status_code, r.text)
        ready = api.get(stack.url + "/readyz", timeout=10)
        assert ready.status_code == 200 and ready.json()["redis_writable"] is False, ready.text
        assert api.get(stack.url + f"/status/{accepted[0]}", timeout=10).status_code == 200
        time.sleep(2)  # the worker meets refusals meanwhile
        assert jobs.info("stats")["evicted_keys"] == 0
        assert all(jobs.exists(keys.job(j)) for j in accepted), "an accepted job's document is gone"
        jobs.delete(*filler)
        memory = jobs.info("memory")
        if memory["used_memory"] > memory["maxmemory"] - 4_000_000:
            jobs.config_set("maxmemory", memory["used_memory"] + 8_000_000)  # results expired or deleted
        docs = stack.wait_all_final(accepted, timeout=120)
        assert {d["status"] for d in docs.values()} == {"complete"}, {j: d["status"] for j, d in docs.items()}
        assert api.get(stack.url + "/readyz", timeout=10).json()["redis_writable"] is True
        assert api.post(stack.url + "/submit", json=bodies[0], timeout=10).status_code == 202
    except Exception:
        print(stack.logs())
        raise
    finally:
        stack.close()
        server.stop()


def test_the_sweeper_frees_entries_of_expired_jobs_while_redis_is_full(tmp_path, monkeypatch):
    """The workers' sweeper drops index entries of expired jobs with ZREM, which Redis lets through at
    maxmemory (only "denyoom" commands are refused there; ZREM is not one). It never ran while Redis
    was full: each housekeeping turn stopped at the heartbeat (ZADD, refused), and the sweep lock
    (SET NX) is refused too, so the entries of jobs expiring meanwhile stayed until memory returned."""
    from jobqueue.jobs import JobStatus
    from jobqueue_worker import worker as worker_module
    from jobqueue_worker.worker import Worker
    from tests.support.harness import Harness, operations

    server = ChartRedis(chart_conf("16mb"), tmp_path / "redis" / "data", free_port(), PASSWORD).start()
    try:
        h = Harness(f"redis://:{PASSWORD}@127.0.0.1:{server.port}", JOB_LEASE_SECONDS="1")
        long_ago = time.time() - 2 * h.settings.job_ttl_seconds  # submitted before the TTL: may have expired
        jobs = []
        for i in range(200):
            job = h.delivery.new_job("sleep", {"seconds": 0}, owner="alice")
            job.submitted_at = long_ago + i
            jobs.append(job)
        h.delivery.store(jobs)
        worker = Worker(h.settings, operations(), worker_id="w-full")
        monkeypatch.setattr(worker_module, "SWEEP_INTERVAL_SECONDS", 0.3)
        thread = threading.Thread(target=worker.work, kwargs={"install_signals": False}, daemon=True)
        thread.start()
        try:
            deadline = time.monotonic() + 30
            while any(j.status is not JobStatus.COMPLETE for j in h.store.get_many(x.id for x in jobs)):
                assert time.monotonic() < deadline, "the jobs ran"
                time.sleep(0.05)
            filler = fill_to_maxmemory(h.jobs)
            for job in jobs:
                h.jobs.pexpire(keys.job(job.id), 1)  # their TTL runs out while Redis is full
            # A pass goes index by index, and one can start before the last TTL ran out: the owner's
            # index empty said nothing of the others (a loaded machine saw 200 left in the status
            # index). Wait for all three; the deadline only bounds a sweeper that does not run.
            indexes = (keys.owner_index("alice"), keys.JOB_INDEX, keys.status_index("complete"))
            deadline = time.monotonic() + 60
            while left := {index: n for index in indexes if (n := h.jobs.zcard(index))}:
                assert time.monotonic() < deadline, f"entries left: {left}"
                time.sleep(0.1)
            with pytest.raises(redis.exceptions.OutOfMemoryError):
                h.jobs.set(keys.result("still-full"), b"x" * 65536)  # it was full throughout
            assert h.jobs.info("stats")["evicted_keys"] == 0
            h.jobs.delete(*filler)
        finally:
            worker.request_stop()
            thread.join(10)
    finally:
        server.stop()
