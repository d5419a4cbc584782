"""``jobqueue-worker``: settings, operations and data loaded once, then one or more worker processes.

With WORKER_CONCURRENCY=1 (the default, one process per pod) the worker runs in this process.
With more, this process becomes a small supervisor (:class:`Supervisor`): it loads the dataset, forks the children (which
share the loaded data copy-on-write), restarts a child that dies (waiting longer after each quick
death in a row: restart_delay), forwards SIGTERM/SIGINT and exits 0
once every child has finished its job in hand (2 in burst mode when a child exited 2: another
REDIS_JOBS_DB than the API's, which a restart would not change). Metrics: see jobqueue_worker.metrics.
"""

from __future__ import annotations

import argparse
import logging
import ctypes
import os
import signal
import sys
import time
from collections.abc import Callable

from jobqueue import multiproc
from jobqueue.heap import freeze_startup_heap
from jobqueue.logs import configure_logging
from jobqueue.settings import Settings, SettingsError, load_settings, warn_misnamed

log = logging.getLogger("jobqueue.worker")


def load_catalogue(settings: Settings):
    """The deployment's catalogue of operations, the same the API offers."""
    from jobqueue.catalogue import catalogue

    return catalogue(settings)


def preload(catalogue, data) -> None:
    """Load the dataset before taking jobs when any operation needs it (waits for the file)."""
    if any(op.needs_dataset for op in catalogue):
        data.get()


RESTART_FIRST_DELAY = 0.5  # seconds before restarting a child that died
RESTART_MAX_DELAY = 30.0
RESTART_HEALTHY_SECONDS = 60.0  # a child that lived this long starts the count of quick deaths again


def restart_delay(quick_deaths: int) -> float:
    """Seconds to wait before restarting a child after ``quick_deaths`` deaths in a row, each within
    RESTART_HEALTHY_SECONDS of its start: 0.5 s, doubling, at most 30 s. A child that dies at once
    (a bad import, a broken dependency) is then restarted a few times a minute, not twice a second
    forever, which filled the log with tracebacks and kept a core busy."""
    return min(RESTART_FIRST_DELAY * 2 ** max(quick_deaths - 1, 0), RESTART_MAX_DELAY)


def _stop_during_startup(signum, frame):
    raise SystemExit(0)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    """As ``jobqueue-api``'s: --help names the variables, --version answers; neither loads anything."""
    from jobqueue.settings import program_parser

    parser = program_parser(
        "jobqueue-worker",
        "atx-jobqueue-worker",
        "Run atx-jobqueue jobs from Redis, e.g. REDIS_URL=redis://127.0.0.1:6379 WORKER_METRICS_PORT=9100 "
        "jobqueue-worker.",
        "Exit status 2: a malformed variable (the message names it), or with --burst a REDIS_JOBS_DB "
        "other than the one the API recorded (or, none recorded, an id its jobs db has neither a "
        "document nor an index entry for); "
        "3: the dataset is in no form it reads (a missing file is waited for).",
    )
    parser.add_argument("--burst", action="store_true", help="drain the queue, then exit (tests, batch runs)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"jobqueue-worker: configuration error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level)
    warn_misnamed(log)
    signal.signal(signal.SIGTERM, _stop_during_startup)
    signal.signal(signal.SIGINT, _stop_during_startup)
    if settings.worker_concurrency > 1:
        return supervise(settings, args.burst)

    from .data import DataSource
    from .worker import Worker

    catalogue = load_catalogue(settings)
    data = DataSource(settings.data_path, lambda: False, **settings.data_options())
    if not load_and_serve(settings, catalogue, data):
        return 3
    worker = Worker(settings, catalogue, data)
    log.info("start-up heap frozen", extra=freeze_startup_heap())  # jobqueue.heap
    return worker.work(burst=args.burst)


def load_and_serve(settings: Settings, catalogue, data) -> bool:
    """Load the dataset (once, before any fork) and start the metrics endpoint; False if the data
    cannot be loaded. A metrics port already taken is logged, not fatal: jobs matter more."""
    from .metrics import metrics, serve

    try:
        preload(catalogue, data)
    except Exception as exc:
        log.error("cannot load the dataset", extra={"data_path": settings.data_path, "error": str(exc)})
        return False
    metrics().prime(catalogue.names())  # before the first scrape can come, not when a Worker is built
    try:
        serve(settings.worker_metrics_port, settings.worker_metrics_host)
    except OSError as exc:
        log.error(
            f"cannot serve metrics: {_metrics_fix(settings, exc)}; jobs still run, but Prometheus and the "
            "chart's and compose's worker probes (/metrics) get no answer",
            extra={"host": settings.worker_metrics_host, "port": settings.worker_metrics_port, "error": str(exc)},
        )
    return True


