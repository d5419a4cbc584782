"""A client must read its answer: a write that makes no progress for CLIENT_TIMEOUT_SECONDS ends
the connection.

gunicorn's gevent worker bounds how long a client may take to send a request (its headers within
``keepalive``; the body: ``unread.py``) but not how long it may take to read the answer: writes
block until the client reads. A client that sent requests and never read (300 pipelined
``GET /openapi.json``, 14 KB sent) held its connection, 3.8 MB queued behind it, for as long as
it stayed open (seen at 55 s), one of the process's ``worker_connections`` slots each; enough such
clients and the process accepts nothing more. :class:`Deadlined` wraps the connection's socket for
the app's answer (gunicorn writes it with ``sendall``, a file with ``sendfile``): each write waits
at most the deadline for the client to make room, so a slow reader that keeps reading is never cut
off, and one that stopped is closed, one log line each. The stalled write raises ``EPIPE``, which
gunicorn already takes as a client gone: it closes the socket without a traceback.
"""

from __future__ import annotations

import errno
import logging
from typing import Any

log = logging.getLogger("jobqueue.api")


class Deadlined:
    """``sock`` for writing an answer, every other attribute passed through (``setsockopt`` for
    the cork, ``gettimeout``): ``sendall`` and ``sendfile`` under a per-stall deadline."""

    __slots__ = ("_peer", "_seconds", "_sock")

    def __init__(self, sock: Any, seconds: float, peer: Any = None) -> None:
        self._sock = sock
        self._seconds = seconds
        self._peer = peer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)

    def sendall(self, data: Any) -> None:
        self._bounded(self._send_all, data)

    def sendfile(self, file: Any, offset: int = 0, count: int | None = None) -> int:
        return self._bounded(self._sock.sendfile, file, offset, count)

    def _send_all(self, data: Any) -> None:
        # gevent's sendall under a timeout bounds the whole answer; one send at a time bounds each wait
        view = memoryview(data).cast("B")
        while view:
            view = view[self._sock.send(view) :]

    def _bounded(self, write: Any, *args: Any) -> Any:
        sock = self._sock
        before = sock.gettimeout()
        sock.settimeout(self._seconds)
        try:
            return write(*args)
        except TimeoutError:
            log.warning(
                "closing a connection whose client read nothing of its answer for %s s",
                self._seconds,
                extra={"client": str(self._peer[0]) if isinstance(self._peer, tuple) else str(self._peer)},
            )
            raise BrokenPipeError(errno.EPIPE, "the client stopped reading its answer") from None
        finally:
            sock.settimeout(before)
