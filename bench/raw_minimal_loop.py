"""The minimal raw HotQueue loop: the as-deployed drain's baseline (one BLPOP + one SET per job).

The queue item is the whole job (``{"id", "operation", "params"}`` as JSON, put with one RPUSH);
``for item in q.consume()`` BLPOPs it, runs the operation through the same catalogue our worker
uses, and SETs the finished document under the job's key. Nothing else reaches Redis: no status
document at submit, no "in progress" write, no delivery guarantee (a process killed mid-job loses
that job). The client reads each result back with one GET. So a job costs Redis four commands:
put, BLPOP, SET, GET, the least any queue-with-results can do.

    BENCH_REDIS_URL=redis://127.0.0.1:6379 python bench/raw_minimal_loop.py
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis
from hotqueue import HotQueue

JOBS_DB, QUEUE_DB = 0, 1
QUEUE = "raw"


def job_key(job_id: str) -> str:
    return f"job:{job_id}"


def queue(url: str) -> HotQueue:
    return HotQueue(QUEUE, serializer=None, connection_pool=redis.Redis.from_url(url, db=QUEUE_DB).connection_pool)


def main() -> None:
    from jobqueue.catalogue import catalogue
    from jobqueue.settings import load_settings

    operations = catalogue(load_settings({"DIAGNOSTIC_OPERATIONS": "1"}))
    url = os.environ["BENCH_REDIS_URL"]
    jobs = redis.Redis.from_url(url, db=JOBS_DB)
    for item in queue(url).consume():
        job = json.loads(item)
        started = time.time()
        result = operations.get(job["operation"]).run(None, job["params"])
        jobs.set(
            job_key(job["id"]),
            json.dumps(
                {
                    "id": job["id"],
                    "status": "complete",
                    "result": result,
                    "started_at": started,
                    "finished_at": time.time(),
                }
            ),
        )


if __name__ == "__main__":
    main()