def _metrics_fix(settings: Settings, exc: OSError) -> str:
    """The setting to change, named: the log said only "cannot serve metrics" and the port, while the
    chart's liveness probe (on that port) restarted the pod again and again."""
    import errno

    host, port = settings.worker_metrics_host, settings.worker_metrics_port
    if exc.errno == errno.EADDRINUSE:
        return f"WORKER_METRICS_PORT {port} is in use on {host} by another program: choose another (0: no metrics)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"WORKER_METRICS_HOST {host} is not an address of this machine: 0.0.0.0 serves every interface"
    return f"WORKER_METRICS_HOST {host} and WORKER_METRICS_PORT {port} cannot be listened on ({exc.strerror})"


def supervise(settings: Settings, burst: bool) -> int:
    """WORKER_CONCURRENCY > 1: load once, then run the children under a :class:`Supervisor`."""
    # before prometheus_client is imported anywhere; clears only a previous run's metric files
    multiproc.prepare("jobqueue-worker-metrics-")

    from prometheus_client import multiprocess

    from .data import DataSource
    from .worker import Worker

    catalogue = load_catalogue(settings)
    data = DataSource(settings.data_path, **settings.data_options())
    if not load_and_serve(settings, catalogue, data):
        return 3
    log.info("start-up heap frozen", extra=freeze_startup_heap())  # before the forks: each child inherits it
    supervisor = Supervisor(
        settings.worker_concurrency,
        lambda: Worker(settings, catalogue, data).work(burst=burst),
        burst=burst,
        on_exit=multiprocess.mark_process_dead,
    )
    return supervisor.run()


PR_SET_PDEATHSIG = 1  # prctl(2): the signal this process gets when its parent dies


def stop_with_parent(parent: int) -> None:
    """Ask Linux for a SIGTERM (the worker's warm shutdown) when the supervisor dies. A supervisor
    killed with -9 passes nothing on: its children kept taking jobs, reparented to init, with no
    metrics port, and a restarted worker ran beside them. Elsewhere (no prctl) nothing changes."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it died before the request was made
        os.kill(os.getpid(), signal.SIGTERM)


class Supervisor:
    """Runs ``processes`` forked children, each in a slot, each running ``work`` (its return value
    is the child's exit status). A child that exits is restarted in its slot after
    :func:`restart_delay` (unless the supervisor is stopping, or in burst mode the child exited 0:
    the queue is drained); SIGTERM/SIGINT are passed on to every child, and :meth:`run` returns 0
    once they have all exited. ``on_exit`` gets the pid of every child reaped (its metrics marked dead)."""

    def __init__(
        self,
        processes: int,
        work: Callable[[], int],
        *,
        burst: bool = False,
        on_exit: Callable[[int], object] = lambda pid: None,
    ) -> None:
        self.processes = processes
        self.work = work
        self.burst = burst
        self.on_exit = on_exit
        self.children: dict[int, int] = {}  # pid -> slot
        self.started: dict[int, float] = {}  # slot -> when its current child was forked
        self.quick_deaths: dict[int, int] = {}  # slot -> its children's deaths in a row soon after start
        self.stopping = False
        self.failed = False  # burst: a child exited 2

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        for slot in range(self.processes):
            self.spawn(slot)
        while self.children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            self.on_exit(pid)
            if pid in self.children:
                self.exited(pid, os.waitstatus_to_exitcode(status))
        return 2 if self.failed else 0

    def spawn(self, slot: int) -> None:
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                stop_with_parent(parent)
                code = self.work()
            except BaseException:
                log.exception("worker process crashed")
            finally:
                logging.shutdown()
                os._exit(code)
        self.children[pid] = slot
        self.started[slot] = time.monotonic()
        log.info("worker process started", extra={"pid": pid, "slot": slot})

    def stop(self, signum=None, frame=None) -> None:  # a signal handler: warm shutdown
        """Children finish the job in hand and exit; none is restarted."""
        self.stopping = True
        for pid in list(self.children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def exited(self, pid: int, code: int) -> None:
        """The child ``pid`` exited with ``code``: restart its slot, after the crash backoff."""
        slot = self.children.pop(pid)
        if self.burst and code == 2:  # another REDIS_JOBS_DB than the API's: a restart would not help
            self.failed = True
        if self.stopping or (self.burst and code in (0, 2)):
            return
        lived = time.monotonic() - self.started[slot]
        self.quick_deaths[slot] = self.quick_deaths.get(slot, 0) + 1 if lived < RESTART_HEALTHY_SECONDS else 1
        delay = restart_delay(self.quick_deaths[slot])
        log.warning(
            "worker process exited; restarting it",
            extra={
                "pid": pid,
                "exit_code": code,
                "restart_in_seconds": delay,
                "deaths_in_a_row": self.quick_deaths[slot],
            },
        )
        self.pause(delay)
        if not self.stopping:
            self.spawn(slot)

    def pause(self, seconds: float) -> None:
        """Sleep ``seconds``, or less if a signal stops the supervisor meanwhile."""
        until = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < until:
            time.sleep(min(0.1, max(until - time.monotonic(), 0)))


if __name__ == "__main__":
    sys.exit(main())
