"""``POST /submit?wait=`` (and ``Prefer: wait=N``): submit and get the result in one HTTP exchange.

Against the real service: redis-server, ``jobqueue-api`` under gunicorn, a real ``jobqueue-worker``.
The answer is 200 with the document ``GET /status/<id>`` shows once the job is final within the
wait, else 202 with its current document; ``Location: /status/<id>`` either way. No timed
assertions: what ends a wait early is asserted by order of events and by what the answer says.
"""

from __future__ import annotations

import threading

import pytest
import requests

from devstack.procs import wait_until
from devstack.redis_server import find_redis_server
from devstack.stack import running_stack
from jobqueue import keys

from .support import metric_value, spawn
from tests.support.rate_window import start_counting_with

pytestmark = pytest.mark.slow

NOOP = {"operation": "sleep", "params": {"seconds": 0}}


def _stack(tmp_path_factory, name, worker=True, **env):
    if find_redis_server() is None:
        pytest.skip("no redis-server")
    ctx = running_stack(tmp_path_factory.mktemp(name), **env)
    stack = ctx.__enter__()
    try:
        if worker:
            stack.start_worker()
            stack.wait_workers_registered(1)
        stack.start_api(web_concurrency=1)
    except BaseException:
        ctx.__exit__(None, None, None)
        raise
    return ctx, stack


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """API (one process, so its waiters are counted in one place) + one worker."""
    ctx, stack = _stack(tmp_path_factory, "submit-wait")
    try:
        yield stack
    finally:
        ctx.__exit__(None, None, None)


def _long_polls(stack) -> float:
    return metric_value(requests.get(stack.url + "/metrics", timeout=10).text, "jobqueue_api_long_polls") or 0.0


def test_the_result_comes_back_in_the_submit_exchange(served):
    """Sequential no-op jobs: each one finishes while (often before) its submit starts waiting,
    the race a waiter registered after the store would lose."""
    session = requests.Session()
    for _ in range(30):
        response = session.post(served.url + "/submit?wait=30", json=NOOP, timeout=60)
        assert response.status_code == 200, response.text
        doc = response.json()
        assert doc["status"] == "complete" and doc["result"] == {"slept": 0.0}, doc
        assert response.headers["Location"] == f"/status/{doc['job_id']}"
        again = session.get(served.url + response.headers["Location"], timeout=10)
        assert response.content == again.content  # byte for byte what GET /status shows


def test_a_real_operation_answers_with_its_result(served):
    example = next(
        op
        for op in requests.get(served.url + "/operations", timeout=10).json()["operations"]
        if op["name"] == "incident_count_by_date"
    )["example"]
    response = requests.post(served.url + "/submit", params={"wait": "30"}, json=example, timeout=60)
    assert response.status_code == 200, response.text
    direct = requests.get(served.url + "/incident_count_by_date", params=example["params"], timeout=30).json()
    assert response.json()["result"] == direct
    assert response.json()["result_url"].endswith(f"/jobs/{response.json()['job_id']}/result")


def test_a_wait_that_runs_out_is_202_with_location(served):
    response = requests.post(
        served.url + "/submit?wait=0.2", json={"operation": "sleep", "params": {"seconds": 1.5}}, timeout=30
    )
    assert response.status_code == 202, response.text
    doc = response.json()
    assert doc["status"] in ("submitted", "in-progress") and doc["operation"] == "sleep", doc
    assert response.headers["Location"] == f"/status/{doc['job_id']}"
    final = requests.get(served.url + response.headers["Location"] + "?wait=30", timeout=60).json()
    assert final["status"] == "complete" and final["job_id"] == doc["job_id"]


def test_without_wait_the_tutorial_answer_is_unchanged(served):
    response = requests.post(served.url + "/submit", json=NOOP, timeout=10)
    assert response.status_code == 202 and "Location" not in response.headers
    assert response.content == f'{{"job_id":"{response.json()["job_id"]}","status":"submitted"}}\n'.encode()


@pytest.mark.parametrize("query", ["wait=soon", "wait=-1", "wait=nan", "wait=inf", "wait=", "wait=1&wait=2"])
def test_a_bad_wait_is_a_json_400_and_stores_nothing(served, query):
    jobs = served.jobs_client()
    before = jobs.zcard(keys.JOB_INDEX)
    response = requests.post(f"{served.url}/submit?{query}", json=NOOP, timeout=10)
    assert response.status_code == 400, response.text
    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["error"] == "invalid_wait" and response.json()["param"] == "wait"
    assert jobs.zcard(keys.JOB_INDEX) == before


