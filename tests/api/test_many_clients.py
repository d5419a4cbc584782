"""Many waiting or slow clients against the real ``jobqueue-api`` (gunicorn, 2 processes, defaults).

Issue 11: 1,000 ``GET /status/<id>?wait=20`` long polls open, ``/help`` and ``POST /submit`` still
answer with p99 <= 100 ms. Issue 14 item 1: 200 connections that sent part of their headers and
went silent do not stop ``/healthz`` or ``POST /submit`` (each within 1 s), and the server closes
them within ``CLIENT_TIMEOUT_SECONDS``; a body that stops half way gets a 408 within it too.
Under the old gthread worker (2 x 32 threads) each of these held a thread: the first test timed
out on ``/help``, the second on ``/healthz``. The figures are printed (``pytest -s``).

Latency on a shared 2-core machine is noisy, so the bound is checked on up to three rounds of 200
requests after a warm-up, and passes when one round meets it; every round's figures are printed.
"""

from __future__ import annotations

import http.client
import json
import resource
import selectors
import socket
import time

import pytest

from devstack.api_server import api_server
from devstack.redis_server import RedisServer, find_redis_server
from jobqueue.connections import jobs_redis
from jobqueue.settings import load_settings

from .support import finish, metric_sum

WAITERS = 1000
SLOW_CLIENTS = 200
CLIENT_TIMEOUT = 5  # the default CLIENT_TIMEOUT_SECONDS
P99_BOUND_MS = 100.0
POLL_WAIT = 60


