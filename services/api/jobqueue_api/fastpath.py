"""The tutorial's submit and status read answered below Flask when nothing about them needs Flask.

Flask's per-request machinery (the request object, URL adapter and routing, contexts and signals,
the hooks, the response object) cost a served ``POST /submit`` about 90 µs of CPU, more than the
submit's own work (body, validation, the group commit, the metrics), which is all this path runs.
It answers only a request the app would answer 202 with nothing else to do: ``POST /submit``, no
query string (but see ``?wait=`` below), no ``Prefer`` header, a Content-Length body, a Host and a Content-Type the guards have
already judged allowed (their remembered verdicts), and a valid job;
and only in an app whose only request hooks are ``hooks.py``'s (:func:`_eligible`, decided at the
first request); with API_TOKEN or API_TOKENS, only for a request with an ``Authorization: Bearer``
header whose token ``auth.py`` knows, acting as that token's name, from a client this process saw no wrong
token within the wrong-token window (:func:`_identity`; ``guesses.py``). With the rate limit on, the submit is counted against its address
in the same group commit, as on Flask's path, and a 429 is answered by Flask (below). Everything else, and every error, goes through
Flask as before: a body this path has read and then refuses (bad JSON, unknown operation, a bad
parameter) is handed to Flask as read, so Flask's answer is the one the client gets; a body that does
not arrive within CLIENT_TIMEOUT_SECONDS (408) or arrives cut short (400), and a refusal or a
failure while storing (429, Redis down), are raised again inside Flask's request handling
(``hooks.py``), so their answers are Flask's too. The body is read as the submit view reads it
(``submission.read_length``): at once when it came in with the headers, else under the deadline;
``requests`` and ``http.client`` send headers and body in two writes, and 23-52% of their
sequential submits found the body not there yet and went through Flask's machinery (the API's CPU
per ``requests`` submit: 515 µs now, 625 before).

The answer is the one the submit view writes (``routes/jobs.py``), counted and timed under the same
metric labels (the time from the body's read to the answer); ``guards.with_headers`` around it adds
the same headers. tests/api/test_fast_submit.py compares both paths' answers through gunicorn.

``GET /status/<id>`` and ``GET /jobs/<id>`` (the poll, and the long poll ``?wait=N``) are answered
here too, on the same terms (a known bearer token when tokens are set, only ``hooks.py``'s hooks, a
Host already allowed, not on the metrics port), when
its id is valid, its query is empty or one plain ``wait=N`` (``params.plain_wait``) and it carries
no body: the job is read and waited for by the view's own ``jobs.read_job`` and written by its
``jobs.status_body``, so there is one rendering of a status answer. Flask's machinery and its part
of the view (``jsonify``, ``url_for``, ``request.args``) were ~110 of the ~440 µs of CPU a status
read cost the API. An unknown job (404) and a failed read (Redis down or hung: 503) are raised again
inside Flask's request handling, as for the submit; HEAD, other queries, a bad id and every
other request go through Flask. tests/api/test_fast_status.py compares both paths' answers.

A submit with an ``Idempotency-Key`` is taken on the same terms (the project's client sends one with
every submit it waits for): the key is read as the view reads it (a malformed one goes to Flask,
which answers its 400) and the job stored by the view's own ``idempotency.store`` (one script call:
the job and the key's record, or the job the key named), its answer carrying the key's headers.
Through Flask's machinery it cost the client's one-exchange round trip 0.3 ms more (p50 1.43 ms
against 1.13 without a key).

``POST /submit?wait=N`` (one exchange: submit and wait for the result) is taken on the submit's
terms when its query is one plain ``wait=N`` (no ``Prefer``): the job is validated as above, then
stored and waited for by the view's own ``jobs.waited_submit``, which registers the wait before the
store and writes the 200 or 202 with ``Location``; every failure is Flask's to answer, as above.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask
from werkzeug.exceptions import HTTPException

from jobqueue.jobs import is_valid_job_id
from jobqueue.lanes import lane_of

from . import auth, idempotency, metrics
from .guards import Guard
from .guesses import TokenGuesses
from .params import plain_wait
from .ratelimit import client_of
from .errors import ApiError
from .submission import accepted_body, parse_body, read_length, store, refuse_without_data, validate_submission

RAISE = "jobqueue.raise"  # environ key: an exception for Flask's request handling to raise (hooks.py)
ROUTE, METHOD = "/submit", "POST"
STATUS = "202 ACCEPTED"
# the status view's two routes (the tutorial's, and the one the web page and /jobs listings use)
STATUS_ROUTES = {"/status/": "/status/<job_id>", "/jobs/": "/jobs/<job_id>"}
SOME_ID = "00000000-0000-4000-8000-000000000000"  # a valid job id, to ask the URL map where reads go


def wrap(app: Flask, wsgi_app: Callable, guard: Guard, metrics_port: int) -> Callable:
    """``wsgi_app`` with the tutorial's submit and status read answered here when they can be
    (module docstring)."""
    state = app.extensions["jobqueue"]
    identity = _identity(state.settings, state.guesses)
    submit_app = _submit(app, wsgi_app, guard, metrics_port, identity)
    status_app = _status(app, wsgi_app, guard, metrics_port, identity)

    def fast_app(environ: dict, start_response: Callable) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        if method == "GET":
            return status_app(environ, start_response)
        if method == METHOD:
            return submit_app(environ, start_response)
        return wsgi_app(environ, start_response)

    return fast_app


def _identity(settings: Any, guesses: TokenGuesses) -> Callable[[dict], tuple[bool, str | None]]:
    """Who a request acts as, and whether this path may answer it: with no tokens configured,
    everyone, as no one; with API_TOKEN or API_TOKENS, only a request with an ``Authorization:
    Bearer`` header whose token ``auth.py`` knows (its name; None for the admin token), judged by
    ``auth.identify_among`` as Flask's path judges it, on the tokens parsed once. Anything else (no
    header, the web page's cookie and its CSRF rule, an unknown token: a 401, counted against its
    client; a right token whose client this process saw a wrong token from within the window, which needs
    the count in Redis: ``guesses.py``, ``TOKEN_FAILURE_LIMIT``) is Flask's to answer."""
    if not (settings.api_token or settings.api_tokens):
        return lambda environ: (True, None)
    admin, named = settings.api_token, auth.named_tokens(settings.api_tokens)

    def identity(environ: dict) -> tuple[bool, str | None]:
        header = environ.get("HTTP_AUTHORIZATION")
        if header is None:
            return False, None
        known = auth.identify_among(admin, named, auth.bearer(header))
        if known[0] and guesses.must_ask(client_of(None, environ.get("REMOTE_ADDR"))):
            return False, None
        return known

    return identity


