"""The Dramatiq broker and actors the Dramatiq peer runs: Redis broker, Results middleware on a
Redis backend (so a result is readable, as for every other peer), Dramatiq's defaults otherwise.
"""

from __future__ import annotations

import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.results import Results
from dramatiq.results.backends import RedisBackend

from . import tutorial

BROKER_DB, RESULTS_DB = 7, 8
QUEUE = "bench"

_base = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379")
backend = RedisBackend(url=f"{_base}/{RESULTS_DB}")
broker = RedisBroker(url=f"{_base}/{BROKER_DB}")
broker.add_middleware(Results(backend=backend))
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name=QUEUE, store_results=True, max_retries=0, actor_name="bench_sleep")
def sleep(seconds: float = 0.0) -> dict:
    return tutorial.noop()


@dramatiq.actor(queue_name=QUEUE, store_results=True, max_retries=0, actor_name="bench_incident_count_by_date")
def incident_count_by_date(date: str) -> dict:
    return tutorial.incident_count_by_date(date)
