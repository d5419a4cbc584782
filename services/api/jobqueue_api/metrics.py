"""The API's own metrics (docs/metrics.md) and the ``/metrics`` exposition.

Under gunicorn, ``jobqueue-api`` sets ``PROMETHEUS_MULTIPROC_DIR`` before anything imports
prometheus_client, so these counters are kept in per-process files that ``/metrics`` merges
(MultiProcessCollector) whichever worker answers the scrape. Without it (flask test client, a
plain ``flask run``) they live in the default in-process registry.

With ``API_METRICS_PORT`` set, gunicorn listens on a second port and ``/metrics`` is answered only
on connections that arrived there (:func:`check_listener`): whatever publishes PORT (an Ingress,
a NodePort, a LoadBalancer) then cannot publish the metrics.
"""

from __future__ import annotations

import os
import time

from flask import Response, abort
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess

from jobqueue.metrics_collector import QueueCollector

from .errors import counted_refusals

REQUESTS = Counter("jobqueue_http_requests_total", "HTTP requests answered", ["route", "method", "status"])
LATENCY = Histogram(
    "jobqueue_http_request_duration_seconds",
    "HTTP request latency",
    ["route", "method"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
SUBMITTED = Counter("jobqueue_jobs_submitted_total", "jobs accepted (202)", ["operation"])
REFUSED = Counter(
    "jobqueue_http_refused_total",
    "requests the HTTP server refused before the application saw them (malformed, too long)",
    ["status", "error"],
)
LONG_POLLS = Gauge("jobqueue_api_long_polls", "?wait= requests waiting for their job now", multiprocess_mode="livesum")
LONG_POLLS_REFUSED = Counter(
    "jobqueue_api_long_polls_refused_total", "?wait= requests answered at once because the process held MAX_WAITERS"
)

# Every label takes its value from a fixed set, whatever a client sends: gunicorn passes any
# uppercase token as a method, and each new value would add ~20 series for good (and grow the
# multiprocess files). Routes are URL rule templates; anything without one is UNMATCHED.
UNMATCHED = "<unmatched>"  # 404s and 405s: one label value, not one per scanned URL
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
OTHER_METHOD = "other"


def method_label(method: str) -> str:
    return method if method in METHODS else OTHER_METHOD


def status_label(status: int) -> str:
    """The status code when it is a real one (100-599), else its class; a fixed set either way."""
    return str(status) if 100 <= status <= 599 else "other"


class Children(dict):
    """``metric.labels(*values)`` remembered per label tuple: ``labels()`` takes a lock and checks
    its arguments on every call, and these label sets are fixed and few (see above)."""

    def __init__(self, metric):
        super().__init__()
        self.metric = metric

    def __missing__(self, values: tuple[str, ...]):
        child = self[values] = self.metric.labels(*values)
        return child


_REQUESTS = Children(REQUESTS)
_LATENCY = Children(LATENCY)
SUBMITTED_BY_OPERATION = Children(SUBMITTED)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


METRICS_ENDPOINT = "metrics.metrics"  # the blueprint route of routes/metrics.py


def local_port(environ: dict) -> int | None:
    """The port of the listener a request's connection arrived on, from the connection itself.

    gunicorn puts the accepted socket in ``environ["gunicorn.socket"]`` (http/wsgi.py,
    default_environ); its ``getsockname()`` is this end of the TCP connection, so its port is the
    listener's, whatever the client wrote in Host (SERVER_NAME/SERVER_PORT come from the listener
    too, but the PROXY protocol may rewrite them). None when there is no such socket (a test
    client, a UNIX socket): such a request is treated as one on the application port."""
    sock = environ.get("gunicorn.socket")
    if sock is None:
        return None
    try:
        name = sock.getsockname()
    except OSError:
        return None
    return name[1] if isinstance(name, tuple) and len(name) >= 2 else None


def check_listener(req, port: int) -> None:
    """With ``API_METRICS_PORT`` set: /metrics only on the metrics listener, and nothing but
    /metrics there; both are a 404 like any unknown route (JSON, from errors.py). Checked before the
    Host guard (``hooks.py``), so a scrape by pod IP needs no ALLOWED_HOSTS entry and the metrics
    port reveals nothing about other routes."""
    on_metrics_port = local_port(req.environ) == port
    if on_metrics_port != (req.endpoint == METRICS_ENDPOINT):
        abort(404)


STARTED = "jobqueue.started"  # environ key: when the request passed the checks (``hooks.py``)


def record(req, response) -> None:
    """Count the answered request by route, method and status, and observe its latency (from
    :data:`STARTED`: a request refused by the checks before it is counted, not timed)."""
    rule = req.url_rule.rule if req.url_rule is not None else UNMATCHED
    method = method_label(req.method)
    _REQUESTS[rule, method, status_label(response.status_code)].inc()
    started = req.environ.get(STARTED)
    if started is not None:
        _LATENCY[rule, method].observe(time.perf_counter() - started)


def child_of_requests(route: str, method: str, status: str):
    """The requests counter of one label set (a path that records its answers itself)."""
    return _REQUESTS[route, method, status]


def child_of_latency(route: str, method: str):
    return _LATENCY[route, method]


def count_refused(status: int, error: str) -> None:
    """Count a request gunicorn refused (errors.json_errors): both labels come from the fixed rows
    of errors.SERVER_ERRORS, whatever the client sent."""
    REFUSED.labels(status_label(status), error).inc()


def _start_refusals_at_zero() -> None:
    """Every refusal's series from the start, at 0: a labelled counter has none until its first
    ``labels()``, so ``rate()``, the recording rule and the alert saw nothing (not 0) until gunicorn
    first refused a request. Each process adds its zeros to the multiprocess files; the sum is 0."""
    for status, code in counted_refusals():
        REFUSED.labels(status_label(status), code)


_start_refusals_at_zero()


def count_submitted(operations: list[str]) -> None:
    """Count accepted jobs by operation: once per operation of a stored batch, not once a job."""
    counts: dict[str, int] = {}
    for name in operations:
        counts[name] = counts.get(name, 0) + 1
    for name, n in counts.items():
        SUBMITTED_BY_OPERATION[(name,)].inc(n)


def exposition(queue_collector: QueueCollector) -> Response:
    if multiprocess_dir():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        registry.register(queue_collector)
        body = generate_latest(registry)
    else:
        scrape = CollectorRegistry()
        scrape.register(queue_collector)
        body = generate_latest(REGISTRY) + generate_latest(scrape)
    return Response(body, mimetype=CONTENT_TYPE_LATEST.split(";")[0], headers={"Content-Type": CONTENT_TYPE_LATEST})
