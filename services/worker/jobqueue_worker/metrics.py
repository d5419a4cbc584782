"""The worker's Prometheus metrics (names in docs/metrics.md).

One process: served on WORKER_METRICS_PORT by that process. Several (WORKER_CONCURRENCY > 1): the
children write to prometheus-client's multiprocess files (PROMETHEUS_MULTIPROC_DIR, which the
supervisor creates and wipes before any import of prometheus_client) and the supervisor alone serves
the sum on WORKER_METRICS_PORT, marking dead children so their gauges drop out.
"""

from __future__ import annotations

import os

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

OUTCOMES = ("complete", "failed", "retried", "cached", "interrupted")
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class WorkerMetrics:
    def __init__(self) -> None:
        # No `<name>_created` series: they are in no table of docs/metrics.md, and a worker of several
        # processes (the multiprocess files) and the API never export them, so one process did alone.
        disable_created_metrics()
        self.processed = Counter(
            "jobqueue_jobs_processed", "attempts ended, by operation and outcome", ["operation", "outcome"]
        )
        self.duration = Histogram(
            "jobqueue_job_duration_seconds", "run time of one attempt", ["operation"], buckets=BUCKETS
        )
        self.busy = Gauge("jobqueue_worker_busy", "1 while the process runs a job", multiprocess_mode="livesum")
        self.retries = Counter(
            "jobqueue_job_retries", "attempts scheduled again after a transient error", ["operation"]
        )
        self.requeued = Counter("jobqueue_jobs_requeued", "ids moved back to the queue from a dead worker")
        self._children: dict[tuple[str, str], object] = {}
        self._durations: dict[str, object] = {}  # labels() takes a lock and builds a key each call

    def prime(self, operations: list[str]) -> None:
        """Export every operation's series at 0 before the first job: Prometheus' rate() cannot see
        an increment made before a series' first scrape, so a series born at its first job would
        lose that job from every rate, ratio and quantile."""
        for op in operations:
            for outcome in OUTCOMES:
                self._children.setdefault((op, outcome), self.processed.labels(op, outcome))
            self._durations.setdefault(op, self.duration.labels(op))
            self.retries.labels(op)

    def done(self, operation: str, outcome: str, seconds: float | None) -> None:
        key = (operation, outcome)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.processed.labels(operation, outcome)
        child.inc()  # type: ignore[attr-defined]
        if seconds is not None:
            timer = self._durations.get(operation)
            if timer is None:
                timer = self._durations[operation] = self.duration.labels(operation)
            timer.observe(seconds)  # type: ignore[attr-defined]
        if outcome == "retried":
            self.retries.labels(operation).inc()


_METRICS: WorkerMetrics | None = None


def metrics() -> WorkerMetrics:
    global _METRICS
    if _METRICS is None:
        _METRICS = WorkerMetrics()
    return _METRICS


def serve(port: int, host: str = "127.0.0.1") -> None:
    """Serve /metrics on ``host:port`` (port 0: not at all); the multiprocess sum when the dir is
    set. ``host`` is WORKER_METRICS_HOST: BIND_HOST unless set (the chart sets 0.0.0.0). Only
    /metrics answers (GET, HEAD): jobqueue.metrics_http."""
    if not port:
        return
    from prometheus_client import REGISTRY, CollectorRegistry

    from jobqueue.metrics_http import serve_metrics

    registry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    serve_metrics(port, host, registry)
