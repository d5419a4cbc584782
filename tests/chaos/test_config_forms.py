"""The fault tests' faults under the settings users write, not the local stack's: a db in
REDIS_URL (with matching REDIS_JOBS_DB and REDIS_QUEUE_DB), a trailing slash, a password in the URL
or in REDIS_PASSWORD against a Redis started with ``--requirepass``, a unix socket with ``?db=``,
another QUEUE_NAME, several processes per worker (WORKER_CONCURRENCY) and per API (WEB_CONCURRENCY).

Each form, on a redis-server of its own (AOF on, as the chart runs it): an analysis job on the
bundled sample and sleep jobs; Redis stopped mid-run (the API answers 503, not 500, and /readyz 503)
and started again from its AOF; a worker killed -9 in the middle of a job; the API sent SIGTERM
during a long poll (answered at once) and started again. Every acknowledged job ends complete, and
the workers reconnect by themselves. The rest of the chaos suite runs the defaults
(``redis://127.0.0.1:<port>``, dbs 0 and 1, queue ``jobs``, one process each).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from urllib.parse import quote

import pytest
import requests

from devstack.procs import children, wait_until
from devstack.redis_server import RedisServer, find_redis_server
from devstack.stack import FAULT_ENV, Stack
from jobqueue import keys

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

PASSWORD = "s3cret/p@ss:word"  # '/', '@', ':' escaped in a URL, as the README says

# id -> (Redis: password?, unix socket?; REDIS_URL with {port}/{sock}; the rest of the environment)
FORMS = {
    "db-in-url": ("", False, "redis://127.0.0.1:{port}/3", {"REDIS_JOBS_DB": "3", "REDIS_QUEUE_DB": "4"}),
    "trailing-slash": ("", False, "redis://127.0.0.1:{port}/", {}),
    "password-in-url": (PASSWORD, False, "redis://:" + quote(PASSWORD, safe="") + "@127.0.0.1:{port}", {}),
    "password-env": (PASSWORD, False, "redis://localhost:{port}", {"REDIS_PASSWORD": PASSWORD}),
    "unix-socket-db": ("", True, "unix://{sock}?db=5", {"REDIS_JOBS_DB": "5", "REDIS_QUEUE_DB": "2"}),
    "queue-name-and-concurrency": (
        "",
        False,
        "redis://127.0.0.1:{port}",
        {"QUEUE_NAME": "atx.class-2:b", "WORKER_CONCURRENCY": "2", "WEB_CONCURRENCY": "3"},
    ),
}


def _code(call) -> int | str:
    try:
        return call().status_code
    except requests.RequestException as exc:  # the API itself went away: a failure below
        return type(exc).__name__


@pytest.mark.timeout(120)
@pytest.mark.parametrize("form", sorted(FORMS))
def test_faults_under_the_settings_users_write(tmp_path, form):
    if find_redis_server() is None:
        pytest.skip("no redis-server binary")
    password, unix, url, extra = FORMS[form]
    server = RedisServer(tmp_path / "redis", password=password, unix_socket=unix).start()
    env = {
        **FAULT_ENV,
        "REDIS_URL": url.format(port=server.port, sock=server.socket),
        "REDIS_PASSWORD": "",  # only where the form sets it
        **extra,
    }
    web = int(extra.get("WEB_CONCURRENCY", "1"))
    try:
        with Stack(tmp_path / "stack", server, env=env) as stack:
            stack.workdir.mkdir(parents=True, exist_ok=True)
            worker = stack.start_worker()
            stack.start_api(web_concurrency=web)
            stack.wait_api(path="/readyz")
            _run_faults(stack, server, worker)
    finally:
        server.stop()


def _run_faults(stack: Stack, server: RedisServer, worker) -> None:
    url = stack.url
    acked = [stack.submit("top_locations", {"n": 3})]
    acked += [stack.submit("sleep", {"seconds": 0.2 + i * 1e-6}) for i in range(8)]

    # 1. Redis stopped mid-run: 503 with a JSON body, never a 500; back from its AOF
    server.stop()
    down = {
        "submit": _code(lambda: requests.post(url + "/submit", json={"operation": "sleep", "params": {}}, timeout=15)),
        "status": _code(lambda: requests.get(f"{url}/status/{acked[0]}", timeout=15)),
        "jobs": _code(lambda: requests.get(url + "/jobs", timeout=15)),
        "readyz": _code(lambda: requests.get(url + "/readyz", timeout=15)),
    }
    assert set(down.values()) == {503}, f"while Redis was down: {down}\n{stack.logs()}"
    time.sleep(1.0)
    server.start()
    stack.wait_api(path="/readyz", timeout=30)
    acked += [stack.submit("sleep", {"seconds": 0.01 + i * 1e-6}) for i in range(4)]
    stack.wait_all_final(acked, timeout=30)  # the workers reconnected by themselves

    # 2. a worker process killed -9 in the middle of a job: re-run after the lease
    long_job = stack.submit("sleep", {"seconds": 1.5})
    acked.append(long_job)
    wait_until(lambda: stack.job_docs([long_job])[long_job]["status"] == "in-progress", 15, "the job to start")
    if stack.env.get("WORKER_CONCURRENCY", "1") != "1":
        for pid in children(worker.pid):  # the supervisor's children (one holds the job): it starts new ones
            os.kill(pid, signal.SIGKILL)
        survivors = stack.workers
    else:
        worker.kill9()
        survivors = [stack.start_worker()]

    # 3. SIGTERM to the API during a long poll: answered at once with the job as it is
    polled = stack.submit("sleep", {"seconds": 3})
    acked.append(polled)
    answer: dict = {}

    def poll() -> None:
        t0 = time.monotonic()
        r = requests.get(f"{url}/status/{polled}?wait=30", timeout=40)
        answer.update(code=r.status_code, status=r.json()["status"], seconds=time.monotonic() - t0)

    waiting = threading.Thread(target=poll, daemon=True)
    waiting.start()
    wait_until(lambda: _long_polls(stack) >= 1, 10, "the long poll to wait")
    assert stack.api is not None
    stack.api.signal(signal.SIGTERM)
    waiting.join(20)
    assert answer.get("code") == 200 and answer["status"] in {"submitted", "in-progress"}, answer
    assert answer["seconds"] < 10, answer
    assert stack.api.wait_exit(30) == 0, stack.api.log_text()[-2000:]
    stack.start_api(web_concurrency=int(stack.env.get("WEB_CONCURRENCY", "1")))
    stack.wait_api(path="/readyz")

    docs = stack.wait_all_final(acked, timeout=60)
    assert {d["status"] for d in docs.values()} == {"complete"}, {j: d["status"] for j, d in docs.items()}
    assert docs[long_job]["attempts"] == 2, docs[long_job]  # re-run once after the kill
    assert docs[acked[0]]["result"]["top_locations"], docs[acked[0]]
    queue_name = stack.env.get("QUEUE_NAME", "jobs")
    q = stack.queue_client()
    assert q.llen(keys.queue(queue_name)) == 0 and not q.keys(keys.PROCESSING_PREFIX + "*")
    assert all(w.alive() for w in survivors), f"a worker died instead of reconnecting\n{stack.logs()}"
    for proc in stack.processes():
        assert "Traceback" not in proc.log_text(), f"{proc.name}:\n{proc.log_text()[-3000:]}"


def _long_polls(stack: Stack) -> float:
    text = requests.get(stack.url + "/metrics", timeout=5).text
    for line in text.splitlines():
        if line.startswith("jobqueue_api_long_polls "):
            return float(line.split()[1])
    return 0.0
