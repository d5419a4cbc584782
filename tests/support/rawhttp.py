"""HTTP/1.1 over a bare socket: requests no client library sends as written (smuggling shapes,
malformed chunks, over-long lines, pipelining), and answers read exactly as the server wrote them."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit


def exchange(base_url: str, request: bytes, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    """``request`` sent as is to the server at ``base_url``, its answer read until the server closes
    the connection: the status, the headers (lower-case names) and everything after the head (a
    second answer on the same connection shows there). A reset after the answer (gunicorn's, for a
    request it stopped reading) ends the read like a close; a server still reading after
    ``timeout`` seconds raises ``TimeoutError``."""
    url = urlsplit(base_url)
    answer = b""
    with socket.create_connection((url.hostname, url.port), timeout=timeout) as sock:
        sock.sendall(request)
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
    head, _, body = answer.partition(b"\r\n\r\n")
    return _status(head), _headers(head), body


def pipelined(base_url: str, requests: bytes, count: int) -> list[tuple[int, dict[str, str], bytes]]:
    """``requests`` (several, one after the other) sent at once on one connection, and the first
    ``count`` answers read by their Content-Length, nothing more: the status, headers and body of
    each. A server that closes before the ``count``-th raises ``ConnectionError``."""
    url = urlsplit(base_url)
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(requests)
        return _answers(sock, count)


def _answers(sock: socket.socket, count: int) -> list[tuple[int, dict[str, str], bytes]]:
    out, data = [], b""
    while len(out) < count:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed after {len(out)} of {count} answers")
            data += chunk
        head, _, data = data.partition(b"\r\n\r\n")
        headers = _headers(head)
        size = int(headers.get("content-length", "0"))  # a 204 has none (RFC 9110 section 8.6)
        while len(data) < size:
            data += sock.recv(65536)
        out.append((_status(head), headers, data[:size]))
        data = data[size:]
    return out


def _status(head: bytes) -> int:
    return int(head.split(b" ", 2)[1])


def _headers(head: bytes) -> dict[str, str]:
    lines = head.decode("latin-1").split("\r\n")[1:]
    return {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
