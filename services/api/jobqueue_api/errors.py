"""One error shape for every failure: JSON ``{"error": code, "message": text, ...}``.

Route code raises :class:`ApiError`; Werkzeug's HTTP exceptions (404 route, 405 method, 413 body),
the analysis package's errors (:data:`ANALYSIS_ERRORS`, by their permanent/transient class) and
Redis outages are translated here, and anything else is logged and answered with a JSON 500, so
no API client ever sees an HTML error page (a browser asking for an unknown ``/ui/`` page gets the
web page's own, routes/ui.py).
"""

from __future__ import annotations

import logging
import re
from typing import Any

import redis
from flask import Flask, current_app, jsonify
from werkzeug.exceptions import HTTPException

from atx_analysis.errors import AnalysisError, DataFormatError, MissingColumnError, PermanentError, TransientError
from atx_analysis.registry import ParamError, UnknownOperation
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


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None, /, **extra: Any):
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


# Most specific first. A route that means something else by one of these (submit answers 400 for an
# unknown operation) raises its own ApiError instead.
ANALYSIS_ERRORS: list[tuple[type[AnalysisError], int, str]] = [
    (ParamError, 400, "invalid_param"),
    (UnknownOperation, 404, "unknown_operation"),
    (MissingColumnError, 422, "missing_column"),
    (DataFormatError, 422, "unusable_data"),
    (PermanentError, 400, "bad_request"),
    (TransientError, 503, "try_again"),
]


def analysis_error(exc: AnalysisError) -> ApiError:
    """The ApiError an analysis error becomes: a named 4xx for permanent ones, 503 for transient."""
    status, code = next(
        ((status, code) for kind, status, code in ANALYSIS_ERRORS if isinstance(exc, kind)), (500, "internal_error")
    )
    extra: dict[str, Any] = {}
    message = str(exc)
    if isinstance(exc, ParamError):
        message, code = exc.message, "invalid_param" if exc.param else "invalid_params"
        extra = {"param": exc.param} if exc.param else {}
    elif isinstance(exc, UnknownOperation):
        extra = {"operations": exc.known}
    elif isinstance(exc, MissingColumnError):
        extra = {"column": exc.column, **({"operation": exc.operation} if exc.operation else {})}
    err = ApiError(status, code, message, **extra)
    if status == 503:
        err.headers["Retry-After"] = "5"
    return err


def http_error(exc: HTTPException):
    """The JSON answer to Werkzeug's HTTP exceptions (a 404 route, a 405 method, a 413 body). The
    web page answers a browser's 404 under ``/ui/`` with its own HTML page (routes/ui.py) and
    every other 404 with this."""
    status = exc.code or 500
    message = _MESSAGES.get(status, exc.description or exc.name)
    if status == 413:
        message = f"request body larger than MAX_BODY_BYTES ({current_app.config['MAX_CONTENT_LENGTH']} bytes)"
    headers = {}
    allowed = getattr(exc, "valid_methods", None)  # MethodNotAllowed's
    if status == 405 and allowed:
        headers["Allow"] = ", ".join(sorted(allowed))
        message = f"method not allowed; this route accepts {headers['Allow']}"
    return error_response(status, _code_of(exc), message, headers)


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return error_response(exc.status, exc.code, exc.message, exc.headers, **exc.extra)

    @app.errorhandler(AnalysisError)
    def _analysis_error(exc: AnalysisError):
        if not isinstance(exc, PermanentError):
            log.warning("analysis error", extra={"error": str(exc), "kind": type(exc).__name__})
        err = analysis_error(exc)
        return error_response(err.status, err.code, err.message, err.headers, **err.extra)

    app.errorhandler(HTTPException)(http_error)

    @app.errorhandler(redis.exceptions.ConnectionError)
    @app.errorhandler(redis.exceptions.TimeoutError)
    @app.errorhandler(redis.exceptions.ReadOnlyError)  # a replica during failover
    def _redis_down(exc: Exception):
        log.warning("redis unavailable", extra={"error": str(exc)})
        return error_response(
            503, "redis_unavailable", "the job store (Redis) is unreachable; retry shortly", {"Retry-After": "2"}
        )

    @app.errorhandler(redis.exceptions.ResponseError)
    def _redis_refused(exc: redis.exceptions.ResponseError):
        """Redis refusing writes for now (out of memory, cannot persist): the job was not stored."""
        cause = write_refusal(exc)
        if cause is None:
            return _last_resort(exc)
        log.warning("redis refused a write", extra={"error": str(exc), "cause": cause})
        code = {"OOM": "redis_out_of_memory", "MISCONF": "redis_cannot_persist"}.get(cause, "redis_unavailable")
        return error_response(
            503,
            code,
            f"the job store (Redis) refuses writes: {WRITE_REFUSALS[cause]}; nothing was stored, retry later",
            {"Retry-After": "30"},
            cause=cause,
        )

    @app.errorhandler(Exception)
    def _last_resort(exc: Exception):
        log.exception("unhandled error")
        return error_response(500, "internal_error", "internal error; it has been logged")