def _submit(app: Flask, wsgi_app: Callable, guard: Guard, metrics_port: int, identity: Callable) -> Callable:
    """The submit part of :func:`wrap`: a plain valid ``POST /submit``, or one with a plain
    ``?wait=N`` (answered by the submit view's own ``jobs.waited_submit``)."""
    from .routes import jobs

    answered = metrics.child_of_requests(ROUTE, METHOD, "202")
    waited = {200: (metrics.child_of_requests(ROUTE, METHOD, "200"), "200 OK"), 202: (answered, STATUS)}
    latency = metrics.child_of_latency(ROUTE, METHOD)
    known_host, known_type = guard.known_host, guard.known_type
    clock = time.perf_counter
    eligible: list[bool | None] = [None]  # decided at the first request, once every route and hook is in

    def submit_app(environ: dict, start_response: Callable) -> Iterable[bytes]:
        ok = eligible[0]
        if ok is None:
            ok = eligible[0] = _eligible(app, ROUTE, METHOD, jobs.submit)
        if (
            not ok
            or environ.get("PATH_INFO") != ROUTE
            or "HTTP_PREFER" in environ
            or "HTTP_TRANSFER_ENCODING" in environ
            or "HTTP_CONTENT_ENCODING" in environ  # refused by the guard on Flask's path
            or known_host(environ) is not True
            or known_type(environ.get("CONTENT_TYPE", "")) is not True
            or (metrics_port and metrics.local_port(environ) == metrics_port)
        ):
            return wsgi_app(environ, start_response)
        known, owner = identity(environ)
        if not known:
            return wsgi_app(environ, start_response)
        state = app.extensions["jobqueue"]
        query, root = environ.get("QUERY_STRING"), environ.get("SCRIPT_NAME", "")
        wait = None
        if query:  # only a plain ?wait=N (as the view reads it), under a script root written as is
            wait = plain_wait(query, state.settings.max_wait_seconds)
            if wait is None or not root.isascii():
                return wsgi_app(environ, start_response)
        try:
            length = int(environ.get("CONTENT_LENGTH") or "")
        except ValueError:
            return wsgi_app(environ, start_response)
        stream = environ.get("wsgi.input")
        if not 0 < length <= state.settings.max_body_bytes or stream is None:
            return wsgi_app(environ, start_response)
        started = clock()
        try:  # the body may still be on its way: read under Flask's path's own deadline
            raw = read_length(stream, length, state.settings.client_timeout_seconds)
        except ApiError as exc:  # late (408), cut short or unreadable (400): Flask's error handlers answer it
            environ[RAISE] = exc
            return _to_flask(wsgi_app, environ, start_response, b"", started)
        try:
            op, params = validate_submission(parse_body(raw), state.catalogue, state.data.refresh().dataset)
            refuse_without_data(state.data)
            job = state.delivery.new_job(op.name, params, lane_of(op), owner)
            sent_key = environ.get(idempotency.ENVIRON)  # a malformed one: Flask's path answers its 400
            key = None if sent_key is None else idempotency.keyed(sent_key, owner, job)
            # counted against its token's name or its address, as ratelimit.client_id counts it
            limited = state.settings.submit_rate_limit > 0 or state.settings.max_jobs_per_client > 0
            client = client_of(owner, environ.get("REMOTE_ADDR")) if limited else None
        except Exception:  # a refusal (or a bug): Flask's path judges the same body and answers
            return _to_flask(wsgi_app, environ, start_response, raw, started)
        if wait is not None:

            def accept(register: Callable) -> Any:
                register(job)  # for its done message, before it can finish (as the view's _accept)
                if key is not None:  # stored with its key's record, or the job the key named
                    return idempotency.store(state, job, client, key, root, register)
                store(state.submits, (job, client, True), root)  # stored marked waited
                return job

            try:
                code, body, location = jobs.waited_submit(
                    state, accept, wait, root.rstrip("/"), environ.get("gunicorn.socket")
                )
            except Exception as exc:  # a 429, 503, 504 or 404: Flask's error handlers answer it
                environ[RAISE] = exc
                return _to_flask(wsgi_app, environ, start_response, raw, started)
            counter, status_line = waited[code]
            counter.inc()
            latency.observe(clock() - started)
            start_response(
                status_line,
                [
                    ("Content-Type", "application/json"),
                    ("Content-Length", str(len(body))),
                    ("Location", location),
                    *(key.headers() if key is not None else ()),
                ],
            )
            return [body]
        try:
            # returns once the job is stored, queued and counted; may raise the 504 (submission.store)
            if key is None:
                store(state.submits, (job, client), root)
            else:
                job = idempotency.store(state, job, client, key, root)
        except Exception as exc:  # a 429, 503 or 504: Flask's error handlers answer it (hooks.py raises it)
            environ[RAISE] = exc
            return _to_flask(wsgi_app, environ, start_response, raw, started)
        body = accepted_body(job)
        answered.inc()
        latency.observe(clock() - started)
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        start_response(STATUS, headers if key is None else headers + key.headers())
        return [body]

    return submit_app


