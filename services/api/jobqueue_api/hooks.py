"""What every request goes through, in one before- and one after-request hook of the app.

Before the view: with ``API_METRICS_PORT``, /metrics only on its own listener
(``metrics.check_listener``); the browser guards (``guards.Guard.check``: an HTTP/1.1 request's
Host present, Host allow-list, JSON-only writes; an absolute-form target's authority stands for its
Host, set as WSGI middleware before the fast path: ``guards.request_target``); then the latency clock starts; then, when tokens are configured, the token of a route that
needs one (``auth.check_token``; so a 401 is timed, as when it was a blueprint hook). After it: the request is counted and timed
(``metrics.record``). The no-sniff and no-store headers are added to the header list the server
gets, as WSGI middleware around the app (``guards.with_headers``). Token checks stay on the
blueprints that need them (``auth.protect``).

One hook each way rather than one per concern: Flask looks each hook up, wraps it and calls it on
every request, and each one fetched the request through its context-local proxy again; five hooks
(six on a token-protected route, whose check ran even with no tokens configured) were a tenth of a
submit's CPU.
"""

from __future__ import annotations

import time

from flask import Flask, request

from . import auth, fastpath, metrics
from .fastpath import RAISE
from .guards import Guard, encoded_slash_in_id, request_target, with_headers


def install(app: Flask, allowed_hosts: tuple[str, ...], metrics_port: int, tokens: bool) -> None:
    """``tokens``: API_TOKEN or API_TOKENS is set, so the routes of ``auth.protect``-ed blueprints
    need one."""
    guard = Guard(allowed_hosts)
    check = guard.check
    check_listener = metrics.check_listener
    protected, check_token = auth.protected, auth.check_token
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
        environ.setdefault(started_key, clock())  # a request the fast path hands over: since its body's read
        failed = environ.pop(RAISE, None)
        if (
            failed is not None
        ):  # the fast path's body read, store or status read failed: answered as the view's would be
            raise failed
        if tokens and protected(req.blueprints):
            check_token()

    @app.after_request
    def _after(response):
        req = request._get_current_object()  # type: ignore[attr-defined]
        record(req, response)
        return response

    # an absolute-form target's authority in HTTP_HOST before the fast path or the Guard reads it
    app.wsgi_app = with_headers(  # type: ignore[method-assign]
        request_target(
            encoded_slash_in_id(fastpath.wrap(app, app.wsgi_app, guard, metrics_port)),
            lambda: {method for rule in app.url_map.iter_rules() for method in rule.methods or ()},
        )
    )
