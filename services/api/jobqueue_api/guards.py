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

from flask import Flask, request

from .errors import ApiError

HOST_EXEMPT = frozenset({"/healthz", "/readyz", "/metrics"})
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH"})
NO_STORE_PREFIXES = ("/status/", "/jobs", "/download/", "/results/", "/analysis/", "/incident_count_by_date",
                     "/data", "/submit", "/queue", "/ui/")
# the page's own script, styles and vendored Swagger UI hold no job data: cached, revalidated by ETag
CACHEABLE_PREFIX = "/ui/static/"


def parse_allowed_hosts(raw: str) -> tuple[str, ...]:
    return tuple(h.strip().lower().rstrip(".") for h in raw.split(",") if h.strip())


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
    the ``kubectl port-forward`` address."""
    explicit = tuple(h for h in allowed_hosts if "*" not in h)
    if host_allowed(request.host, explicit):
        return f"{request.scheme}://{request.host}"
    return f"http://localhost:{port}"


# Host headers whose verdict is remembered per process (clients send one or two; a scanner sending
# many only fills this many entries, then is checked each time)
HOST_VERDICTS = 64


def install(app: Flask, allowed_hosts: tuple[str, ...]) -> None:
    verdicts: dict[str, bool] = {}

    def allowed(host: str) -> bool:
        verdict = verdicts.get(host)
        if verdict is None:
            verdict = host_allowed(host, allowed_hosts)
            if len(verdicts) < HOST_VERDICTS:
                verdicts[host] = verdict
        return verdict

    @app.before_request
    def _guard() -> None:
        if request.path not in HOST_EXEMPT and not allowed(request.host):
            raise ApiError(400, "host_not_allowed", "this Host is not in the API's ALLOWED_HOSTS; use the address "
                           "the API is published under (e.g. localhost with kubectl port-forward)")
        if request.method in WRITE_METHODS and request.url_rule is not None:
            mimetype = request.mimetype
            has_body = bool(request.content_length) or "chunked" in request.headers.get("Transfer-Encoding", "").lower()
            if has_body and mimetype != "application/json" and not (mimetype.startswith("application/") and mimetype.endswith("+json")):
                raise ApiError(415, "unsupported_media_type", "send the body as JSON with "
                               "'Content-Type: application/json'", content_type=mimetype[:100] or None)

    @app.after_request
    def _headers(response):
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        if request.path.startswith(NO_STORE_PREFIXES) and not request.path.startswith(CACHEABLE_PREFIX):
            response.headers["Cache-Control"] = "no-store"
        return response
