"""One error shape for every failure: JSON ``{"error": code, "message": text, ...}``.

Route code raises :class:`ApiError`; Werkzeug's HTTP exceptions (404 route, 405 method, 413 body)
and Redis outages are translated here, and anything else is logged and answered with a JSON 500,
so no client ever sees an HTML error page.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import redis
from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException

from jobqueue.connections import WRITE_REFUSALS, write_refusal

log = logging.getLogger("jobqueue.api")


class ApiError(Exception):
    """A client-facing error: HTTP status, a stable snake_case code and a human message."""

    def __init__(self, http_status: int, code: str, message: str, /, **extra: Any):
        super().__init__(message)
        self.status = http_status
        self.code = code
        self.message = message
        self.extra = extra
        self.headers: dict[str, str] = {}


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None,
                   /, **extra: Any):
    body = {"error": code, "message": message, **extra}
    response = jsonify(body)
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _code_of(exc: HTTPException) -> str:
    return re.sub(r"[^a-z0-9]+", "_", (exc.name or "error").lower()).strip("_")


_MESSAGES = {
    404: "no such route; GET /help lists them",
    405: "method not allowed on this route",
    413: "request body too large",
}


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return error_response(exc.status, exc.code, exc.message, exc.headers, **exc.extra)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        status = exc.code or 500
        message = _MESSAGES.get(status, exc.description or exc.name)
        if status == 413:
            message = f"request body larger than MAX_BODY_BYTES ({app.config['MAX_CONTENT_LENGTH']} bytes)"
        headers = {}
        allowed = getattr(exc, "valid_methods", None)  # MethodNotAllowed's
        if status == 405 and allowed:
            headers["Allow"] = ", ".join(sorted(allowed))
            message = f"method not allowed; this route accepts {headers['Allow']}"
        return error_response(status, _code_of(exc), message, headers)

    @app.errorhandler(redis.exceptions.ConnectionError)
    @app.errorhandler(redis.exceptions.TimeoutError)
    @app.errorhandler(redis.exceptions.ReadOnlyError)  # a replica during failover
    def _redis_down(exc: Exception):
        log.warning("redis unavailable", extra={"error": str(exc)})
        return error_response(503, "redis_unavailable", "the job store (Redis) is unreachable; retry shortly",
                              {"Retry-After": "2"})

    @app.errorhandler(redis.exceptions.ResponseError)
    def _redis_refused(exc: redis.exceptions.ResponseError):
        """Redis refusing writes for now (out of memory, cannot persist): the job was not stored."""
        cause = write_refusal(exc)
        if cause is None:
            return _last_resort(exc)
        log.warning("redis refused a write", extra={"error": str(exc), "cause": cause})
        code = {"OOM": "redis_out_of_memory", "MISCONF": "redis_cannot_persist"}.get(cause, "redis_unavailable")
        return error_response(503, code, f"the job store (Redis) refuses writes: {WRITE_REFUSALS[cause]}; "
                              "nothing was stored, retry later", {"Retry-After": "30"}, cause=cause)

    @app.errorhandler(Exception)
    def _last_resort(exc: Exception):
        log.exception("unhandled error")
        return error_response(500, "internal_error", "internal error; it has been logged")
