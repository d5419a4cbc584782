"""An answer given before the request's body was read closes the connection when gunicorn could
not safely or cheaply read the rest.

On a kept-alive connection gunicorn reads what is left of a request's body before it parses the
next request. Three kinds of unread body make that wrong:

- A chunked body the application answered without reading to its end (a 405, 404, 401, 415, a
  refused Host: every refusal that comes before the body) is parsed after its answer has gone, and
  a malformed chunk in it makes gunicorn write a second answer (``400 invalid_chunk``) on the same
  connection, which a client or proxy pipelining its requests reads as its next request's answer.
- A Content-Length body larger than ``MAX_BODY_BYTES`` (answered ``413`` before a byte of it is
  read) is read and thrown away in full, up to ``CLIENT_TIMEOUT_SECONDS``, by an answer that said
  ``Connection: keep-alive``: 100 MB read to refuse them.
- A body whose client asked to be told to send it (``Expect: 100-continue``) and was answered
  before it was (``expect.py``): the body may never come, or come after the answer, and nothing
  says where the next request starts. Unless the client sent it anyway and it was read to its end.
- A body that stopped arriving (``408``, after ``CLIENT_TIMEOUT_SECONDS``): its answer said
  ``Connection: keep-alive`` and gunicorn closed the connection anyway, so a client keeping it met
  a reset on its next request.

Such an answer says ``Connection: close`` and gunicorn closes the connection after it: nothing
after the answered request is read. A body read to its end, or a small unread Content-Length
rest (a few bytes behind a 405), keeps the connection. gunicorn honours no ``Connection`` header
from the application, so this sets its request's ``must_close``, as the warm shutdown does
(``shutdown.py``, whose worker hangs each request on its body, ``environ["wsgi.input"]``, for
this). Elsewhere (the Flask test client, another server) the app runs as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from . import expect


def closing_unread(app: Callable, max_body_bytes: int) -> Callable:
    """The WSGI app ``app``; its answer closes the connection when it leaves a chunked body
    unread to its end, or more than ``max_body_bytes`` of a Content-Length body, and when it is a
    ``408``, or when it leaves a body its client waits for a ``100 Continue`` to send (module
    docstring)."""

    def wrapped(environ: dict, start_response: Callable) -> Iterable[bytes]:
        body = environ.get("wsgi.input")
        request = getattr(body, "request", None)
        if request is None:
            return app(environ, start_response)

        def starting(status: str, headers: list, exc_info: Any = None) -> Callable:
            owed_continue = expect.withdraw(request)
            if status.startswith("408") or _unsafe_rest(body, max_body_bytes) or (owed_continue and _unread(body)):
                request.must_close = True
            return start_response(status, headers, exc_info)

        return app(environ, starting)

    return wrapped


def _unsafe_rest(body: Any, max_body_bytes: int) -> bool:
    """Whether what is left of ``body`` (gunicorn's ``Body``) must not be read after the answer."""
    reader: Any = getattr(body, "reader", None)
    if hasattr(reader, "parser"):  # chunked: its last chunk not parsed yet
        return reader.parser is not None
    return getattr(reader, "length", 0) > max_body_bytes  # Content-Length: bytes not yet read


def _unread(body: Any) -> bool:
    """Whether any of ``body`` is left to read (its chunked end not parsed, or Content-Length bytes)."""
    reader: Any = getattr(body, "reader", None)
    if hasattr(reader, "parser"):
        return reader.parser is not None
    return getattr(reader, "length", 0) > 0
