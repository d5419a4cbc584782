"""Only jobs someone waits for are announced on the done channel.

A waiter marks its job (``keys.waited``) in the round trip of the read that precedes its wait (a
long poll) or in the transaction that stores the job (``POST /submit?wait=``); the worker's finish
publishes only when the mark exists. Redis runs the two one at a time, so either the waiter's read
sees the final document or the finish sees the mark. Real redis-server, real worker; the API
in-process where an interleaving is forced (its safety sweep pushed past every wait, so only the
done message can wake a waiter in time), under gunicorn where a process is observed from outside.
"""

from __future__ import annotations

import threading
import time

import pytest
import requests

from devstack.procs import wait_until
from devstack.redis_server import find_redis_server
from devstack.stack import running_stack
from jobqueue import keys
from jobqueue.connections import jobs_redis

from .support import make_settings, spawn

pytestmark = pytest.mark.slow

NOOP = {"operation": "sleep", "params": {"seconds": 0}}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    if find_redis_server() is None:
        pytest.skip("no redis-server")
    with running_stack(tmp_path_factory.mktemp("announce")) as stack:
        stack.start_worker()
        stack.wait_workers_registered(1)
        yield stack


def _listen(stack):
    """A subscriber on the done channel, as each API process holds one."""
    pubsub = jobs_redis(make_settings(stack.redis.url)).pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(keys.JOB_DONE_CHANNEL)
    pubsub.get_message(timeout=2)  # the subscribe confirmation: from here on a publish reaches it
    return pubsub


def _heard(pubsub, quiet: float = 0.5) -> list[str]:
    ids = []
    while (message := pubsub.get_message(timeout=quiet)) is not None:
        if message["type"] == "message":
            ids.append(message["data"].partition("\n")[0])
    return ids


@pytest.fixture()
def app(stack, monkeypatch):
    from jobqueue_api import create_app

    monkeypatch.setattr("jobqueue_api.waiting.SAFETY_POLL_SECONDS", 60.0)  # only a done message wakes in time
    app = create_app(make_settings(stack.redis.url), load_data=False)
    assert app.extensions["jobqueue"].waiter.wait_subscribed(10)
    return app


def test_through_gunicorn_only_waited_jobs_are_announced(stack):
    """Jobs polled without a wait finish unannounced (a subscribed process hears nothing of them);
    a long poll's job and a waiting submit's job are announced, once each, and their marks go with
    the announcement. Before, every finished job was announced to every subscriber."""
    stack.start_api(web_concurrency=2)
    pubsub = _listen(stack)
    plain = [requests.post(stack.url + "/submit", json=NOOP, timeout=10).json()["job_id"] for _ in range(5)]
    for job_id in plain:
        wait_until(
            lambda j=job_id: requests.get(f"{stack.url}/status/{j}", timeout=10).json()["status"] == "complete",
            30,
            "a plain job to finish",
        )
    assert _heard(pubsub) == [], "a job nobody waited for was announced"

    polled = requests.post(
        stack.url + "/submit", json={"operation": "sleep", "params": {"seconds": 0.5}}, timeout=10
    ).json()["job_id"]
    answer = requests.get(f"{stack.url}/status/{polled}?wait=20", timeout=30).json()
    assert answer["status"] == "complete"
    waited = requests.post(stack.url + "/submit?wait=20", json=NOOP, timeout=30)
    assert waited.status_code == 200
    assert _heard(pubsub) == [polled, waited.json()["job_id"]]
    jobs = jobs_redis(make_settings(stack.redis.url))
    assert jobs.exists(keys.waited(polled), keys.waited(waited.json()["job_id"])) == 0
    pubsub.close()