@pytest.fixture(scope="module", autouse=True)
def _enough_file_descriptors():
    """1,000 client sockets here and as many in the server: lift a 1,024 soft limit (children
    inherit it) as far as the hard limit allows."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 8192 if hard == resource.RLIM_INFINITY else min(8192, hard)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    if wanted < 2 * WAITERS + 200:
        pytest.skip(f"file descriptor limit {hard} too low for {WAITERS} connections")
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture(scope="module")
def stack(tmp_path_factory, _enough_file_descriptors):
    if find_redis_server() is None:
        pytest.skip("no redis-server")
    redis_server = RedisServer(tmp_path_factory.mktemp("redis-many"), appendonly=False).start()
    try:
        # the defaults of MAX_WAITERS, CLIENT_TIMEOUT_SECONDS and API_TOKEN are what is tested
        with api_server(
            redis_server.url,
            tmp_path_factory.mktemp("api-many"),
            MAX_WAITERS=None,
            CLIENT_TIMEOUT_SECONDS=None,
            API_TOKEN=None,
        ) as api:
            yield api.port, jobs_redis(load_settings({"REDIS_URL": redis_server.url}))
    finally:
        redis_server.stop()


def _request(port: int, method: str, path: str, body: bytes | None = None, timeout: float = 5.0):
    """One request on a fresh connection (as curl makes them); returns (status, body, seconds)."""
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        headers = {"Connection": "close"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        return response.status, data, time.perf_counter() - started
    finally:
        conn.close()


SUBMIT = json.dumps({"operation": "sleep", "params": {"seconds": 0}}).encode()


def _submit(port: int) -> str:
    status, body, _ = _request(port, "POST", "/submit", SUBMIT)
    assert status == 202, body
    return json.loads(body)["job_id"]


def _long_polls(stack_port: int) -> float:
    status, body, _ = _request(stack_port, "GET", "/metrics")
    assert status == 200
    return metric_sum(body.decode(), "jobqueue_api_long_polls")


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000  # noqa: E731
    return {"p50_ms": round(pick(0.50), 1), "p99_ms": round(pick(0.99), 1), "max_ms": round(ordered[-1] * 1000, 1)}


def _open(port: int, payload: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(payload)
    return sock


def test_a_thousand_long_polls_leave_help_and_submit_fast(stack):
    port, jobs = stack
    job_id = _submit(port)  # no worker runs: it stays submitted and every poll waits
    # the polls wait as long as the API lets them (MAX_WAIT_SECONDS' default, 60 s): the measurement below
    # must end while they still wait, and at load 8 it took 38 s
    request = f"GET /status/{job_id}?wait={POLL_WAIT} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    opened = time.monotonic()
    polls = [_open(port, request) for _ in range(WAITERS)]
    try:
        deadline = time.monotonic() + 60
        while _long_polls(port) < WAITERS and time.monotonic() < deadline:
            time.sleep(0.2)
        held = _long_polls(port)
        assert held == WAITERS, f"only {held} of {WAITERS} long polls are waiting"

        for _ in range(30):  # warm-up: connections, code paths, both processes
            _request(port, "GET", "/help")
            _request(port, "POST", "/submit", SUBMIT)
        rounds = []
        for _ in range(3):
            help_times, submit_times = [], []
            for _ in range(200):
                status, _, seconds = _request(port, "GET", "/help")
                assert status == 200
                help_times.append(seconds)
                status, _, seconds = _request(port, "POST", "/submit", SUBMIT)
                assert status == 202
                submit_times.append(seconds)
            rounds.append(
                {"help": _percentiles(help_times), "submit": _percentiles(submit_times), "waiting": _long_polls(port)}
            )
            if max(rounds[-1]["help"]["p99_ms"], rounds[-1]["submit"]["p99_ms"]) <= P99_BOUND_MS:
                break
        print(f"\n{WAITERS} long polls open ({time.monotonic() - opened:.1f} s in): {json.dumps(rounds)}")
        assert time.monotonic() - opened < POLL_WAIT, "the measurement outlasted the polls' wait"
        assert all(r["waiting"] == WAITERS for r in rounds), "long polls ended during the measurement"
        best = min(max(r["help"]["p99_ms"], r["submit"]["p99_ms"]) for r in rounds)
        assert best <= P99_BOUND_MS, rounds

        # one publish wakes all of them at once, through one subscriber per process
        finish(jobs, job_id, result={"slept": 0.0})
        woken = time.monotonic()
        answered = 0
        for sock in polls:
            sock.settimeout(10)
            data = b""
            while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
            assert data.startswith(b"HTTP/1.1 200") and b'"status":"complete"' in data, data[:300]
            answered += 1
        print(f"all {answered} long polls answered {time.monotonic() - woken:.2f} s after the publish")
    finally:
        for sock in polls:
            sock.close()


def _closed_within(socks: list[socket.socket], timeout: float) -> tuple[int, float, list[bytes]]:
    """Wait until the server closes each socket; (how many it closed, when the last one was
    closed, what it sent before closing)."""
    selector = selectors.DefaultSelector()
    for sock in socks:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ, bytearray())
    started, last, closed, sent = time.monotonic(), 0.0, 0, []
    while closed < len(socks) and time.monotonic() - started < timeout:
        for key, _ in selector.select(timeout=0.5):
            try:
                chunk = key.fileobj.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if chunk:
                key.data.extend(chunk)
                continue
            selector.unregister(key.fileobj)
            closed += 1
            last = time.monotonic() - started
            sent.append(bytes(key.data))
    selector.close()
    return closed, last, sent


def test_silent_partial_headers_neither_block_nor_linger(stack):
    port, _ = stack
    started = time.monotonic()
    slow = [_open(port, b"GET /jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ") for _ in range(SLOW_CLIENTS)]
    half_bodies = [
        _open(
            port,
            b"POST /submit HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"operation"',
        )
        for _ in range(20)
    ]
    try:
        time.sleep(0.5)  # they are all in the server now
        figures = {}
        for name, method, path, body, ok in (
            ("healthz", "GET", "/healthz", None, 200),
            ("submit", "POST", "/submit", SUBMIT, 202),
        ):
            times = []
            for _ in range(20):
                status, _, seconds = _request(port, method, path, body, timeout=1.0)
                assert status == ok
                times.append(seconds)
            figures[name] = _percentiles(times)
        assert max(f["max_ms"] for f in figures.values()) < 1000, figures

        closed, last, _ = _closed_within(slow, CLIENT_TIMEOUT + 5)
        opened_for = time.monotonic() - started
        print(
            f"\n{SLOW_CLIENTS} silent partial-header connections: {json.dumps(figures)}; "
            f"server closed {closed} of them, the last {last:.1f} s after the check began "
            f"(CLIENT_TIMEOUT_SECONDS={CLIENT_TIMEOUT}; {opened_for:.1f} s after opening)"
        )
        assert closed == SLOW_CLIENTS
        assert opened_for <= CLIENT_TIMEOUT + 5

        closed, last, sent = _closed_within(half_bodies, CLIENT_TIMEOUT + 5)
        print(
            f"20 half-sent bodies: {closed} closed, the last after {last:.1f} s; "
            f"statuses {sorted({s.split(b' ', 2)[1].decode() for s in sent if s})}"
        )
        assert closed == 20 and all(s.startswith(b"HTTP/1.1 408") for s in sent), sent[:2]
    finally:
        for sock in slow + half_bodies:
            sock.close()


def test_a_client_that_reads_none_of_its_answers_is_closed(stack):
    """300 pipelined requests for a big answer, and nothing read: the server used to block on the
    first answer that did not fit for as long as the client stayed (55 s seen), one connection slot
    held. Now a write that waits CLIENT_TIMEOUT_SECONDS for room ends the connection: reading after
    that gets what was already on its way, then the end, never the 300 answers."""
    port, _ = stack
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting: a small window
    sock.settimeout(10)
    try:
        sock.connect(("127.0.0.1", port))
        sock.sendall(b"GET /openapi.json HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" * 300)
        time.sleep(CLIENT_TIMEOUT + 3)
        received, ended = bytearray(), False
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(1 << 20)
            except ConnectionResetError:
                chunk = b""
            except TimeoutError:
                break
            if not chunk:
                ended = True
                break
            received += chunk
        answers = received.count(b"HTTP/1.1 200")
        assert ended and answers < 300, f"{answers} answers, {len(received)} bytes, connection ended: {ended}"
    finally:
        sock.close()


def test_random_methods_and_paths_leave_metrics_bounded(stack):
    """Issue 14 item 3: every label comes from a fixed set. 3,000 requests with random method
    names (any uppercase token passes gunicorn) and random paths add no series after the first
    of their kind; before, each new method name added ~20 series (3,000 -> 61,208 lines)."""
    import random
    import uuid

    from jobqueue_api.metrics import METHODS

    port, _ = stack
    rng = random.Random(14)
    paths = [
        "/submit",
        "/jobs",
        "/help",
        "/status/{uuid}",
        "/analysis/{word}",
        "/{word}",
        "/{word}/{word}",
        "/jobs/{uuid}/result",
        "/download/{word}",
    ]

    def word() -> str:
        return "".join(rng.choice("abcxyz_-0189") for _ in range(rng.randint(1, 30)))

    def send(conn: http.client.HTTPConnection, method: str, template: str) -> int:
        conn.request(method, template.format(uuid=uuid.uuid4(), word=word()), headers={"Content-Length": "0"})
        response = conn.getresponse()
        response.read()
        return response.status

    def random_request(conn: http.client.HTTPConnection) -> int:
        method = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(rng.randint(3, 12)))
        if rng.random() < 0.2:
            method = rng.choice(sorted(METHODS))
        return send(conn, method, rng.choice(paths))

    def metrics_lines() -> set[str]:
        status, body, _ = _request(port, "GET", "/metrics")
        assert status == 200
        return {line.rsplit(" ", 1)[0] for line in body.decode().splitlines() if line and not line.startswith("#")}

    conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=10) for _ in range(4)]
    for template in paths:  # the first request of each kind may add its series from the fixed set
        for method in sorted(METHODS) + ["XQWERTY"]:
            send(conns[0], method, template)
    metrics_lines()  # the scrape itself is counted from the next one on
    before = metrics_lines()
    statuses: dict[int, int] = {}
    for i in range(3000):
        status = random_request(conns[i % len(conns)])
        statuses[status] = statuses.get(status, 0) + 1
    after = metrics_lines()
    for conn in conns:
        conn.close()
    print(
        f"\n3,000 random-method/random-path requests {dict(sorted(statuses.items()))}: "
        f"/metrics {len(before)} -> {len(after)} series"
    )
    assert len(after - before) <= 5, sorted(after - before)[:40]


def _raw(port: int, data: bytes, shut: bool = False, timeout: float = CLIENT_TIMEOUT + 5) -> bytes:
    """Send bytes as they are; return what the server answers before it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        if shut:
            sock.shutdown(socket.SHUT_WR)
        out = b""
        try:
            while chunk := sock.recv(65536):
                out += chunk
                if b"\r\n\r\n" in out and out.rstrip().endswith(b"}"):
                    break
        except (TimeoutError, ConnectionResetError):
            pass
        return out


