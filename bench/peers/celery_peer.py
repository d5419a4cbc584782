"""Celery with Redis as broker and result backend: ``solo`` pool for one process, ``prefork`` with
concurrency = processes for more (what its docs recommend for CPU-bound work).

:class:`CeleryDefaultPoolPeer` runs one process the way ``celery worker --concurrency 1`` does
without naming a pool: Celery's default ``prefork`` pool, a parent that takes the message and one
child that runs the task. The round-trip verdict stays on the ``solo`` pool, the faster of the two.
"""

from __future__ import annotations

import json

import redis

from . import procs
from .base import Peer


class CeleryPeer(Peer):
    name = "celery"
    default_pool = False  # True: prefork even for one process (Celery's default pool)

    @property
    def description(self):
        return "Celery, redis broker+backend, " + (
            "solo pool" if self.processes == 1 and not self.default_pool else f"prefork pool -c {self.processes}"
        )

    def __init__(self, redis_url, data_path, processes):
        super().__init__(redis_url, data_path, processes)
        import os

        os.environ["BENCH_REDIS_URL"] = redis_url  # the app module reads its broker URL at import
        from . import celery_app

        self.app = celery_app.app
        self.tasks = {"sleep": celery_app.sleep, "incident_count_by_date": celery_app.incident_count_by_date}
        self.broker = redis.Redis.from_url(redis_url, db=celery_app.BROKER_DB)
        self.backend = redis.Redis.from_url(redis_url, db=celery_app.BACKEND_DB)
        self.queue = celery_app.QUEUE

    def worker_argvs(self):
        pool = (
            ["--pool", "solo"]
            if self.processes == 1 and not self.default_pool
            else ["--pool", "prefork", "--concurrency", str(self.processes)]
        )
        return [
            procs.python_argv(
                "celery",
                "-A",
                "bench.peers.celery_app",
                "worker",
                *pool,
                "-Q",
                self.queue,
                "--loglevel",
                "WARNING",
                "--without-mingle",
                "--without-gossip",
                "--without-heartbeat",
            )
        ]

    def worker_env(self):
        return {**super().worker_env(), "BENCH_CELERY_WORKER": "1"}

    def expected_ready(self):
        return 1  # worker_ready fires once, in the main process

    def submit_one(self, operation, params):
        return self.tasks[operation].apply_async(kwargs=params).id

    def backlog(self):
        return self.broker.llen(self.queue)

    def _metas(self, handles):
        raws = self.backend.mget([f"celery-task-meta-{h}" for h in handles])
        return [None if r is None else json.loads(r) for r in raws]

    def check(self, handles):
        return [m is not None and m["status"] == "SUCCESS" for m in self._metas(handles)]

    def results(self, handles):
        return [m and m["result"] for m in self._metas(handles)]

    def round_trip(self, operation, params, timeout=10.0):
        return self.tasks[operation].apply_async(kwargs=params).get(timeout=timeout)

    def close(self):
        self.broker.close()
        self.backend.close()

    def versions(self):
        import celery
        import kombu

        return {"celery": celery.__version__, "kombu": kombu.__version__}


class CeleryDefaultPoolPeer(CeleryPeer):
    """One worker process in Celery's default pool (prefork, one child): module docstring."""

    name = "celery-prefork"
    default_pool = True
