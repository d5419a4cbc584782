"""Dramatiq on Redis, one worker process per benchmark process, Dramatiq's default 8 threads each
(``BENCH_DRAMATIQ_THREADS`` to change), results through its Results middleware.
"""

from __future__ import annotations

import os
import signal
import threading

from . import gate, procs
from .base import Peer

THREADS = int(os.environ.get("BENCH_DRAMATIQ_THREADS", "8"))


class DramatiqPeer(Peer):
    name = "dramatiq"

    @property
    def description(self):
        return f"Dramatiq, redis broker + results backend, {THREADS} threads a process"

    def __init__(self, redis_url, data_path, processes):
        super().__init__(redis_url, data_path, processes)
        os.environ["BENCH_REDIS_URL"] = redis_url  # the app module reads its URLs at import
        from . import dramatiq_app

        self.app = dramatiq_app
        self.actors = {"sleep": dramatiq_app.sleep, "incident_count_by_date": dramatiq_app.incident_count_by_date}

    def worker_argvs(self):
        return [procs.python_argv(__name__) for _ in range(self.processes)]

    def submit_one(self, operation, params):
        return self.actors[operation].send(**params)

    def backlog(self):
        return self.app.broker.client.llen(f"dramatiq:{self.app.QUEUE}")

    def check(self, handles):
        pipe = self.app.backend.client.pipeline(transaction=False)
        for message in handles:
            pipe.exists(self.app.backend.build_message_key(message))
        return [bool(n) for n in pipe.execute()]

    def results(self, handles):
        out = []
        for message in handles:
            try:
                out.append(message.get_result())
            except Exception:  # ResultMissing
                out.append(None)
        return out

    def round_trip(self, operation, params, timeout=10.0):
        return self.actors[operation].send(**params).get_result(block=True, timeout=int(timeout * 1000))

    def versions(self):
        import dramatiq

        return {"dramatiq": dramatiq.__version__}


def worker_main() -> None:
    from dramatiq import Worker

    from . import dramatiq_app, tutorial

    tutorial.frame()
    gate.announce_and_wait()
    worker = Worker(dramatiq_app.broker, queues={dramatiq_app.QUEUE}, worker_threads=THREADS)
    worker.start()
    stopped = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopped.set())
    stopped.wait()
    worker.stop()


if __name__ == "__main__":
    worker_main()
