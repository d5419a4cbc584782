"""One error shape for every failure: JSON ``{"error": code, "message": text, ...}``.

Route code raises :class:`ApiError`; Werkzeug's HTTP exceptions (404 route, 405 method, 413 body),
the analysis package's errors (:data:`ANALYSIS_ERRORS`, by their permanent/transient class) and
Redis outages are translated here, and anything else is logged and answered with a JSON 500, so
no API client ever sees an HTML error page (a browser asking for an unknown ``/ui/`` page gets the
web page's own, routes/ui.py). The refusals gunicorn makes itself, before the application sees a
request (a malformed request line or header, one too long, a bad chunk), are answered in the same
shape by :func:`json_errors`' worker class, not with gunicorn's HTML page.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import redis
from flask import Flask, current_app, jsonify, request
from gunicorn.http import errors as gerr
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.routing import RequestRedirect

from atx_analysis.errors import AnalysisError, DataFormatError, MissingColumnError, PermanentError, TransientError
from atx_analysis.registry import ParamError, UnknownOperation
from jobqueue.connections import (
    UNAVAILABLE_STATES,
    WRITE_REFUSALS,
    acl_refusal,
    db_refusal,
    tls_hint,
    unavailable_state,
    write_refusal,
)
from jobqueue.wire import SetupRefused

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


def _slash_hint() -> str | None:
    """The 404 of a route written with a trailing slash (``POST $API/submit/``,
    ``/jobs/<id>/result/``): name the route without it. It used to be the bare "no such route; GET
    /help lists them", and /help then lists the very route the request seemed to name."""
    path = request.path
    if len(path) < 2 or not path.endswith("/"):
        return None
    bare = path.rstrip("/") or "/"
    if any(part in (".", "..") for part in bare.split("/")):
        return None  # /ui/jobs/..%2f: "the route is /ui/jobs/.." named no route at all
    try:
        current_app.url_map.bind("localhost").match(bare, method=request.method)
    except (MethodNotAllowed, RequestRedirect):
        pass  # the route exists (another method: its own 405 follows once the slash is gone)
    except HTTPException:
        return None
    route = request.script_root + bare
    return f"no such route: {request.script_root + path} ends in '/'; the route is {route}, without it"


