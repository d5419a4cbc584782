"""RQ, as its users run it: ``Worker`` (forks a work horse per job) or ``SimpleWorker`` (runs jobs in
the worker process), RQ's default serializer and logging, results read back through RQ's API.

The launcher imports the tutorial frame before starting the worker, so the data is loaded once
per worker process (the default worker's forked horses inherit it copy-on-write).
"""

from __future__ import annotations

import sys

import redis

from . import gate, procs, tutorial
from .base import Peer

DB = 4
QUEUE = "bench"


# --- the job functions RQ imports by dotted name -------------------------------------------------
def sleep(seconds: float = 0.0) -> dict:
    return tutorial.noop()


def incident_count_by_date(date: str) -> dict:
    return tutorial.incident_count_by_date(date)


FUNCS = {"sleep": sleep, "incident_count_by_date": incident_count_by_date}


class RQPeer(Peer):
    name = "rq"
    description = "RQ default Worker (fork per job)"
    worker_class = "Worker"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        from rq import Queue

        self.conn = redis.Redis.from_url(self.redis_url, db=DB)
        self.queue = Queue(QUEUE, connection=self.conn)

    def worker_argvs(self):
        return [procs.python_argv(__name__, self.worker_class) for _ in range(self.processes)]

    def submit_many(self, jobs):
        from rq import Queue

        datas = [Queue.prepare_data(FUNCS[op], kwargs=params) for op, params in jobs]
        out = []
        for start in range(0, len(datas), 500):
            with self.conn.pipeline() as pipe:
                out += [j.id for j in self.queue.enqueue_many(datas[start : start + 500], pipeline=pipe)]
                pipe.execute()
        return out

    def submit_one(self, operation, params):
        return self.queue.enqueue(FUNCS[operation], **params).id

    def backlog(self):
        return self.queue.count

    def check(self, handles):
        pipe = self.conn.pipeline(transaction=False)
        for jid in handles:
            pipe.hget(f"rq:job:{jid}", "status")
        return [s == b"finished" for s in pipe.execute()]

    def results(self, handles):
        from rq.job import Job

        return [None if j is None else j.return_value() for j in Job.fetch_many(handles, connection=self.conn)]

    def round_trip(self, operation, params, timeout=10.0):
        job = self.queue.enqueue(FUNCS[operation], **params)
        result = job.latest_result(timeout=int(timeout))
        if result is None or result.type != result.Type.SUCCESSFUL:
            raise RuntimeError(f"rq job {job.id}: {result and result.exc_string}")
        return result.return_value

    def close(self):
        self.conn.close()

    def versions(self):
        import rq

        return {"rq": rq.__version__}


class RQSimplePeer(RQPeer):
    name = "rq-simple"
    description = "RQ SimpleWorker (no fork)"
    worker_class = "SimpleWorker"


def worker_main(kind: str) -> None:
    import os

    import rq

    tutorial.frame()
    conn = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"], db=DB)
    worker = getattr(rq, kind)([QUEUE], connection=conn)
    gate.announce_and_wait()
    worker.work()


if __name__ == "__main__":
    worker_main(sys.argv[1])
