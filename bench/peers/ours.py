"""Our service as a peer: ``jobqueue-worker`` (delivery guarantees on, as deployed) and, for the
round trip, the HTTP API.

Workers are started and made ready with the worker benchmark's harness (``bench/drain_harness.py``:
same environment, ``WORKER_CONCURRENCY`` = processes, ready when that many heartbeats are in
Redis). Its gate is the queue itself: job documents are written first, as ``POST /submit`` writes
them, and the ids are pushed in one go when the harness releases the workers. The result cache is
switched off (``RESULT_CACHE=0``): the peers have none, and repeated dates would otherwise be
answered without running anything.
"""

from __future__ import annotations

import json
import time
from typing import Any

from . import procs
from .base import Peer


def available() -> bool:
    try:
        import jobqueue_worker.worker  # noqa: F401

        from bench import drain_harness  # noqa: F401
    except ImportError:
        return False
    return True


class OursPeer(Peer):
    name = "ours"
    lean = False  # round trips through http.client instead of requests (bench_peers' extra row)
    shipped = False  # round trips through the project's own client, jobqueue.client.Client (another row)
    one = False  # round trips in one exchange, POST /submit?wait= (with ``lean``: through http.client; with
    #               ``shipped``: through jobqueue.client's Client.submit_and_wait)

    @property
    def description(self):
        return (
            f"atx-jobqueue `jobqueue-worker` (at-least-once delivery, WORKER_CONCURRENCY={self.processes}, "
            "RESULT_CACHE=0); round trip through the HTTP API (gunicorn)"
        )

    def __init__(self, redis_url, data_path, processes):
        super().__init__(redis_url, data_path, processes)
        from bench import drain_harness as h
        from jobqueue.connections import jobs_redis, queue_redis
        from jobqueue.jobs import JobStore
        from jobqueue.queue import JobQueue

        self.h = h
        self.env = h.bench_env(redis_url, DATA_PATH=data_path, RESULT_CACHE="0", LOG_LEVEL="WARNING")
        self.settings = h.settings_of(self.env)
        self.jobs = jobs_redis(self.settings)
        self.queue = JobQueue(queue_redis(self.settings), self.settings.queue_name)
        self.store = JobStore(self.jobs, self.settings.job_ttl_seconds)
        self._unqueued: list[str] = []
        self.api = None
        self.session = None
        self.base = ""
        self._conn = None  # http.client connection of the lean round trip
        self._client = None  # jobqueue.client.Client of the shipped round trip

    # workers: the worker benchmark's harness
    def start(self, run):
        self.run = run
        self.procs = self.h.start_ours(self.env, self.processes)

    def wait_ready(self, timeout=120.0):
        self.h.wait_until(lambda: self.h.ours_ready(self.settings, self.processes), self.procs, timeout)

    def release(self):
        if self._unqueued:
            self.h.push(self.settings, self._unqueued)
            self._unqueued = []

    def stop(self):
        if self.api is not None:
            procs.stop([self.api])
            self.api = None
        procs.stop(self.procs, 30.0)
        self.procs = []

    # jobs
    def submit_many(self, jobs):
        from jobqueue import keys
        from jobqueue.jobs import Job, new_job_id

        pipe = self.jobs.pipeline(transaction=False)
        ids = []
        for op, params in jobs:
            job = Job(id=new_job_id(), operation=op, params=dict(params))
            pipe.set(keys.job(job.id), job.to_json())
            pipe.zadd(keys.JOB_INDEX, {job.id: job.submitted_at})
            ids.append(job.id)
        pipe.execute()
        self._unqueued = ids  # pushed by release(), once the workers are warm
        return ids

    def submit_one(self, operation, params):
        job = self.store.create(operation, dict(params))
        self.queue.put(job.id)
        return job.id

    def backlog(self):
        return self.queue.depth()

    def _docs(self, handles):
        from jobqueue import keys

        docs = [None if raw is None else json.loads(raw) for raw in self.jobs.mget([keys.job(h) for h in handles])]
        for doc in docs:
            if doc is not None and doc["status"] == "failed":
                raise RuntimeError(f"ours: job {doc['id']} failed: {doc.get('error')}")
        return docs

    def check(self, handles):
        return [d is not None and d["status"] == "complete" for d in self._docs(handles)]

    def results(self, handles):
        return [d and d.get("result") for d in self._docs(handles)]

    # round trip: through the HTTP API, as a curl user or the tutorial's client does
    def _start_api(self):
        import requests

        from devstack.procs import free_port

        port = free_port()
        env = {**self.env, "PORT": str(port), "BIND_HOST": "127.0.0.1", "WEB_CONCURRENCY": "2"}
        exe = str(__import__("pathlib").Path(__import__("sys").executable).with_name("jobqueue-api"))
        self.api = procs.spawn([exe], env, f"{self.run}-api")
        self.base = f"http://127.0.0.1:{port}"
        self.session = requests.Session()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if self.session.get(self.base + "/readyz", timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            if self.api.poll() is not None:
                raise RuntimeError(
                    f"jobqueue-api exited {self.api.returncode} (see {procs.log_path(self.run + '-api')})"
                )
            time.sleep(0.05)
        raise TimeoutError("jobqueue-api not ready")

    def round_trip(self, operation, params, timeout=10.0):
        if self.api is None:
            self._start_api()
        if self.one:
            return self._one_exchange_round_trip(operation, params, timeout)
        if self.lean:
            return self._lean_round_trip(operation, params, timeout)
        if self.shipped:
            return self._shipped_round_trip(operation, params, timeout)
        t0 = time.perf_counter()
        reply = self.session.post(
            self.base + "/submit", json={"operation": operation, "params": params}, timeout=timeout
        )
        reply.raise_for_status()
        job_id = reply.json()["job_id"]
        self.phases = {"submit": time.perf_counter() - t0}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.session.get(
                f"{self.base}/status/{job_id}", params={"wait": str(int(timeout))}, timeout=timeout + 5
            ).json()
            if job["status"] == "complete":
                self.phases["wait"] = time.perf_counter() - t0 - self.phases["submit"]
                return job["result"]
            if job["status"] in ("failed", "cancelled"):
                raise RuntimeError(f"ours: job {job_id} {job['status']}: {job.get('error')}")
        raise TimeoutError(job_id)

    def _one_exchange_round_trip(self, operation, params, timeout):
        """Submit and wait in one request, ``POST /submit?wait=<timeout>`` (200 with the finished
        job), with ``requests``, with ``lean`` through ``http.client``, or with ``shipped`` through
        ``Client.submit_and_wait`` (which goes on with the long poll itself after a 202); a 202
        (not final within the wait) would go on with the long poll its Location names."""
        if self.shipped:
            job = self._shipped_client(timeout).submit_and_wait(operation, params, wait=int(timeout))
            if job["status"] != "complete":
                raise RuntimeError(f"ours: job {job['job_id']} {job['status']}: {job.get('error')}")
            return job["result"]
        if self.lean:
            conn = self._lean_connection(timeout)
            conn.request(
                "POST",
                f"/submit?wait={int(timeout)}",
                headers={"Content-Type": "application/json"},
                body=json.dumps({"operation": operation, "params": params}).encode(),
            )
            reply = conn.getresponse()
            status, job, location = reply.status, json.loads(reply.read()), reply.getheader("Location")
        else:
            answer = self.session.post(
                self.base + "/submit",
                params={"wait": str(int(timeout))},
                json={"operation": operation, "params": params},
                timeout=timeout + 5,
            )
            status, job, location = answer.status_code, answer.json(), answer.headers.get("Location")
        if status == 202:
            job = self.session.get(
                f"{self.base}{location}", params={"wait": str(int(timeout))}, timeout=timeout + 5
            ).json()
        elif status != 200:
            raise RuntimeError(f"ours: submit answered {status}: {job}")
        if job["status"] != "complete":
            raise RuntimeError(f"ours: job {job['job_id']} {job['status']}: {job.get('error')}")
        return job["result"]

    def _lean_connection(self, timeout):
        import http.client
        import socket

        if self._conn is None:
            self._conn = http.client.HTTPConnection(self.base.split("//", 1)[1], timeout=timeout + 5)
            self._conn.connect()
            self._conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return self._conn

    def _lean_round_trip(self, operation, params, timeout):
        """The same two requests through the standard library's ``http.client`` on one keep-alive
        connection: what the round trip costs without ``requests``' own per-request work."""
        conn = self._lean_connection(timeout)

        def call(method, path, body=None):
            conn.request(method, path, body=body, headers={"Content-Type": "application/json"} if body else {})
            reply = conn.getresponse()
            return reply.status, json.loads(reply.read())

        t0 = time.perf_counter()
        status, answer = call("POST", "/submit", json.dumps({"operation": operation, "params": params}).encode())
        if status != 202:
            raise RuntimeError(f"ours: submit answered {status}: {answer}")
        self.phases = {"submit": time.perf_counter() - t0}
        _, job = call("GET", f"/status/{answer['job_id']}?wait={int(timeout)}")
        if job["status"] != "complete":
            raise RuntimeError(f"ours: job {answer['job_id']} {job['status']}: {job.get('error')}")
        self.phases["wait"] = time.perf_counter() - t0 - self.phases["submit"]
        return job["result"]

    def _shipped_round_trip(self, operation, params, timeout):
        """The same two requests through ``jobqueue.client.Client`` (``submit``, then ``wait``, whose
        long poll asks ``?wait=<timeout>`` like the other rows): what a user of our client gets."""
        client = self._shipped_client(timeout)
        t0 = time.perf_counter()
        job_id = client.submit(operation, params)
        self.phases = {"submit": time.perf_counter() - t0}
        job = client.wait(job_id, poll=int(timeout))
        if job["status"] != "complete":
            raise RuntimeError(f"ours: job {job_id} {job['status']}: {job.get('error')}")
        self.phases["wait"] = time.perf_counter() - t0 - self.phases["submit"]
        return job["result"]

    def _shipped_client(self, timeout):
        from jobqueue.client import Client

        if self._client is None:
            self._client = Client(self.base, timeout=timeout + 5)
        return self._client

    def close(self):
        if self.session is not None:
            self.session.close()
        if self._client is not None:
            self._client.session.close()
        if self._conn is not None:
            self._conn.close()

    def versions(self) -> dict[str, Any]:
        from importlib.metadata import version

        return {"atx-jobqueue-worker": version("atx-jobqueue-worker")}


class FloorPeer(OursPeer):
    """Ours' round-trip client code (``requests``, or with ``lean`` ``http.client``) against
    :mod:`bench.floor`, a server answering canned bytes shaped like the API's 202 and 200 and doing
    nothing else: the client's own floor, no worker, no API, no Redis."""

    name = "floor"

    def start(self, run):
        self.run = run

    def wait_ready(self, timeout=120.0):
        pass

    def release(self):
        pass

    def _start_api(self):
        import requests

        from bench.floor import FloorServer

        self._floor = FloorServer(f"{self.run}-floor")
        self.api, self.base = self._floor.proc, self._floor.base
        self.session = requests.Session()

    def stop(self):
        if self.api is not None:
            self._floor.close()
            self.api = None
