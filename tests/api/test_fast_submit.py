"""The tutorial's submit answered below Flask (``fastpath.py``): taken only for a plain valid
``POST /submit``, and answering byte for byte what Flask's path answers; every other request and
every error goes through Flask."""

from __future__ import annotations

import http.client
import json
import re
import signal
import socket
import time

import pytest
from gunicorn.config import Config
from gunicorn.http.parser import RequestParser
from werkzeug.test import EnvironBuilder

from jobqueue.jobs import JobStore

from .support import app_counting_flask, metric_value, redis_and_api, run_jobs_in_thread, spawn
from tests.support.rate_window import start_counting_with

BODY = json.dumps({"operation": "sleep", "params": {"seconds": 0}}).encode()


def _call(app, path="/submit", body=BODY, headers=None):
    """``app`` on a request whose body gunicorn's own parser holds, as under gunicorn."""
    query = path.partition("?")[2]
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    message = next(iter(RequestParser(Config(), iter([head + body]), ("127.0.0.1", 5000))))
    hdrs = {"Host": "127.0.0.1", "Content-Type": "application/json", **(headers or {})}
    environ = EnvironBuilder(
        path=path.partition("?")[0], query_string=query, method="POST", headers=hdrs, data=body
    ).get_environ()
    environ["wsgi.input"] = message.body
    answer = {}

    def start_response(status, headers, exc_info=None):
        answer.update(status=status, headers=headers)

    answer["body"] = b"".join(app(environ, start_response))
    return answer


def test_a_plain_valid_submit_skips_flasks_request_handling_and_is_stored_and_counted(redis_url, jobs):
    app, calls = app_counting_flask(redis_url)
    first = _call(app)  # the guards judge this Host and Content-Type once
    assert first["status"] == "202 ACCEPTED" and calls == [1]
    before = app.test_client().get("/metrics").get_data(as_text=True)
    answer = _call(app)
    assert answer["status"] == "202 ACCEPTED" and calls == [1, 1]  # + the scrape, not the submit
    assert answer["headers"] == [
        ("Content-Type", "application/json"),
        ("Content-Length", "71"),
        ("X-Content-Type-Options", "nosniff"),
        ("Cache-Control", "no-store"),
    ]
    job_id = json.loads(answer["body"])["job_id"]
    assert answer["body"] == f'{{"job_id":"{job_id}","status":"submitted"}}\n'.encode()
    assert JobStore(jobs, 60).get(job_id).operation == "sleep"
    after = app.test_client().get("/metrics").get_data(as_text=True)
    labels = {"route": "/submit", "method": "POST", "status": "202"}
    assert (
        metric_value(after, "jobqueue_http_requests_total", labels)
        == metric_value(before, "jobqueue_http_requests_total", labels) + 1
    )
    assert (
        metric_value(after, "jobqueue_jobs_submitted_total", {"operation": "sleep"})
        == metric_value(before, "jobqueue_jobs_submitted_total", {"operation": "sleep"}) + 1
    )
    count = "jobqueue_http_request_duration_seconds_count"
    assert metric_value(after, count, {"route": "/submit"}) == metric_value(before, count, {"route": "/submit"}) + 1


@pytest.mark.parametrize(
    "path, body, headers",
    [
        ("/submit?wait=1&x=1", BODY, None),
        ("/submit?wait=", BODY, None),
        ("/submit?wait=1e1", BODY, None),
        ("/submit?x=1", BODY, None),
        ("/submit", BODY, {"Prefer": "wait=1"}),
        ("/submit", b'{"operation": "nope"}', None),
        ("/submit", b"{not json", None),
        ("/submit", BODY, {"Content-Type": "text/plain"}),
        ("/jobs", BODY, None),
        ("/submit", BODY, {"Content-Encoding": "gzip"}),
    ],
)
def test_anything_else_goes_through_flask(redis_url, path, body, headers):
    app, calls = app_counting_flask(redis_url)
    _call(app)
    _call(app, path, body, headers)
    assert calls == [1, 1]


@pytest.mark.parametrize(
    "body",
    [
        b'{"operation": "nope", "operation": "sleep", "params": {"seconds": 0}}',
        b'{"operation": "sleep", "params": {"seconds": "x", "seconds": 0}}',
    ],
)
def test_a_key_given_twice_is_handed_to_flask_and_refused(redis_url, body):
    """Taken last-wins (and stored, 202) before; now the body is refused as Flask refuses it."""
    app, calls = app_counting_flask(redis_url)
    _call(app)
    answer = _call(app, "/submit", body)
    assert answer["status"].startswith("400") and json.loads(answer["body"])["error"] == "duplicate_key", answer
    assert calls == [1, 1]