def _status(app: Flask, wsgi_app: Callable, guard: Guard, metrics_port: int, identity: Callable) -> Callable:
    """The status part of :func:`wrap`: ``GET /status/<id>`` (or ``/jobs/<id>``) of a valid id, with
    no query or a plain ``?wait=N``, no body, on the application port, with a Host the guard has allowed before.
    The job is read (and waited for) as the status view reads it (``jobs.read_job``) and answered
    with the view's own rendering (``jobs.status_body``); an unknown job (404) or a failed read
    (503 and the like) is raised again inside Flask's request handling, which answers it."""
    from .routes import jobs

    # per route prefix: (counter of its 200s, its latency), set at the first request where the
    # prefix's route is the status view (:func:`_eligible`), else None
    routes: dict[str, tuple[Any, Any] | None] = {}
    known_host = guard.known_host
    clock = time.perf_counter

    def status_app(environ: dict, start_response: Callable) -> Iterable[bytes]:
        if not routes:
            for prefix, rule in STATUS_ROUTES.items():
                ok = _eligible(app, prefix + SOME_ID, "GET", jobs.get_job)
                routes[prefix] = (
                    (metrics.child_of_requests(rule, "GET", "200"), metrics.child_of_latency(rule, "GET"))
                    if ok
                    else None
                )
        path = environ.get("PATH_INFO", "")
        prefix, _, job_id = path[1:].partition("/")
        route = routes.get(f"/{prefix}/")
        root = environ.get("SCRIPT_NAME", "")
        if (
            route is None
            or not is_valid_job_id(job_id)
            or "CONTENT_LENGTH" in environ
            or "HTTP_TRANSFER_ENCODING" in environ
            or not root.isascii()
            or known_host(environ) is not True
            or (metrics_port and metrics.local_port(environ) == metrics_port)
        ):
            return wsgi_app(environ, start_response)
        known, owner = identity(environ)
        if not known:
            return wsgi_app(environ, start_response)
        state = app.extensions["jobqueue"]
        wait = plain_wait(environ.get("QUERY_STRING", ""), state.settings.max_wait_seconds)
        if wait is None:  # any other query: Flask's path reads (or refuses) it
            return wsgi_app(environ, start_response)
        started = clock()
        try:
            # another token's job: None, a 404
            job = jobs.read_job(state, job_id, wait, owner, environ.get("gunicorn.socket"))
            if job is None:
                raise jobs.not_found(job_id)
            body = jobs.status_body(job, root.rstrip("/"))  # request.script_root of an ASCII SCRIPT_NAME
        except Exception as exc:  # a 404, a 503 (Redis), a bug: Flask's error handlers answer it
            environ[RAISE] = exc
            environ[metrics.STARTED] = started
            return wsgi_app(environ, start_response)
        answered, latency = route
        answered.inc()
        latency.observe(clock() - started)
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    return status_app


