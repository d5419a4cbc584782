"""End to end through the real ``jobqueue-api`` (gunicorn, 2 processes, multiprocess metrics)."""

from __future__ import annotations

import gzip
import json
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from devstack.api_server import api_server
from devstack.paths import BIN
from devstack.procs import wait_http
from devstack.redis_server import RedisServer, find_redis_server
from jobqueue import keys
from jobqueue.connections import jobs_redis, queue_redis
from jobqueue.settings import load_settings

from tests.support.rawhttp import exchange, pipelined

from .support import metric_sum, metric_value, run_jobs_in_thread

API_DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"


@pytest.fixture(scope="module")
def redis_e2e(tmp_path_factory):
    if find_redis_server() is None:
        pytest.skip("no redis-server")
    server = RedisServer(tmp_path_factory.mktemp("redis-e2e")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def api(redis_e2e, tmp_path_factory):
    """A running jobqueue-api; yields (base_url, env, process, metrics dir)."""
    metrics_dir = tmp_path_factory.mktemp("api-metrics")
    (metrics_dir / "counter_999999.db").write_bytes(b"stale from a previous run")
    with api_server(
        redis_e2e.url, tmp_path_factory.mktemp("api"), stop_timeout=20, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir)
    ) as server:
        yield server.url, server.env, server.proc.popen, metrics_dir


@pytest.fixture
def redis_clients(api, redis_e2e):
    settings = load_settings({"REDIS_URL": redis_e2e.url})
    return jobs_redis(settings), queue_redis(settings)


def test_stale_metrics_are_wiped_at_start(api):
    _, _, _, metrics_dir = api
    assert not (metrics_dir / "counter_999999.db").exists()


def test_every_refusal_series_is_0_before_the_first_refusal(api):
    """``rate()``, jobqueue:http_refused:rate5m and JobQueueAPIRefusalsHigh need a series before
    the first refusal: a labelled counter had none until then. Every kind gunicorn refuses (the
    500s are no refusals) is on /metrics at 0 from the start, summed over both worker processes.
    Runs before this module's tests that send refusals (same server)."""
    from prometheus_client.parser import text_string_to_metric_families

    from jobqueue_api.errors import counted_refusals

    text = requests.get(api[0] + "/metrics").text
    series = {
        (sample.labels["status"], sample.labels["error"]): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "jobqueue_http_refused_total"
    }
    assert series == {(str(status), code): 0 for status, code in counted_refusals()}
    assert ("414", "uri_too_long") in series and ("400", "invalid_header") in series and len(series) == 13


def test_tutorial_client_flow(api, redis_clients):
    """The COE 332 client: POST /submit, then poll /status/<id> until complete."""
    base = api[0]
    worker = run_jobs_in_thread(*redis_clients, count=1, delay=0.2)
    response = requests.post(base + "/submit", json={"operation": "sleep", "params": {"seconds": 0}})
    assert response.status_code == 202
    job_id = response.json()["job_id"]
    deadline = time.monotonic() + 60
    while True:
        job = requests.get(f"{base}/status/{job_id}").json()
        if job["status"] == "complete" or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert job["status"] == "complete" and job["result"] == {"slept": 0.0}
    worker.join(5)


def test_long_poll_through_gunicorn(api, redis_clients):
    base = api[0]
    worker = run_jobs_in_thread(*redis_clients, count=1, delay=0.5)
    job_id = requests.post(base + "/jobs", json={"operation": "sleep"}).json()["job_id"]
    started = time.monotonic()
    job = requests.get(f"{base}/jobs/{job_id}", params={"wait": 20}).json()
    assert job["status"] == "complete" and time.monotonic() - started < 15
    worker.join(5)