def test_with_tokens_only_a_submit_with_a_known_bearer_token_skips_flask(redis_url):
    """(test_fast_tokens.py compares the answers of both paths with named tokens.)"""
    app, calls = app_counting_flask(redis_url, API_TOKEN="s3cret")
    for _ in range(2):
        assert _call(app, headers={"Authorization": "Bearer s3cret"})["status"] == "202 ACCEPTED"
    assert _call(app)["status"].startswith("401")
    assert calls == [1, 1]  # the guards' first look at the Host, and the 401; the second was fast


def test_with_the_rate_limit_a_submit_is_counted_and_its_429_is_flasks(redis_url, jobs):
    app, calls = app_counting_flask(redis_url, SUBMIT_RATE_LIMIT="2")
    start_counting_with(5)
    answers = [_call(app) for _ in range(3)]
    assert [a["status"][:3] for a in answers] == ["202", "202", "429"]
    assert calls == [1, 1]  # the first (guards' first look) and the 429; the second was fast
    refused = json.loads(answers[2]["body"])
    assert refused["error"] == "rate_limited" and dict(answers[2]["headers"])["Retry-After"].isdigit()
    assert len([k for k in jobs.scan_iter("*") if "rate" in k]) == 1  # one client: the address


def _exchange(port: int, path: str, body: bytes, headers: dict) -> tuple[int, list[tuple[str, str]], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", path, body=body, headers={"Content-Type": "application/json", **headers})
    response = conn.getresponse()
    answer = response.status, [(k, v) for k, v in response.getheaders() if k != "Date"], response.read()
    conn.close()
    return answer


def _same(answer):
    status, headers, body = answer
    return status, headers, re.sub(rb"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", b"ID", body)


CASES = [
    (BODY, {}),
    (json.dumps({"operation": "sleep", "params": {"seconds": 0.5}}).encode(), {}),
    (json.dumps({"operation": "nope"}).encode(), {}),
    (json.dumps({"operation": "sleep", "params": {"seconds": "x"}}).encode(), {}),
    (json.dumps({"operation": "sleep", "extra": 1}).encode(), {}),
    (b"{not json", {}),
    (b'{"operation": "sleep", "operation": "sleep"}', {}),
    (b"[1, 2]", {}),
    (b"   ", {}),
    ('{"operation": "sleep"}'.encode("utf-16"), {}),
    (b'{"operation": "\xff"}', {}),
    (b"x" * 70_000, {}),
    (BODY, {"Content-Type": "text/plain"}),
    (BODY, {"Host": "evil.example"}),
]


def test_through_gunicorn_both_paths_answer_alike(tmp_path):
    """Each request to /submit (the fast path when it applies) and to /submit?x=1 (always Flask's,
    an unknown parameter changes nothing else) gets the same status, headers and body, job ids
    aside; with Redis stopped, both answer Flask's 503."""
    with redis_and_api(tmp_path, processes=1, ALLOWED_HOSTS="127.0.0.1,localhost") as (redis_server, api):
        _exchange(api.port, "/submit", BODY, {})
        for body, headers in CASES:
            fast = _exchange(api.port, "/submit", body, headers)
            flask = _exchange(api.port, "/submit?x=1", body, headers)
            assert _same(fast) == _same(flask), (body[:40], headers)
        redis_server.stop()
        fast = _exchange(api.port, "/submit", BODY, {})
        flask = _exchange(api.port, "/submit?x=1", BODY, {})
        assert fast[0] == 503 and _same(fast) == _same(flask)


def test_through_gunicorn_the_rate_limit_counts_both_paths_alike(tmp_path):
    with redis_and_api(tmp_path, processes=1, SUBMIT_RATE_LIMIT="4") as (_, api):
        start_counting_with(5)
        answers = [_exchange(api.port, path, BODY, {}) for path in ["/submit", "/submit?x=1"] * 3]
    assert [a[0] for a in answers] == [202, 202, 202, 202, 429, 429]
    fast, flask = (json.loads(a[2]) for a in answers[4:])
    assert fast["error"] == flask["error"] == "rate_limited"
    assert [k for k, _ in answers[4][1]] == [k for k, _ in answers[5][1]]


def test_through_gunicorn_with_a_metrics_port_a_submit_there_is_still_a_404(tmp_path):
    """As the chart runs it (API_METRICS_PORT): the fast path answers submits on the application
    port only; on the metrics port a submit is Flask's 404, and the scrape there counts the 202s."""
    from devstack.procs import free_port

    metrics_port = free_port()
    with redis_and_api(tmp_path, processes=1, API_METRICS_PORT=str(metrics_port)) as (_, api):
        same_host = {"Host": "localhost"}  # one Host for both ports: its verdict is remembered
        answers = [_exchange(api.port, "/submit", BODY, same_host) for _ in range(3)]
        on_metrics = [_exchange(metrics_port, "/submit", BODY, same_host) for _ in range(2)]
        scrape = http.client.HTTPConnection("127.0.0.1", metrics_port, timeout=30)
        scrape.request("GET", "/metrics")
        text = scrape.getresponse().read().decode()
    assert [a[0] for a in answers] == [202, 202, 202] and [a[0] for a in on_metrics] == [404, 404]
    assert (
        metric_value(text, "jobqueue_http_requests_total", {"route": "/submit", "method": "POST", "status": "202"}) == 3
    )


def _call_late(app, body=BODY):
    """``app`` on a request whose body was not there yet when gunicorn parsed the headers (as
    ``requests`` and ``http.client`` send it: headers, then the body in a second write)."""
    head = (
        f"POST /submit HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    message = next(iter(RequestParser(Config(), iter([head, body]), ("127.0.0.1", 5000))))
    environ = EnvironBuilder(
        path="/submit", method="POST", data=body, headers={"Host": "127.0.0.1", "Content-Type": "application/json"}
    ).get_environ()
    environ["wsgi.input"] = message.body
    assert message.body.reader.unreader.buf.getvalue() == b""  # the body is still to be read
    answer = {}

    def start_response(status, headers, exc_info=None):
        answer.update(status=status, headers=headers)

    answer["body"] = b"".join(app(environ, start_response))
    return answer


def test_a_body_that_comes_after_the_headers_is_still_answered_below_flask(redis_url, jobs):
    app, calls = app_counting_flask(redis_url)
    _call(app)
    answer = _call_late(app)
    assert answer["status"] == "202 ACCEPTED" and calls == [1]  # Flask ran for the first request only
    job_id = json.loads(answer["body"])["job_id"]
    assert answer["body"] == f'{{"job_id":"{job_id}","status":"submitted"}}\n'.encode()
    assert JobStore(jobs, 60).get(job_id).operation == "sleep"


def _exchange_in_two_writes(port: int, path: str, body: bytes, sent: int | None = None) -> tuple:
    """Headers, a pause, then the body (or its first ``sent`` bytes, and silence)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
        )
        time.sleep(0.05)
        sock.sendall(body[:sent])
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, [(k, v) for k, v in response.getheaders() if k != "Date"], response.read()


def test_through_gunicorn_a_late_body_is_answered_alike_on_both_paths(tmp_path):
    """A body sent apart from its headers: the same 202 (or 400) on the fast path as on Flask's;
    one that stops half-way gets the same 408 from both once CLIENT_TIMEOUT_SECONDS has passed."""
    with redis_and_api(tmp_path, processes=1, CLIENT_TIMEOUT_SECONDS="1") as (_, api):
        _exchange(api.port, "/submit", BODY, {})
        for body in (BODY, b"{not json", json.dumps({"operation": "nope"}).encode()):
            fast = _exchange_in_two_writes(api.port, "/submit", body)
            flask = _exchange_in_two_writes(api.port, "/submit?x=1", body)
            assert _same(fast) == _same(flask), body
        fast = _exchange_in_two_writes(api.port, "/submit", BODY, sent=10)
        flask = _exchange_in_two_writes(api.port, "/submit?x=1", BODY, sent=10)
        assert fast[0] == 408 and fast == flask
        assert json.loads(fast[2])["error"] == "request_timeout"


def test_a_plain_waiting_submit_skips_flasks_request_handling_too(redis_url, jobs, queue):
    """``POST /submit?wait=N``: stored marked waited, woken by the done message, answered 200 with
    the final document and ``Location`` (``jobs.waited_submit``, the view's own), and counted."""
    app, calls = app_counting_flask(redis_url)
    _call(app)
    before = app.test_client().get("/metrics").get_data(as_text=True)
    del calls[:]
    worker = run_jobs_in_thread(jobs, queue, count=2)  # the first submit's job, then this one
    answer = _call(app, "/submit?wait=10")
    worker.join(10)
    assert calls == [], "a plain waiting submit went through Flask's request handling"
    assert answer["status"] == "200 OK"
    doc = json.loads(answer["body"])
    assert doc["status"] == "complete" and doc["result"] == {"slept": 0}
    assert answer["headers"] == [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(answer["body"]))),
        ("Location", f"/status/{doc['job_id']}"),
        ("X-Content-Type-Options", "nosniff"),
        ("Cache-Control", "no-store"),
    ]
    after = app.test_client().get("/metrics").get_data(as_text=True)
    labels = {"route": "/submit", "method": "POST", "status": "200"}
    total = "jobqueue_http_requests_total"
    assert metric_value(after, total, labels) == (metric_value(before, total, labels) or 0) + 1


def test_through_gunicorn_a_waiting_submit_is_answered_alike_on_both_paths(tmp_path):
    """``?wait=N`` as sent (the fast path) and with ``x=1`` added (Flask's): the same status, headers
    and body, ids and times aside, for a job that finishes in the wait, one that does not, ``wait=0``,
    a wait past MAX_WAIT_SECONDS (capped), refused bodies, and with Redis stopped."""
    with redis_and_api(tmp_path, processes=1, MAX_WAIT_SECONDS="2") as (redis_server, api):
        jobs, queue = redis_server.client(), redis_server.client(db=1)
        _exchange(api.port, "/submit", BODY, {})
        worker = run_jobs_in_thread(jobs, queue, count=3, timeout=60)  # the first submit's job, then these
        answers = [_exchange(api.port, path, BODY, {}) for path in ("/submit?wait=10", "/submit?wait=10&x=1")]
        worker.join(60)
        assert answers[0][0] == 200 and json.loads(answers[0][2])["status"] == "complete"
        assert _same_job(answers[0]) == _same_job(answers[1])
        for query in ("wait=0", "wait=0.3", "wait=99999999"):
            for body, headers in CASES[2:]:
                fast = _exchange(api.port, f"/submit?{query}", body, headers)
                flask = _exchange(api.port, f"/submit?{query}&x=1", body, headers)
                assert _same_job(fast) == _same_job(flask), (query, body[:40], headers)
            fast = _exchange(api.port, f"/submit?{query}", BODY, {})
            flask = _exchange(api.port, f"/submit?{query}&x=1", BODY, {})
            assert fast[0] == 202 and _same_job(fast) == _same_job(flask), query
        redis_server.stop()
        fast = _exchange(api.port, "/submit?wait=1", BODY, {})
        flask = _exchange(api.port, "/submit?wait=1&x=1", BODY, {})
        assert fast[0] == 503 and _same(fast) == _same(flask)


def _same_job(answer):
    """An answer with the job's id and times masked (two jobs, one each path), so its length too."""
    status, headers, body = _same(answer)
    body = re.sub(rb'"(submitted_at|started_at|finished_at)":[0-9.e+-]+', b'"T":0', body)
    masked = [(k, "N" if k == "Content-Length" else re.sub(r"/status/.*", "/status/ID", v)) for k, v in headers]
    return status, masked, body


def test_through_gunicorn_a_stopping_process_answers_both_paths_waiting_submits_alike(tmp_path):
    """SIGTERM (shutdown.py): a waiting submit parked on either path answers at once 202 with its
    job's id, ``Location`` and ``Connection: close``; the job stays queued."""
    with redis_and_api(tmp_path, processes=1) as (redis_server, api):
        _exchange(api.port, "/submit", BODY, {})
        parked = [spawn(_exchange, api.port, path, BODY, {}) for path in ("/submit?wait=60", "/submit?wait=60&x=1")]

        def waiting() -> float:
            conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=30)
            conn.request("GET", "/metrics")
            return metric_value(conn.getresponse().read().decode(), "jobqueue_api_long_polls") or 0.0

        deadline = time.monotonic() + 30
        while waiting() != 2:
            assert time.monotonic() < deadline, "two parked submits"
            time.sleep(0.1)
        signalled = time.monotonic()
        api.proc.signal(signal.SIGTERM)
        answers = [future.result(timeout=30) for future in parked]
        assert time.monotonic() - signalled < 20
        queued = redis_server.client(db=1).lrange("jobs", 0, -1) or redis_server.client(db=1).keys("*")
    assert _same_job(answers[0]) == _same_job(answers[1])
    status, headers, body = answers[0]
    doc = json.loads(body)
    assert status == 202 and doc["status"] == "submitted"
    assert dict(headers)["Connection"] == "close" and dict(headers)["Location"] == f"/status/{doc['job_id']}"
    assert queued


def test_a_body_that_is_not_utf8_is_handed_to_flask_and_refused(redis_url):
    """A UTF-16 body was parsed (``json.loads`` guesses the encoding) and stored, 202, on the fast
    path as on Flask's; both now answer Flask's 400."""
    app, calls = app_counting_flask(redis_url)
    _call(app)
    answer = _call(app, "/submit", BODY.decode().encode("utf-16"))
    assert answer["status"].startswith("400") and b"not UTF-8" in answer["body"], answer
    assert calls == [1, 1]
