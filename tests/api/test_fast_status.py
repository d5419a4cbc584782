"""The status read answered below Flask (``fastpath.py``): taken only for a plain ``GET /status/<id>``
or ``GET /jobs/<id>`` (no query, or one plain ``?wait=N``), and answering byte for byte what Flask's
path answers, with the same metrics; every other request and every error goes through Flask.

Through gunicorn each request is sent twice: as it is (the fast path when it applies) and with an
extra ``x=1`` in its query, which the status view ignores and which keeps it on Flask's path."""

from __future__ import annotations

import http.client
import json
import signal
import threading
import time

import pytest
from flask import request, url_for

from devstack.procs import free_port, wait_until
from jobqueue.jobs import JobStatus

from .support import app_counting_flask, finish, metric_value, redis_and_api, spawn, submit

UNKNOWN = "3f2b8c4e-1d2a-4b5c-9e8f-0a1b2c3d4e5f"
JOB = {"operation": "sleep", "params": {"seconds": 0}}


def _get(client, path, **kwargs):
    response = client.get(path, headers={"Host": "127.0.0.1"}, **kwargs)
    return response.status, list(response.headers.items()), response.get_data()


def test_a_plain_status_read_skips_flasks_request_handling_and_is_counted(redis_url, jobs):
    app, calls = app_counting_flask(redis_url)
    client = app.test_client()
    job_id = submit(client)  # the guards judge this Host once (Flask's path)
    finish(jobs, job_id, result={"slept": 0})
    flask = _get(client, f"/status/{job_id}?x=1")
    del calls[:]
    before = client.get("/metrics").get_data(as_text=True)
    del calls[:]
    fast = [_get(client, f"/status/{job_id}"), _get(client, f"/status/{job_id}?wait=5")]
    assert calls == [], "a plain status read went through Flask's request handling"
    assert _get(client, f"/jobs/{job_id}?wait=5") == flask and calls == []  # the view's other route
    for answer in fast:
        assert answer == flask
    status, headers, body = fast[0]
    assert status == "200 OK"
    assert [name for name, _ in headers] == [
        "Content-Type",
        "Content-Length",
        "X-Content-Type-Options",
        "Cache-Control",
    ]
    doc = json.loads(body)
    assert doc["status"] == "complete" and doc["result"] == {"slept": 0}
    assert doc["result_url"] == f"/jobs/{job_id}/result"
    after = client.get("/metrics").get_data(as_text=True)
    labels = {"route": "/status/<job_id>", "method": "GET", "status": "200"}
    total = "jobqueue_http_requests_total"
    assert metric_value(after, total, labels) == metric_value(before, total, labels) + 2
    count = "jobqueue_http_request_duration_seconds_count"
    route = {"route": "/status/<job_id>", "method": "GET"}
    assert metric_value(after, count, route) == metric_value(before, count, route) + 2


@pytest.mark.parametrize(
    "path, headers",
    [
        ("/status/{id}?wait=", {}),
        ("/status/{id}?wait=1e1", {}),
        ("/status/{id}?wait=1&wait=2", {}),
        ("/status/{id}?x=1", {}),
        ("/status/{id}/", {}),
        ("/status/NOT-AN-ID", {}),
        ("/jobs/{id}/result", {}),
        ("/jobs", {}),
        ("/status/{id}", {"Host": "evil.example"}),
        ("/status/{id}", {"Content-Length": "0"}),
    ],
)
def test_anything_else_goes_through_flask(redis_url, path, headers):
    app, calls = app_counting_flask(redis_url)
    client = app.test_client()
    job_id = submit(client)
    del calls[:]
    client.get(path.format(id=job_id), headers={"Host": "127.0.0.1", **headers})
    client.head(f"/status/{job_id}", headers={"Host": "127.0.0.1"})
    assert calls == [1, 1]


def test_with_tokens_only_a_read_with_a_known_bearer_token_skips_flask(redis_url):
    """(test_fast_tokens.py compares the answers of both paths with named tokens.)"""
    app, calls = app_counting_flask(redis_url, API_TOKEN="s3cret")
    client = app.test_client()
    auth = {"Host": "127.0.0.1", "Authorization": "Bearer s3cret"}
    job_id = client.post("/submit", json=JOB, headers=auth).get_json()["job_id"]
    del calls[:]
    assert client.get(f"/status/{job_id}", headers=auth).status_code == 200
    assert client.get(f"/status/{job_id}", headers={"Host": "127.0.0.1"}).status_code == 401
    assert calls == [1]  # the 401: the read with the token was answered below Flask


def test_the_result_url_written_is_url_fors(app):
    """``jobs.RESULT_PATH`` is what ``url_for`` builds for the result route, under a mount point too."""
    from jobqueue_api.routes.jobs import RESULT_PATH

    for root in ("", "/class/jq"):
        with app.test_request_context("/", base_url=f"http://localhost{root}/"):
            assert request.script_root == root
            assert url_for("jobs.job_result", job_id=UNKNOWN) == root + RESULT_PATH.format(UNKNOWN)