def http_error(exc: HTTPException):
    """The JSON answer to Werkzeug's HTTP exceptions (a 404 route, a 405 method, a 413 body). The
    web page answers a browser's 404 under ``/ui/`` with its own HTML page (routes/ui.py) and
    every other 404 with this."""
    status = exc.code or 500
    message = _MESSAGES.get(status, exc.description or exc.name)
    if status == 413:
        message = f"request body larger than MAX_BODY_BYTES ({current_app.config['MAX_CONTENT_LENGTH']} bytes)"
    if status == 404:
        message = _slash_hint() or message
    headers = {}
    allowed = getattr(exc, "valid_methods", None)  # MethodNotAllowed's
    if status == 405 and allowed:
        headers["Allow"] = ", ".join(sorted(allowed))
        message = f"method not allowed; this route accepts {headers['Allow']}"
    return error_response(status, _code_of(exc), message, headers)


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        message = exc.message
        if exc.code == "redis_timeout":  # a submit Redis did not answer (submission, idempotency)
            hint = _tls_hint(exc.__cause__)
            message += f" ({hint})" if hint else ""
        return error_response(exc.status, exc.code, message, exc.headers, **exc.extra)

    def _tls_hint(exc: BaseException | None) -> str:
        state = current_app.extensions.get("jobqueue")
        return tls_hint(state.settings.redis_url, exc) if state is not None and exc is not None else ""

    @app.errorhandler(AnalysisError)
    def _analysis_error(exc: AnalysisError):
        if not isinstance(exc, PermanentError):
            log.warning("analysis error", extra={"error": str(exc), "kind": type(exc).__name__})
        err = analysis_error(exc)
        return error_response(err.status, err.code, err.message, err.headers, **err.extra)

    app.errorhandler(HTTPException)(http_error)

    @app.errorhandler(SetupRefused)
    def _redis_misconfigured(exc: redis.exceptions.RedisError):
        """Redis refused a connection's set-up (its credentials, a db), or has no such db (a
        script's SELECT): the deployment's settings, not a passing state; before, a 500 on every
        route needing Redis (a wrong password: 503 "unreachable, retry shortly")."""
        log.error("redis refuses this service's settings", extra={"error": str(exc)})
        if getattr(exc, "command", None) == "AUTH":
            return error_response(
                503,
                "redis_misconfigured",
                f"the job store (Redis) refuses this service's credentials ({exc.__cause__ or exc}); the "
                "deployment's REDIS_URL (its user and password) or REDIS_PASSWORD needs fixing",
                {"Retry-After": "60"},
                cause="AUTH",
            )
        return error_response(
            503,
            "redis_misconfigured",
            f"the job store (Redis) refuses this service's settings ({str(exc).split(' script: ')[0]}); "
            "the deployment's REDIS_URL, REDIS_JOBS_DB or REDIS_QUEUE_DB needs fixing (this Redis may "
            "have fewer dbs than they name)",
            {"Retry-After": "60"},
            cause="SETUP",
        )

    @app.errorhandler(redis.exceptions.ConnectionError)
    @app.errorhandler(redis.exceptions.TimeoutError)
    @app.errorhandler(redis.exceptions.ReadOnlyError)  # a replica during failover
    def _redis_down(exc: Exception):
        state = unavailable_state(exc)  # LOADING: redis-py raises it as a ConnectionError
        if state is not None:
            return _redis_unavailable(exc, state)
        hint = _tls_hint(exc)
        log.warning("redis unavailable", extra={"error": str(exc), **({"hint": hint} if hint else {})})
        return error_response(
            503,
            "redis_unavailable",
            "the job store (Redis) is unreachable; retry shortly" + (f" ({hint})" if hint else ""),
            {"Retry-After": "2"},
        )

    def _redis_unavailable(exc: Exception, state: str):
        """Redis refusing every command for a while (:data:`UNAVAILABLE_STATES`): nothing was stored."""
        log.warning("redis unavailable", extra={"error": str(exc), "cause": state})
        code = {"BUSY": "redis_busy", "MASTERDOWN": "redis_master_down", "LOADING": "redis_loading"}[state]
        return error_response(
            503,
            code,
            f"the job store (Redis) answers no commands for now: {UNAVAILABLE_STATES[state]}; retry shortly",
            {"Retry-After": "5"},
            cause=state,
        )

    @app.errorhandler(redis.exceptions.ResponseError)
    def _redis_refused(exc: redis.exceptions.ResponseError):
        """Redis refusing writes for now (out of memory, cannot persist: the job was not stored),
        every command for now (busy with a long script, a replica without its primary), or the
        service's ACL user a command (the deployment's Redis ACL): 503 each, never a 500."""
        state = unavailable_state(exc)
        if state is not None:
            return _redis_unavailable(exc, state)
        if db_refusal(exc):
            return _redis_misconfigured(exc)
        command = acl_refusal(exc)
        if command is not None:
            log.error("redis ACL refuses this service's user", extra={"error": str(exc), "command": command})
            return error_response(
                503,
                "redis_permission_denied",
                f"the job store (Redis) refuses this service's ACL user {command} (NOPERM); "
                "the deployment's Redis ACL needs fixing",
                {"Retry-After": "60"},
                cause="NOPERM",
            )
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


class UnsupportedMajorVersion(Exception):
    """gunicorn's ``InvalidHTTPVersion`` for a well-formed version of a major other than 1
    (``HTTP/2.0``, ``HTTP/0.9``): RFC 9110 section 15.6.6's 505, where a malformed version
    (``HTTP/1.10``) stays a 400. Both were 400 ``invalid_http_version``."""

    def __init__(self, version: tuple[int, int]) -> None:
        super().__init__(f"HTTP/{version[0]}.{version[1]}")


def _refined(exc: BaseException) -> BaseException:
    version = getattr(exc, "version", None) if isinstance(exc, gerr.InvalidHTTPVersion) else None
    return UnsupportedMajorVersion(version) if isinstance(version, tuple) else exc


