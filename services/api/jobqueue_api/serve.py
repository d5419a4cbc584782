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

The patching happens in :func:`main` before anything else is imported, so the app the master
preloads (dataset, catalogue, Redis pools) is built on patched sockets and locks.

Prometheus multiprocess mode: ``PROMETHEUS_MULTIPROC_DIR`` (default a fresh temp dir) is created
and wiped before any worker starts, and a worker that exits is marked dead so its live gauges
vanish while its counters stay summed.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

# Connections one worker process serves at once: every waiter plus room for everything else.
CONNECTION_HEADROOM = 1000
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare_multiprocess_dir() -> str:
    """Create (or empty) the metrics directory; must run before prometheus_client is imported."""
    path = os.environ.get(MULTIPROC_ENV) or tempfile.mkdtemp(prefix="jobqueue-api-metrics-")
    if os.path.isdir(path):
        for entry in os.listdir(path):
            target = os.path.join(path, entry)
            if os.path.isdir(target) and not os.path.islink(target):
                shutil.rmtree(target)
            else:
                os.unlink(target)
    os.makedirs(path, exist_ok=True)
    os.environ[MULTIPROC_ENV] = path
    return path


def gunicorn_options(settings) -> dict:
    def child_exit(server, worker):  # gunicorn hook signature
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)

    return {
        "bind": f"{settings.bind_host}:{settings.port}" if ":" not in settings.bind_host
        else f"[{settings.bind_host}]:{settings.port}",
        "workers": settings.web_concurrency,
        "worker_class": "gevent",
        "worker_connections": settings.max_waiters + CONNECTION_HEADROOM,
        "preload_app": True,
        # gevent worker: the whole request line + headers must arrive within keepalive seconds
        # (base_async.AsyncWorker.handle wraps next(parser) in timeout_ctx()); also the idle limit
        "keepalive": settings.client_timeout_seconds,
        # the heartbeat runs on the event loop, so a long poll never delays it: only a loop blocked
        # this long (a bug) gets the worker restarted
        "timeout": 30,
        "graceful_timeout": int(settings.max_wait_seconds) + 5,
        "accesslog": None,  # request metrics and JSON logs cover it; a line per request costs throughput
        "errorlog": "-",
        "loglevel": settings.log_level.lower(),
        "child_exit": child_exit,
        "proc_name": "jobqueue-api",
        "forwarded_allow_ips": "127.0.0.1",
        # containers run with a read-only root: no control socket in $HOME, heartbeats in RAM
        "control_socket_disable": True,
        **({"worker_tmp_dir": "/dev/shm"} if os.path.isdir("/dev/shm") else {}),
    }


def main(argv: list[str] | None = None) -> int:
    from jobqueue.settings import SettingsError, load_settings  # plain parsing: no sockets, no locks

    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"jobqueue-api: configuration error: {exc}", file=sys.stderr)
        return 2
    prepare_multiprocess_dir()

    from .green import patch

    patch()  # before redis, flask, prometheus_client: they all get gevent's sockets and locks

    from gunicorn.app.base import BaseApplication

    from jobqueue.logs import configure_logging

    from .app import create_app

    configure_logging(settings.log_level)

    class Server(BaseApplication):
        def load_config(self) -> None:
            for key, value in gunicorn_options(settings).items():
                if key in self.cfg.settings:  # skip options this gunicorn version lacks
                    self.cfg.set(key, value)

        def load(self):
            return create_app(settings)

    Server().run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
