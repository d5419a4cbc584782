"""``MAX_JOBS_PER_CLIENT``: a cap on the jobs one client holds in Redis, from its submit until its
document expires or is deleted. Before: only the rate limit, so one client within it (600 a minute)
filled the chart's 350 MB Redis in hours and every submit was then a 503 for everyone. Through the
real API (gunicorn, two processes) on a real redis-server, with no worker (jobs stay unfinished
unless a test gives one a TTL, as a worker's finish does).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from jobqueue import keys
from jobqueue_api import holdings

from .support import make_settings, redis_and_api

TOKENS = {
    "alice": "alice-token-0123456789",
    "bob": "bob-token-0123456789",
    "carol": "carol-token-0123456789",
    "dave": "dave-token-0123456789",
    "erin": "erin-token-0123456789",
}
ADMIN = "admin-token-0123456789"
SLEEP = {"operation": "sleep", "params": {"seconds": 0}}
CAP = 5


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(API url, jobs-db client) of an API whose clients may each hold CAP jobs."""
    named = ",".join(f"{who}:{token}" for who, token in TOKENS.items())
    with redis_and_api(
        tmp_path_factory.mktemp("jobs-per-client"),
        API_TOKEN=ADMIN,
        API_TOKENS=named,
        SUBMIT_RATE_LIMIT="0",
        MAX_JOBS_PER_CLIENT=str(CAP),
    ) as (server, api):
        yield api.url, server.client()


def _post(url: str, who: str, headers: dict | None = None) -> requests.Response:
    return requests.post(
        url + "/submit", json=SLEEP, headers={"Authorization": f"Bearer {TOKENS[who]}", **(headers or {})}, timeout=10
    )


def _stored(jobs, who: str) -> int:
    return jobs.zcard(keys.owner_index(who))


def test_a_client_at_its_cap_gets_429_and_stores_nothing_until_a_job_is_gone(served):
    url, jobs = served
    ids = [_post(url, "alice").json()["job_id"] for _ in range(CAP)]
    before = jobs.zcard(keys.JOB_INDEX)
    refused = _post(url, "alice")
    body = refused.json()
    assert refused.status_code == 429 and body["error"] == "too_many_jobs_held" and body["limit"] == CAP
    assert "MAX_JOBS_PER_CLIENT" in body["message"]
    # none of its jobs has ended, so nothing says when a place frees up: no Retry-After
    assert "Retry-After" not in refused.headers and "retry_after" not in body
    assert refused.headers["Jobqueue-Refusal"] == "too_many_jobs_held"  # the CLI shows it, no retry loop
    assert jobs.zcard(keys.JOB_INDEX) == before and _stored(jobs, "alice") == CAP  # nothing half-stored
    assert _post(url, "bob").status_code == 202  # another client is not affected

    # a finished job (its document given the TTL a worker's finish gives it): Retry-After is its expiry
    jobs.expire(keys.job(ids[2]), 40)
    timed = _post(url, "alice")
    assert timed.status_code == 429 and 39 <= int(timed.headers["Retry-After"]) <= 40
    assert timed.json()["retry_after"] == int(timed.headers["Retry-After"])

    # cancelled, a job is final but still in Redis (it holds its place); deleted, or expired, it is gone
    for kept in (True, False):
        gone = requests.delete(
            f"{url}/jobs/{ids[0]}", headers={"Authorization": f"Bearer {TOKENS['alice']}"}, timeout=10
        )
        assert gone.status_code == 200 and gone.json().get("cancelled", False) is kept
        # deleted, its place is free at once (not only once a submit at the cap checks the oldest)
        assert (jobs.zscore(keys.held("token:alice"), ids[0]) is None) is not kept
        assert _post(url, "alice").status_code == (429 if kept else 202)
    held = keys.held("token:alice")
    jobs.delete(keys.job(ids[2]))  # as its TTL ending does
    # a fresh entry without its document may be a job another API process is storing: it counts
    assert _post(url, "alice").status_code == 429
    jobs.zadd(held, {ids[2]: jobs.zscore(held, ids[2]) - holdings.SETTLED_SECONDS - 1})  # as if submitted long ago
    assert _post(url, "alice").status_code == 202
    assert _post(url, "alice").status_code == 429
    assert jobs.zcard(held) == CAP


def test_a_job_being_stored_elsewhere_keeps_its_place(served):
    """Another API process has held a job and is storing it (its entry is in, its document not yet):
    a submit at the cap must not take that entry for a job gone. It did: the job was dropped from
    the count, the submit admitted, and once the other store landed the client held one over its cap."""
    url, jobs = served
    held = keys.held("token:dave")
    import time

    for _ in range(CAP - 1):
        assert _post(url, "dave").status_code == 202
    jobs.zadd(held, {"00000000-0000-4000-8000-000000000000": time.time()})  # in flight elsewhere
    assert _post(url, "dave").status_code == 429
    assert jobs.zcard(held) == CAP


def test_concurrent_submits_from_one_client_do_not_pass_its_cap(served):
    url, jobs = served
    with ThreadPoolExecutor(16) as pool:
        statuses = sorted(r.status_code for r in pool.map(lambda _: _post(url, "carol"), range(40)))
    assert statuses == [202] * CAP + [429] * (40 - CAP)  # two API processes, one exact count
    assert _stored(jobs, "carol") == CAP


def test_a_repeated_key_at_the_cap_answers_its_job_and_a_new_key_is_refused(served):
    url, jobs = served
    first = _post(url, "erin", {"Idempotency-Key": "erin-1"})
    assert first.status_code == 202
    for _ in range(CAP - 1):
        assert _post(url, "erin").status_code == 202
    again = _post(url, "erin", {"Idempotency-Key": "erin-1"})
    assert again.status_code == 202 and again.json()["job_id"] == first.json()["job_id"]
    new = _post(url, "erin", {"Idempotency-Key": "erin-2"})
    assert new.status_code == 429 and new.json()["error"] == "too_many_jobs_held"
    assert jobs.zcard(keys.held("token:erin")) == CAP


def test_the_cap_is_off_by_default_and_writes_nothing(redis_url):
    from jobqueue_api import create_app

    settings = make_settings(redis_url)
    assert settings.max_jobs_per_client == 0
    client = create_app(settings, load_data=False).test_client()
    for _ in range(3):
        assert client.post("/submit", json=SLEEP, environ_base={"REMOTE_ADDR": "10.9.0.1"}).status_code == 202
    import redis

    assert not redis.Redis.from_url(redis_url).keys(keys.HELD_PREFIX + "*")


def test_the_workers_sweeper_drops_held_entries_of_expired_jobs(redis_url):
    """The held sets need no TTL of their own: they are under the listing indexes' pattern, so the
    sweeper (``JobStore.drop_expired_entries``) drops entries of expired jobs as it does theirs."""
    import redis

    from jobqueue.jobs import JobStore

    jobs = redis.Redis.from_url(redis_url, decode_responses=True)
    held = keys.held("addr:10.9.9.9")
    now = float(jobs.time()[0])
    jobs.zadd(held, {"expired-job": now - 3600, "young-job": now})
    assert JobStore(jobs, ttl_seconds=600).drop_expired_entries(now) >= 1
    assert jobs.zrange(held, 0, -1) == ["young-job"]  # a job submitted within the TTL may still live