def _exchange(port: int, path: str, method: str = "GET", headers: dict | None = None) -> tuple:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request(method, path, headers=headers or {})
    response = conn.getresponse()
    answer = response.status, [(k, v) for k, v in response.getheaders() if k != "Date"], response.read()
    conn.close()
    return answer


def _both(port: int, path: str, method: str = "GET", headers: dict | None = None) -> tuple:
    """The answer as sent, and the same request kept on Flask's path (``x=1`` added)."""
    flask_path = path + ("&" if "?" in path else "?") + "x=1"
    return _exchange(port, path, method, headers), _exchange(port, flask_path, method, headers)


def _submit(port: int, prefix: str = "") -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", prefix + "/submit", body=json.dumps(JOB), headers={"Content-Type": "application/json"})
    job_id = json.loads(conn.getresponse().read())["job_id"]
    conn.close()
    return job_id


def test_through_gunicorn_both_paths_answer_alike(tmp_path):
    """Every kind of status read: queued, complete, failed, unknown, a bad id, ``?wait=`` at its
    bounds and beyond them, HEAD, a conditional request, a Host not allowed; then Redis stopped."""
    with redis_and_api(tmp_path, processes=1, MAX_WAIT_SECONDS="2", ALLOWED_HOSTS="127.0.0.1,localhost") as (
        redis_server,
        api,
    ):
        jobs = redis_server.client()  # the jobs database (REDIS_JOBS_DB 0)
        port = api.port
        queued, done, failed = (_submit(port) for _ in range(3))
        finish(jobs, done, result={"top": [1, 2.5, "é"]})
        finish(jobs, failed, status=JobStatus.FAILED, error="boom")
        cases = [
            (f"/status/{job}{query}", "GET", {})
            for job in (queued, done, failed, UNKNOWN, "nope")
            for query in ("", "?wait=0", "?wait=0.2", "?wait=99999")
        ]
        cases += [(f"/jobs/{job}{query}", "GET", {}) for job in (done, UNKNOWN) for query in ("", "?wait=1")]
        cases += [(f"/status/{done}?wait={bad}", "GET", {}) for bad in ("-1", "", "x", "nan", "1e400")]
        cases += [
            (f"/status/{done}", "HEAD", {}),
            (
                f"/status/{done}",
                "GET",
                {"If-None-Match": '"abc"', "If-Modified-Since": "Mon, 30 Nov 2026 00:00:00 GMT"},
            ),
            (f"/status/{done}", "GET", {"Accept": "text/html", "Prefer": "wait=1"}),
            (f"/status/{done}", "GET", {"Host": "evil.example"}),
        ]
        for path, method, headers in cases:
            fast, flask = _both(port, path, method, headers)
            assert fast == flask, (path, method, headers)
        status, _, body = _exchange(port, f"/status/{done}")
        assert status == 200 and json.loads(body)["result"] == {"top": [1, 2.5, "é"]}
        assert _exchange(port, f"/status/{UNKNOWN}")[0] == 404
        started = time.monotonic()
        assert json.loads(_exchange(port, f"/status/{queued}?wait=99999")[2])["status"] == "submitted"
        assert 1.5 < time.monotonic() - started < 30  # capped at MAX_WAIT_SECONDS
        redis_server.stop()
        fast, flask = _both(port, f"/status/{done}")
        assert fast[0] == 503 and fast == flask


def test_through_gunicorn_a_job_finishing_during_the_wait_is_answered_alike(tmp_path):
    with redis_and_api(tmp_path, processes=1) as (redis_server, api):
        jobs = redis_server.client()
        job_id = _submit(api.port)
        fast = spawn(_exchange, api.port, f"/status/{job_id}?wait=20")
        flask = spawn(_exchange, api.port, f"/status/{job_id}?wait=20&x=1")
        time.sleep(0.5)
        assert not fast.done() and not flask.done()
        finish(jobs, job_id, result={"slept": 0})
        assert fast.result(timeout=15) == flask.result(timeout=15)
        status, _, body = fast.result()
        assert status == 200 and json.loads(body)["status"] == "complete"


def test_under_a_mount_point_the_result_url_is_alike_on_both_paths(redis_url, jobs):
    """``SCRIPT_NAME`` (an Ingress path prefix, as gunicorn passes it): ``result_url`` carries it."""
    app, calls = app_counting_flask(redis_url)
    client = app.test_client()
    base = "http://127.0.0.1/class/jq/"
    job_id = submit(client)
    finish(jobs, job_id, result={"slept": 0})
    flask = _get(client, f"/status/{job_id}?x=1", base_url=base)
    del calls[:]
    fast = _get(client, f"/status/{job_id}?wait=1", base_url=base)
    assert calls == [] and fast == flask
    assert json.loads(fast[2])["result_url"] == f"/class/jq/jobs/{job_id}/result"