def test_client_cli_submit_wait_and_status(api, redis_clients, tmp_path):
    base = api[0]
    worker = run_jobs_in_thread(*redis_clients, count=1, delay=0.1)
    done = subprocess.run(
        [str(BIN / "jobqueue"), "submit", "sleep", "seconds=0", "--wait", "--url", base],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"slept": 0.0}
    assert "complete" in done.stderr  # progress lines
    worker.join(5)
    job_id = done.stderr.split("submitted ", 1)[1].split()[0]
    status = subprocess.run(
        [str(BIN / "jobqueue"), "status", job_id, "--url", base], capture_output=True, text=True, timeout=60
    )
    assert status.returncode == 0 and json.loads(status.stdout)["status"] == "complete"
    bad = subprocess.run(
        [str(BIN / "jobqueue"), "submit", "sleep", "seconds=soon", "--url", base],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "'seconds' must be a number" in bad.stderr  # typed by its declaration


def test_python_client(api, redis_clients):
    from jobqueue.client import ApiError, Client

    api_client = Client(api[0])
    assert "sleep" in [op["name"] for op in api_client.operations()]
    worker = run_jobs_in_thread(*redis_clients, count=1)
    assert api_client.run("sleep", seconds=0, timeout=20) == {"slept": 0.0}
    worker.join(5)
    with pytest.raises(ApiError) as err:
        api_client.submit("nope")
    assert err.value.status == 400 and err.value.code == "unknown_operation"
    job_id = api_client.submit("sleep")
    assert api_client.cancel(job_id)["status"] == "cancelled"
    assert api_client.jobs(status="cancelled")[0]["job_id"] == job_id


def test_metrics_are_summed_across_workers_and_survive_a_dead_one(api):
    base, _, proc, metrics_dir = api
    labels = {"route": "/healthz", "method": "GET", "status": "200"}
    before = metric_sum(requests.get(base + "/metrics").text, "jobqueue_http_requests_total", labels)
    n = 60
    for _ in range(n):  # a new connection each time, so both workers serve some
        requests.get(base + "/healthz", headers={"Connection": "close"})
    text = requests.get(base + "/metrics").text
    assert metric_sum(text, "jobqueue_http_requests_total", labels) == before + n
    pids = {int(p.stem.split("_")[-1]) for p in metrics_dir.glob("counter_*.db")}
    assert len(pids) >= 2, pids  # both processes wrote their own file

    # kill one worker process: gunicorn replaces it, its counts stay in the sum
    children = [int(c) for c in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]
    os.kill(children[0], signal.SIGKILL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        now = [int(c) for c in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]
        if len(now) == 2 and children[0] not in now:
            break
        time.sleep(0.1)
    wait_http(base + "/healthz", proc)
    text = requests.get(base + "/metrics").text
    assert metric_sum(text, "jobqueue_http_requests_total", labels) >= before + n
    assert metric_value(text, "jobqueue_redis_up") == 1
    assert metric_value(text, "jobqueue_queue_depth", {"queue": "jobs"}) is not None


def test_head_of_a_status_is_its_get_without_the_body(api, redis_clients):
    """HEAD stays on Flask's path while GET of the same status is answered below it: the headers
    must still agree (length, type, caching), no body may follow, and the kept-alive connection
    must carry the next request (a body sent after a HEAD would be read as the next answer)."""
    import http.client
    from urllib.parse import urlsplit

    base = api[0]
    worker = run_jobs_in_thread(*redis_clients, count=1)
    job_id = requests.post(base + "/submit", json={"operation": "sleep", "params": {"seconds": 0}}).json()["job_id"]
    assert requests.get(f"{base}/status/{job_id}", params={"wait": 10}).json()["status"] == "complete"
    worker.join(5)
    url = urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    for path, status in (
        (f"/status/{job_id}", 200),
        (f"/jobs/{job_id}", 200),
        (f"/status/{'0' * 8}-0000-4000-8000-{'0' * 12}", 404),
    ):
        conn.request("GET", path)
        got = conn.getresponse()
        body = got.read()
        conn.request("HEAD", path)
        head = conn.getresponse()
        assert head.status == got.status == status and head.read() == b"", path
        for name in ("Content-Type", "Content-Length", "Cache-Control", "X-Content-Type-Options"):
            assert head.getheader(name) == got.getheader(name), (path, name)
        assert int(head.getheader("Content-Length")) == len(body)
    conn.request("GET", f"/status/{job_id}")  # the same connection, after the HEADs
    assert json.loads(conn.getresponse().read())["job_id"] == job_id
    conn.close()


def test_errors_are_json_through_gunicorn(api):
    base = api[0]
    response = requests.post(base + "/submit", data=b"x" * 70000, headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and response.json()["error"] == "request_entity_too_large"
    response = requests.get(base + "/nope")
    assert response.status_code == 404 and response.json()["error"] == "not_found"


@pytest.mark.parametrize("name,value", [("PORT", "eighty"), ("WEB_CONCURRENCY", "0"), ("MAX_WAIT_SECONDS", "-5")])
def test_bad_configuration_stops_start_up_naming_the_variable(name, value):
    done = subprocess.run(
        [str(BIN / "jobqueue-api")], env={**os.environ, name: value}, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2 and name in done.stderr


def test_chunked_body_over_the_limit_is_refused(api):
    """No Content-Length to check up front: the limit must hold while the body is read."""

    def chunks():
        yield b'{"operation": "sleep", "params": {"seconds": 0}, "pad": "'
        for _ in range(20):
            yield b"x" * 4096
        yield b'"}'

    response = requests.post(api[0] + "/submit", data=chunks(), headers={"Content-Type": "application/json"})
    assert response.status_code == 413 and response.json()["error"] == "request_entity_too_large"
    response = requests.post(
        api[0] + "/submit", data=iter([b'{"operation": ', b'"sleep"}']), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 202


@pytest.mark.parametrize(
    "chunks",
    [b"FFFFFFFF\r\nabc", b"8000\r\n" + b" " * 0x8000 + b"\r\n8001\r\nabc"],
    ids=["first-size", "sizes-added-up"],
)
def test_a_chunk_size_over_the_limit_is_refused_at_once(api, chunks):
    """A chunk-size line announcing more than MAX_BODY_BYTES (65536 here) was waited on until
    CLIENT_TIMEOUT_SECONDS (5 s) and answered 408; the size line says the body is too large."""
    head = b"POST /submit HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    started = time.monotonic()
    status, headers, rest = exchange(api[0], head + b"Transfer-Encoding: chunked\r\n\r\n" + chunks, timeout=3)
    assert status == 413 and headers["connection"] == "close", (status, headers)
    assert json.loads(rest)["error"] == "request_entity_too_large"
    assert time.monotonic() - started < 2


def test_gevent_patches_before_anything_imports_ssl(redis_e2e, tmp_path):
    """gevent patches ssl only if nothing imported it first; the settings check REDIS_URL with
    redis-py, which imports ssl, so the API warned "MonkeyPatchWarning ... ssl" at every start
    (and TLS connections to Redis used the unpatched module)."""
    with api_server(redis_e2e.url, tmp_path / "api", processes=1) as api:
        assert requests.get(api.url + "/healthz", timeout=10).status_code == 200
    log = api.proc.log_text()
    assert "MonkeyPatchWarning" not in log, log[-2000:]


def _raw_post(base_url: str, head_length: int, pieces: list[bytes], close_after: bool = False) -> tuple[int, dict]:
    """POST /submit over a bare socket: a Content-Length of ``head_length``, then ``pieces`` sent
    apart (and the sending side shut when ``close_after``); the status and the JSON body."""
    import socket
    from urllib.parse import urlsplit

    url = urlsplit(base_url)
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(
            f"POST /submit HTTP/1.1\r\nHost: {url.hostname}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {head_length}\r\nConnection: close\r\n\r\n".encode()
        )
        for piece in pieces:
            time.sleep(0.05)
            sock.sendall(piece)
        if close_after:
            sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def test_a_body_read_by_its_content_length_in_pieces_or_cut_short(api):
    """The submit body is read by its Content-Length straight from gunicorn's stream: a body that
    arrives in pieces is read whole (202), one that ends before its length is a JSON 400."""
    body = json.dumps({"operation": "sleep", "params": {"seconds": 0}}).encode()
    status, answer = _raw_post(api[0], len(body), [body[:10], body[10:30], body[30:]])
    assert status == 202 and answer["status"] == "submitted", answer
    status, answer = _raw_post(api[0], len(body) + 20, [body], close_after=True)
    assert status == 400 and answer["error"] == "invalid_body", answer


_POST = b"POST /submit HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"


@pytest.mark.parametrize(
    "request_bytes,status,code",
    [
        (_POST + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "invalid_header"),
        (_POST + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}", 400, "invalid_header"),
        (_POST + b"Transfer-Encoding: gzip\r\n\r\n", 400, "invalid_header"),
        (_POST.replace(b"1.1", b"1.0") + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "invalid_header"),
        (_POST + b"Transfer-Encoding: br\r\n\r\n", 501, "unsupported_transfer_coding"),
        (_POST + b"Expect: coffee\r\nContent-Length: 2\r\n\r\n{}", 417, "expectation_failed"),
        (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 414, "uri_too_long"),
        (b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431, None),
        (b"GET /healthz HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(120)) + b"\r\n", 431, None),
        # another major version: 505 (RFC 9110 section 15.6.6), where it was 400 like a malformed one
        (b"GET /healthz HTTP/9.9\r\nHost: 127.0.0.1\r\n\r\n", 505, "http_version_not_supported"),
        (b"GET /healthz HTTP/2.0\r\nHost: 127.0.0.1\r\n\r\n", 505, "http_version_not_supported"),
        (b"GET /healthz HTTP/0.9\r\nHost: 127.0.0.1\r\n\r\n", 505, "http_version_not_supported"),
        (b"GET /healthz HTTP/1.10\r\nHost: 127.0.0.1\r\n\r\n", 400, "invalid_http_version"),
        (b"GARBAGE\r\n\r\n", 400, "invalid_request_line"),
        (b"G@T /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 400, "invalid_method"),
        (b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Name: 1\r\n\r\n", 400, "invalid_header"),
        (b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: 1\r\n  folded\r\n\r\n", 400, "invalid_header"),
    ],
)
def test_requests_gunicorn_refuses_are_answered_in_json(api, request_bytes, status, code):
    """What gunicorn's parser refuses before the application sees it (a request smuggling Content-Length
    beside Transfer-Encoding, a request line or headers too long, a malformed line) gets the API's
    JSON error shape, not gunicorn's HTML page; the status is gunicorn's."""
    got, headers, body = exchange(api[0], request_bytes)
    assert got == status, body
    assert headers["content-type"] == "application/json" and headers["connection"] == "close"
    assert int(headers["content-length"]) == len(body) and headers["x-content-type-options"] == "nosniff"
    answer = json.loads(body)
    assert answer["error"] == (code or "request_header_fields_too_large") and answer["message"], answer
    assert b"<html" not in body


@pytest.mark.parametrize("coding", [b"chunked", b"gzip, chunked"])
def test_transfer_encoding_in_http_1_0_says_http_1_0_has_none(api, coding):
    """HTTP/1.0 with ``Transfer-Encoding: chunked`` is refused (RFC 9112 section 6.1): the 400 said
    "Transfer-Encoding must end in chunked", which it did. It now names the real fault."""
    request = _POST.replace(b"HTTP/1.1", b"HTTP/1.0") + b"Transfer-Encoding: " + coding + b"\r\n\r\n0\r\n\r\n"
    status, _, body = exchange(api[0], request)
    answer = json.loads(body)
    assert status == 400 and answer["header"] == "TRANSFER-ENCODING", answer
    assert answer["message"].startswith("HTTP/1.0 has no Transfer-Encoding") and "Content-Length" in answer["message"]


@pytest.mark.parametrize("path", ["/healthz", "/jobs?limit=1", "/submit"])
def test_a_higher_minor_version_is_served_as_http_1_1(api, path):
    """``HTTP/1.2`` (any 1.x above 1.1): processed as 1.1 and answered ``HTTP/1.1`` (RFC 9110 section
    2.5), on Flask's path and the fast path's submit, the connection kept alive for the next request.
    gunicorn echoed the client's "HTTP/1.2 200 OK", a version this server does not speak."""
    body = json.dumps({"operation": "sleep", "params": {"seconds": 0}}).encode() if path == "/submit" else b""
    head = f"{'POST' if body else 'GET'} {path} HTTP/1.2\r\nHost: 127.0.0.1\r\n"
    if body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    closing = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    where = urlsplit(api[0])
    answer = b""
    with socket.create_connection((where.hostname, where.port), timeout=10) as sock:
        sock.sendall((head + "\r\n").encode() + body + closing)
        while chunk := sock.recv(65536):
            answer += chunk
    lines = re.findall(rb"HTTP/\d\.\d \d{3} [A-Z ]+", answer)  # the status lines (a body runs into the next)
    assert lines == [b"HTTP/1.1 202 ACCEPTED" if body else b"HTTP/1.1 200 OK", b"HTTP/1.1 200 OK"], answer


@pytest.mark.parametrize("path", ["/healthz", "/jobs?limit=1", "/submit"])
@pytest.mark.parametrize("options", ["keep-alive, close", "Upgrade, close", "TE,CLOSE"])
def test_close_among_other_connection_options_closes(api, path, options):
    """``Connection: keep-alive, close`` asks the server to close after its answer (RFC 9112 section
    9.6), on Flask's path and the fast path's submit. gunicorn honoured "close" only alone: the answer
    said keep-alive and the connection stayed open until the client gave up (5 s idle here)."""
    body = json.dumps({"operation": "sleep", "params": {"seconds": 0}}).encode() if path == "/submit" else b""
    head = f"{'POST' if body else 'GET'} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: {options}\r\n"
    if body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    started = time.monotonic()
    status, headers, _ = exchange(api[0], (head + "\r\n").encode() + body, timeout=15)
    assert status == (202 if body else 200) and headers["connection"] == "close", headers
    assert time.monotonic() - started < 3  # closed with the answer, not at the idle timeout


def _request_line(length: int) -> bytes:
    """A GET whose request line (method, path, version; no CRLF) is ``length`` bytes."""
    line = b"GET /" + b"a" * (length - len(b"GET / HTTP/1.1")) + b" HTTP/1.1"
    assert len(line) == length
    return line + b"\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"


def _refused(base_url: str, request: bytes) -> tuple[int, dict]:
    """The status and JSON body of gunicorn's answer to ``request`` (its read may end in a reset:
    gunicorn closes with the rest of an over-long line unread)."""
    status, _, body = exchange(base_url, request)
    return status, json.loads(body)


def test_an_overlong_request_line_names_the_real_limit(api):
    """The 414 named the limit and then quoted gunicorn's "Request Line is too large (8192 > 4094)",
    whose first figure is the bytes gunicorn had buffered (its 8 KiB read) for any line longer than
    that, 20,000 bytes too: neither the line's length nor the limit. The message now states the
    limit alone, the one docs/api.md gives, and a line of exactly that length still reaches the app."""
    row = next(line for line in API_DOC.read_text().splitlines() if line.startswith("| 414 | `uri_too_long`"))
    documented = re.search(r"over ([0-9,]+) bytes", row).group(1)
    assert documented == "4,094", row
    limit = int(documented.replace(",", ""))
    status, body = _refused(api[0], _request_line(limit))
    assert status == 404, body  # gunicorn let it through: the app's unknown route
    for length in (limit + 1, 5000, 8192, 20000):
        status, body = _refused(api[0], _request_line(length))
        assert status == 414 and body["error"] == "uri_too_long", (length, body)
        assert f"over {documented} bytes" in body["message"], (length, body)
        assert not re.search(r"8,?192|\(\d+ > \d+\)", body["message"]), (length, body)


def test_refusals_are_counted_on_metrics(api):
    """Requests gunicorn refuses never reach the application (so not its request counter): they are
    counted by status and error code, summed over the worker processes like the other metrics."""
    base = api[0]
    refused = "jobqueue_http_refused_total"
    kinds = {
        ("400", "invalid_header"): _POST + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
        ("414", "uri_too_long"): b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    }
    before = {key: metric_sum(requests.get(base + "/metrics").text, refused, _labels(key)) for key in kinds}
    n = 6  # a connection each, so both worker processes answer some
    for request_bytes in kinds.values():
        for _ in range(n):
            assert exchange(base, request_bytes)[0] in (400, 414)
    text = requests.get(base + "/metrics").text
    for key in kinds:
        assert metric_sum(text, refused, _labels(key)) == before[key] + n, key


def _labels(key: tuple[str, str]) -> dict[str, str]:
    return {"status": key[0], "error": key[1]}


def test_a_request_gunicorn_accepts_is_answered_as_before(api):
    """The worker class's error path leaves a well-formed request alone: gunicorn's own answer."""
    got, headers, body = exchange(api[0], b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    assert got == 200 and json.loads(body) == {"status": "ok"} and headers["server"] == "gunicorn"


def test_every_refusal_gunicorn_defines_has_its_own_row():
    """A gunicorn upgrade that adds a kind of refusal would get the catch-all ``bad_request``: this
    names it, so its status and code are chosen (errors.SERVER_ERRORS) rather than defaulted."""
    import inspect

    from gunicorn.http import errors as gerr

    from jobqueue_api.errors import SERVER_ERRORS

    rows = [kinds for kinds, *_ in SERVER_ERRORS[:-1]]
    kinds = [c for _, c in inspect.getmembers(gerr, inspect.isclass) if issubclass(c, gerr.ParseException)]
    assert len(kinds) > 15, kinds
    missing = [c.__name__ for c in kinds if c is not gerr.ParseException and not any(issubclass(c, r) for r in rows)]
    assert not missing, missing


def test_an_application_error_gunicorn_answers_is_not_counted_as_a_refusal():
    """``jobqueue_http_refused_total`` counts requests refused before the application saw them
    (docs/metrics.md), and JobQueueAPIRefusalsHigh reads it as clients sending malformed requests.
    A response header gunicorn will not send (the application's, after Flask counted the request)
    or an error past Flask also reaches the worker's error path, as a 500: it was counted there as
    a refusal {status="500", error="internal_error"}. gunicorn's real worker class, on a socket pair."""
    import socket

    from gunicorn.config import Config
    from gunicorn.glogging import Logger
    from gunicorn.http import errors as gerr
    from gunicorn.workers.sync import SyncWorker

    from jobqueue_api.errors import json_errors
    from jobqueue_api.metrics import REFUSED

    cfg = Config()
    worker = json_errors(SyncWorker)(0, os.getpid(), [], None, 30, cfg, Logger(cfg))
    cases = [
        (gerr.InvalidResponseHeader("X-Bad"), 500, "internal_error", 0),
        (RuntimeError("a bug past Flask"), 500, "internal_error", 0),
        (gerr.LimitRequestLine(9000, 4094), 414, "uri_too_long", 1),
    ]
    for exc, status, code, counted in cases:
        before = REFUSED.labels(str(status), code)._value.get()
        ours, theirs = socket.socketpair()
        with ours, theirs:
            worker.handle_error(None, ours, ("127.0.0.1", 1), exc)
            assert theirs.recv(4096).startswith(f"HTTP/1.1 {status} ".encode()), exc
        assert REFUSED.labels(str(status), code)._value.get() - before == counted, exc


_CHUNKED = b"Host: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"


def test_an_answer_before_a_chunked_body_is_read_closes_the_connection(api):
    """A 405 is answered before the body is read; gunicorn then parsed the body's malformed chunk
    after it and wrote a second answer, 400 invalid_chunk, on the same connection (a pipelining
    client reads it as its next request's). Now the first answer closes the connection."""
    request = b"POST /status/00000000-0000-4000-8000-000000000000 HTTP/1.1\r\n" + _CHUNKED + b"zz\r\n"
    status, headers, rest = exchange(api[0], request)
    assert status == 405 and headers["connection"] == "close", headers
    assert b"HTTP/1.1 " not in rest, rest  # no second answer


def test_a_chunked_body_read_to_its_end_keeps_the_connection(api, redis_clients):
    body = b'{"operation": "top_locations", "params": {"n": 2}}'
    submit = b"POST /submit HTTP/1.1\r\n" + _CHUNKED + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    # pipelined: the second is read after the first's answer, on the same connection
    (first, headers, job), (second, _, _) = pipelined(api[0], submit + submit, 2)
    assert (first, second) == (202, 202) and headers["connection"] == "keep-alive"
    assert json.loads(job)["status"] == "submitted"


@pytest.mark.parametrize("coding", [b"gzip, chunked", b"deflate,chunked", b"compress, chunked", b"identity, chunked"])
@pytest.mark.parametrize("route", [b"/submit", b"/submit?wait=1", b"/jobs"])
def test_a_body_transfer_coded_other_than_chunked_is_refused_and_not_stored(api, redis_clients, route, coding):
    """gunicorn accepts gzip, deflate and compress before chunked but undoes only the chunking: the
    application got the body still compressed. A gzip body was 400 invalid_json ("not UTF-8 text"),
    and plain JSON labelled ``gzip, chunked`` was stored (202) as if the label were not there. Both
    are now the 501 gunicorn answers a coding it does not know (``br``), and nothing is stored.
    ``identity, chunked`` too: RFC 9112 has no identity coding, and it was a 202 beside the 501 of
    ``xchunked``."""
    plain = b'{"operation": "top_locations", "params": {"n": 2}}'
    queue = redis_clients[1]
    before = queue.llen(keys.queue("jobs"))
    for body in (plain, gzip.compress(plain)):
        head = b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" % route
        request = head + b"Transfer-Encoding: %s\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (coding, len(body), body)
        status, headers, rest = exchange(api[0], request)
        answer = json.loads(rest)
        assert status == 501 and answer["error"] == "unsupported_transfer_coding", answer
        assert answer["transfer_encoding"] == coding.decode() and headers["connection"] == "close"
    assert queue.llen(keys.queue("jobs")) == before


def test_long_polls_whose_clients_left_stop_waiting(api):
    """A long poll (``?wait=``) whose client closed its connection went on waiting, holding one of
    its process's MAX_WAITERS places and its socket, to the end of its wait: a client that opened
    a thousand ``?wait=60`` polls and closed them at once left every other client's polls answered
    at once, without waiting, for a minute. They now stop within the sweep's second or two, on
    both request paths (the plain poll below Flask, the others through it) and a waiting submit."""
    url = urlsplit(api[0])
    body = json.dumps({"operation": "sleep", "params": {"seconds": 0}}).encode()
    job_id = requests.post(api[0] + "/submit", data=body, headers={"Content-Type": "application/json"}).json()
    job_id = job_id["job_id"]  # no worker here: it stays submitted
    submit = b"POST /submit?wait=30 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    asks = [b"GET /status/%s?wait=30 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % job_id.encode()] * 8
    asks += [b"GET /jobs/%s/result?wait=30 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % job_id.encode()] * 4
    asks += [submit + b"Content-Length: %d\r\n\r\n%s" % (len(body), body)] * 4
    socks = []
    for ask in asks:
        sock = socket.create_connection((url.hostname, url.port), timeout=10)
        sock.sendall(ask)
        socks.append(sock)

    def waiting() -> float:
        return metric_sum(requests.get(api[0] + "/metrics", timeout=10).text, "jobqueue_api_long_polls")

    deadline = time.monotonic() + 10
    while waiting() < len(asks) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert waiting() == len(asks)
    for sock in socks:
        sock.close()
    closed = time.monotonic()
    while waiting() > 0 and time.monotonic() - closed < 10:
        time.sleep(0.2)
    assert waiting() == 0 and time.monotonic() - closed < 5, waiting()


def test_a_body_over_the_limit_is_refused_without_being_read(api):
    """A 413 is answered before the body's first byte; its answer said keep-alive, and gunicorn then
    read and threw away the whole announced body (here: waited for it until CLIENT_TIMEOUT_SECONDS,
    5 s). Now the answer closes the connection, and nothing more is read."""
    head = b"POST /submit HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    # a timeout under CLIENT_TIMEOUT_SECONDS: a server still waiting for the body times the read out
    status, headers, rest = exchange(api[0], head + b"Content-Length: 100000000\r\n\r\n", timeout=3)
    assert status == 413 and headers["connection"] == "close", headers
    assert b"HTTP/1.1 " not in rest, rest


def test_a_small_unread_body_keeps_the_connection(api):
    """A few bytes behind a 405 are cheap and safe for gunicorn to read: the connection stays."""
    bad = (
        b"POST /status/00000000-0000-4000-8000-000000000000 HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n\r\n{}"
    )
    health = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    (first, headers, _), (second, _, _) = pipelined(api[0], bad + health, 2)
    assert (first, second) == (405, 200) and headers["connection"] == "keep-alive"


def test_a_body_that_stops_half_way_is_answered_408_and_closed(api):
    """A Content-Length body that stops arriving gets 408 at CLIENT_TIMEOUT_SECONDS. That answer said
    ``Connection: keep-alive`` and gunicorn then closed the connection anyway (the rest of the body
    never came): a client keeping it met a reset on its next request. Now the 408 says close."""
    body = b'{"operation": "top_locations", "params": {"n": 2}}'
    status, headers, rest = exchange(api[0], _POST + b"Content-Length: %d\r\n\r\n" % len(body) + body[:10], timeout=15)
    assert status == 408 and headers["connection"] == "close", headers
    assert json.loads(rest)["error"] == "request_timeout"
