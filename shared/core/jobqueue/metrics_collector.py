"""Queue-level gauges read from Redis at scrape time (the API exports them; see docs/metrics.md).

Reading at scrape time instead of keeping counters means the figures are right even when workers
are scaled to zero or an API replica restarted, and every replica reports the same value (an
autoscaler aggregates with ``max``). A failed read yields ``jobqueue_redis_up 0`` and no stale
figures.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import redis
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from . import keys
from .delivery import Delivery
from .settings import Settings


class QueueCollector(Collector):
    def __init__(self, settings: Settings, queue: redis.Redis, jobs: redis.Redis):
        self.settings = settings
        self.queue = queue
        self.jobs = jobs
        self.delivery = Delivery(queue, settings)
        self.by_lane: dict[str, int] = {}

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())  # scrape-time values: nothing to check at registration

    def _read(self) -> tuple[int, int, float, int]:
        now = time.time()
        waiting = self.delivery.waiting()
        depth, oldest_id = waiting.depth, waiting.oldest_id
        self.by_lane = waiting.by_lane
        alive = self.queue.zcount(keys.WORKERS_HEARTBEAT, now - self.settings.job_lease_seconds, "+inf")
        processing = list(self.queue.scan_iter(match=f"{keys.PROCESSING_PREFIX}*", count=1000))
        in_progress = 0
        if processing:
            pipe = self.queue.pipeline(transaction=False)
            for key in processing:
                pipe.llen(key)
            in_progress = sum(pipe.execute())
        age = 0.0
        if oldest_id:
            raw = self.jobs.get(keys.job(oldest_id))
            if raw:
                try:
                    age = max(0.0, now - float(json.loads(raw)["submitted_at"]))
                except (ValueError, KeyError, TypeError):
                    age = 0.0
        return depth, in_progress, age, alive

    def collect(self) -> Iterator[GaugeMetricFamily]:
        queue_label = [self.settings.queue_name]
        up = GaugeMetricFamily("jobqueue_redis_up", "1 when the scrape could read Redis, else 0")
        try:
            depth, in_progress, age, alive = self._read()
        except redis.exceptions.RedisError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        g = GaugeMetricFamily("jobqueue_queue_depth", "job ids waiting in the queue, both lanes (not yet claimed)",
                              labels=["queue"])
        g.add_metric(queue_label, depth)
        yield g
        g = GaugeMetricFamily("jobqueue_jobs_in_progress", "job ids claimed by workers (in processing lists)",
                              labels=["queue"])
        g.add_metric(queue_label, in_progress)
        yield g
        g = GaugeMetricFamily("jobqueue_oldest_job_age_seconds", "age of the oldest waiting job (0 when empty)",
                              labels=["queue"])
        g.add_metric(queue_label, age)
        yield g
        g = GaugeMetricFamily("jobqueue_workers_alive", "workers whose heartbeat is within the lease")
        g.add_metric([], alive)
        yield g
