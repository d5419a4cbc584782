"""The tutorial's raw HotQueue loop: the ceiling (BLPOP an id, run, write; no delivery guarantee).

Client: the job is a JSON document in the jobs db and its id goes on the HotQueue list, as the
tutorial's API does. Worker: ``for jid in q.consume()``: mark in progress, run the tutorial's
pandas code, store the result and ``complete``. A worker killed mid-job loses that job for good,
which is why this is a ceiling and not a peer a production deployment should pick.
HotQueue carries plain ids (``serializer=None``) so the loop pays nothing extra.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import redis
from hotqueue import HotQueue

from . import gate, procs
from .base import Peer

JOBS_DB, QUEUE_DB = 2, 3
QUEUE = "bench"


def _job_key(jid: str) -> str:
    return f"job:{jid}"


class HotQueuePeer(Peer):
    name = "hotqueue-raw"
    description = "tutorial's raw HotQueue loop (BLPOP, no delivery guarantee): the ceiling"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.jobs = redis.Redis.from_url(self.redis_url, db=JOBS_DB, decode_responses=True)
        self.queue = HotQueue(
            QUEUE, serializer=None, connection_pool=redis.Redis.from_url(self.redis_url, db=QUEUE_DB).connection_pool
        )

    def worker_argvs(self):
        return [procs.python_argv(__name__) for _ in range(self.processes)]

    def _new(self, operation, params):
        jid = str(uuid.uuid4())
        doc = {"id": jid, "status": "submitted", "operation": operation, "params": params}
        return jid, json.dumps(doc)

    def submit_many(self, jobs):
        pipe = self.jobs.pipeline(transaction=False)
        ids = []
        for op, params in jobs:
            jid, doc = self._new(op, params)
            pipe.set(_job_key(jid), doc)
            ids.append(jid)
        pipe.execute()
        for start in range(0, len(ids), 1000):
            self.queue.put(*ids[start : start + 1000])
        return ids

    def submit_one(self, operation, params):
        jid, doc = self._new(operation, params)
        self.jobs.set(_job_key(jid), doc)
        self.queue.put(jid)
        return jid

    def backlog(self):
        return len(self.queue)

    def _docs(self, handles):
        return [None if raw is None else json.loads(raw) for raw in self.jobs.mget([_job_key(h) for h in handles])]

    def check(self, handles):
        return [d is not None and d["status"] == "complete" for d in self._docs(handles)]

    def results(self, handles):
        return [d and d.get("result") for d in self._docs(handles)]

    def round_trip(self, operation, params, timeout=10.0):
        jid = self.submit_one(operation, params)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:  # the tutorial's client polls; poll tightly here
            raw = self.jobs.get(_job_key(jid))
            doc = json.loads(raw)
            if doc["status"] == "complete":
                return doc["result"]
            time.sleep(0.0002)
        raise TimeoutError(jid)

    def close(self):
        self.jobs.close()


def worker_main() -> None:
    import os

    from . import tutorial

    tutorial.frame()  # data loaded once per process
    url = os.environ["BENCH_REDIS_URL"]
    jobs = redis.Redis.from_url(url, db=JOBS_DB, decode_responses=True)
    queue = HotQueue(
        QUEUE,
        serializer=None,
        connection_pool=redis.Redis.from_url(url, db=QUEUE_DB, decode_responses=True).connection_pool,
    )
    gate.announce_and_wait()

    @queue.worker
    def do_work(jid: str) -> None:
        key = _job_key(jid)
        job: dict[str, Any] = json.loads(jobs.get(key))
        job["status"] = "in progress"
        jobs.set(key, json.dumps(job))
        job["result"] = tutorial.run(job["operation"], job["params"])
        job["status"] = "complete"
        jobs.set(key, json.dumps(job))

    do_work()


if __name__ == "__main__":
    worker_main()
