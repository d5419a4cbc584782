"""Request guards for browsers on the same machine: JSON-only writes, a Host allow-list, and
response headers that keep job data out of caches and content sniffing.

A tokenless API reached through ``kubectl port-forward`` listens on the user's own 127.0.0.1, so
any web page the user opens can send it requests. ``POST`` must carry ``application/json`` (415
otherwise): a cross-site page can only send that after a CORS preflight, which this API never
grants, so no page can submit jobs. ``Host`` must be in ``ALLOWED_HOSTS``: a DNS-rebinding page
(its own name resolving to 127.0.0.1) sends its own name as Host and is refused, so it cannot
read ``/jobs``. Probes and Prometheus scrape by pod IP, so ``/healthz``, ``/readyz`` and
``/metrics`` skip the Host check (they hold no job data).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import unquote_to_bytes, urlsplit

from flask import request

from .errors import ApiError

HOST_EXEMPT = frozenset({"/healthz", "/readyz", "/metrics"})
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH"})
NO_STORE_PREFIXES = (
    "/status/",
    "/jobs",
    "/download/",
    "/results/",
    "/analysis/",
    "/incident_count_by_date",
    "/data",
    "/submit",
    "/queue",
    "/ui/",
)
# the page's own script, styles and vendored Swagger UI hold no job data: cached, revalidated by ETag
CACHEABLE_PREFIX = "/ui/static/"


def parse_allowed_hosts(raw: str) -> tuple[str, ...]:
    """The allow-list as :func:`host_allowed` compares it: lower case, no trailing dot, and each
    entry's host alone. An entry written as an address (``myvm.example:5000``, ``http://myvm.example/``,
    the form a browser shows) never matched, since the check drops the request's port: every request
    by that name got 400 host_not_allowed. An IPv6 address gets the brackets Host carries (``::1``)."""
    return tuple(_allowed_host(h) for h in raw.split(",") if h.strip())


def _allowed_host(entry: str) -> str:
    import ipaddress

    entry = entry.strip().lower()
    try:
        return f"[{ipaddress.IPv6Address(entry)}]"
    except ValueError:
        pass
    if "/" in entry or entry.count(":") == 1 or (entry.startswith("[") and not entry.endswith("]")):
        try:
            host = urlsplit("//" + entry.split("://", 1)[-1]).hostname
        except ValueError:  # not an address either: kept as written (it matches nothing)
            host = None
        if host:
            entry = f"[{host}]" if ":" in host else host
    return entry.rstrip(".")


def host_allowed(host: str, allowed: tuple[str, ...]) -> bool:
    """``host`` (a Host header, port included or not) against the allow-list: ``*`` allows any;
    an entry matches the whole name, and a ``*`` label in it matches exactly one label
    (``api.*.svc.cluster.local`` covers the Service in any namespace)."""
    if "*" in allowed:
        return True
    name = host.strip().lower()
    if name.startswith("["):  # [::1]:5000
        name = name.split("]", 1)[0] + "]"
    elif name.count(":") == 1:
        name = name.split(":", 1)[0]
    name = name.rstrip(".")
    if not name:
        return False
    labels = name.split(".")
    for entry in allowed:
        pattern = entry.split(".")
        if len(pattern) == len(labels) and all(p == "*" or p == label for p, label in zip(pattern, labels)):
            return True
    return False


def public_base(allowed_hosts: tuple[str, ...], port: int) -> str:
    """The API's address for copy-paste examples (``/help``): the request's Host only when an
    explicit allow-list entry names it (never a client's arbitrary Host, even with ``*``), else
    the ``kubectl port-forward`` address; either way with the app's own path prefix (``SCRIPT_NAME``:
    gunicorn then answers every path outside it with a 500)."""
    explicit = tuple(h for h in allowed_hosts if "*" not in h)
    if host_allowed(request.host, explicit):
        return f"{request.scheme}://{request.host}{request.script_root}"
    return f"http://localhost:{port}{request.script_root}"


# Host headers whose verdict is remembered per process (clients send one or two; a scanner sending
# many only fills this many entries, then is checked each time)
HOST_VERDICTS = 64


def request_target(wsgi_app: Callable, methods: Callable[[], Iterable[str]] = tuple) -> Callable:
    """``wsgi_app`` judging a request whose target is in absolute-form (``GET http://evil.example/jobs
    HTTP/1.1``) by the target's authority, not by its ``Host`` header: RFC 9112 section 3.2.2 says a
    server MUST ignore Host then and use the target's host. gunicorn does not (27.0,
    ``gunicorn/http/message.py`` ``parse_request_line``: ``RAW_URI`` is the target as sent and
    ``PATH_INFO`` its path alone, from ``urlsplit``; ``gunicorn/http/wsgi.py`` ``create``:
    ``HTTP_HOST`` is the Host header, whatever the target named), and werkzeug's ``get_host`` reads
    ``HTTP_HOST`` (``werkzeug/sansio/utils.py``), so ``Host: localhost`` let such a request past the
    allow-list under any other name. ``HTTP_HOST`` is set to the authority here, before the fast path
    (``fastpath.py``) and the Guard read it, as werkzeug's own development server does
    (``werkzeug/serving.py``, ``make_environ``). An HTTP/1.1 request with no Host header is left
    without one, for the Guard's 400 ``missing_host`` (RFC 9112 section 3.2), whatever its target.
    A target with no path (``http://host:port``) is served as ``/``.

    ``OPTIONS *`` (asterisk-form, which gunicorn takes for OPTIONS only) asks about the server as a
    whole (RFC 9110 section 9.3.7): ``204`` with every method some route takes (``methods()``) in
    ``Allow``, where it was the 404 "no such route" of a path ``/*``."""

    def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
        target = environ.get("RAW_URI", "")
        if target == "*":
            start_response("204 No Content", [("Allow", ", ".join(sorted(methods())))])
            return []
        # absolute-form as gunicorn tells it (origin-form starts with "/", absolute-form has "://")
        if not target.startswith("/") and "://" in target and not missing_host(environ):
            try:
                environ["HTTP_HOST"] = urlsplit(target).netloc
            except ValueError:  # gunicorn split the same target without error; never trust the header
                environ["HTTP_HOST"] = ""
            if not environ.get("PATH_INFO") and not environ.get("SCRIPT_NAME"):
                # ``http://host:port`` with no path means "/" (RFC 9110 section 4.2.3); an empty
                # PATH_INFO got Flask's HTML 308 to "/" (a POST was never served, whatever it carried)
                environ["PATH_INFO"] = "/"
        return wsgi_app(environ, start_response)

    return app


# the routes whose second path segment is a job id (``/status/<id>``, ``/jobs/<id>/result``...)
JOB_ID_ROUTES = frozenset({"status", "jobs", "download", "results"})
# and the web page's job page, whose third is (``/ui/jobs/<id>``)
JOB_PAGE = ["", "ui", "jobs"]


def encoded_slash_in_id(wsgi_app: Callable) -> Callable:
    """``wsgi_app`` keeping an escaped ``/`` (``%2F``) inside a job id's path segment: ``GET
    /status/abc%2Fresult`` asks for the job ``abc/result``, which is not a job id (400
    ``invalid_job_id``). gunicorn unescapes the whole path into ``PATH_INFO``
    (``gunicorn/http/wsgi.py``, ``create``), so the escaped slash split the id and the request
    reached another route or none ("no such route"; ``DELETE /jobs/x%2Fresult`` a 405). Only the
    job routes are rebuilt, from ``RAW_URI`` segment by segment, with the slash left as ``%2F``; the
    web page's job page too, so ``/ui/jobs/x%2Fy`` is its 400 page for an id that is not one, as
    ``/ui/jobs/x`` is (it was the HTML 404 "no such route")."""

    def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
        target = environ.get("RAW_URI", "")
        if "%2f" in target.lower():
            path = target.split("?", 1)[0].split("#", 1)[0] if target.startswith("/") else _path_of(target)
            root = environ.get("SCRIPT_NAME", "")
            if root and path.startswith(root):
                path = path[len(root) :]
            segments = path.split("/")
            if (len(segments) > 2 and segments[0] == "" and segments[1] in JOB_ID_ROUTES) or (
                len(segments) > 3 and segments[:3] == JOB_PAGE
            ):
                environ["PATH_INFO"] = "/".join(
                    unquote_to_bytes(part).decode("latin-1").replace("/", "%2F") for part in segments
                )
        return wsgi_app(environ, start_response)

    return app


def _path_of(target: str) -> str:
    """The path of an absolute-form request target (``http://host/status/x``); "" if malformed."""
    try:
        return urlsplit(target).path
    except ValueError:
        return ""


def missing_host(environ: dict) -> bool:
    """An HTTP/1.1 request without a Host header, which RFC 9112 section 3.2 says a server MUST answer
    400 (HTTP/1.0 did not require one: judged by the server's own address, as werkzeug's
    ``get_host`` falls back to it)."""
    return "HTTP_HOST" not in environ and environ.get("SERVER_PROTOCOL") == "HTTP/1.1"


def not_utf8_param(query: str) -> str | None:
    """The name of the first query parameter whose bytes, %-escapes decoded, are not UTF-8 text
    (``?road=%ff``), else None. werkzeug keeps such bytes as the escape's text, so the road searched
    for was the three characters "%FF" and the answer a count of 0 where the request was garbled."""
    if query.isascii() and "%" not in query:
        return None
    for pair in query.split("&"):
        try:
            unquote_to_bytes(pair.replace("+", " ").encode("latin-1")).decode("utf-8")
        except (UnicodeDecodeError, UnicodeEncodeError):
            name = pair.partition("=")[0]
            return unquote_to_bytes(name.encode("latin-1", "replace")).decode("utf-8", "replace")[:64]
    return None


def unread_transfer_codings(header: str) -> list[str]:
    """The codings of a ``Transfer-Encoding`` other than ``chunked``: ``gzip``, ``deflate``,
    ``compress`` or ``identity`` before ``chunked``. gunicorn accepts these names (any other it
    refuses, 501) but undoes only the chunking, so the application got the body still compressed: a
    gzip body was "400 invalid_json: not UTF-8 text", and plain JSON labelled ``gzip, chunked`` was
    stored as if the label were not there. ``identity`` is no coding since RFC 7230 (RFC 9112 has
    none): ``identity, chunked`` was accepted while an unknown name (``xchunked``) was refused, so it
    is refused as well; only a lone ``chunked`` is."""
    names = [part.strip(" \t").lower() for part in header.split(",")]
    return [name for name in names if name and name != "chunked"]


def json_mimetype(mimetype: str) -> bool:
    """``application/json`` or a type with RFC 6839's ``+json`` suffix (``application/vnd.api+json``,
    ``application/problem+json``): a JSON body all the same, and none a page can send without a CORS
    preflight. The fast path takes a submit only on this verdict, remembered (``Guard.known_type``),
    so both paths accept the same types; docs/api.md says which."""
    return mimetype == "application/json" or (
        mimetype.startswith("application/") and mimetype.endswith("+json") and len(mimetype) > len("application/+json")
    )


class Guard:
    """The checks before a request (:meth:`check`), called from the app's one before-request hook
    (``hooks.install``).

    Verdicts are remembered per raw header value (scheme and Host; Content-Type), so a request
    repeating what an earlier one sent is judged by one dict lookup, not by werkzeug's parsing of
    each header again."""

    def __init__(self, allowed_hosts: tuple[str, ...]):
        self.allowed_hosts = allowed_hosts
        self._host_verdicts: dict[tuple[str, str], bool] = {}
        self._type_verdicts: dict[str, tuple[bool, str]] = {}

    def check(self, req, environ: dict) -> None:
        """Raise the 400 of an HTTP/1.1 request without Host, of a Host not allowed or of a query
        parameter that is not UTF-8, the 415 of a write whose body is not JSON, or the 501 of a
        write whose body is transfer-coded other than chunked."""
        if missing_host(environ):  # every path: a malformed request, not a question of allow-list
            raise ApiError(
                400,
                "missing_host",
                "an HTTP/1.1 request must carry a Host header (RFC 9112 section 3.2); send the address "
                "the API is published under, e.g. 'Host: localhost' with kubectl port-forward",
            )
        if req.path not in HOST_EXEMPT and not self._host_ok(req, environ):
            raise ApiError(
                400,
                "host_not_allowed",
                "this Host is not in the API's ALLOWED_HOSTS (a request target in absolute-form, "
                "'GET http://name/...', is judged by the name it gives, not by its Host header); use the "
                "address the API is published under (e.g. localhost with kubectl port-forward)",
            )
        bad = not_utf8_param(environ.get("QUERY_STRING", ""))
        if bad is not None:
            raise ApiError(
                400,
                "invalid_param",
                f"query parameter {bad!r} is not UTF-8 text once its %-escapes are decoded; "
                "percent-encode the UTF-8 bytes of the text (curl --data-urlencode does)",
                param=bad,
            )
        if req.method in WRITE_METHODS and req.url_rule is not None:
            has_body = bool(req.content_length) or "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
            if has_body:
                json_body, mimetype = self._type_ok(req, environ.get("CONTENT_TYPE", ""))
                if not json_body:
                    raise ApiError(
                        415,
                        "unsupported_media_type",
                        "send the body as JSON with 'Content-Type: application/json'",
                        content_type=mimetype[:100] or None,
                    )
                coding = environ.get("HTTP_CONTENT_ENCODING", "").strip()
                if coding and coding.lower() != "identity":
                    # the body is read as it arrives: a gzip body was "not UTF-8 text", and plain JSON
                    # labelled gzip was stored as if the label were not there (RFC 9110 section 15.5.16)
                    error = ApiError(
                        415,
                        "unsupported_media_type",
                        "the API reads the body as sent, with no content coding: send the JSON "
                        "uncompressed, without a Content-Encoding header",
                        content_encoding=coding[:100],
                    )
                    error.headers["Accept-Encoding"] = "identity"
                    raise error
                codings = unread_transfer_codings(environ.get("HTTP_TRANSFER_ENCODING", ""))
                if codings:
                    raise ApiError(
                        501,
                        "unsupported_transfer_coding",
                        f"the API undoes no transfer coding but chunked ({', '.join(codings)} was sent): send "
                        "the JSON uncompressed, with 'Transfer-Encoding: chunked' alone or a Content-Length",
                        transfer_encoding=environ.get("HTTP_TRANSFER_ENCODING", "")[:100],
                    )

    def known_host(self, environ: dict) -> bool | None:
        """The remembered verdict on this request's Host, None if not judged yet."""
        raw = environ.get("HTTP_HOST")
        return None if raw is None else self._host_verdicts.get((environ.get("wsgi.url_scheme", ""), raw))

    def known_type(self, content_type: str) -> bool | None:
        """The remembered verdict on a write's Content-Type (JSON or not), None if not judged yet."""
        verdict = self._type_verdicts.get(content_type)
        return None if verdict is None else verdict[0]

    def _host_ok(self, req, environ: dict) -> bool:
        raw = environ.get("HTTP_HOST")
        if raw is None:  # HTTP/1.0 without Host: werkzeug falls back to the server's name
            return host_allowed(req.host, self.allowed_hosts)
        key = (environ.get("wsgi.url_scheme", ""), raw)
        verdict = self._host_verdicts.get(key)
        if verdict is None:
            verdict = host_allowed(req.host, self.allowed_hosts)
            if len(self._host_verdicts) < HOST_VERDICTS:
                self._host_verdicts[key] = verdict
        return verdict

    def _type_ok(self, req, raw: str) -> tuple[bool, str]:
        verdict = self._type_verdicts.get(raw)
        if verdict is None:
            mimetype = req.mimetype
            verdict = (json_mimetype(mimetype), mimetype)
            if len(self._type_verdicts) < HOST_VERDICTS:
                self._type_verdicts[raw] = verdict
        return verdict


NOSNIFF = ("X-Content-Type-Options", "nosniff")
NO_STORE = ("Cache-Control", "no-store")


def with_headers(wsgi_app: Callable) -> Callable:
    """``wsgi_app`` answering every response with ``X-Content-Type-Options: nosniff`` (unless it
    set the header itself) and, on the paths that hold job data, ``Cache-Control: no-store``
    (replacing any other). Added to the header list the server gets, rather than through werkzeug's
    ``Headers`` in an after-request hook, whose look-ups by name were 2-3% of a submit's CPU."""

    def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = "/" + environ.get("PATH_INFO", "").lstrip("/")  # as request.path reads it
        no_store = path.startswith(NO_STORE_PREFIXES) and not path.startswith(CACHEABLE_PREFIX)

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable:
            names = [name.lower() for name, _ in headers]
            if no_store and "cache-control" in names:
                headers[:] = [h for h, name in zip(headers, names) if name != "cache-control"]
            if "x-content-type-options" not in names:
                headers.append(NOSNIFF)
            if no_store:
                headers.append(NO_STORE)
            return start_response(status, headers, exc_info)

        return wsgi_app(environ, start)

    return app