def test_malformed_chunked_bodies_are_client_errors_not_500s(stack):
    """Issue 14 item 7 (review L1): a bad chunk size was a logged 500, a truncated chunked body a
    500 with a traceback (both fed the 5xx-ratio alert)."""
    port, _ = stack
    head = (
        b"POST /submit HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
    )
    bad_size = _raw(port, head + b"Connection: close\r\n\r\nzz\r\n{}\r\n0\r\n\r\n")
    assert bad_size.startswith(b"HTTP/1.1 400") and b'"invalid_body"' in bad_size, bad_size[:300]
    assert b"a chunk size is not a hexadecimal number" in bad_size, bad_size[:300]
    # a 10 KB trailer: the message named gunicorn's class, "LimitRequestHeaders"
    trailer = b"".join(b"X-T%d: %s\r\n" % (i, b"a" * 90) for i in range(110))
    big_trailer = _raw(port, head + b"Connection: close\r\n\r\n2\r\n{}\r\n0\r\n" + trailer + b"\r\n")
    assert big_trailer.startswith(b"HTTP/1.1 400") and b"chunked trailer is too large" in big_trailer, big_trailer[:300]
    assert b"LimitRequestHeaders" not in big_trailer
    for _ in range(5):  # cut short: the client leaves half way through a chunk
        _raw(port, head + b'\r\n10\r\n{"operation"', shut=True)
    huge = _raw(port, head + b'\r\nffffffffffffffff\r\n{"operation"')
    # a chunk larger than MAX_BODY_BYTES: 413 from its size line (it was the 408 of a body never sent)
    assert huge.startswith(b"HTTP/1.1 413") and b'"request_entity_too_large"' in huge, huge[:300]
    _, body, _ = _request(port, "GET", "/metrics")
    errors = sum(
        metric_sum(body.decode(), "jobqueue_http_requests_total", {"status": code})
        for code in ("500", "502", "503", "504")
    )
    print(
        f"\nbad chunk size -> {bad_size.split(b' ', 2)[1].decode()}; 5 truncated bodies, huge chunk -> "
        f"{huge.split(b' ', 2)[1].decode()}; 5xx counted: {errors:g}"
    )
    assert errors == 0


