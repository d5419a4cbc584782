"""What every request goes through, in one before- and one after-request hook of the app.

Before the view: with ``API_METRICS_PORT``, /metrics only on its own listener
(``metrics.check_listener``); the browser guards (``guards.Guard.check``: Host allow-list, JSON-only
writes); then the latency clock starts. After it: the request is counted and timed
(``metrics.record``), and the response gets the no-sniff and no-store headers
(``guards.Guard.headers``). Token checks stay on the blueprints that need them (``auth.protect``).

One hook each way rather than one per concern: Flask looks each hook up, wraps it and calls it on
every request, and each one fetched the request through its context-local proxy again; five hooks
were a tenth of a submit's CPU.
"""

from __future__ import annotations

import time

from flask import Flask, request

from . import metrics
from .guards import Guard


def install(app: Flask, allowed_hosts: tuple[str, ...], metrics_port: int) -> None:
    guard = Guard(allowed_hosts)
    check = guard.check
    headers = guard.headers
    check_listener = metrics.check_listener
    record = metrics.record
    started_key = metrics.STARTED
    clock = time.perf_counter

    @app.before_request
    def _before() -> None:
        req = request._get_current_object()  # type: ignore[attr-defined]
        environ = req.environ
        if metrics_port:
            check_listener(req, metrics_port)
        check(req, environ)
        environ[started_key] = clock()

    @app.after_request
    def _after(response):
        req = request._get_current_object()  # type: ignore[attr-defined]
        record(req, response)
        headers(req.path, response)
        return response
