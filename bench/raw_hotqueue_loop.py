"""The tutorial's raw HotQueue worker loop, as the drain baseline (the ceiling: no delivery guarantee).

``@q.worker`` BLPOPs an id; the body reads the job document, marks it in progress, runs the
operation through the same catalogue our worker uses, and writes it complete: four round trips a
job and nothing else. A process killed mid-job loses that job for good.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import drain_harness  # sets sys.path for the repo
from hotqueue import HotQueue

from jobqueue import keys
from jobqueue.catalogue import SLEEP
from jobqueue.connections import jobs_redis, queue_redis
from jobqueue.settings import load_settings


def main() -> None:
    settings = load_settings()
    try:
        from jobqueue.catalogue import catalogue

        operations = catalogue(settings)
    except ImportError:
        from atx_analysis.registry import REGISTRY

        operations = REGISTRY.merged(SLEEP)
    jobs = jobs_redis(settings)
    q = queue_redis(settings)
    hq = HotQueue(settings.queue_name, serializer=None, connection_pool=q.connection_pool)
    q.incr(drain_harness.RAW_READY)

    @hq.worker
    def do_work(jid: str) -> None:
        key = keys.job(jid)
        job = json.loads(jobs.get(key))
        job["status"] = "in-progress"
        job["started_at"] = time.time()
        jobs.set(key, json.dumps(job, separators=(",", ":")))
        job["result"] = operations.get(job["operation"]).run(None, job["params"])
        job["status"] = "complete"
        job["finished_at"] = time.time()
        jobs.set(key, json.dumps(job, separators=(",", ":")))

    do_work()


if __name__ == "__main__":
    main()
