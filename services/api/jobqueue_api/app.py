"""The application factory (Flask's flaskr pattern): ``create_app(settings)`` -> a configured app.

Settings are parsed once (``jobqueue.settings.load_settings``) unless passed in; the catalogue,
the dataset and the OpenAPI document are built here, once per process (once per gunicorn master
with ``preload_app``, then shared copy-on-write by the workers).
"""

from __future__ import annotations

import logging
import time
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from flask import Flask
from flask.sessions import NullSession, SecureCookieSessionInterface

from atx_analysis.registry import Registry
from jobqueue import keys
from jobqueue.catalogue import catalogue as build_catalogue
from jobqueue.connections import describe
from jobqueue.metrics_collector import QueueCollector
from jobqueue.settings import Settings, load_settings

from . import guards, hooks
from .errors import register_error_handlers
from .openapi import build_spec
from .routes import analysis, docs, health, jobs, meta, ui
from .routes import metrics as metrics_routes
from .state import DatasetSlot, build_state, load_dataset_into
from .waiting import DoneWaiter

log = logging.getLogger("jobqueue.api")


def _version() -> str:
    try:
        return version("atx-jobqueue-api")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "0.0.0"


class OneNullSession(SecureCookieSessionInterface):
    """Flask's cookie sessions, but one shared null session for every request without a secret key
    (this API's case: it keeps no sessions) instead of a new one built and dropped per request. A
    null session refuses every change, so sharing it shares nothing."""

    def make_null_session(self, app: Flask) -> NullSession:
        null = self.__dict__.get("_null")
        if null is None:
            null = self._null = super().make_null_session(app)
        return null


class JobqueueFlask(Flask):
    """Flask, remembering per function whether it needs wrapping: Flask asks
    ``inspect.iscoroutinefunction`` of the view and of every request hook on every request (about
    a microsecond each, six on a submit); this app has no async functions, and asks once."""

    session_interface = OneNullSession()

    def make_default_options_response(self):
        """``OPTIONS`` on a route: 204 with its ``Allow`` header and no body, not Flask's 200 with
        an empty body labelled ``text/html``."""
        response = super().make_default_options_response()
        response.status_code = 204
        del response.headers["Content-Type"]
        return response

    def create_url_adapter(self, request):
        """Routes matched as plain HTTP, also for a request asking to upgrade to WebSocket: the API
        speaks none, and RFC 9110 section 7.8 lets a server ignore ``Upgrade`` (it does for ``h2c``).
        werkzeug matched such a request against WebSocket routes only, of which there are none:
        a 400 saying "the browser (or proxy) sent a request that this server could not understand"."""
        adapter = super().create_url_adapter(request)
        if adapter is not None and adapter.websocket:
            adapter.websocket = False
            adapter.url_scheme = "https" if adapter.url_scheme == "wss" else "http"
        return adapter

    def ensure_sync(self, func):
        cache = self.__dict__.setdefault("_jobqueue_sync", {})
        try:
            return cache[func]
        except KeyError:
            wrapped = cache[func] = super().ensure_sync(func)
            return wrapped


def create_app(
    settings: Settings | None = None, *, dataset: Any = None, load_data: bool = True, catalogue: Registry | None = None
) -> Flask:
    """Build the API. ``dataset`` injects an already-loaded Dataset; ``load_data=False`` skips
    loading DATA_PATH (readiness then reports the data as not loaded)."""
    settings = settings if settings is not None else load_settings()
    app = JobqueueFlask(__name__, static_folder=None)
    # a doubled slash names no route: merged, `/jobs//result` was a 308 to `/jobs/result` (a job named
    # "result") and `//submit` one to `/submit`, an HTML redirect a POST client may not follow
    app.url_map.merge_slashes = False
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]

    state = build_state(settings, catalogue if catalogue is not None else build_catalogue(settings))
    if dataset is not None:
        state.data = DatasetSlot(dataset=dataset, error=None, loaded_at=time.time())
    elif load_data:
        load_dataset_into(state.data, settings.data_path, **settings.data_options())
    state.waiter = DoneWaiter(state.store, settings.max_waiters)
    state.plot_gate = analysis.PlotGate(settings.sync_plots_per_process)
    app.extensions["jobqueue"] = state
    app.extensions["jobqueue_queue_collector"] = QueueCollector(settings)
    app.extensions["jobqueue_openapi"] = build_spec(state.catalogue, settings, _version())

    register_error_handlers(app)
    hooks.install(
        app,
        guards.parse_allowed_hosts(settings.allowed_hosts),
        settings.api_metrics_port,
        tokens=bool(settings.api_token or settings.api_tokens),
    )
    for bp in (jobs.bp, analysis.bp, meta.bp, health.bp, metrics_routes.bp, docs.bp, ui.bp, ui.api):
        app.register_blueprint(bp)
    log.info(
        "api configured",
        extra={
            "queue": keys.queue(settings.queue_name),
            "queue_db": settings.redis_queue_db,
            "jobs_db": settings.redis_jobs_db,
            "redis": describe(settings),
        },
    )
    return app