def _eligible(app: Flask, path: str, method: str, view: Callable) -> bool:
    """Whether Flask would do nothing for a plain request to ``path`` that this path leaves out: the
    route is ``view``, the only hooks are ``hooks.py``'s own, and nothing listens to the request's
    signals or tears it down. (With tokens, :func:`_identity` decides who the request acts as.)"""
    from flask import request_finished, request_started

    adapter = app.url_map.bind("localhost")
    try:
        endpoint, _ = adapter.match(path, method=method)
    except HTTPException:  # no such route (404, 405): Flask answers
        return False
    return (
        app.view_functions.get(endpoint) is view
        and set(app.before_request_funcs) <= {None}
        and len(app.before_request_funcs.get(None, ())) == 1
        and not app.after_request_funcs.get("jobs")
        and len(app.after_request_funcs.get(None, ())) == 1
        and not any(app.teardown_request_funcs.values())
        and not app.teardown_appcontext_funcs
        and not any(app.url_value_preprocessors.values())
        and not request_started.receivers
        and not request_finished.receivers
    )


def _to_flask(wsgi_app: Callable, environ: dict, start_response: Callable, raw: bytes, started: float) -> Any:
    """Flask's path for a request whose body this one has read: the body handed over as read, and
    timed from the start of that read, as the submit view's answer would be."""
    environ["wsgi.input"] = io.BytesIO(raw)
    environ[metrics.STARTED] = started
    return wsgi_app(environ, start_response)
