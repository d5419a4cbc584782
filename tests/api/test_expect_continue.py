"""``Expect: 100-continue`` through the real ``jobqueue-api`` (gunicorn): a request refused from its
headers alone is answered with its final status instead of ``100 Continue``, so its client never
sends the body (RFC 9110 section 10.1.1); a request the API reads gets its 100 when the body is read."""

from __future__ import annotations

import json
import socket
from urllib.parse import urlsplit

import pytest

from devstack.api_server import api_server
from devstack.redis_server import RedisServer, find_redis_server

from tests.support.rawhttp import exchange

TOKEN = "expect-test-token"
BODY = b'{"operation": "top_locations", "params": {"n": 2}}'


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    if find_redis_server() is None:
        pytest.skip("no redis-server")
    server = RedisServer(tmp_path_factory.mktemp("redis-expect")).start()
    try:
        with api_server(server.url, tmp_path_factory.mktemp("api"), processes=1, API_TOKEN=TOKEN) as api:
            yield api.url
    finally:
        server.stop()


def _head(length: int, token: str | None = TOKEN, content_type: str = "application/json") -> bytes:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    return (
        f"POST /submit HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n{auth}"
        f"Expect: 100-continue\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


@pytest.mark.parametrize(
    "head,status,error",
    [
        (_head(100_000_000), 413, "request_entity_too_large"),
        (_head(len(BODY), token=None), 401, "unauthorized"),
        (_head(len(BODY), token="not-the-token"), 401, "unauthorized"),
        (_head(len(BODY), content_type="text/plain"), 415, "unsupported_media_type"),
    ],
)
def test_a_request_refused_from_its_headers_gets_its_answer_instead_of_100(api, head, status, error):
    """Only the headers are sent, as a client waiting for 100 does. gunicorn wrote ``100 Continue``
    before the app looked, and curl then sent all of a body the answer refused. The answer closes the
    connection: the body never comes, or comes after it, and must not be read as the next request."""
    got, headers, rest = exchange(api, head, timeout=3)  # a server waiting for the body times out
    assert got == status and headers["connection"] == "close", (got, headers)
    assert json.loads(rest)["error"] == error


def test_a_request_the_api_reads_gets_100_then_its_answer_and_keeps_the_connection(api):
    url = urlsplit(api)
    with socket.create_connection((url.hostname, url.port), timeout=5) as sock:
        sock.sendall(_head(len(BODY)))
        assert sock.recv(4096) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(BODY)
        answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 202 ") and b"Connection: keep-alive" in answer, answer
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")


def test_a_body_sent_without_waiting_is_read_with_no_100_and_keeps_the_connection(api):
    """A client that sends its body at once (the expectation is only a hint) is served as before,
    with no 100 after the fact and no second answer on the connection."""
    url = urlsplit(api)
    with socket.create_connection((url.hostname, url.port), timeout=5) as sock:
        sock.sendall(_head(len(BODY)) + BODY + b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer = b""
        while answer.count(b"HTTP/1.1 ") < 2 or not answer.endswith(b"\n"):
            answer += sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 202 ") and b"100 Continue" not in answer, answer
    assert b"HTTP/1.1 200 " in answer
