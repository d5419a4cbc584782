"""``jobqueue-api``: the API under gunicorn, configured in code from the settings.

Worker class ``gevent``: a request is a greenlet, so what waits costs a greenlet, not a thread.
Under gthread each long poll (``?wait=``, up to MAX_WAIT_SECONDS) and each client that sent part
of its headers and went silent held one of a fixed pool of threads (gunicorn's gthread worker
reads headers with a blocking ``next(conn.parser)`` once the first byte has arrived); 64 of them
stopped ``/healthz`` and ``/submit``. Under gevent, waiters park on one shared pub/sub listener per
process (``waiting.py``, at most ``MAX_WAITERS``), and gunicorn's async worker reads each
request's headers inside ``gevent.Timeout(keepalive)``, so ``keepalive`` (``CLIENT_TIMEOUT_SECONDS``)
is the header deadline; ``submission.read_body`` adds the same deadline for bodies. CPU-heavy
synchronous analyses run on native threads (``green.offload``) so they do not stall the loop.
Told to stop (SIGTERM), a worker process answers its long polls at once (``shutdown.py``).

The patching happens in :func:`main` before anything else is imported, so the app the master
preloads (dataset, catalogue, Redis pools) is built on patched sockets and locks.

Prometheus multiprocess mode: ``PROMETHEUS_MULTIPROC_DIR`` (default a fresh temp dir) is created,
or cleared of a previous run's metric files, before any worker starts, and a worker that exits is marked dead so its live gauges
vanish while its counters stay summed.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

# Connections one worker process serves at once: every waiter plus room for everything else.
CONNECTION_HEADROOM = 1000
# How long a stopping worker process lets its requests run before gunicorn kills them. Long polls
# answer at the signal (shutdown.py), so this bounds only the others: a synchronous analysis or plot,
# a large answer to a slow client, and a request still arriving (headers, then body, each within
# CLIENT_TIMEOUT_SECONDS: graceful_timeout below). It was MAX_WAIT_SECONDS + 5 while long polls ran
# out their wait. The chart's API grace period (atx-jobqueue.api.terminationGrace) computes the same.
GRACEFUL_TIMEOUT_SECONDS = 30


def prepare_multiprocess_dir() -> str:
    """The metrics directory, created or cleared of a previous run's metric files (only those);
    must run before prometheus_client is imported."""
    from jobqueue.multiproc import prepare

    return prepare("jobqueue-api-metrics-")


def log_config(level: str) -> dict:
    """gunicorn's own lines (start, workers booting and dying, timeouts) through the project's JSON
    formatter on stdout, like every other line; access lines only at DEBUG (one per request)."""
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "jobqueue.logs.JsonFormatter"}},
        "handlers": {"stdout": handler},
        "root": {"level": level, "handlers": ["stdout"]},
        "loggers": {
            "gunicorn.error": {"level": level, "handlers": ["stdout"], "propagate": False},
            "gunicorn.access": {
                "level": "INFO" if level == "DEBUG" else "WARNING",
                "handlers": ["stdout"],
                "propagate": False,
            },
        },
    }


def logger_class():
    """gunicorn's logger, building an access line only when ``gunicorn.access`` keeps it.

    With ``logconfig_dict`` set (:func:`log_config`), gunicorn assembles each request's ~20 access
    fields and hands them to ``gunicorn.access``, which drops them unless LOG_LEVEL is DEBUG: about
    10 µs of every request (3% of a submit's CPU) for nothing. Imported lazily: gunicorn's modules
    must not load before gevent patches the standard library."""
    import logging

    from gunicorn.glogging import Logger

    class AccessWhenKept(Logger):
        def access(self, resp, req, environ, request_time):
            if self.access_log.isEnabledFor(logging.INFO):
                super().access(resp, req, environ, request_time)

    return AccessWhenKept


def graceful_timeout(settings) -> int:
    """gunicorn's graceful_timeout: GRACEFUL_TIMEOUT_SECONDS, or longer when CLIENT_TIMEOUT_SECONDS
    lets a request take longer to arrive (its headers, then its body)."""
    return max(GRACEFUL_TIMEOUT_SECONDS, 2 * int(settings.client_timeout_seconds) + 5)


def gunicorn_options(settings, on_stop: Callable[[], None] | None = None) -> dict:
    """gunicorn's settings; ``on_stop`` runs in a worker process told to stop (shutdown.py)."""

    def child_exit(server, worker):  # gunicorn hook signature
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)

    def post_worker_init(worker):  # gunicorn hook signature: in each worker process, after the fork
        # the jobs db, recorded in the queue db for the workers to compare with theirs (jobqueue.jobsdb)
        from jobqueue.connections import queue_redis
        from jobqueue.jobsdb import Recorder

        Recorder(queue_redis(settings, timeout=settings.redis_timeout_seconds / 2), settings).start()

    def stopping_worker() -> type:
        # gunicorn calls a function given as worker_class when the option is set (config.validate_class):
        # in load_config, after the patch, so gunicorn's gevent worker is not imported before it
        from .errors import json_errors
        from .shutdown import worker_class

        return json_errors(worker_class(on_stop, write_seconds=settings.client_timeout_seconds))

    from .expect import defer

    def pre_request(worker, req):  # gunicorn hook signature: each request, once parsed
        # RFC 9110 section 2.5: a minor version above the one implemented (HTTP/1.2) is processed as
        # the highest one (1.1), and the answer names the version the server speaks: gunicorn wrote
        # "HTTP/1.2 200 OK" back and told the application SERVER_PROTOCOL HTTP/1.2
        if req.version > (1, 1):
            req.version = (1, 1)
        # "close" among other Connection options (``keep-alive, close``, ``Upgrade, close``) asks to
        # close after this answer (RFC 9112 section 9.6); gunicorn honours it only alone, so the
        # answer said keep-alive and the connection stayed open until the client gave up
        if any(name == "CONNECTION" and "close" in _options(value) for name, value in req.headers):
            req.must_close = True
        # Expect: 100-continue answered at the first read of the body, not before the app looked
        # at the headers: a refusal (413, 401, 415) then goes out instead of the 100 (expect.py)
        defer(req)

    def address(port: int) -> str:
        return f"{settings.bind_host}:{port}" if ":" not in settings.bind_host else f"[{settings.bind_host}]:{port}"

    return {
        # API_METRICS_PORT: a second listener for /metrics only (metrics.check_listener)
        "bind": [address(settings.port)] + ([address(settings.api_metrics_port)] if settings.api_metrics_port else []),
        "workers": settings.web_concurrency,
        # gunicorn's gevent worker, answering its long polls at a SIGTERM and its own refusals (a
        # malformed or too long request line or header) in JSON (errors.json_errors)
        "worker_class": stopping_worker,
        "worker_connections": settings.max_waiters + CONNECTION_HEADROOM,
        "preload_app": True,
        # gevent worker: the whole request line + headers must arrive within keepalive seconds
        # (base_async.AsyncWorker.handle wraps next(parser) in timeout_ctx()); also the idle limit
        "keepalive": settings.client_timeout_seconds,
        # the heartbeat runs on the event loop, so a long poll never delays it: only a loop blocked
        # this long (a bug) gets the worker restarted
        "timeout": 30,
        "graceful_timeout": graceful_timeout(settings),
        "accesslog": None,  # request metrics and JSON logs cover it; a line per request costs throughput
        "errorlog": "-",
        "loglevel": settings.log_level.lower(),
        "logconfig_dict": log_config(settings.log_level),
        "logger_class": logger_class(),
        "child_exit": child_exit,
        "pre_request": pre_request,
        "post_worker_init": post_worker_init,
        "proc_name": "jobqueue-api",
        # whose X-Forwarded-Proto counts: behind an Ingress the proxy is not on loopback
        "forwarded_allow_ips": settings.forwarded_allow_ips,
        # containers run with a read-only root: no control socket in $HOME, heartbeats in RAM
        "control_socket_disable": True,
        **({"worker_tmp_dir": "/dev/shm"} if os.path.isdir("/dev/shm") else {}),
    }


