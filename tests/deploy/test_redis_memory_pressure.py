"""Redis under memory pressure with the chart's own redis.conf (issue test 6): a real redis-server
started from the rendered ConfigMap (AOF, `save ""`, noeviction, a small `maxmemory`), the real API
under gunicorn and a real worker. At maxmemory a submit answers a 503 naming the cause, /readyz stays
200 (the pod keeps serving reads and deletes) and says redis_writable false, nothing is evicted (evicted_keys stays 0, every accepted job keeps its document), and the
service recovers when memory is freed: every job accepted before finishes. (The API and worker side
is core's; tests/stack/test_redis_memory_pressure.py runs the same against devstack's Redis.)
Review finding 2.6: the chart had no maxmemory under the 512Mi limit, so Redis would be OOM-killed
instead, and its default RDB save rules were on."""

from __future__ import annotations

import re
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