# gunicorn's own refusals, made before the application sees the request, with the statuses
# gunicorn.workers.base.Worker.handle_error gives them: exception classes, status, reason phrase,
# code, message (gunicorn's own description follows it). Most specific first.
SERVER_ERRORS: list[tuple[tuple[type[BaseException], ...], int, str, str, str]] = [
    ((gerr.InvalidResponseHeader, gerr.InvalidResponseHeaderName), 500, "", "", ""),
    # gunicorn raises this one only for a path outside SCRIPT_NAME (gunicorn/http/wsgi.py, create()):
    # the client's mistake, not the server's, so no 500 and no traceback in the log
    (
        (gerr.ConfigurationProblem,),
        404,
        "Not Found",
        "not_found",
        "outside the API's path prefix (SCRIPT_NAME): put the prefix before the route",
    ),
    (
        (gerr.LimitRequestLine,),
        414,
        "URI Too Long",
        "uri_too_long",
        "request line (method, path and query) over {limit_request_line:,} bytes, the HTTP server's limit; "
        "shorten the URL (POST /submit takes an operation's parameters in its body)",
    ),
    (
        (gerr.LimitRequestHeaders,),
        431,
        "Request Header Fields Too Large",
        "request_header_fields_too_large",
        "over {limit_request_fields} header fields, or one over {limit_request_field_size} bytes",
    ),
    ((gerr.InvalidRequestMethod,), 400, "Bad Request", "invalid_method", "malformed method"),
    (
        (UnsupportedMajorVersion,),
        505,
        "HTTP Version Not Supported",
        "http_version_not_supported",
        "HTTP version not supported (this server speaks HTTP/1.1 and 1.0)",
    ),
    ((gerr.InvalidHTTPVersion,), 400, "Bad Request", "invalid_http_version", "malformed HTTP version"),
    ((gerr.InvalidRequestLine,), 400, "Bad Request", "invalid_request_line", "malformed request line"),
    (
        (gerr.UnsupportedTransferCoding,),
        501,
        "Not Implemented",
        "unsupported_transfer_coding",
        "unknown Transfer-Encoding (chunked is the one to use)",
    ),
    (
        (gerr.InvalidChunkSize, gerr.ChunkMissingTerminator, gerr.InvalidChunkExtension),
        400,
        "Bad Request",
        "invalid_chunk",
        "malformed chunked body",
    ),
    ((gerr.ExpectationFailed,), 417, "Expectation Failed", "expectation_failed", "only 100-continue is understood"),
    (
        (gerr.InvalidHeader, gerr.InvalidHeaderName, gerr.ObsoleteFolding, gerr.InvalidSchemeHeaders),
        400,
        "Bad Request",
        "invalid_header",
        "malformed or conflicting header",
    ),
    ((gerr.ForbiddenProxyRequest,), 403, "Forbidden", "forbidden", "PROXY line from an address not allowed"),
    (
        (gerr.InvalidProxyLine, gerr.InvalidProxyHeader, gerr.InvalidH2CPreface),
        400,
        "Bad Request",
        "bad_request",
        "malformed request",
    ),
    ((gerr.ParseException,), 400, "Bad Request", "bad_request", "malformed request"),  # a newer gunicorn's
]


def counted_refusals() -> list[tuple[int, str]]:
    """(status, code) of every refusal :func:`json_errors` counts: the rows of :data:`SERVER_ERRORS`
    but the 500s, which are no refusals."""
    return sorted({(status, code) for _, status, _, code, _ in SERVER_ERRORS if status != 500})


_DETAIL_CHARS = 200  # of gunicorn's description, which may quote the client's bytes
# Content-Length given twice, or beside Transfer-Encoding; or a Transfer-Encoding that does not end in chunked
_LENGTH_HEADERS = {
    "CONTENT-LENGTH": "Content-Length must be one non-negative number, given once, and not beside Transfer-Encoding",
    "TRANSFER-ENCODING": "Transfer-Encoding must end in chunked, list chunked once, and not come with Content-Length",
}


# an HTTP/1.0 request with Transfer-Encoding, which gunicorn refuses whatever its value (RFC 9112
# section 6.1: its framing is faulty): "must end in chunked" told the sender of a chunked one nothing
_HTTP10_TRANSFER_ENCODING = (
    "HTTP/1.0 has no Transfer-Encoding (RFC 9112 section 6.1): send the body with a Content-Length, "
    "or send the request as HTTP/1.1"
)


