"""Which host a request is judged by against ``ALLOWED_HOSTS``, through the real gunicorn-served API,
on raw bytes (no client library sends these requests as written).

Before: an HTTP/1.1 request with no ``Host`` header was served (judged by the server's own address),
though RFC 9112 section 3.2 says a server MUST answer it 400; and a request whose target is in
absolute-form (``GET http://evil.example/jobs HTTP/1.1``) was judged by its ``Host`` header, though
RFC 9112 section 3.2.2 says the server MUST ignore Host then and use the target's authority, so
``Host: localhost`` let it past the allow-list under any name. Both on Flask's path and on the fast
paths below it (``fastpath.py``: ``POST /submit``, ``GET /status/<id>``), which trust the Guard's
remembered verdict on ``HTTP_HOST``."""

from __future__ import annotations

import json

import pytest
import requests

from jobqueue import keys
from jobqueue.connections import queue_redis
from jobqueue.settings import load_settings
from tests.support.rawhttp import exchange, pipelined

from .support import redis_and_api

BODY = json.dumps({"operation": "sleep", "params": {"seconds": 0}}).encode()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """One API process (so the fast paths' remembered Host and Content-Type verdicts are the ones the
    warm-up requests left) on its own Redis: yields (base_url, port, a client of the queue db)."""
    with redis_and_api(tmp_path_factory.mktemp("request-target"), processes=1) as (server, api):
        yield api.url, api.port, queue_redis(load_settings({"REDIS_URL": server.url}))


@pytest.fixture
def job_id(served):
    """A stored job, submitted the ordinary way; its submit and a status read of it also leave the
    fast paths' verdicts on Host 127.0.0.1 and application/json (so the requests below are ones the
    fast paths would take)."""
    base, _, _ = served
    answer = requests.post(base + "/submit", data=BODY, headers={"Content-Type": "application/json"}, timeout=10)
    assert answer.status_code == 202, answer.text
    job = answer.json()["job_id"]
    assert requests.get(f"{base}/status/{job}", timeout=10).status_code == 200
    return job


def _request(method: str, target: str, version: str = "1.1", host: str | None = None, body: bytes = b"") -> bytes:
    head = f"{method} {target} HTTP/{version}\r\n"
    if host is not None:
        head += f"Host: {host}\r\n"
    if body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return (head + "Connection: close\r\n\r\n").encode() + body


def _json(answer: tuple[int, dict[str, str], bytes]) -> dict:
    _, headers, body = answer
    assert headers["content-type"] == "application/json" and headers["x-content-type-options"] == "nosniff"
    return json.loads(body)


def _queued(queue) -> int:
    """Jobs waiting in the default lane (sleep's; no worker runs here)."""
    return queue.llen(keys.queue(load_settings({}).queue_name))


# Flask's path, the submit's fast path, the status read's fast path
ROUTES = ["jobs", "submit", "status"]


def _route(name: str, job: str) -> tuple[str, str, bytes, int]:
    """(method, path, body, the status it is served with)."""
    return {
        "jobs": ("GET", "/jobs?limit=1", b"", 200),
        "submit": ("POST", "/submit", BODY, 202),
        "status": ("GET", f"/status/{job}", b"", 200),
    }[name]


@pytest.mark.parametrize("route", ROUTES + ["healthz"])
def test_http11_without_host_is_400_missing_host(served, job_id, route):
    """On every path, the probes' too: a malformed request, not a question of the allow-list."""
    base, _, queue = served
    method, path, body, _ = ("GET", "/healthz", b"", 200) if route == "healthz" else _route(route, job_id)
    queued = _queued(queue)
    answer = exchange(base, _request(method, path, body=body))
    assert answer[0] == 400, answer
    error = _json(answer)
    assert error["error"] == "missing_host", error
    assert "Host header" in error["message"] and "RFC 9112" in error["message"]
    assert _queued(queue) == queued  # the submit stored nothing


@pytest.mark.parametrize("route", ROUTES)
def test_http11_without_host_but_with_an_absolute_target_is_still_400(served, job_id, route):
    """RFC 9112 section 3.2: every HTTP/1.1 request needs Host, whatever its target's form."""
    base, port, _ = served
    method, path, body, _ = _route(route, job_id)
    answer = exchange(base, _request(method, f"http://127.0.0.1:{port}{path}", body=body))
    assert answer[0] == 400 and _json(answer)["error"] == "missing_host", answer


@pytest.mark.parametrize("route", ROUTES)
def test_http10_without_host_is_judged_by_the_servers_address_or_its_targets_host(served, job_id, route):
    """HTTP/1.0 never required Host (RFC 1945): served as before, judged by the address the server
    listens on (127.0.0.1, in ALLOWED_HOSTS), as werkzeug's get_host falls back to SERVER_NAME;
    unless its target is in absolute-form: then the host it names is the one judged."""
    base, port, queue = served
    method, path, body, status = _route(route, job_id)
    answer = exchange(base, _request(method, path, version="1.0", body=body))
    assert answer[0] == status, answer
    answer = exchange(base, _request(method, f"http://127.0.0.1:{port}{path}", version="1.0", body=body))
    assert answer[0] == status, answer
    queued = _queued(queue)
    answer = exchange(base, _request(method, f"http://evil.example{path}", version="1.0", body=body))
    assert answer[0] == 400 and _json(answer)["error"] == "host_not_allowed", answer
    assert _queued(queue) == queued


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(
    "authority", ["evil.example", "evil.example:80", "rebind.attacker.example:5000", "u@127.0.0.1"]
)
def test_an_absolute_target_naming_a_foreign_host_is_refused_whatever_host_says(served, job_id, route, authority):
    base, port, queue = served
    method, path, body, _ = _route(route, job_id)
    for host in ("127.0.0.1", f"127.0.0.1:{port}", "localhost"):  # each allowed, and remembered as such
        queued = _queued(queue)
        answer = exchange(base, _request(method, f"http://{authority}{path}", host=host, body=body))
        assert answer[0] == 400, (host, answer)
        error = _json(answer)
        assert error["error"] == "host_not_allowed" and "absolute-form" in error["message"], error
        assert _queued(queue) == queued, host
    # the probes and /metrics stay exempt from the allow-list (kubelet and Prometheus use the pod IP)
    for probe in ("/healthz", "/metrics"):
        assert exchange(base, _request("GET", f"http://{authority}{probe}", host="127.0.0.1"))[0] == 200, probe