def _options(connection: str) -> list[str]:
    """The options of a ``Connection`` header value, lower-case (a comma-separated list)."""
    return [option.strip(" \t").lower() for option in connection.split(",")]


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    from jobqueue.settings import program_parser  # not .app: prometheus_client must wait for the metrics dir

    return program_parser(
        "jobqueue-api",
        "atx-jobqueue-api",
        "Serve the atx-jobqueue API under gunicorn, e.g. PORT=5000 BIND_HOST=127.0.0.1 "
        "REDIS_URL=redis://127.0.0.1:6379 jobqueue-api.",
        "Exit status 2: a malformed variable (the message names it), or a BIND_HOST, PORT or "
        "API_METRICS_PORT this machine cannot listen on (another program holds the port).",
    ).parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    _parse_args(argv)  # --help and --version answer and exit before anything starts
    # first: a worker started beside the API on the same directory creates its metric files a moment
    # later, and clearing stale ones after that (behind the second the patch takes) deleted them
    prepare_multiprocess_dir()
    from .green import patch

    # before the settings too: they check REDIS_URL with redis-py, whose import pulls in ssl, and
    # gevent cannot patch an ssl imported before it ("MonkeyPatchWarning" at every start)
    patch()  # before redis, flask, prometheus_client: they all get gevent's sockets, locks and ssl

    from jobqueue.settings import (  # after the patch
        SettingsError,
        check_listen_host,
        check_listen_port,
        load_settings,
        warn_misnamed,
    )

    try:
        settings = load_settings()
        check_listen_host("BIND_HOST", settings.bind_host)  # not gunicorn's 5 s of retries, then "Can't connect"
        for name, port in (("PORT", settings.port), ("API_METRICS_PORT", settings.api_metrics_port)):
            if port:
                check_listen_port(name, settings.bind_host, port)
    except SettingsError as exc:
        print(f"jobqueue-api: configuration error: {exc}", file=sys.stderr)
        return 2

    from gunicorn.app.base import BaseApplication

    from jobqueue.heap import freeze_startup_heap
    from jobqueue.logs import configure_logging

    from .app import create_app
    from .batching import UNDER_WAY
    from .corking import corked
    from .unread import closing_unread

    configure_logging(settings.log_level)
    warn_misnamed(logging.getLogger("jobqueue.api"))

    class Server(BaseApplication):
        flask_app: Any = None

        def load_config(self) -> None:
            for key, value in gunicorn_options(settings, on_stop=self.stopping).items():
                if key in self.cfg.settings:  # skip options this gunicorn version lacks
                    self.cfg.set(key, value)

        def load(self):
            self.flask_app = create_app(settings)
            # one TCP segment per small response; requests under way counted (batching.UnderWay); an
            # answer leaving a body gunicorn must not read after it closes the connection (unread.py)
            app = corked(closing_unread(UNDER_WAY.counted(self.flask_app), settings.max_body_bytes))
            # in the master (preload_app), before the fork: both worker processes inherit it frozen
            logging.getLogger("jobqueue.api").info("start-up heap frozen", extra=freeze_startup_heap())
            return app

        def stopping(self) -> None:
            """In a worker told to stop: its long polls answer now (waiting.DoneWaiter.close)."""
            self.flask_app.extensions["jobqueue"].waiter.close()

    Server().run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