def test_through_gunicorn_metrics_count_both_paths_alike(tmp_path):
    """The fast path's answers are counted and timed under the status route's labels; on the
    metrics port (API_METRICS_PORT) a status read is still Flask's 404."""
    metrics_port = free_port()
    with redis_and_api(tmp_path, processes=1, API_METRICS_PORT=str(metrics_port)) as (_, api):
        job_id = _submit(api.port)
        host = {"Host": "localhost"}  # one Host for both ports: its verdict is remembered
        answers = [_exchange(api.port, f"/status/{job_id}{q}", headers=host) for q in ("", "?wait=0", "?x=1") * 2]
        answers += [_exchange(api.port, f"/status/{UNKNOWN}", headers=host) for _ in range(2)]
        by_jobs = [_exchange(api.port, f"/jobs/{job_id}{q}", headers=host) for q in ("", "?x=1")]
        on_metrics = [_exchange(metrics_port, f"/status/{job_id}", headers=host) for _ in range(2)]
        text = _exchange(metrics_port, "/metrics")[2].decode()
    assert [a[0] for a in answers] == [200] * 6 + [404] * 2 and [a[0] for a in on_metrics] == [404, 404]
    route = {"route": "/status/<job_id>", "method": "GET"}
    assert metric_value(text, "jobqueue_http_requests_total", {**route, "status": "200"}) == 6
    # the unknown job's two, and the two refused on the metrics port (counted, not timed: hooks.py)
    assert metric_value(text, "jobqueue_http_requests_total", {**route, "status": "404"}) == 4
    assert metric_value(text, "jobqueue_http_request_duration_seconds_count", route) == 8
    assert by_jobs[0] == by_jobs[1] and by_jobs[0][0] == 200
    jobs_route = {"route": "/jobs/<job_id>", "method": "GET"}
    assert metric_value(text, "jobqueue_http_requests_total", {**jobs_route, "status": "200"}) == 2
    assert metric_value(text, "jobqueue_http_request_duration_seconds_count", jobs_route) == 2


def test_through_gunicorn_a_stopping_process_answers_both_paths_parked_polls_alike(tmp_path):
    """SIGTERM (shutdown.py): a long poll parked on either path answers at once with the job's
    current document and ``Connection: close``."""
    with redis_and_api(tmp_path, processes=1) as (_, api):
        job_id = _submit(api.port)
        fast = spawn(_exchange, api.port, f"/status/{job_id}?wait=60")
        flask = spawn(_exchange, api.port, f"/status/{job_id}?wait=60&x=1")
        polls = "jobqueue_api_long_polls"
        wait_until(
            lambda: metric_value(_exchange(api.port, "/metrics")[2].decode(), polls) == 2, 30, "two parked polls"
        )
        signalled = time.monotonic()
        api.proc.signal(signal.SIGTERM)
        answers = fast.result(timeout=30), flask.result(timeout=30)
        assert time.monotonic() - signalled < 20
    assert answers[0] == answers[1]
    status, headers, body = answers[0]
    assert status == 200 and dict(headers)["Connection"] == "close"
    assert json.loads(body)["status"] == "submitted"


@pytest.mark.slow
def test_through_gunicorn_a_hung_redis_is_answered_alike(tmp_path):
    """Redis stopped with SIGSTOP: a status read on either path is Flask's JSON 503 within
    REDIS_TIMEOUT_SECONDS, and a long poll too; both recover when Redis does."""
    with redis_and_api(tmp_path, processes=1, REDIS_TIMEOUT_SECONDS="2") as (redis_server, api):
        job_id = _submit(api.port)
        _both(api.port, f"/status/{job_id}")
        redis_server.proc.send_signal(signal.SIGSTOP)
        try:
            results: dict[str, tuple] = {}

            def read(name, path):
                started = time.monotonic()
                results[name] = (_exchange(api.port, path), time.monotonic() - started)

            threads = [
                threading.Thread(target=read, args=(name, path))
                for name, path in {
                    "fast": f"/status/{job_id}",
                    "flask": f"/status/{job_id}?x=1",
                    "fast-wait": f"/status/{job_id}?wait=1",
                    "flask-wait": f"/status/{job_id}?wait=1&x=1",
                }.items()
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)
        finally:
            redis_server.proc.send_signal(signal.SIGCONT)
        for name, (answer, took) in results.items():
            assert answer[0] == 503 and json.loads(answer[2])["error"] == "redis_unavailable", (name, answer)
            assert took < 2 + 4, (name, took)
        assert results["fast"][0] == results["flask"][0] and results["fast-wait"][0] == results["flask-wait"][0]
        wait_until(lambda: _exchange(api.port, f"/status/{job_id}")[0] == 200, 60, "recovered")
        fast, flask = _both(api.port, f"/status/{job_id}")
        assert fast == flask and fast[0] == 200