@pytest.mark.parametrize("route", ROUTES)
def test_an_absolute_target_naming_an_allowed_host_is_served_as_its_origin_form(served, job_id, route):
    base, port, queue = served
    method, path, body, status = _route(route, job_id)
    for authority in ("127.0.0.1", f"127.0.0.1:{port}", f"localhost:{port}", "LOCALHOST."):
        for host in ("127.0.0.1", "evil.example"):  # the Host header is ignored either way
            queued = _queued(queue)
            answer = exchange(base, _request(method, f"http://{authority}{path}", host=host, body=body))
            assert answer[0] == status, (authority, host, answer)
            origin = exchange(base, _request(method, path, host=authority, body=body))
            assert origin[0] == status, (authority, origin)
            if method == "GET":  # the same answer as the origin-form's
                assert _json(answer) == _json(origin)
            else:  # each stored its job
                assert _queued(queue) == queued + 2 and "job_id" in _json(answer)


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST", "OPTIONS"])
@pytest.mark.parametrize("rest", ["", "?x=1"])
def test_an_absolute_target_without_a_path_is_served_as_slash(served, method, rest):
    """``GET http://127.0.0.1:5000 HTTP/1.1``: the empty path is ``/`` (RFC 9110 section 4.2.3), so
    the answer is what ``/`` answers (200 and the help text, a 405 for a POST), not Flask's HTML 308
    to ``/``."""
    base, port, _ = served
    answer = exchange(base, _request(method, f"http://127.0.0.1:{port}{rest}", host=f"127.0.0.1:{port}"))
    origin = exchange(base, _request(method, f"/{rest}", host=f"127.0.0.1:{port}"))
    assert answer[0] == origin[0] == {"POST": 405, "OPTIONS": 204}.get(method, 200), (answer, origin)
    assert answer[2] == origin[2] and "location" not in answer[1], answer


@pytest.mark.parametrize(
    "target,param",
    [
        (b"/analysis/incidents_by_road?road=%ff", "road"),
        (b"/analysis/incidents_by_road?road=N%20LAMAR%C3", "road"),  # a character cut in half
        (b"/jobs?limit=1&operation=top%e9locations", "operation"),
        (b"/ui/jobs?operation=%ff", "operation"),
    ],
)
def test_a_query_parameter_that_is_not_utf8_is_400_naming_it(served, target, param):
    """``?road=%ff`` searched for the three characters "%FF" (werkzeug keeps undecodable bytes as
    their escape) and answered 200 with a count of 0: a garbled request answered as a real one."""
    base, _, _ = served
    raw = b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    answer = exchange(base, raw)
    assert answer[0] == 400, answer
    error = json.loads(answer[2])
    assert error["error"] == "invalid_param" and error["param"] == param, error
    assert "not UTF-8" in error["message"]


def test_a_query_in_utf8_is_served(served):
    base, _, _ = served
    answer = requests.get(base + "/analysis/incidents_by_road", params={"road": "Ñ LAMAR"}, timeout=10)
    assert answer.status_code == 200 and answer.json()["road"].upper() == "Ñ LAMAR", answer.text


@pytest.mark.parametrize("route", ROUTES + ["healthz"])
def test_a_websocket_upgrade_request_is_served_as_plain_http(served, job_id, route):
    """``Connection: Upgrade`` and ``Upgrade: websocket``: the API speaks no WebSocket and ignores
    the header (RFC 9110 section 7.8), as it does ``Upgrade: h2c``. It was a 400 "the browser (or
    proxy) sent a request that this server could not understand" on every route of Flask's path."""
    base, _, _ = served
    method, path, body, status = ("GET", "/healthz", b"", 200) if route == "healthz" else _route(route, job_id)
    request = _request(method, path, host="127.0.0.1", body=body)
    upgrade = request.replace(b"Connection: close\r\n", b"Connection: Upgrade, close\r\nUpgrade: websocket\r\n")
    upgrade = upgrade.replace(
        b"\r\n\r\n", b"\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", 1
    )
    answer = exchange(base, upgrade)
    assert answer[0] == status, answer
    assert "upgrade" not in answer[1].get("connection", "").lower() and "upgrade" not in answer[1]


def test_options_asterisk_answers_for_the_whole_server(served):
    """``OPTIONS * HTTP/1.1`` (RFC 9110 section 9.3.7, a client's "ping" of the server): 204 with
    every method some route takes, the connection kept for the next request. It was the 404 "no
    such route; GET /help lists them"."""
    base, _, _ = served
    ping = b"OPTIONS * HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    first, second = pipelined(base, ping + _request("GET", "/healthz", host="127.0.0.1"), 2)
    assert first[0] == 204 and first[2] == b"", first
    assert first[1]["allow"] == "DELETE, GET, HEAD, OPTIONS, POST", first[1]
    assert second[0] == 200, second
