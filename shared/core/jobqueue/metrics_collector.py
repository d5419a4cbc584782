"""Queue-level gauges read from Redis at scrape time (the API exports them; see docs/metrics.md).

Reading at scrape time instead of keeping counters means the figures are right even when workers
are scaled to zero or an API replica restarted, and every replica reports the same value (an
autoscaler aggregates with ``max``). A failed read yields ``jobqueue_redis_up 0`` and no stale
figures. The reads have clients of their own that give up after :data:`SCRAPE_REDIS_SECONDS`,
once: through the API's clients (socket timeout, then a retry) a Redis that stopped answering held
the scrape 5 s, past a 5 s scrape timeout, and Prometheus saw the API down instead of Redis down.
"""

from __future__ import annotations

from collections.abc import Iterator

import redis
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .backlog import read_backlog
from .connections import quick_redis
from .delivery import Delivery
from .jobs import JobStore
from .settings import Settings

SCRAPE_REDIS_SECONDS = 1.0  # one call of the scrape, at most (a scrape makes three in a row at most)


class QueueCollector(Collector):
    def __init__(self, settings: Settings):
        self.settings = settings
        self.queue = quick_redis(settings, settings.redis_queue_db, SCRAPE_REDIS_SECONDS)
        self.jobs = quick_redis(settings, settings.redis_jobs_db, SCRAPE_REDIS_SECONDS)
        self.delivery = Delivery(self.queue, settings)

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())  # scrape-time values: nothing to check at registration

    def _read(self) -> tuple[int, int, float, int, bool]:
        b = read_backlog(self.settings, self.queue, self.jobs, self.delivery)
        return b.waiting, b.in_progress, b.oldest_waiting_seconds, b.workers_alive, b.stalled is not None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        queue_label = [self.settings.queue_name]
        up = GaugeMetricFamily("jobqueue_redis_up", "1 when the scrape could read Redis, else 0")
        try:
            depth, in_progress, age, alive, stalled = self._read()
        except redis.exceptions.RedisError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        g = GaugeMetricFamily(
            "jobqueue_queue_depth", "job ids waiting in the queue, both lanes (not yet claimed)", labels=["queue"]
        )
        g.add_metric(queue_label, depth)
        yield g
        g = GaugeMetricFamily(
            "jobqueue_jobs_in_progress", "job ids claimed by workers (in processing lists)", labels=["queue"]
        )
        g.add_metric(queue_label, in_progress)
        yield g
        g = GaugeMetricFamily(
            "jobqueue_oldest_job_age_seconds", "age of the oldest waiting job (0 when empty)", labels=["queue"]
        )
        g.add_metric(queue_label, age)
        yield g
        g = GaugeMetricFamily("jobqueue_workers_alive", "workers whose heartbeat is within the lease")
        g.add_metric([], alive)
        yield g
        g = GaugeMetricFamily(
            "jobqueue_queue_stalled",
            "1 when jobs have waited a lease or more and no live worker takes them",
            labels=["queue"],
        )
        g.add_metric(queue_label, 1 if stalled else 0)
        yield g
        # Redis full (maxmemory, noeviction) or unable to persist answers reads: without this, no
        # series said it refused writes (the exporter sidecar's memory alert is optional), and
        # /readyz stays ready meanwhile (reads and deletes are served), so this is where it shows.
        try:
            refused = JobStore(self.jobs, self.settings.job_ttl_seconds).write_refused()
        except redis.exceptions.RedisError:
            return  # not known: no sample rather than a guess
        g = GaugeMetricFamily(
            "jobqueue_redis_writable",
            "1 when Redis accepts a small write, 0 when it refuses writes (OOM, MISCONF, READONLY)",
        )
        g.add_metric([], 0 if refused else 1)
        yield g
