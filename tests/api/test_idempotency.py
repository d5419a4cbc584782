"""``Idempotency-Key`` on ``POST /submit`` and ``POST /jobs`` (services/api/jobqueue_api/idempotency.py):
a repeat of a keyed submit answers the first's job (one job stored), a different request under a
used key is a 422, a malformed key a 400, keys are scoped per named token and kept 24 h (or
JOB_TTL_SECONDS). Real Redis, the app's Flask path. Without the feature, every test sending the
same keyed request twice stores two jobs."""

from __future__ import annotations

import time

import pytest

from jobqueue import keys
from jobqueue.jobs import JobStatus

from .support import finish, make_settings

BODY = {"operation": "sleep", "params": {"seconds": 0.5}}
KEY = "8e03978e-40d5-43e8-bc93-6894a57f9324"


def _stored(jobs) -> int:
    return jobs.zcard(keys.JOB_INDEX)


def _queued(queue) -> int:
    return queue.llen(keys.queue("jobs"))


def _send(client, body=BODY, key=KEY, path="/submit", **headers):
    return client.post(path, json=body, headers={"Idempotency-Key": key, **headers})


def test_a_repeat_answers_the_first_job_and_stores_one(client, jobs, queue):
    first = _send(client)
    second = _send(client)
    assert first.status_code == second.status_code == 202
    assert first.get_json() == second.get_json() == {"job_id": first.get_json()["job_id"], "status": "submitted"}
    assert first.headers["Idempotency-Key"] == second.headers["Idempotency-Key"] == KEY  # honoured: echoed
    assert "Idempotent-Replayed" not in first.headers
    assert second.headers["Idempotent-Replayed"] == "true"
    assert _stored(jobs) == 1 and _queued(queue) == 1  # failed before the feature: 2 and 2


def test_the_same_request_written_differently_is_a_repeat(client, jobs):
    job_id = _send(client, {"operation": "sleep", "params": {"seconds": 0.5}}).get_json()["job_id"]
    spelt = client.post(
        "/submit",
        data='{ "params" : {"seconds":0.5}, "operation":"sleep" }',
        content_type="application/json",
        headers={"Idempotency-Key": f'"{KEY}"'},  # the draft's Structured Field String form
    )
    assert spelt.status_code == 202 and spelt.get_json()["job_id"] == job_id
    assert spelt.headers["Idempotent-Replayed"] == "true"
    assert _stored(jobs) == 1


def test_a_different_request_under_a_used_key_is_a_422_and_stores_nothing(client, jobs, queue):
    job_id = _send(client).get_json()["job_id"]
    other = _send(client, {"operation": "sleep", "params": {"seconds": 1.5}})
    assert other.status_code == 422
    body = other.get_json()
    assert body["error"] == "idempotency_key_reused" and body["job_id"] == job_id
    assert "new key" in body["message"]
    assert other.headers["Idempotency-Key"] == KEY
    assert _stored(jobs) == 1 and _queued(queue) == 1


@pytest.mark.parametrize(
    "bad",
    ["", "   ", "a b", "x" * 256, '"unterminated', '"a"b"', '"bad\\escape"', "a,b", "caf\u00e9", '"tab\there"'],
)
def test_a_malformed_key_is_a_400_and_stores_nothing(client, jobs, bad):
    answer = client.post("/submit", json=BODY, headers={"Idempotency-Key": bad.encode("utf-8").decode("latin-1")})
    assert answer.status_code == 400, bad
    assert answer.get_json()["error"] == "invalid_idempotency_key"
    assert _stored(jobs) == 0


def test_a_key_of_255_characters_and_an_escaped_quote_are_keys(client, jobs):
    assert _send(client, key="k" * 255).status_code == 202
    quoted = _send(client, key='"say \\"hi\\""')
    assert quoted.status_code == 202 and quoted.headers["Idempotency-Key"] == '"say \\"hi\\""'
    assert jobs.exists(keys.idempotency("", 'say "hi"'))
    assert _stored(jobs) == 2


def test_the_key_is_judged_before_the_body(client):
    """A malformed key and no job: a harmless question whether the API honours keys (the client
    asks it after a lost answer); an API or proxy that ignores the header answers for the body."""
    asked = client.post("/submit", json={}, headers={"Idempotency-Key": ","})
    assert asked.status_code == 400 and asked.get_json()["error"] == "invalid_idempotency_key"
    assert client.post("/submit", json={}).get_json()["error"] == "missing_operation"


def test_a_bad_body_with_a_good_key_keeps_the_key_free(client, jobs):
    assert _send(client, {"operation": "nope"}).status_code == 400
    assert _send(client).status_code == 202 and "Idempotent-Replayed" not in _send(client, key="other").headers
    assert _stored(jobs) == 2


