"""32 clients submit through the real ``jobqueue-api`` (gunicorn, group commit) while Redis is
killed (SIGKILL, as a node loss) and brought back with its AOF, and while it is paused: every 202's
job exists, is queued and completes with a real worker; every other answer is a JSON 503 (nothing
stored) or, for a submit sent to Redis whose answer never came, a JSON 504 naming its job (stored or
not, never half-stored: one that exists completes too), never a 500 and never a dropped connection. Then SIGTERM of the API mid-burst loses no acknowledged job."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time

import pytest
import requests

from devstack.paths import BIN
from jobqueue.connections import jobs_redis
from jobqueue.jobs import JobStore
from jobqueue.settings import load_settings

from .support import redis_and_api

pytestmark = pytest.mark.slow
CLIENTS = 32


def _burst(base: str, stop: threading.Event):
    """CLIENTS threads submit until ``stop``: 202 ids, other (status, body), transport errors, threads."""
    accepted: list[str] = []
    refused: list[tuple[int, str]] = []
    broken: list[str] = []
    lock = threading.Lock()

    def client():
        session = requests.Session()
        while not stop.is_set():
            try:
                r = session.post(base + "/submit", json={"operation": "sleep", "params": {"seconds": 0}}, timeout=30)
            except requests.RequestException as exc:
                with lock:
                    broken.append(repr(exc))
                continue
            with lock:
                if r.status_code == 202:
                    accepted.append(r.json()["job_id"])
                else:
                    refused.append((r.status_code, r.text))

    threads = [threading.Thread(target=client, daemon=True) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    return accepted, refused, broken, threads


def _all_complete(redis_url: str, ids: list[str], tmp_path, timeout: float = 120) -> list[str]:
    """Run a real worker until every id is complete; the ids that are not (missing or other)."""
    env = {
        **os.environ,
        "REDIS_URL": redis_url,
        "DIAGNOSTIC_OPERATIONS": "1",
        "WORKER_METRICS_PORT": "0",
        "LOG_LEVEL": "WARNING",
        "SHUTDOWN_GRACE_SECONDS": "5",
    }
    store = JobStore(jobs_redis(load_settings({"REDIS_URL": redis_url})), 3600)
    with open(tmp_path / "worker.log", "w") as log:
        worker = subprocess.Popen([str(BIN / "jobqueue-worker")], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        pending = list(ids)
        while pending and time.monotonic() < deadline:
            pending = [i for i in pending if (j := store.get(i)) is None or j.status.value != "complete"]
            time.sleep(0.5)
        return [f"{i}: {store.get(i).status.value if store.get(i) else 'missing'}" for i in pending]
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def _check_refusals(refused, broken) -> list[str]:
    """The ids of the 504s (their jobs may be stored)."""
    assert not broken, broken[:5]
    unsure = []
    for status, body in refused:
        assert status in (503, 504), (status, body)
        assert '"error"' in body and "redis" in body, body
        if status == 504:
            doc = json.loads(body)
            assert doc["error"] == "redis_timeout", body
            unsure.append(doc["job_id"])
    return unsure


def _redis_and_api(tmp_path, **redis_config: str):
    """A real redis-server (AOF on, ``redis_config`` applied) and the real API on it."""
    return redis_and_api(tmp_path, redis_config=redis_config, stop_timeout=60, SHUTDOWN_GRACE_SECONDS="10")


def test_redis_killed_and_paused_while_32_clients_submit(tmp_path):
    # everysec may reply before its write() when an fsync lags (a loaded disk), and a SIGKILL then
    # loses acknowledged writes: Redis's durability, not the API's, so take it out of the question
    with _redis_and_api(tmp_path, appendfsync="always") as (server, api):
        _killed_and_paused(server, api.url, tmp_path)
    output = api.proc.log_text()
    assert '"status": 500' not in output, output[-3000:]


def _killed_and_paused(server, base: str, tmp_path) -> None:
    stop = threading.Event()
    accepted, refused, broken, threads = _burst(base, stop)
    time.sleep(1.5)
    server.kill()  # mid-batch: whatever EXEC had replied is in the AOF's page cache
    time.sleep(2)
    server.start()
    server.client().config_set("appendfsync", "always")
    time.sleep(1.5)
    server.client().execute_command("CLIENT", "PAUSE", "1500", "ALL")  # held up, then resumed
    time.sleep(2.5)
    stop.set()
    for t in threads:
        t.join(60)
    print(f"202: {len(accepted)}, 503: {len(refused)}", {b[:90] for _, b in refused})
    assert accepted and refused, (len(accepted), refused[:3])
    unsure = _check_refusals(refused, broken)
    assert len(set(accepted)) == len(accepted)
    store = JobStore(jobs_redis(load_settings({"REDIS_URL": server.url})), 3600)
    stored_unsure = [i for i in unsure if store.get(i) is not None]  # the 504's "may": either way
    assert _all_complete(server.url, accepted + stored_unsure, tmp_path) == []


def test_sigterm_of_the_api_mid_burst_loses_no_acknowledged_job(tmp_path):
    with _redis_and_api(tmp_path) as (server, api):
        stop = threading.Event()
        accepted, refused, broken, threads = _burst(api.url, stop)
        time.sleep(2)
        api.proc.signal(signal.SIGTERM)  # graceful: in-flight submits finish, then it exits
        api.proc.wait_exit(60)
        stop.set()
        for t in threads:
            t.join(60)
        print(f"202 before and during SIGTERM: {len(accepted)}, connections refused after: {len(broken)}")
        assert accepted
        assert not refused, refused[:5]  # nothing but 202s or a closed connection
        assert _all_complete(server.url, accepted, tmp_path) == []


def test_a_redis_that_stops_answering_gets_504_not_a_hang(tmp_path):
    """A Redis that keeps its connections open but answers nothing (SIGSTOP: a stopped process, as a
    lost node looks until TCP gives up): a submit answers a JSON 504 naming its job (sent to Redis,
    so it may be stored), not after the 15 minutes TCP takes, and once Redis answers again, 202. The bound is REDIS_TIMEOUT_SECONDS around each Redis
    call of the API (tests/api/test_hung_redis.py holds every route to it)."""
    with _redis_and_api(tmp_path) as (server, api):
        _stopped_redis_answers_504(server, api.url, {"operation": "sleep", "params": {"seconds": 0}})
    output = api.proc.log_text()
    assert '"status": 500' not in output, output[-3000:]


def _stopped_redis_answers_504(server, base: str, body: dict) -> None:
    assert requests.post(base + "/submit", json=body, timeout=30).status_code == 202
    server.proc.send_signal(signal.SIGSTOP)
    try:
        answer = requests.post(base + "/submit", json=body, timeout=90)
    except requests.Timeout:
        pytest.fail("the submit hung while Redis was stopped")
    finally:
        server.proc.send_signal(signal.SIGCONT)
    assert answer.status_code == 504, answer.text
    assert answer.headers["Content-Type"].startswith("application/json")
    assert answer.json()["error"] == "redis_timeout", answer.text
    assert answer.headers["Location"] == f"/status/{answer.json()['job_id']}", answer.headers
    assert requests.post(base + "/submit", json=body, timeout=30).status_code == 202
