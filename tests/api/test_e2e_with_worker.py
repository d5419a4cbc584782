"""The whole service on loopback: real redis-server, ``jobqueue-api`` (gunicorn) and ``jobqueue-worker``.

The tutorial's client flow (POST /submit, poll /status until complete), long polls woken by the
real worker's done message, PNG download and the client command, on the bundled sample data.
"""

from __future__ import annotations

import os
import subprocess
import time

import pytest
import requests

from devstack.paths import BIN, SAMPLE
from devstack.procs import free_port, spawn, stop, wait_http
from devstack.redis_server import RedisServer, find_redis_server

from .support import metric_value

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    if find_redis_server() is None:
        pytest.skip("no redis-server")
    if not (BIN / "jobqueue-worker").exists():
        pytest.skip("jobqueue-worker not installed")
    tmp = tmp_path_factory.mktemp("stack")
    redis_server = RedisServer(tmp / "redis").start()
    port = free_port()
    env = {
        **os.environ,
        "REDIS_URL": redis_server.url,
        "PORT": str(port),
        "BIND_HOST": "127.0.0.1",
        "WEB_CONCURRENCY": "2",
        "DATA_PATH": str(SAMPLE),
        "DIAGNOSTIC_OPERATIONS": "1",
        "WORKER_METRICS_PORT": "0",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp / "metrics"),
        "LOG_LEVEL": "WARNING",
    }
    api = spawn([str(BIN / "jobqueue-api")], env, tmp / "api.log")
    # its own metrics dir, as in a deployment (separate pods): both processes wipe theirs at start
    (tmp / "worker-metrics").mkdir()
    worker = spawn(
        [str(BIN / "jobqueue-worker")],
        {**env, "PROMETHEUS_MULTIPROC_DIR": str(tmp / "worker-metrics")},
        tmp / "worker.log",
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/healthz", api)
        deadline = time.monotonic() + 60
        while requests.get(base + "/readyz").status_code != 200:
            assert time.monotonic() < deadline, requests.get(base + "/readyz").text
            time.sleep(0.1)
        yield base
    finally:
        worker_status = stop(worker.popen, 30)
        stop(api.popen, 30)  # everything stops before the check, so a failing worker leaks nothing
        redis_server.stop()
        assert worker_status == 0, worker.log_tail()


def _ops(base):
    return {op["name"]: op for op in requests.get(base + "/operations").json()["operations"]}


def test_tutorial_client_flow_with_a_real_worker(stack):
    """As the COE 332 tutorial's client does it: submit, then poll /status until complete."""
    example = _ops(stack)["incident_count_by_date"]["example"]
    response = requests.post(stack + "/submit", json=example)
    assert response.status_code == 202 and response.json()["status"] == "submitted"
    job_id = response.json()["job_id"]
    deadline = time.monotonic() + 30
    while (job := requests.get(f"{stack}/status/{job_id}").json())["status"] != "complete":
        assert job["status"] in ("submitted", "in-progress") and time.monotonic() < deadline, job
        time.sleep(0.05)
    direct = requests.get(stack + "/incident_count_by_date", params=example["params"]).json()
    assert job["result"] == direct and isinstance(direct["incident_count"], int)
    assert job["dataset"] == requests.get(stack + "/data").json()["identity"]


def test_every_operation_through_the_queue(stack):
    from jobqueue.client import Client

    client = Client(stack)
    for name, op in _ops(stack).items():
        job_id = client.submit(name, op["example"]["params"])
        job = client.wait(job_id, timeout=60)
        assert job["status"] == "complete", job
        result = client.result(job_id)
        if op["result"] == "image/png":
            assert isinstance(result, bytes) and result.startswith(b"\x89PNG")
        else:
            assert set(op["result_keys"]) <= set(result)


def test_long_poll_is_woken_by_the_worker(stack):
    job_id = requests.post(stack + "/submit", json={"operation": "sleep", "params": {"seconds": 0.5}}).json()["job_id"]
    started = time.monotonic()
    job = requests.get(f"{stack}/jobs/{job_id}", params={"wait": 30}).json()
    assert job["status"] == "complete" and job["result"] == {"slept": 0.5}
    assert time.monotonic() - started < 20


def test_cli_submit_wait(stack, tmp_path):
    done = subprocess.run(
        [str(BIN / "jobqueue"), "submit", "top_locations", "n=3", "--wait", "--url", stack],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    import json

    assert len(json.loads(done.stdout)["top_locations"]) == 3
    pngs = [name for name, op in _ops(stack).items() if op["result"] == "image/png"]
    if pngs:
        op = _ops(stack)[pngs[0]]
        args = [f"{k}={v}" for k, v in op["example"]["params"].items()]
        out = tmp_path / "plot.png"
        done = subprocess.run(
            [str(BIN / "jobqueue"), "submit", pngs[0], *args, "--wait", "--url", stack, "--output", str(out)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert out.read_bytes().startswith(b"\x89PNG")


def test_queue_gauges_see_the_live_worker(stack):
    text = requests.get(stack + "/metrics").text
    assert metric_value(text, "jobqueue_workers_alive") >= 1
    assert metric_value(text, "jobqueue_queue_depth", {"queue": "jobs"}) == 0