def test_synchronous_plots_are_capped_and_cached(stack):
    """Issue 14 item 6: 32 concurrent uncached sync plots took p50 24 s and +240 MB per process.
    Now at most SYNC_PLOTS_PER_PROCESS (2) render per process; the rest get 503 + Retry-After at
    once, and a repeat of a drawn plot is served from the cache."""
    import threading

    port, _ = stack
    barrier = threading.Barrier(16)
    results: list[tuple[int, bytes, float, str]] = []

    def one(n: int) -> None:
        barrier.wait()
        started = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            conn.request("GET", f"/analysis/plot_top_locations?n={n}", headers={"Connection": "close"})
            response = conn.getresponse()
            body = response.read()
            results.append(
                (response.status, body, time.perf_counter() - started, response.getheader("Retry-After") or "")
            )
        except Exception as exc:  # reported by the assertion below
            results.append((0, repr(exc).encode(), time.perf_counter() - started, ""))
        finally:
            conn.close()

    threads = [threading.Thread(target=one, args=(35 + i,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    drawn = [r for r in results if r[0] == 200]
    refused = [r for r in results if r[0] == 503]
    print(
        f"\n16 concurrent uncached sync plots: {len(drawn)} drawn (slowest {max(r[2] for r in drawn):.2f} s), "
        f"{len(refused)} refused with 503 (slowest {max((r[2] for r in refused), default=0) * 1000:.0f} ms)"
    )
    assert len(results) == 16 and len(drawn) + len(refused) == 16, [r for r in results if r[0] not in (200, 503)]
    assert drawn and all(r[1].startswith(b"\x89PNG") for r in drawn)
    assert refused and all(r[3] == "2" and b'"plots_busy"' in r[1] for r in refused)
    assert len(drawn) <= 2 * 2 + 4  # 2 processes x 2 slots, plus renders that ended before others began

    hits = 0
    for _ in range(6):  # a fresh connection each time reaches either process; each caches its own
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        conn.request("GET", "/analysis/plot_top_locations?n=50", headers={"Connection": "close"})
        response = conn.getresponse()
        assert response.status in (200, 503)
        response.read()
        hits += response.getheader("X-Plot-Cache") == "hit"
        conn.close()
    print(f"6 repeats of one plot: {hits} cache hits")
    assert hits >= 3
