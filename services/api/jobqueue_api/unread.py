"""An answer given before a chunked request body was read to its end closes the connection.

On a kept-alive connection gunicorn reads what is left of a request's body before it parses the
next request. A chunked body the application answered without reading (a 405, 404, 401, 415, a
refused Host: every refusal that comes before the body) is then parsed after its answer has gone,
and a malformed chunk in it makes gunicorn write a second answer (``400 invalid_chunk``) on the
same connection, which a client or proxy pipelining its requests reads as the answer to its next
one. So such an answer says ``Connection: close`` and gunicorn closes the connection after it:
nothing that follows the answered request is read. A chunked body read to its end is left alone
(its last chunk has been parsed), as is a Content-Length body, whose end gunicorn knows without
parsing. gunicorn honours no ``Connection`` header from the application, so this sets its
request's ``must_close``, as the warm shutdown does (``shutdown.py``); the request is the chunked
reader's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any


def closing_unread_chunked(app: Callable) -> Callable:
    """The WSGI app ``app``; its answer to a chunked request whose body it left unread closes the
    connection (module docstring)."""

    def wrapped(environ: dict, start_response: Callable) -> Iterable[bytes]:
        if "chunked" not in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
            return app(environ, start_response)

        def starting(status: str, headers: list, exc_info: Any = None) -> Callable:
            reader = getattr(environ.get("wsgi.input"), "reader", None)
            if getattr(reader, "parser", None) is not None:  # the last chunk not yet parsed
                request = getattr(reader, "req", None)
                if request is not None:
                    request.must_close = True
            return start_response(status, headers, exc_info)

        return app(environ, starting)

    return wrapped
