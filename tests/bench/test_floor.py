"""The round trip's floor (bench/floor.py): canned answers shaped like the API's, served to the same
client code as the real round trips, and the rows that report it. No timing assertions."""

from __future__ import annotations

import json
import socket

import pytest

from bench import bench_deployed as bd
from bench import bench_peers, floor
from bench.peers import harness, procs
from bench.peers.ours import FloorPeer

pytestmark = pytest.mark.slow

SAMPLE = str(bd.report.REPO_ROOT / "data" / "traffic_incidents_sample.csv")
BODY = b'{"operation":"sleep","params":{"seconds":0}}'


def _exchange(sock: socket.socket, request: bytes) -> tuple[bytes, list[bytes], dict]:
    """Status line, header names in order and JSON body of the answer to ``request``."""
    sock.sendall(request)
    data = b""
    while b"\r\n\r\n" not in data or len(data) < data.index(b"\r\n\r\n") + 4 + floor.body_length(data):
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    return lines[0], [line.split(b":", 1)[0] for line in lines[1:]], json.loads(body)


def _round_trip(port: int) -> list[tuple[bytes, list[bytes], dict]]:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        submitted = _exchange(
            sock,
            b"POST /submit HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY),
        )
        job_id = submitted[2]["job_id"].encode()
        done = _exchange(sock, b"GET /status/%s?wait=30 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % job_id)
    return [submitted, done]


def test_canned_answers_keep_the_shape_of_the_apis(redis_url, tmp_path):
    """Same status lines, same headers in the same order, same JSON keys and a body within a few
    bytes of the API's (timestamps and the worker's name vary): the floor's client parses what it
    parses against the API."""
    dep = bd.Deployed(redis_url, SAMPLE, tmp_path)
    worker = dep.start_worker("floor-shape")
    try:
        real = _round_trip(dep.port)
    finally:
        procs.stop([worker])
        dep.close()
    with floor.FloorServer("test-floor") as server:
        canned = _round_trip(server.port)
    for (r_line, r_names, r_body), (c_line, c_names, c_body) in zip(real, canned):
        assert c_line == r_line and c_names == r_names
        assert list(c_body) == list(r_body)
        assert c_body["status"] == r_body["status"]
        assert abs(len(json.dumps(c_body)) - len(json.dumps(r_body))) <= 16
    assert floor.reply_to(b"POST /submit?wait=60 HTTP/1.1") == floor.DONE  # one exchange: the finished job


@pytest.mark.parametrize("lean", [False, True], ids=["requests", "http.client"])
def test_floor_round_trips_in_both_harnesses(redis_url, lean):
    out = bd.floor_round_trips(5, warmup=1, lean=lean)
    assert 0 < out["submit_p50_ms"] <= out["p50_ms"] <= out["p99_ms"] and out["client_cpu_us"] > 0
    peer = FloorPeer(redis_url, SAMPLE, 1)
    peer.lean = lean
    try:
        trips = harness.round_trips(peer, bd.NOOP, 5, warmup=1)
    finally:
        peer.close()
    assert peer.api is None  # its server stopped
    assert trips["count"] == 5 and 0 < trips["submit_p50_ms"] < trips["p50_ms"]


def test_sections_say_how_much_is_the_floor():
    rows = {
        "rt/ours": {"p50_ms": 2.0, "p99_ms": 3.0, "submit_p50_ms": 1.1, "client_cpu_us": 900.0},
        "rt/ours-lean": {"p50_ms": 1.2, "p99_ms": 1.6, "submit_p50_ms": 0.6, "client_cpu_us": 200.0},
        "rt/floor": {"p50_ms": 0.85, "p99_ms": 1.0, "submit_p50_ms": 0.4, "client_cpu_us": 836.0},
        "rt/floor-lean": {"p50_ms": 0.2, "p99_ms": 0.3, "submit_p50_ms": 0.1, "client_cpu_us": 140.0},
        "rt/celery": {"p50_ms": 1.3, "p99_ms": 1.6},
    }
    text = bd.markdown(bd.parse_args(["--parts", "rt"]), {"runs": {}, "load": [0.5]}, rows)
    assert "| floor: the same two requests with `requests` against canned answers (no service) | 0.85 |" in text
    assert "`requests` 2.00 - 0.85 = **1.15 ms**; `http.client` 1.20 - 0.20 = **1.00 ms**" in text
    trips = {
        "celery": {"p50_ms": 1.3},
        "ours": {"p50_ms": 2.0},
        bench_peers.LEAN: {"p50_ms": 1.2},
        bench_peers.FLOOR: {"p50_ms": 0.85},
        bench_peers.FLOOR_LEAN: {"p50_ms": 0.2},
    }
    text = bench_peers.round_trip_markdown(bench_peers.parse_args([]), {"round_trip": trips})
    assert "| `floor` | 0.85 |" in text
    assert "`ours` 2.00 - `floor` 0.85 = **1.15 ms**; `ours-http.client` 1.20 - `floor-http.client` 0.20" in text