def test_post_jobs_honours_the_key_and_shares_it_with_submit(client, jobs):
    created = _send(client, path="/jobs")
    assert created.status_code == 202
    again = _send(client)
    assert again.get_json()["job_id"] == created.get_json()["job_id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert _send(client, path="/jobs").headers["Idempotent-Replayed"] == "true"
    assert _stored(jobs) == 1


def test_a_waiting_repeat_answers_the_first_jobs_result(client, jobs):
    job_id = _send(client).get_json()["job_id"]
    finish(jobs, job_id, result={"slept": 0.5})
    waited = client.post("/submit?wait=5", json=BODY, headers={"Idempotency-Key": KEY})
    assert waited.status_code == 200
    assert waited.get_json()["job_id"] == job_id and waited.get_json()["result"] == {"slept": 0.5}
    assert waited.headers["Idempotent-Replayed"] == "true" and waited.headers["Location"] == f"/status/{job_id}"
    assert _stored(jobs) == 1


def test_a_waiting_repeat_wakes_when_the_first_job_ends(app, jobs):
    import threading

    client = app.test_client()
    job_id = _send(client).get_json()["job_id"]
    threading.Timer(0.5, lambda: finish(jobs, job_id, result={"slept": 0.5})).start()
    started = time.monotonic()
    waited = client.post("/submit?wait=10", json=BODY, headers={"Idempotency-Key": KEY})
    assert waited.status_code == 200 and waited.get_json()["status"] == JobStatus.COMPLETE.value
    assert waited.get_json()["job_id"] == job_id
    assert time.monotonic() - started < 8  # woken by the end of the job the key named, not the wait's end


def test_the_key_is_kept_a_day_or_the_job_ttl_and_then_frees(redis_url, jobs):
    from jobqueue_api import create_app

    client = create_app(make_settings(redis_url), load_data=False).test_client()
    _send(client)
    assert 86_000 < jobs.ttl(keys.idempotency("", KEY)) <= 86_400

    short = create_app(make_settings(redis_url, JOB_TTL_SECONDS="60"), load_data=False).test_client()
    first = _send(short, key="short-lived").get_json()["job_id"]
    record = keys.idempotency("", "short-lived")
    assert 0 < jobs.ttl(record) <= 60
    assert _send(short, key="short-lived").get_json()["job_id"] == first
    jobs.pexpire(record, 1)  # as Redis expires it once its TTL is out
    time.sleep(0.05)
    fresh = _send(short, key="short-lived")
    assert fresh.status_code == 202 and fresh.get_json()["job_id"] != first
    assert "Idempotent-Replayed" not in fresh.headers


TOKENS = {"alice": "alice-secret-token", "bob": "bob-secret-token", "admin": "admin-secret-token"}


def _as(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[who]}"}


def test_keys_are_scoped_per_named_token(redis_url, jobs):
    from jobqueue_api import create_app

    app = create_app(
        make_settings(redis_url, API_TOKEN=TOKENS["admin"], API_TOKENS=f"alice:{TOKENS['alice']},bob:{TOKENS['bob']}"),
        load_data=False,
    )
    client = app.test_client()
    alice = _send(client, **_as("alice")).get_json()["job_id"]
    bob = _send(client, **_as("bob"))  # the same key, another user: a job of bob's own
    assert bob.status_code == 202 and bob.get_json()["job_id"] != alice
    assert "Idempotent-Replayed" not in bob.headers
    # a different request under alice's key is no 422 for bob: his key space is his own
    assert (
        _send(client, {"operation": "sleep", "params": {"seconds": 1.5}}, key="k2", **_as("alice")).status_code == 202
    )
    assert _send(client, key="k2", **_as("bob")).status_code == 202
    # alice's repeat is hers; the admin token's scope is its own too
    assert _send(client, **_as("alice")).get_json()["job_id"] == alice
    admin = _send(client, **_as("admin")).get_json()["job_id"]
    assert admin not in (alice, bob.get_json()["job_id"])
    assert jobs.exists(keys.idempotency("alice", KEY), keys.idempotency("bob", KEY), keys.idempotency("", KEY)) == 3
    assert _stored(jobs) == 5


def test_without_a_key_a_submit_stores_a_job_each_time(client, jobs):
    assert client.post("/submit", json=BODY).headers.get("Idempotency-Key") is None
    client.post("/submit", json=BODY)
    assert _stored(jobs) == 2
    assert not jobs.keys(keys.IDEMPOTENCY_PREFIX + "*")


def _calls(jobs) -> dict[str, int]:
    return {name.removeprefix("cmdstat_"): s["calls"] for name, s in jobs.info("commandstats").items()}


def test_plain_submits_cost_redis_what_they_did_and_a_keyed_one_is_one_script_call(redis_url, jobs):
    """A submit without the header is still the group commit's transaction (no script, nothing
    read), answered below Flask; one with it is one EVALSHA and nothing else, through the view."""
    from .support import app_counting_flask

    app, flask_calls = app_counting_flask(redis_url)
    client = app.test_client()
    client.post("/submit", json=BODY)  # the first request decides the fast path's eligibility
    jobs.config_resetstat()
    flask_calls.clear()
    for _ in range(3):
        assert client.post("/submit", json=BODY).status_code == 202
    plain = _calls(jobs)
    assert not flask_calls  # answered below Flask, as before
    assert plain.get("exec") == 3 and "evalsha" not in plain and "get" not in plain, plain
    assert _send(client).status_code == 202  # the first keyed one also checks the ACL (once in 30 s)
    jobs.config_resetstat()
    assert _send(client).status_code == 202 and not flask_calls  # a keyed submit: below Flask too
    keyed = _calls(jobs)
    assert keyed.get("evalsha") == 1 and "exec" not in keyed and "multi" not in keyed, keyed


def test_keyed_submits_are_answered_alike_below_flask_and_through_it(redis_url, jobs):
    """The same keyed request below Flask (fastpath.py) and through the view (a ``Prefer`` header
    sends it there): the same job, the same body and key headers; a malformed key goes to Flask."""
    from .support import app_counting_flask

    app, flask_calls = app_counting_flask(redis_url)
    client = app.test_client()
    client.post("/submit", json=BODY)
    flask_calls.clear()
    fast = _send(client)
    assert not flask_calls
    viewed = _send(client, Prefer="respond-async")
    assert flask_calls
    assert fast.status_code == viewed.status_code == 202 and fast.data == viewed.data
    assert fast.headers["Idempotency-Key"] == viewed.headers["Idempotency-Key"] == KEY
    assert viewed.headers["Idempotent-Replayed"] == "true"
    assert _send(client).headers["Idempotent-Replayed"] == "true"  # a replay below Flask
    waited_fast = client.post("/submit?wait=0", json=BODY, headers={"Idempotency-Key": KEY})
    waited_view = client.post("/submit?wait=0", json=BODY, headers={"Idempotency-Key": KEY, "Prefer": "x"})
    assert waited_fast.status_code == waited_view.status_code == 202
    assert waited_fast.get_json() == waited_view.get_json()
    assert waited_fast.headers["Location"] == waited_view.headers["Location"]
    assert waited_fast.headers["Idempotent-Replayed"] == waited_view.headers["Idempotent-Replayed"] == "true"
    flask_calls.clear()
    bad = _send(client, key="a b")
    assert bad.status_code == 400 and flask_calls  # Flask's path answers it
    other = _send(client, {"operation": "sleep", "params": {"seconds": 3}})
    assert other.status_code == 422 and other.headers["Idempotency-Key"] == KEY
    assert _stored(jobs) == 2


def test_post_jobs_waits_as_post_submit_does(client, jobs, queue):
    """``POST /jobs`` is documented as ``POST /submit`` with a Location, but it ignored ``?wait=``:
    ``?wait=30`` answered the 202 at once (no result in the exchange) and ``?wait=soon`` stored a
    job instead of the 400 ``POST /submit`` gives. Now it waits the same way, its Location
    ``/jobs/<id>``."""
    refused = client.post("/jobs?wait=soon", json=BODY)
    assert refused.status_code == 400 and refused.get_json()["error"] == "invalid_wait"
    assert client.post("/jobs?wait=1&wait=2", json=BODY).get_json()["error"] == "invalid_wait"
    assert _stored(jobs) == 0 and _queued(queue) == 0  # stored a job each before

    job_id = _send(client, path="/jobs").get_json()["job_id"]
    pending = client.post("/jobs?wait=0", json=BODY, headers={"Idempotency-Key": KEY})
    assert pending.status_code == 202 and pending.get_json()["status"] == JobStatus.SUBMITTED.value
    assert pending.get_json()["job_id"] == job_id and pending.headers["Location"] == f"/jobs/{job_id}"
    finish(jobs, job_id, result={"slept": 0.5})
    waited = client.post("/jobs?wait=5", json=BODY, headers={"Idempotency-Key": KEY})
    assert waited.status_code == 200, waited.get_json()
    assert waited.get_json()["result"] == {"slept": 0.5} and waited.headers["Location"] == f"/jobs/{job_id}"
    assert waited.get_data() == client.get(f"/jobs/{job_id}").get_data()  # the document GET /jobs/<id> shows
    preferred = client.post("/jobs", json=BODY, headers={"Idempotency-Key": KEY, "Prefer": "wait=5"})
    assert preferred.status_code == 200 and preferred.headers["Preference-Applied"] == "wait=5"
    assert _stored(jobs) == 1
    plain = client.post("/jobs", json=BODY)  # without a wait: the 202 it always gave
    assert plain.status_code == 202 and set(plain.get_json()) == {"job_id", "status", "status_url"}
