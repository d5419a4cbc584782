"""The client's floor of a round trip: a server that answers the tutorial's two requests with canned
bytes and does nothing else.

    python -m bench.floor PORT

A round trip through the API is the client's own work (building each request, parsing each answer,
the system calls) plus the service path (gunicorn, the API, Redis, the worker, the done message).
This server takes the second part away: on one kept-alive connection (a thread each) it reads
each request's head and body and writes back a fixed answer shaped like the API's, header for
header and of the same length: ``POST /submit`` gets the 202 with a job id, ``POST /submit?wait=``
and every ``GET`` get the 200 of a finished no-op job. The same client code timed against it and
against the API, in the same run, says how much of each round trip is the client's floor and how
much is the service's. tests/bench/test_floor.py checks that the canned answers keep the shape of
the API's real ones.
"""

from __future__ import annotations

import socket
import sys
import threading
import time

JOB_ID = "0d7c6f9e-6a52-4f1b-9a53-3f7c1e0c2b11"
DATE = b"Mon, 30 Nov 2026 10:00:00 GMT"
SUBMITTED = b'{"job_id":"%s","status":"submitted"}\n' % JOB_ID.encode()
FINISHED = (
    b'{"job_id":"%(id)s","id":"%(id)s","status":"complete","operation":"sleep","params":{"seconds":0.0},'
    b'"input":{"operation":"sleep","params":{"seconds":0.0}},"submitted_at":1796033150.3002903,'
    b'"started_at":1796033150.3018942,"finished_at":1796033150.3020022,"attempts":1,'
    b'"worker":"vm:32358:983ab8","error":null,"result":{"slept":0.0},"result_type":"application/json",'
    b'"dataset":null,"cached":false,"cached_from":null,"result_url":"/jobs/%(id)s/result"}\n'
) % {b"id": JOB_ID.encode()}


def answer(status: bytes, body: bytes) -> bytes:
    """One answer with the API's headers, in gunicorn's order (Server, Date, Connection first)."""
    return (
        b"HTTP/1.1 " + status + b"\r\nServer: gunicorn\r\nDate: " + DATE + b"\r\nConnection: keep-alive\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n"
        b"X-Content-Type-Options: nosniff\r\nCache-Control: no-store\r\n\r\n" % len(body)
    ) + body


ACCEPTED = answer(b"202 ACCEPTED", SUBMITTED)
DONE = answer(b"200 OK", FINISHED)


def reply_to(head: bytes) -> bytes:
    """The canned answer to a request whose head (request line and headers) is ``head``."""
    line = head.split(b"\r\n", 1)[0]
    if line.startswith(b"POST ") and b"wait=" not in line.split(b" ")[1]:
        return ACCEPTED
    return DONE


def body_length(head: bytes) -> int:
    for header in head.split(b"\r\n")[1:]:
        name, _, value = header.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def serve_connection(conn: socket.socket) -> None:
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = b""
    with conn:
        while True:
            data = conn.recv(65536)
            if not data:
                return
            buf += data
            while True:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    break
                size = end + 4 + body_length(buf[:end])
                if len(buf) < size:
                    break
                conn.sendall(reply_to(buf[:end]))
                buf = buf[size:]


def serve(listener: socket.socket) -> None:
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve_connection, args=(conn,), daemon=True).start()


def listen(port: int) -> socket.socket:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(16)
    return listener


class FloorServer:
    """``python -m bench.floor`` in a process of its own (as the API is), started and stopped here."""

    def __init__(self, log_name: str = "floor"):
        from devstack.procs import free_port

        from bench.peers import procs

        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = procs.spawn(procs.python_argv("bench.floor", str(self.port)), {}, log_name)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.close()
                    raise RuntimeError(f"the floor server did not start (see {procs.log_path(log_name)})") from None
                time.sleep(0.02)

    def close(self) -> None:
        from bench.peers import procs

        procs.stop([self.proc])

    def __enter__(self) -> FloorServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    serve(listen(int(args[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
