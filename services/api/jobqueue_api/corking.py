"""One TCP segment per small response: the status line, headers and body leave together.

gunicorn writes a response's headers and its body with two ``send`` calls. On loopback and on a
pod network each becomes its own segment, and a client blocked in ``recv`` (``requests``,
``curl``, a browser) is woken twice: once for the headers, once more for the body. On a busy
2-core node a wake-up costs a scheduling delay, so a submit's or a long poll's answer took one
delay longer than it needed to. ``TCP_CORK`` on the connection while gunicorn writes, cleared when
it has written everything (WSGI calls the body's ``close()`` then), makes the kernel send them as
one segment; a response larger than a segment goes out in full segments, as before.

Only where a TCP socket is at hand (gunicorn puts it in ``environ["gunicorn.socket"]``); elsewhere
(the Flask test client, a UNIX socket) the app runs as it is. A file sent with
``wsgi.file_wrapper`` (sendfile) is left uncorked: gunicorn sends it itself after the headers.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable, Iterator
from typing import Any

CORK = getattr(socket, "TCP_CORK", None)  # Linux only


def corked(app: Callable) -> Callable:
    """The WSGI app ``app``, answering each request on a corked connection (Linux, TCP)."""
    if CORK is None:
        return app

    def wrapped(environ: dict, start_response: Callable) -> Iterable[bytes]:
        sock = environ.get("gunicorn.socket")
        if sock is None or not _set(sock, 1):
            return app(environ, start_response)
        try:
            body = app(environ, start_response)
        except BaseException:
            _set(sock, 0)
            raise
        wrapper = environ.get("wsgi.file_wrapper")
        if wrapper is not None and isinstance(body, wrapper):
            _set(sock, 0)  # sendfile: gunicorn sends the headers, then the file, itself
            return body
        return _Uncork(body, sock)

    return wrapped


def _set(sock: Any, value: int) -> bool:
    try:
        sock.setsockopt(socket.IPPROTO_TCP, CORK, value)
    except (OSError, AttributeError):  # not TCP (a UNIX socket), or already closed
        return False
    return True


def flush(sock: Any) -> None:
    """Send now what a corked ``sock`` holds (an interim ``100 Continue``), and keep it corked."""
    if CORK is None:
        return
    try:
        if sock.getsockopt(socket.IPPROTO_TCP, CORK):
            _set(sock, 0)
            _set(sock, 1)
    except (OSError, AttributeError):
        pass


class _Uncork:
    """The app's body, uncorking the connection once the server has written all of it."""

    def __init__(self, body: Iterable[bytes], sock: Any):
        self._body = body
        self._sock = sock

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._body)

    def close(self) -> None:
        try:
            close = getattr(self._body, "close", None)
            if close is not None:
                close()
        finally:
            _set(self._sock, 0)
