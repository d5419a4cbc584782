"""``?wait=`` long polls: answer as soon as the job finishes, never later than the cap."""

from __future__ import annotations

import threading
import time

import pytest

from jobqueue.jobs import JobStatus

from .support import finish, make_settings, submit


def _finish_later(jobs, job_id, delay, **kw):
    timer = threading.Timer(delay, finish, args=(jobs, job_id), kwargs=kw)
    timer.start()
    return timer


@pytest.mark.parametrize("route", ["/status/{}?wait=20", "/jobs/{}?wait=20", "/jobs/{}/result?wait=20"])
def test_wait_returns_when_the_job_finishes(app, client, jobs, route, monkeypatch):
    # only the done-channel message can end this wait early: the safety poll is pushed past the cap
    monkeypatch.setattr("jobqueue_api.waiting.SAFETY_POLL_SECONDS", 60.0)
    job_id = submit(client)
    assert app.extensions["jobqueue"].waiter.wait_subscribed(5)
    _finish_later(jobs, job_id, 0.3, result={"slept": 0.0})
    started = time.monotonic()
    response = client.get(route.format(job_id))
    elapsed = time.monotonic() - started
    assert response.status_code == 200
    doc = response.get_json()
    assert doc.get("status", "complete") == "complete" and (doc.get("result") or doc) == {"slept": 0.0}
    assert 0.25 <= elapsed < 10  # woken by the done channel, well before the 20 s cap


def test_wait_answers_from_the_done_message_without_reading_the_job(app, client, jobs, monkeypatch):
    """The worker sends the final document with the id; the woken long poll answers with it (one Redis
    read fewer per round trip). Here only the message says complete: the stored job still reads
    submitted, so an answer of "complete" can only have come from the message."""
    from jobqueue import keys
    from jobqueue.jobs import JobStore

    monkeypatch.setattr("jobqueue_api.waiting.SAFETY_POLL_SECONDS", 60.0)
    job_id = submit(client)
    assert app.extensions["jobqueue"].waiter.wait_subscribed(5)
    final = JobStore(jobs, 3600).get(job_id)
    final.status, final.result = JobStatus.COMPLETE, {"slept": 0.0}
    timer = threading.Timer(0.3, jobs.publish, args=(keys.JOB_DONE_CHANNEL, job_id + "\n" + final.to_json()))
    timer.start()
    doc = client.get(f"/status/{job_id}?wait=5").get_json()
    assert doc["status"] == "complete" and doc["result"] == {"slept": 0.0}
    assert JobStore(jobs, 3600).get(job_id).status is JobStatus.SUBMITTED


def test_a_bare_id_on_the_done_channel_still_wakes_a_long_poll(app, client, jobs, monkeypatch):
    from jobqueue import keys

    monkeypatch.setattr("jobqueue_api.waiting.SAFETY_POLL_SECONDS", 60.0)
    job_id = submit(client)
    assert app.extensions["jobqueue"].waiter.wait_subscribed(5)
    finish(jobs, job_id, result={"slept": 0.0})  # document stored (and announced with it)
    jobs.publish(keys.JOB_DONE_CHANNEL, job_id)  # an id alone: the waiter reads the job
    assert client.get(f"/status/{job_id}?wait=5").get_json()["status"] == "complete"


def test_wait_on_a_finished_job_answers_at_once(client, jobs):
    job_id = submit(client)
    finish(jobs, job_id, status=JobStatus.FAILED, error="bad")
    started = time.monotonic()
    assert client.get(f"/status/{job_id}?wait=30").get_json()["status"] == "failed"
    assert time.monotonic() - started < 0.5


def test_wait_expires_with_the_current_status(client):
    job_id = submit(client)
    started = time.monotonic()
    doc = client.get(f"/status/{job_id}?wait=0.3").get_json()
    assert doc["status"] == "submitted" and 0.3 <= time.monotonic() - started < 2


def test_wait_expires_with_the_status_as_it_is_then(client, jobs):
    """A job taken by a worker during the wait (no announcement: not final) is answered in progress,
    not as the wait's first read saw it (submitted)."""
    from jobqueue.jobs import JobStore

    job_id = submit(client)

    def quietly_start():
        store = JobStore(jobs, 3600)
        job = store.get(job_id)
        job.status = JobStatus.IN_PROGRESS
        store.save(job)

    threading.Timer(0.2, quietly_start).start()
    assert client.get(f"/status/{job_id}?wait=1").get_json()["status"] == "in-progress"


def test_redis_lost_during_the_wait_is_503_at_its_end(fresh_redis):
    """Redis stopped while a poll waits: the wait's end says so (503), where it answered 200 with
    the job as first read, as if Redis still held it and all were well."""
    from jobqueue_api import create_app

    client = create_app(make_settings(fresh_redis.url), load_data=False).test_client()
    job_id = submit(client)
    threading.Timer(0.5, fresh_redis.stop).start()
    response = client.get(f"/status/{job_id}?wait=2")
    assert response.status_code == 503, response.get_data(as_text=True)
    assert response.get_json()["error"] == "redis_unavailable" and response.headers["Retry-After"]


