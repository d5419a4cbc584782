"""With API_TOKEN and API_TOKENS set, the tutorial's submit and status read are still answered below
Flask (``fastpath.py``) when they carry a known ``Authorization: Bearer`` token, acting as that
token's name, with the verdicts and answers Flask's path gives: each named token sees only its own
jobs (another's is a 404), the admin token sees all, a submit records its token's name and is
counted against it by the rate limit, an Idempotency-Key is scoped to it; no token, an unknown one or
the web page's cookie is left to Flask (401, the cookie's rules).

Each request is sent twice where it can be: as it is (the fast path when it applies) and with an
extra ``x=1`` in its query, which the views ignore and which keeps it on Flask's path."""

from __future__ import annotations

import json

from jobqueue.jobs import JobStore

from .support import app_counting_flask, finish
from tests.support.rate_window import start_counting_with

TOKENS = {"API_TOKEN": "admin-secret", "API_TOKENS": "alice:alice-secret,bob:bob-secret"}
JOB = {"operation": "sleep", "params": {"seconds": 0}}


def _auth(token: str) -> dict[str, str]:
    return {"Host": "127.0.0.1", "Authorization": f"Bearer {token}"}


def _submit(client, token: str, path: str = "/submit", **headers: str):
    response = client.post(path, json=JOB, headers={**_auth(token), **headers})
    return response.status_code, response.get_json(), [name for name, _ in response.headers.items()]


def _get(client, path: str, headers: dict[str, str]):
    response = client.get(path, headers=headers)
    return response.status, list(response.headers.items()), response.get_data()


def test_a_submit_with_a_known_token_skips_flask_and_records_its_name(redis_url, jobs):
    app, calls = app_counting_flask(redis_url, **TOKENS)
    client = app.test_client()
    _submit(client, "alice-secret", "/submit?x=1")  # the guards judge this Host once (Flask's path)
    store = JobStore(jobs, 3600)
    for token, owner in (("alice-secret", "alice"), ("bob-secret", "bob"), ("admin-secret", None)):
        flask_status, flask_body, flask_headers = _submit(client, token, "/submit?x=1")
        del calls[:]
        status, body, headers = _submit(client, token)
        assert calls == [], f"a submit with {owner}'s token went through Flask's request handling"
        assert status == flask_status == 202 and sorted(body) == sorted(flask_body) and headers == flask_headers
        for job_id in (body["job_id"], flask_body["job_id"]):
            job = store.get(job_id)
            assert job is not None and job.owner == owner, (token, job)


def test_without_a_known_bearer_token_flask_answers(redis_url):
    app, calls = app_counting_flask(redis_url, **TOKENS)
    client = app.test_client()
    for headers in (
        {"Host": "127.0.0.1"},
        {"Host": "127.0.0.1", "Authorization": "Bearer not-a-token"},
        {"Host": "127.0.0.1", "Authorization": "Basic YWxpY2U6c2VjcmV0"},
        {"Host": "127.0.0.1", "Cookie": "jobqueue_token=alice-secret"},  # the page's cookie: needs its CSRF header
    ):
        del calls[:]
        response = client.post("/submit", json=JOB, headers=headers)
        assert calls == [1], headers
        assert response.status_code in (401, 403), (headers, response.get_json())
        del calls[:]
        response = client.get("/status/3f2b8c4e-1d2a-4b5c-9e8f-0a1b2c3d4e5f", headers=headers)
        assert calls == [1], headers


def test_a_status_read_sees_only_its_tokens_jobs_as_flask_does(redis_url, jobs):
    app, calls = app_counting_flask(redis_url, **TOKENS)
    client = app.test_client()
    _, mine, _ = _submit(client, "alice-secret", "/submit?x=1")
    job_id = mine["job_id"]
    finish(jobs, job_id, result={"slept": 0})
    for token, expected in (("alice-secret", "200 OK"), ("admin-secret", "200 OK"), ("bob-secret", "404 NOT FOUND")):
        flask = _get(client, f"/status/{job_id}?x=1", _auth(token))
        assert flask[0] == expected, (token, flask)
        for path in (f"/status/{job_id}", f"/status/{job_id}?wait=5", f"/jobs/{job_id}"):
            del calls[:]
            assert _get(client, path, _auth(token)) == flask, (token, path)
            # a 404 is raised again inside Flask's handling (its error handler writes it)
            assert calls == ([] if expected == "200 OK" else [1]), (token, path)
    doc = json.loads(_get(client, f"/status/{job_id}", _auth("alice-secret"))[2])
    assert doc["status"] == "complete" and doc["result"] == {"slept": 0}


def test_the_rate_limit_and_idempotency_keys_belong_to_the_token(redis_url):
    app, calls = app_counting_flask(redis_url, SUBMIT_RATE_LIMIT="2", **TOKENS)
    client = app.test_client()
    start_counting_with(5)
    _submit(client, "bob-secret", "/submit?x=1")  # the Host judged; bob's first of two
    del calls[:]
    answers = [_submit(client, "alice-secret")[0] for _ in range(3)]
    assert answers == [202, 202, 429], answers  # alice's own count, not bob's nor the address's
    assert _submit(client, "bob-secret")[0] == 202
    assert _submit(client, "bob-secret")[0] == 429
    app, calls = app_counting_flask(redis_url, **TOKENS)
    client = app.test_client()
    _submit(client, "bob-secret", "/submit?x=1")
    key = {"Idempotency-Key": '"same-key-for-both"'}
    _, alice_first, _ = _submit(client, "alice-secret", **key)
    _, alice_again, _ = _submit(client, "alice-secret", **key)
    _, bob_first, _ = _submit(client, "bob-secret", **key)
    assert alice_again["job_id"] == alice_first["job_id"]  # the key named alice's job
    assert bob_first["job_id"] != alice_first["job_id"]  # bob's key is his own