def test_prefer_wait_is_honoured_and_query_wait_wins(served):
    response = requests.post(
        served.url + "/submit", json=NOOP, timeout=60, headers={"Prefer": "respond-async, wait=30"}
    )
    assert response.status_code == 200 and response.json()["status"] == "complete", response.text
    assert response.headers["Preference-Applied"] == "wait=30"
    assert response.headers["Location"] == f"/status/{response.json()['job_id']}"
    # a Prefer the server cannot read is ignored (RFC 7240): the tutorial's answer
    for prefer in ("respond-async", "wait=soon", "wait=-3", "return=minimal"):
        response = requests.post(served.url + "/submit", json=NOOP, headers={"Prefer": prefer}, timeout=10)
        assert response.status_code == 202 and set(response.json()) == {"job_id", "status"}, (prefer, response.text)
    slow = {"operation": "sleep", "params": {"seconds": 1.0}}
    response = requests.post(served.url + "/submit?wait=0.1", json=slow, headers={"Prefer": "wait=30"}, timeout=60)
    assert response.status_code == 202 and "Preference-Applied" not in response.headers
    requests.get(served.url + response.headers["Location"] + "?wait=30", timeout=60)


def test_a_prefer_wait_that_is_not_delta_seconds_is_ignored_and_a_huge_one_capped(served):
    # '²' and '¹' (Latin-1 header bytes 0xb2, 0xb9) pass str.isdigit() but are not DIGITs
    # (RFC 7240 wait = delta-seconds = 1*DIGIT): ignored like any unreadable preference, not a 500
    for prefer in ("wait=\xb2", "wait=1\xb9", "respond-async, wait=\xb2"):
        response = requests.post(served.url + "/submit", json=NOOP, headers={"Prefer": prefer}, timeout=10)
        assert response.status_code == 202 and set(response.json()) == {"job_id", "status"}, (prefer, response.text)
    # delta-seconds too large to represent count as the largest one (RFC 9111 1.2.2): capped at
    # MAX_WAIT_SECONDS (60 here) like ?wait=, not ignored
    for huge in ("99999999999999", "9" * 5000):  # 5000: more digits than int() converts
        response = requests.post(served.url + "/submit", json=NOOP, headers={"Prefer": f"wait={huge}"}, timeout=120)
        assert response.status_code == 200 and response.json()["status"] == "complete", response.text
        assert response.headers["Preference-Applied"] == "wait=60"