def test_wait_is_capped_by_max_wait_seconds(redis_url):
    from jobqueue_api import create_app

    client = create_app(make_settings(redis_url, MAX_WAIT_SECONDS="0.2"), load_data=False).test_client()
    job_id = submit(client)
    started = time.monotonic()
    assert client.get(f"/status/{job_id}?wait=600").get_json()["status"] == "submitted"
    assert time.monotonic() - started < 1.5


def test_finish_without_a_publish_is_caught_by_the_safety_poll(client, jobs):
    """A lost notification costs at most about a second, never the whole wait."""
    from jobqueue.jobs import JobStore

    job_id = submit(client)

    def quietly_finish():
        store = JobStore(jobs, 3600)
        job = store.get(job_id)
        job.status = JobStatus.COMPLETE
        store.save(job)

    threading.Timer(0.2, quietly_finish).start()
    started = time.monotonic()
    assert client.get(f"/status/{job_id}?wait=20").get_json()["status"] == "complete"
    assert time.monotonic() - started < 3


def test_a_job_deleted_while_waiting_is_404(client, jobs):
    job_id = submit(client)
    finish(jobs, job_id)
    client.delete(f"/jobs/{job_id}")
    assert client.get(f"/status/{job_id}?wait=1").status_code == 404


# "1_0", full-width "３" and Arabic-Indic "٣": Python's float() reads them (10, 3, 3), the OpenAPI
# document's number does not; they held a poll 10 s and 3 s
@pytest.mark.parametrize("wait", ["soon", "-1", "nan", "inf", "1_0", "%EF%BC%93", "%D9%A3", "0x1"])
def test_bad_wait_is_400(client, wait):
    job_id = submit(client)
    for route in (f"/status/{job_id}", f"/jobs/{job_id}", f"/jobs/{job_id}/result"):
        response = client.get(f"{route}?wait={wait}")
        assert response.status_code == 400 and response.get_json()["error"] == "invalid_wait", (route, wait)


@pytest.mark.parametrize("wait", ["1_0", "%EF%BC%93"])
def test_a_submit_with_a_non_ascii_or_underscored_wait_is_400_and_stores_nothing(client, jobs, wait):
    before = len(client.get("/jobs").get_json()["jobs"])
    response = client.post(f"/submit?wait={wait}", json={"operation": "sleep"})
    assert response.status_code == 400 and response.get_json()["error"] == "invalid_wait", response.get_json()
    assert len(client.get("/jobs").get_json()["jobs"]) == before


@pytest.mark.parametrize("wait", ["0.5", ".5", "+0", "%200", "5e-1"])
def test_plain_decimal_waits_are_still_read(client, wait):
    job_id = submit(client)
    assert client.get(f"/status/{job_id}?wait={wait}").status_code == 200


def test_many_waiters_on_one_job_all_wake(app, client, jobs):
    job_id = submit(client)
    assert app.extensions["jobqueue"].waiter.wait_subscribed(5)
    results = []

    def waiter():
        results.append(app.test_client().get(f"/status/{job_id}?wait=10").get_json()["status"])

    threads = [threading.Thread(target=waiter) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    finish(jobs, job_id)
    for t in threads:
        t.join(5)
    assert results == ["complete"] * 8
    assert not app.extensions["jobqueue"].waiter._waiting  # nothing left registered


def test_a_subscription_redis_refuses_is_not_taken_for_one(fresh_redis):
    """Redis 7 gives an ACL user no pub/sub channels unless granted (``resetchannels``), and refuses
    its SUBSCRIBE (NOPERM) only in its answer. The subscriber must not count itself subscribed
    before that answer: ``POST /submit?wait=`` then skips its read, and the refusal was logged on
    every retry (about ten times a second)."""
    from urllib.parse import urlsplit

    import redis

    from jobqueue import keys
    from jobqueue.connections import jobs_redis
    from jobqueue_api import create_app

    fresh_redis.client().execute_command("ACL", "SETUSER", "nochannels", "on", ">pw", "~*", "resetchannels", "+@all")
    where = urlsplit(fresh_redis.url)
    app = create_app(make_settings(f"redis://nochannels:pw@{where.hostname}:{where.port}"), load_data=False)
    waiter = app.extensions["jobqueue"].waiter
    assert not waiter.wait_subscribed(2.0)
    assert not waiter.subscribed
    # a submit's wait (registered while not subscribed) is answered by the sweep, not held for the
    # whole wait on a subscription that never comes (the bound is 60 s against about 1-2 s)
    from jobqueue.jobs import Job

    job_id = submit(app.test_client())
    jobs = jobs_redis(app.extensions["jobqueue"].settings)
    expected = waiter.expect()
    expected.register(Job.from_json(jobs.get(keys.job(job_id))))
    finish(redis.Redis.from_url(fresh_redis.url, decode_responses=True), job_id)  # announced to nobody here
    answer: list = []
    reader = threading.Thread(
        target=lambda: answer.append(expected.final_document(600.0, lambda jid: jobs.get(keys.job(jid)))), daemon=True
    )
    reader.start()
    reader.join(60.0)
    expected.close()
    assert answer and '"complete"' in answer[0], answer
    fresh_redis.client().execute_command("ACL", "SETUSER", "nochannels", f"&{keys.JOB_DONE_CHANNEL}")
    assert waiter.wait_subscribed(10.0)  # granted: it subscribes on its next retry
