"""The as-deployed harness (bench/bench_deployed.py) end to end on a few jobs: the real API, a real
worker, the minimal raw loop, Redis's own CPU accounting. No timing assertions: figures come from
``make bench``; these check that each drain ran every job and that the meter counts what it should.
"""

from __future__ import annotations

import json

import pytest
import redis
from jobqueue import keys

from bench import bench_deployed as bd

pytestmark = pytest.mark.slow

SAMPLE = str(bd.report.REPO_ROOT / "data" / "traffic_incidents_sample.csv")


@pytest.fixture
def client(redis_url):
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


@pytest.fixture
def deployed(redis_url, tmp_path):
    dep = bd.Deployed(redis_url, SAMPLE, tmp_path)
    yield dep
    dep.close()


def test_raw_minimal_loop_costs_four_commands_a_job(redis_url, client):
    out = bd.raw_drain(redis_url, client, [bd.NOOP] * 40)
    assert out["rate"] > 0 and out["cpu_us_per_job"] > 0
    commands = out["commands"]
    for name in ("rpush", "blpop", "set", "get"):  # put, BLPOP, SET, client GET: once a job each
        assert commands[name]["calls"] == pytest.approx(1.0, abs=0.05), (name, commands[name])
    assert "evalsha" not in commands


def test_ours_drains_jobs_submitted_over_http_and_reads_them_back(deployed, client):
    out = bd.ours_drain(deployed, client, [bd.NOOP] * 30)
    assert out["rate"] > 0 and out["seconds"] > 0
    assert out["cpu_us_per_job"] > 0 and out["calls_per_job"] >= 3  # at least submit, run, read back
    assert client.zcard(keys.JOB_INDEX) == 30  # stored by the API, as a user's submits are


@pytest.mark.parametrize(
    "lean,shipped,keyed",
    [(False, False, False), (True, False, False), (False, True, False), (False, False, True)],
    ids=["requests", "http.client", "jobqueue.client", "requests-keyed"],
)
def test_ours_round_trip_through_the_api(deployed, client, lean, shipped, keyed):
    out = bd.ours_round_trips(deployed, client, 5, warmup=1, lean=lean, shipped=shipped, keyed=keyed)
    assert 0 < out["submit_p50_ms"] <= out["p50_ms"] <= out["p99_ms"]
    assert 50 < out["api_cpu_us"] < 1e6, out  # the API's processes, a trip: two requests' work at least
    assert out["redis_inside_us"] > 0 and out["redis_cpu_us"] > 0, out  # Redis's own, a trip
    # the keyed form's submits carried a key each (the warm-up's too): its record is in Redis
    assert len(client.keys(keys.IDEMPOTENCY_PREFIX + "*")) == (6 if keyed else 0)


def test_the_cpu_of_a_process_and_its_children_is_counted(tmp_path):
    """``tree_cpu_seconds``: a child that burns CPU shows in its parent's figure (the gunicorn master's
    workers are its children)."""
    import os
    import signal
    import subprocess
    import sys

    from devstack.procs import wait_until

    child = tmp_path / "child.py"
    child.write_text(
        "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3:\n    pass\ntime.sleep(60)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", f"import subprocess, sys; subprocess.run([sys.executable, {str(child)!r}])"],
        start_new_session=True,
    )
    try:
        wait_until(lambda: bd.tree_cpu_seconds(parent.pid) > 0.25, 30, "the child's CPU counted")
    finally:
        os.killpg(parent.pid, signal.SIGKILL)
        parent.wait()


@pytest.mark.parametrize(
    "lean,shipped", [(False, False), (True, False), (False, True)], ids=["requests", "http.client", "jobqueue.client"]
)
def test_ours_round_trip_in_one_exchange(deployed, client, lean, shipped):
    """``POST /submit?wait=`` rows: each job one request (the API counted no status request)."""
    from prometheus_client.parser import text_string_to_metric_families

    out = bd.ours_round_trips(deployed, client, 5, warmup=1, lean=lean, shipped=shipped, one=True)
    assert 0 < out["p50_ms"] <= out["p99_ms"] and "submit_p50_ms" not in out
    counted = {
        (s.labels["route"], s.labels["status"]): s.value
        for family in text_string_to_metric_families(deployed.session.get(deployed.base + "/metrics").text)
        for s in family.samples
        if s.name == "jobqueue_http_requests_total" and s.labels["method"] != "HEAD"
    }
    # (the fast paths create their counters at start, so a status route may be listed at 0)
    assert counted.get(("/submit", "200")) == 6
    assert not any(value for (route, _), value in counted.items() if route.startswith("/status")), counted


def test_http_many_keeps_request_order(deployed):
    answers = bd.http_many(deployed.port, [bd.post_submit("sleep", {"seconds": 0}) for _ in range(12)], connections=3)
    ids = [json.loads(body)["job_id"] for status, body in answers if status == 202]
    assert len(set(ids)) == 12
    statuses = bd.http_many(deployed.port, [bd.get_status(i) for i in ids], connections=3)
    assert [json.loads(body)["id"] for _, body in statuses] == ids


def test_targets_judge_ratios_of_the_same_run():
    summary = {
        "noop/ours": {"rate": 300.0, "cpu_us_per_job": 90.0},
        "noop/raw": {"rate": 200.0, "cpu_us_per_job": 100.0},
        "noop/dramatiq": {"rate": 100.0},
        "date/ours": {"rate": 2000.0},
        "date/celery": {"rate": 50.0},
        "date/dramatiq": {"rate": 30.0},
        "rt/ours": {"p50_ms": 2.0, "p99_ms": 9.0},
        "rt/celery": {"p50_ms": 1.5, "p99_ms": 20.0},
    }
    verdicts = [ok for _text, _shown, ok in bd.targets(summary)]
    # 1.5x raw PASS, 3x Dramatiq PASS, 40x best peer (celery) MISS, CPU 0.9x PASS, p50 worse than Celery MISS, p99 PASS
    assert verdicts == [True, True, False, True, False, True]


def test_the_cpu_ratio_of_each_repeat_is_reported_beside_the_ratio_of_medians():
    runs = {
        "noop/ours": [{"cpu_us_per_job": c, "rate": 1.0, "commands": {}} for c in (50.0, 40.0, 45.0)],
        "noop/raw": [{"cpu_us_per_job": c, "rate": 1.0, "commands": {}} for c in (100.0, 40.0, 60.0)],
    }
    s = bd.summarize({"runs": runs, "load": [1.0]})
    assert s["noop/ours"]["cpu_ratios"] == [0.5, 0.75, 1.0]  # repeat by repeat, not medians of each side
    args = bd.parse_args(["--repeats", "3", "--parts", "noop"])
    assert "0.50x to 1.00x over 3 repeats" in bd.markdown(args, {"runs": runs, "load": [1.0]}, s)
