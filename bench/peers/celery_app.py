"""The Celery app the Celery peer runs: Redis broker and result backend, JSON, Celery's defaults.

The tutorial frame is loaded when the worker imports this module (once per worker process; a
prefork pool's children inherit it). The gate is passed in ``worker_ready``, after the pool and
the consumer are up and before any message is fetched.
"""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import worker_ready

from . import gate, tutorial

BROKER_DB, BACKEND_DB = 5, 6
QUEUE = "bench"


def _url(db: int) -> str:
    return f"{os.environ.get('BENCH_REDIS_URL', 'redis://127.0.0.1:6379')}/{db}"


app = Celery("bench", broker=_url(BROKER_DB), backend=_url(BACKEND_DB))
app.conf.update(
    task_default_queue=QUEUE,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)

if os.environ.get("BENCH_CELERY_WORKER"):
    tutorial.frame()


@app.task(name="bench.sleep")
def sleep(seconds: float = 0.0) -> dict:
    return tutorial.noop()


@app.task(name="bench.incident_count_by_date")
def incident_count_by_date(date: str) -> dict:
    return tutorial.incident_count_by_date(date)


@worker_ready.connect
def _at_the_gate(**_kwargs) -> None:
    gate.announce_and_wait()