def server_error(exc: BaseException, cfg: Any) -> tuple[int, str, str, bytes]:
    """Status, reason phrase, error code and JSON body for an error gunicorn raised outside the
    application (``cfg``: gunicorn's config, for the limits a message names). Anything unforeseen
    is a 500."""
    exc = _refined(exc)
    status, reason, code, text = next(
        ((status, reason, code, text) for kinds, status, reason, code, text in SERVER_ERRORS if isinstance(exc, kinds)),
        (500, "", "", ""),
    )
    if status == 500:
        body: dict[str, Any] = {"error": "internal_error", "message": "internal error; it is logged"}
        return 500, "Internal Server Error", "internal_error", _json_line(body)
    limits = {
        name: getattr(cfg, name) for name in ("limit_request_line", "limit_request_fields", "limit_request_field_size")
    }
    message = text.format(**limits)
    # gunicorn's own description follows, except a too long request line's: its "Request Line is too
    # large (8192 > 4094)" gives the bytes it had buffered when it gave up, 8192 (its read size) for
    # any line longer than that: neither the line's length nor the limit, which the message names
    if not isinstance(exc, gerr.LimitRequestLine):
        # a path outside SCRIPT_NAME: gunicorn's "Configuration problem: " prefix would blame the server
        detail = str(exc.info) if isinstance(exc, gerr.ConfigurationProblem) else str(exc)
        if len(detail) > _DETAIL_CHARS:
            detail = f"{detail[:_DETAIL_CHARS]}... ({len(detail)} characters)"
        message = f"{message}: {detail}"
    body = {"error": code, "message": message}
    header = getattr(exc, "hdr", None)
    if code == "invalid_header" and isinstance(header, str) and len(header) <= 64:
        body["header"] = header
        if header in _LENGTH_HEADERS and isinstance(exc, gerr.InvalidHeader):
            body["message"] = _LENGTH_HEADERS[header]
            if header == "TRANSFER-ENCODING" and getattr(getattr(exc, "req", None), "version", (1, 1)) < (1, 1):
                body["message"] = _HTTP10_TRANSFER_ENCODING
    return status, reason, code, _json_line(body)


def _json_line(body: dict[str, Any]) -> bytes:
    return (json.dumps(body, separators=(",", ":"), sort_keys=True) + "\n").encode()  # as jsonify writes it


def json_errors(worker_class: type) -> type:
    """``worker_class`` (a gunicorn worker) answering gunicorn's own errors (:data:`SERVER_ERRORS`)
    in the project's JSON shape, with gunicorn's status, log line and access line, instead of its
    HTML page. Only errors take this path: a request the parser accepts never reaches it."""
    from datetime import datetime

    from gunicorn import util
    from gunicorn.http.wsgi import Response, default_environ

    class JsonErrorsWorker(worker_class):
        def handle_error(self, req, client, addr, exc):  # gunicorn's signature
            started = datetime.now()
            addr = addr or ("", -1)  # a unix socket
            status, reason, code, body = server_error(exc, self.cfg)
            if status == 500:
                self.log.exception("Error handling request %s", getattr(req, "uri", "(no URI read)"))
            else:
                self.log.warning("Invalid request from ip=%s: %s", addr[0], exc)
            head = (
                f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nX-Content-Type-Options: nosniff\r\n\r\n"
            )
            try:
                util.write_nonblock(client, head.encode("latin-1") + body)
            except Exception:
                self.log.debug("Failed to send error message.")
            try:  # the app's metrics module, imported by now (the worker loaded the app)
                from jobqueue_api.metrics import count_refused

                # a 500 is no refusal: the application's response (a header gunicorn would not send,
                # after Flask had counted it) or an error past Flask, logged above
                if status != 500:
                    count_refused(status, code)
            except Exception:
                self.log.exception("could not count a refused request")
            if req is None and isinstance(exc, (gerr.InvalidHeader, gerr.InvalidHeaderName)):
                req = getattr(exc, "req", None)  # the request whose headers were refused, as gunicorn does
            if req is not None and hasattr(req, "body"):  # the access line (at LOG_LEVEL=DEBUG)
                environ = default_environ(req, client, self.cfg)
                environ["REMOTE_ADDR"], environ["REMOTE_PORT"] = addr[0], str(addr[1])
                resp = Response(req, client, self.cfg)
                resp.status = f"{status} {reason}"
                resp.response_length = len(body)
                self.log.access(resp, req, environ, datetime.now() - started)

    JsonErrorsWorker.__name__ = JsonErrorsWorker.__qualname__ = f"JsonErrors{worker_class.__name__}"
    return JsonErrorsWorker
