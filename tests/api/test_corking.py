"""Responses of the real ``jobqueue-api`` leave in one TCP segment when small (``corking.py``).

gunicorn writes the headers and the body with two sends; without the cork a client reading as soon
as data arrives got the headers alone first (about 1.9 reads per response measured), and a client
blocked in ``recv`` was woken twice. A file sent with sendfile (the UI's static files) is left to
gunicorn and must still arrive whole.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from jobqueue_api.corking import corked

from .support import redis_and_api

STATIC = Path(__file__).resolve().parents[2] / "services" / "api" / "jobqueue_api" / "static"
SUBMIT = b'{"operation": "sleep", "params": {"seconds": 0}}'


@pytest.fixture(scope="module")
def api_port(tmp_path_factory):
    with redis_and_api(
        tmp_path_factory.mktemp("cork"), redis_options={"appendonly": False}, processes=1, check_log=False
    ) as (_, api):
        yield api.port


def _exchange(sock: socket.socket, request: bytes) -> tuple[bytes, bytes, int]:
    """Send one request; read the response as data arrives. (head, body, reads it took)."""
    sock.sendall(request)
    data, reads = b"", 0
    while True:
        chunk = sock.recv(1 << 20)
        assert chunk, "connection closed mid-response"
        data += chunk
        reads += 1
        if b"\r\n\r\n" in data:
            head, _, body = data.partition(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            if len(body) >= length:
                return head, body[:length], reads


def test_a_small_response_arrives_in_one_read(api_port):
    request = (
        b"POST /submit HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(SUBMIT)).encode() + b"\r\n\r\n" + SUBMIT
    )
    with socket.create_connection(("127.0.0.1", api_port)) as sock:
        reads = []
        for _ in range(100):  # one keep-alive connection: the cork is cleared after each response
            head, body, n = _exchange(sock, request)
            assert head.startswith(b"HTTP/1.1 202"), head
            assert b'"job_id"' in body
            reads.append(n)
        _, _, n = _exchange(sock, b"GET /no-such-route HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")  # an error too
        reads.append(n)
    assert reads == [1] * len(reads), f"reads per response: {reads}"


def test_a_static_file_sent_with_sendfile_arrives_whole(api_port):
    expected = (STATIC / "ui.js").read_bytes()
    with socket.create_connection(("127.0.0.1", api_port)) as sock:
        for _ in range(2):
            head, body, _ = _exchange(sock, b"GET /ui/static/ui.js HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200"), head
            assert body == expected


def test_without_a_tcp_socket_the_app_runs_as_it_is():
    def app(environ, start_response):
        start_response("200 OK", [])
        return [b"ok"]

    body = corked(app)({}, lambda *args: None)
    assert body == [b"ok"]
    unix = socket.socket(socket.AF_UNIX)
    try:
        assert corked(app)({"gunicorn.socket": unix}, lambda *args: None) == [b"ok"]  # TCP_CORK refused
    finally:
        unix.close()
