"""``Expect: 100-continue`` answered when the application reads the body, not before it looks.

gunicorn (27.0, ``gunicorn/http/wsgi.py`` ``create``) writes ``HTTP/1.1 100 Continue`` while it
builds the environ, before the application has seen the request. A client that waits for it
(curl does, for a body over 1 KiB) then sent its whole body to be refused from the headers alone: a
413 by Content-Length, a 401, a 415, a refused Host. RFC 9110 section 10.1.1 lets a server answer
the final status instead of 100, and that is the point of the expectation.

:func:`defer` (from the ``pre_request`` hook, which gunicorn runs before ``create``) takes the
expectation from gunicorn and sends the 100 itself at the first read of the body from the socket.
An answer that leaves with the 100 still owed (:func:`withdraw`) closes the connection unless the
client sent its body anyway and it was read to its end (``unread.py``): the rest is on its way or
never comes, and the next request must not be parsed from it.
"""

from __future__ import annotations

from typing import Any

from .corking import flush

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def defer(req: Any) -> None:
    """Move ``req``'s 100-continue from gunicorn to the first read from its socket."""
    unreader: Any = getattr(req, "unreader", None)
    sock = getattr(unreader, "sock", None)
    if not getattr(req, "_expected_100_continue", False) or sock is None:
        return
    req._expected_100_continue = False
    recv = unreader.chunk

    def chunk(size_hint: int | None = None) -> bytes:
        withdraw(req)
        sock.sendall(CONTINUE)
        flush(sock)  # not held with the answer's cork: the client waits for it
        return recv(size_hint)

    unreader.chunk = chunk
    req.jobqueue_continue = unreader


def withdraw(req: Any) -> bool:
    """Whether ``req`` still owed its 100 (no byte of the body was asked of the socket); it is
    owed no more (the answer is going out, or the 100 now)."""
    unreader = getattr(req, "jobqueue_continue", None)
    if unreader is None:
        return False
    req.jobqueue_continue = None
    del unreader.chunk  # the class's own again, for the next request on the connection
    return True