def test_a_finish_between_the_polls_read_and_its_wait_is_announced(app, stack, monkeypatch):
    """The interleaving the mark exists for: the long poll's read finds the job running, then the
    job finishes before the request waits. The finish saw the mark (set in the read's round trip),
    so the done message was sent, and the request answers from it without a second read."""
    state = app.extensions["jobqueue"]
    jobs = jobs_redis(make_settings(stack.redis.url))
    job_id = (
        app.test_client().post("/submit", json={"operation": "sleep", "params": {"seconds": 0.3}}).get_json()["job_id"]
    )
    taken = threading.Event()
    real_notify, real_read = state.waiter._notify, state.waited_reads.call
    reads: list[str | None] = []

    def notify(job_id, doc=None):
        real_notify(job_id, doc)
        taken.set()

    def read_then_let_it_finish(job_id):
        raw = real_read(job_id)
        reads.append(raw)
        if len(reads) == 1:
            assert '"complete"' not in raw, "the job finished before the read: not this interleaving"
            wait_until(lambda: '"complete"' in (jobs.get(keys.job(job_id)) or ""), 30, "the worker finishing the job")
            assert taken.wait(10), "the finish was not announced: the read's mark was not seen"
        return raw

    monkeypatch.setattr(state.waiter, "_notify", notify)
    monkeypatch.setattr(state.waited_reads, "call", read_then_let_it_finish)
    response = app.test_client().get(f"/status/{job_id}?wait=20")
    assert response.get_json()["status"] == "complete"
    assert len(reads) == 1, "answered by reading again, not from the done message"


def test_a_finish_before_the_polls_read_is_in_what_it_reads(app, stack):
    """The other order: the job finished unannounced (nobody waited), then a long poll starts. Its
    read sees the final document, so it answers at once; its mark is left to expire, announcing
    nothing (the job never finishes again)."""
    client = app.test_client()
    job_id = client.post("/submit", json=NOOP).get_json()["job_id"]
    jobs = jobs_redis(make_settings(stack.redis.url))
    wait_until(lambda: '"complete"' in (jobs.get(keys.job(job_id)) or ""), 30, "the worker finishing the job")
    t0 = time.monotonic()
    assert client.get(f"/status/{job_id}?wait=20").get_json()["status"] == "complete"
    assert time.monotonic() - t0 < 10  # not the wait's end (20 s)


def test_two_waiters_one_ending_early_the_other_still_woken_by_the_message(app, stack):
    """Two long polls on one job: the first gives up (wait=1) before the job ends (after ~2.5 s);
    the second (wait=20) is still woken by the done message (the sweep is pushed past its wait), so
    the first waiter's end did not take the mark with it."""
    client = app.test_client()
    job_id = client.post("/submit", json={"operation": "sleep", "params": {"seconds": 2.5}}).get_json()["job_id"]
    short = spawn(lambda: app.test_client().get(f"/status/{job_id}?wait=1").get_json()["status"])
    long = spawn(lambda: app.test_client().get(f"/status/{job_id}?wait=20").get_json()["status"])
    assert short.result(15) in ("submitted", "in-progress")
    assert long.result(25) == "complete"


def test_a_waited_job_that_is_cancelled_is_announced(stack, monkeypatch, tmp_path_factory):
    """A cancel is a final status too: a long poll on a queued job (no worker: it stays queued)
    is woken by the cancel's announcement."""
    from jobqueue_api import create_app

    monkeypatch.setattr("jobqueue_api.waiting.SAFETY_POLL_SECONDS", 60.0)
    with running_stack(tmp_path_factory.mktemp("cancel")) as idle:  # no worker
        app = create_app(make_settings(idle.redis.url), load_data=False)
        assert app.extensions["jobqueue"].waiter.wait_subscribed(10)
        job_id = app.test_client().post("/submit", json=NOOP).get_json()["job_id"]
        waiting = spawn(lambda: app.test_client().get(f"/status/{job_id}?wait=20").get_json()["status"])
        jobs = jobs_redis(make_settings(idle.redis.url))
        wait_until(lambda: jobs.exists(keys.waited(job_id)), 60, "the long poll's mark")
        assert app.test_client().delete(f"/jobs/{job_id}").status_code in (200, 202)
        assert waiting.result(15) == "cancelled"
