"""Redis at maxmemory with the chart's eviction policy, under the real API (gunicorn) and workers:
submits answer 503 naming the cause, readiness holds (reads and deletes are served) and says
redis_writable false, and every job accepted before reaches a
final status once memory is freed (issue 10 item 6; issue 14 item 4)."""

from __future__ import annotations

import re
import time

import pytest
import requests

from tests.support.redis_memory import fill_to_maxmemory
from devstack.stack import running_stack

pytestmark = pytest.mark.slow


def chart_memory_policy() -> str:
    from tests.deploy.manifests import one, scenario_objects

    conf = one(scenario_objects("default"), "ConfigMap", "redis")["data"]["redis.conf"]
    found = re.search(r"^maxmemory-policy\s+(\S+)", conf, re.M)
    assert found, "the chart's redis.conf sets no maxmemory-policy"
    return found.group(1)


def test_out_of_memory_is_a_503_and_every_accepted_job_finishes_once_memory_returns(tmp_path):
    policy = chart_memory_policy()
    assert policy == "noeviction"  # queue entries and job documents are never evicted
    with running_stack(tmp_path, JOB_LEASE_SECONDS="5") as stack:
        stack.start_workers(2)
        stack.start_api(web_concurrency=1)
        stack.wait_workers_registered(2)
        jobs = stack.jobs_client()
        jobs.config_set("maxmemory-policy", policy)
        api = requests.Session()
        bodies = [
            {"operation": "plot_top_locations", "params": {"n": 3 + i % 20}}
            if i % 3 == 0
            else {"operation": "sleep", "params": {"seconds": 0.02}}
            if i % 3 == 1
            else {"operation": "incidents_by_road", "params": {"road": f"ROAD {i}"}}
            for i in range(60)
        ]
        accepted = []
        for body in bodies[:30]:
            r = api.post(stack.url + "/submit", json=body, timeout=10)
            assert r.status_code == 202, r.text
            accepted.append(r.json()["job_id"])
        filler = fill_to_maxmemory(jobs)  # while the workers are busy with those
        refused = []
        for body in bodies[30:]:
            r = api.post(stack.url + "/submit", json=body, timeout=10)
            if r.status_code == 202:  # a write that landed before memory ran out
                accepted.append(r.json()["job_id"])
            else:
                refused.append(r)
        assert refused, "no submit was refused at maxmemory"
        for r in refused:
            assert r.status_code == 503 and r.headers.get("Retry-After"), (r.status_code, r.text)
            assert r.json()["error"] == "redis_out_of_memory" and "memory" in r.json()["message"]
        ready = api.get(stack.url + "/readyz", timeout=10)
        assert ready.status_code == 200 and ready.json()["redis_writable"] is False, ready.text
        time.sleep(3)  # workers meet the refusals for a while
        jobs.delete(*filler)
        memory = jobs.info("memory")
        print(f"after freeing: used {memory['used_memory']}, maxmemory {memory['maxmemory']}")
        if memory["used_memory"] > memory["maxmemory"] - 4_000_000:
            # the finishes that ran meanwhile stored their results (a script that has written goes
            # on at maxmemory): give the room an operator would, as results expire or are deleted
            jobs.config_set("maxmemory", memory["used_memory"] + 8_000_000)
        docs = stack.wait_all_final(accepted, timeout=120)
        statuses = {d["status"] for d in docs.values()}
        print(f"accepted {len(accepted)}, refused {len(refused)} with 503, final: {sorted(statuses)}")
        assert statuses == {"complete"}, {j: d["status"] for j, d in docs.items() if d["status"] != "complete"}
        assert api.get(stack.url + "/readyz", timeout=10).json()["redis_writable"] is True
        assert api.post(stack.url + "/submit", json=bodies[1], timeout=10).status_code == 202