def test_validation_errors_are_as_without_wait(served):
    response = requests.post(served.url + "/submit?wait=5", json={"operation": "nope"}, timeout=10)
    assert response.status_code == 400 and response.json()["error"] == "unknown_operation"
    response = requests.post(
        served.url + "/submit?wait=5", data="x" * 100_000, timeout=10, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 413 and response.json()["error"] == "request_entity_too_large", response.text
    response = requests.post(served.url + "/submit?wait=5", data={"operation": "sleep"}, timeout=10)
    assert response.status_code == 415, response.text
    wait_until(lambda: _long_polls(served) == 0, 60, "no waiter left registered")


def test_max_waiters_answers_at_once_with_location(tmp_path_factory):
    """MAX_WAITERS=1, no worker: one submit holds the only waiter; the next answers at once (202,
    its document and Location), before the first, and the refusal is counted."""
    ctx, stack = _stack(tmp_path_factory, "max-waiters", worker=False, MAX_WAITERS="1")
    try:
        first = spawn(lambda: requests.post(stack.url + "/submit?wait=20", json=NOOP, timeout=60))
        wait_until(lambda: _long_polls(stack) == 1, 30, "the first submit waiting")
        response = requests.post(stack.url + "/submit?wait=20", json=NOOP, timeout=60)
        assert not first.done()
        assert response.status_code == 202, response.text
        doc = response.json()
        assert doc["status"] == "submitted" and response.headers["Location"] == f"/status/{doc['job_id']}"
        metrics = requests.get(stack.url + "/metrics", timeout=10).text
        assert metric_value(metrics, "jobqueue_api_long_polls_refused_total") == 1
        worker = stack.start_worker()  # both jobs are queued: the held submit now gets its result
        assert first.result(60).status_code == 200 and first.result().json()["status"] == "complete"
        assert worker.alive()
    finally:
        ctx.__exit__(None, None, None)


def test_redis_stopped_mid_wait_answers_202_with_the_job_and_loses_nothing(tmp_path_factory):
    ctx, stack = _stack(tmp_path_factory, "redis-stop", worker=False)
    try:
        answer = spawn(lambda: requests.post(stack.url + "/submit?wait=3", json=NOOP, timeout=60))
        wait_until(lambda: _long_polls(stack) == 1, 30, "the submit waiting")
        stack.redis.stop()
        response = answer.result(60)
        assert response.status_code == 202, response.text
        doc = response.json()
        assert doc["status"] == "submitted" and response.headers["Location"] == f"/status/{doc['job_id']}"
        stack.redis.start()  # same port; the AOF kept the job
        stack.start_worker()
        final = requests.get(stack.url + response.headers["Location"] + "?wait=30", timeout=60).json()
        assert final["status"] == "complete" and final["job_id"] == doc["job_id"]
        # Redis down before the store: a 503 as without wait, and no waiter left behind
        stack.redis.stop()
        response = requests.post(stack.url + "/submit?wait=3", json=NOOP, timeout=60)
        assert response.status_code == 503 and response.json()["error"] == "redis_unavailable", response.text
        assert "Location" not in response.headers
        stack.redis.start()
        wait_until(lambda: _long_polls(stack) == 0, 60, "no waiter left registered")
    finally:
        ctx.__exit__(None, None, None)


def test_a_rate_limited_submit_with_wait_is_429(tmp_path_factory):
    ctx, stack = _stack(tmp_path_factory, "rate-limit", SUBMIT_RATE_LIMIT="1")
    try:
        start_counting_with(10)  # the first waits for its job to finish
        assert requests.post(stack.url + "/submit?wait=30", json=NOOP, timeout=60).status_code == 200
        response = requests.post(stack.url + "/submit?wait=30", json=NOOP, timeout=60)
        assert response.status_code == 429 and "Retry-After" in response.headers, response.text
        assert "Location" not in response.headers
        wait_until(lambda: _long_polls(stack) == 0, 60, "no waiter left registered")
    finally:
        ctx.__exit__(None, None, None)


def test_a_job_finished_before_its_submit_waits_is_answered_from_the_done_message(monkeypatch, tmp_path_factory):
    """The race, made certain: the store itself waits until a real worker has finished the job and
    the API's subscriber has taken the done message, so the finish is over before the request
    starts waiting. The safety poll is pushed past the wait, and the job is never read: answered
    200 "complete", the done message (taken before the request waited) was not missed. A waiter
    registered after the store would miss it and find the job final only by reading it."""
    from jobqueue.connections import jobs_redis
    from jobqueue_api import create_app

    from .support import make_settings

    monkeypatch.setattr("jobqueue_api.waiting.SAFETY_POLL_SECONDS", 60.0)
    ctx = running_stack(tmp_path_factory.mktemp("race"))
    stack = ctx.__enter__()
    try:
        stack.start_worker()
        stack.wait_workers_registered(1)
        settings = make_settings(stack.redis.url)
        app = create_app(settings, load_data=False)
        state = app.extensions["jobqueue"]
        jobs = jobs_redis(settings)
        real_store = state.delivery.store
        taken = threading.Event()
        real_notify = state.waiter._notify

        def notify(job_id, doc=None):
            real_notify(job_id, doc)
            taken.set()

        def store_then_let_it_finish(batch, waited=()):
            real_store(batch, waited)  # the job's mark is in this transaction: its finish is announced
            wait_until(
                lambda: all(
                    jobs.get(keys.job(j.id)) and '"status":"complete"' in jobs.get(keys.job(j.id)) for j in batch
                ),
                30,
                "the worker finishing the job",
            )
            assert taken.wait(10), "the API's subscriber never got the done message"

        reads: list[str] = []
        real_read = state.reads.call

        def read(job_id):
            reads.append(job_id)
            return real_read(job_id)

        monkeypatch.setattr(state.reads, "call", read)
        monkeypatch.setattr(state.delivery, "store", store_then_let_it_finish)
        monkeypatch.setattr(state.waiter, "_notify", notify)
        assert state.waiter.wait_subscribed(10)
        client = app.test_client()
        response = client.post("/submit?wait=3", json=NOOP)
        assert response.status_code == 200, (response.status_code, response.get_json())
        assert response.get_json()["status"] == "complete"
        assert reads == [], "the job was read: the done message was missed"
    finally:
        ctx.__exit__(None, None, None)
