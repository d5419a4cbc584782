"""A Prometheus metrics endpoint that answers like one (the worker's WORKER_METRICS_PORT).

prometheus_client's ``start_http_server`` serves the exposition on every path (``/anything``,
``/favicon.ico`` answered 200, so a typo in a scrape config or a probe went unnoticed) and refuses
HEAD with 405. This server answers as the API's ``/metrics`` does (Flask, ``API_METRICS_PORT``):

* ``GET /metrics``: the exposition, built by prometheus_client's own WSGI app, so ``Accept``
  (OpenMetrics), ``Accept-Encoding: gzip`` and ``?name[]=`` behave exactly as they did;
* ``HEAD /metrics``: the same status and headers, no body;
* ``OPTIONS /metrics``: 200 with ``Allow`` (no Content-Length is allowed on a 204, which wsgiref adds);
* any other method on ``/metrics``: 405 with ``Allow: GET, HEAD, OPTIONS``;
* any other path: 404.

Standard library only (``wsgiref``), a thread per request, requests not logged (as before).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import REGISTRY, make_wsgi_app
from prometheus_client.registry import Collector

PATH = "/metrics"
ALLOW = "GET, HEAD, OPTIONS"


def metrics_app(registry: Collector = REGISTRY) -> Callable:
    """The WSGI app: prometheus_client's for GET /metrics (and HEAD, body dropped), else 404/405."""
    exposition = make_wsgi_app(registry)

    def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        if environ.get("PATH_INFO") != PATH:
            return _plain(start_response, "404 Not Found", f"not found; the metrics are at {PATH}\n")
        if method == "GET":
            return exposition(environ, start_response)
        if method == "HEAD":
            answer: list = []
            body = b"".join(exposition({**environ, "REQUEST_METHOD": "GET"}, lambda *a: answer.extend(a[:2])))
            status, headers = answer
            # GET's status and headers with the length GET would send (RFC 9110 section 9.3.2), no body
            if not any(name.lower() == "content-length" for name, _value in headers):
                headers = [*headers, ("Content-Length", str(len(body)))]
            start_response(status, headers)
            return []
        if method == "OPTIONS":
            start_response("200 OK", [("Allow", ALLOW), ("Content-Length", "0")])
            return []
        return _plain(start_response, "405 Method Not Allowed", f"{method} not allowed on {PATH}\n", ALLOW)

    return app


def _plain(start_response: Callable, status: str, text: str, allow: str | None = None) -> list[bytes]:
    body = text.encode()
    headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
    if allow:
        headers.append(("Allow", allow))
    start_response(status, headers)
    return [body]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a scrape in flight does not hold up the process' exit


class _Quiet(WSGIRequestHandler):
    def log_message(self, format, *args):
        """Scrapes and probes are not logged, as with prometheus_client's server."""


def serve_metrics(port: int, host: str, registry: Collector = REGISTRY) -> WSGIServer:
    """Serve :func:`metrics_app` on ``host:port`` from a daemon thread; IPv4 or IPv6 as ``host``
    resolves. Raises OSError when it cannot listen there (the caller decides whether that is fatal)."""
    family, _type, _proto, _name, sockaddr = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    server_class = type("MetricsServer", (_Server,), {"address_family": family})
    server: WSGIServer = make_server(str(sockaddr[0]), port, metrics_app(registry), server_class, handler_class=_Quiet)
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    return server
