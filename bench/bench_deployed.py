"""As deployed (issue 13): the drain, Redis CPU per job and the round trip through the running API.

    .venv/bin/python bench/bench_deployed.py [--jobs 2000] [--repeats 3] [--write]

One redis-server (AOF everysec) for everything in the run. Ours is used the way a user runs it:
``jobqueue-api`` (gunicorn, WEB_CONCURRENCY=2, default settings) is started and every job goes in
through ``POST /submit``; then one ``jobqueue-worker`` with default settings (metrics on, result
cache on) is started; the drain's clock runs from the first job's ``started_at`` to the moment the
last result is readable over HTTP (a ``?wait=`` long poll on the last queued job answers). Every
result is then read back over HTTP and checked. The only non-default setting is
``DIAGNOSTIC_OPERATIONS=1``, which offers the no-op ``sleep`` job.

Baselines in the same run, interleaved repeat by repeat:

* the minimal raw HotQueue loop (:mod:`bench.raw_minimal_loop`: put, BLPOP, SET, client GET), its
  process started after the jobs are queued, clock from its first job's start to the last result
  read with GET;
* Dramatiq (redis broker and results, warm workers released at a gate, :mod:`bench.peers`);
* for the ``incident_count_by_date`` drain, every installed peer running the tutorial's pandas code
  on the same 432,000-row CSV (best one taken);
* for the round trip, Celery's ``AsyncResult.get``.

Redis CPU per job is the Redis process's own ``used_cpu_user + used_cpu_sys`` (``INFO cpu``) over
submit + drain + reading every result back, divided by the jobs; ``INFO commandstats`` (reset at
the start) says how much of it is inside commands and which.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis
import requests

from bench import floor
from bench import raw_minimal_loop as rawloop
from bench import report
from bench.drain_harness import start_redis
from bench.peers import dataset, harness, peer_classes, procs
from bench.peers.celery_peer import CeleryDefaultPoolPeer
from jobqueue import keys
from devstack.procs import children, free_port

BIN = Path(sys.executable).parent
NOOP = ("sleep", {"seconds": 0})
DATE_PEERS = ("hotqueue-raw", "rq-simple", "celery", "dramatiq")
CONNECTIONS = 8  # concurrent keep-alive connections submitting / reading back
# Pause between opening two of them. Opened all at once, they all went to whichever gunicorn process
# the scheduler ran first (8/0 as often as 4/4; bench_api saw the same with 32), so a run measured one
# process or two by lottery, and the Redis cost per job with them (a process's group commit can carry
# at most as many requests as it has connections). Opened apart, each finds both processes idle.
CONNECT_GAP = 0.002
TARGETS = {
    "noop_vs_raw": 1.0,
    "noop_vs_dramatiq": 2.5,
    "date_vs_best": 50.0,
    "cpu_vs_raw": 1.0,
    "rt_p50": 3.0,
    "rt_p99": 10.0,
}


# --- a small keep-alive HTTP/1.1 client (the load generator must not be the bottleneck) ---------------
async def _http_worker(
    port: int,
    conn: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    requests_: list[bytes],
    next_index,
    answers: list,
) -> None:
    reader, writer = conn
    try:
        while True:
            i = next_index()
            if i is None:
                return
            writer.write(requests_[i])
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            body = await reader.readexactly(length) if length else b""
            answers[i] = (int(head[9:12]), body)
            if b"connection: close" in head.lower():
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
    finally:
        writer.close()


def http_many(port: int, raw_requests: list[bytes], connections: int = CONNECTIONS) -> list[tuple[int, bytes]]:
    """Send every request over ``connections`` keep-alive connections; answers in request order."""
    answers: list[Any] = [None] * len(raw_requests)
    counter = iter(range(len(raw_requests)))

    def next_index():
        return next(counter, None)

    async def main() -> None:
        conns = []
        for _ in range(connections):  # one at a time, apart: see CONNECT_GAP
            conns.append(await asyncio.open_connection("127.0.0.1", port))
            await asyncio.sleep(CONNECT_GAP)
        await asyncio.gather(*(_http_worker(port, conn, raw_requests, next_index, answers) for conn in conns))

    asyncio.run(main())
    return answers


def post_submit(operation: str, params: dict) -> bytes:
    body = json.dumps({"operation": operation, "params": params}).encode()
    return (
        b"POST /submit HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )


def get_status(job_id: str) -> bytes:
    return f"GET /status/{job_id} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()


# --- Redis's own accounting ---------------------------------------------------------------------------
def redis_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def command_stats(client: redis.Redis) -> dict[str, dict[str, float]]:
    return {
        name.removeprefix("cmdstat_"): {"calls": float(v["calls"]), "usec": float(v["usec"])}
        for name, v in client.info("commandstats").items()
    }


class Meter:
    """Redis CPU and per-command figures between :meth:`start` and :meth:`stop`."""

    def __init__(self, client: redis.Redis):
        self.client = client

    def start(self) -> None:
        self.client.config_resetstat()
        self.cpu0 = redis_cpu(self.client)
        self.marks: list[tuple[str, float]] = []

    def mark(self, stage: str) -> None:
        """The end of a stage (submit, drain): its Redis CPU is reported apart."""
        self.marks.append((stage, redis_cpu(self.client)))

    def stop(self, jobs: int, last_stage: str = "read back") -> dict[str, Any]:
        end = redis_cpu(self.client)
        cpu = end - self.cpu0
        stats = command_stats(self.client)
        inside = sum(v["usec"] for v in stats.values())
        per_job = {k: {"calls": v["calls"] / jobs, "usec": v["usec"] / jobs} for k, v in stats.items()}
        stages, before = {}, self.cpu0
        for stage, at in [*self.marks, (last_stage, end)]:
            stages[stage] = (at - before) * 1e6 / jobs
            before = at
        return {
            "cpu_us_per_job": cpu * 1e6 / jobs,
            "inside_us_per_job": inside / jobs,
            "calls_per_job": sum(v["calls"] for v in stats.values()) / jobs,
            "commands": per_job,
            "stages_us_per_job": stages,
        }


# --- the running API and the worker, as deployed -------------------------------------------------------
class Deployed:
    """``jobqueue-api`` started once for the run; a fresh ``jobqueue-worker`` for each drain."""

    def __init__(self, redis_url: str, data_path: str, workdir: Path):
        self.port = free_port()
        self.env = {
            "REDIS_URL": redis_url,
            "DATA_PATH": data_path,
            "DIAGNOSTIC_OPERATIONS": "1",
            "BIND_HOST": "127.0.0.1",
            "PORT": str(self.port),
            "PROMETHEUS_MULTIPROC_DIR": str(workdir / "api-metrics"),
        }
        self.base = f"http://127.0.0.1:{self.port}"
        self.api = procs.spawn([str(BIN / "jobqueue-api")], self.env, "deployed-api")
        self.session = requests.Session()
        deadline = time.monotonic() + 60
        while True:
            try:
                if self.session.get(self.base + "/readyz", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if self.api.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"jobqueue-api did not start (see {procs.log_path('deployed-api')})")
            time.sleep(0.05)

    def start_worker(self, run: str) -> subprocess.Popen:
        env = {**self.env, "WORKER_METRICS_PORT": str(free_port())}
        env.pop("PROMETHEUS_MULTIPROC_DIR")
        return procs.spawn([str(BIN / "jobqueue-worker")], env, f"deployed-worker-{run}")

    def close(self) -> None:
        self.session.close()
        procs.stop([self.api])


def ours_drain(dep: Deployed, client: redis.Redis, jobs: list[tuple[str, dict]]) -> dict[str, Any]:
    """Submit over HTTP, start one default worker, clock first ``started_at`` -> last result over HTTP."""
    client.flushall()
    meter = Meter(client)
    meter.start()
    answers = http_many(dep.port, [post_submit(op, params) for op, params in jobs])
    bad = [a for a in answers if a[0] != 202]
    if bad:
        raise RuntimeError(f"ours: {len(bad)} submits answered {bad[0][0]}: {bad[0][1][:200]!r}")
    ids = [json.loads(body)["job_id"] for _, body in answers]
    meter.mark("submit")
    queue = redis.Redis.from_url(dep.env["REDIS_URL"], db=1, decode_responses=True)
    last = queue.lindex(keys.queue("jobs"), -1)  # one worker takes them in order: the last one ends last
    queue.close()
    worker = dep.start_worker(uuid.uuid4().hex[:6])
    try:
        reply = dep.session.get(f"{dep.base}/status/{last}", params={"wait": "120"}, timeout=150).json()
        done = time.time()
        if reply.get("status") != "complete":
            raise RuntimeError(f"ours: last job ended {reply.get('status')}: {reply.get('error')}")
        meter.mark("drain")
        docs = [json.loads(body) for _, body in http_many(dep.port, [get_status(i) for i in ids])]
        figures = meter.stop(len(jobs))
    finally:
        procs.stop([worker])
    not_done = [d for d in docs if d.get("status") != "complete"]
    if not_done:
        raise RuntimeError(f"ours: {len(not_done)} jobs not complete after the last one: {not_done[0]}")
    first = min(d["started_at"] for d in docs)
    return {"rate": len(jobs) / (done - first), "seconds": done - first, **figures}


def raw_drain(redis_url: str, client: redis.Redis, jobs: list[tuple[str, dict]]) -> dict[str, Any]:
    """The minimal loop measured the same way: put each job, start the loop, GET every result."""
    client.flushall()
    meter = Meter(client)
    meter.start()
    ids = [uuid.uuid4().hex for _ in jobs]
    items = [json.dumps({"id": i, "operation": op, "params": params}) for i, (op, params) in zip(ids, jobs)]
    _threaded(redis_url, items, lambda conn, item: conn.rpush(f"hotqueue:{rawloop.QUEUE}", item), db=rawloop.QUEUE_DB)
    meter.mark("submit")
    with redis.Redis.from_url(redis_url, db=rawloop.QUEUE_DB) as queue:  # the last queued ends last
        last_key = rawloop.job_key(json.loads(queue.lindex(f"hotqueue:{rawloop.QUEUE}", -1))["id"])
    worker = procs.spawn(procs.python_argv("bench.raw_minimal_loop"), {"BENCH_REDIS_URL": redis_url}, "raw-minimal")
    try:
        deadline = time.monotonic() + 120
        queue_key = f"hotqueue:{rawloop.QUEUE}"
        with redis.Redis.from_url(redis_url, db=rawloop.QUEUE_DB) as queue:
            # coarse while the queue drains, fine for the last job: the harness's own polling must not
            # show up in the Redis CPU it measures (a poll costs Redis about what a job's command does)
            while queue.llen(queue_key):
                _alive(worker, deadline, "raw loop", "raw-minimal")
                time.sleep(0.02)
        while client.get(last_key) is None:
            _alive(worker, deadline, "raw loop", "raw-minimal")
            time.sleep(0.0005)
        done = time.time()
        meter.mark("drain")
        docs = _threaded(redis_url, ids, lambda conn, i: conn.get(rawloop.job_key(i)), db=rawloop.JOBS_DB)
        figures = meter.stop(len(jobs))
    finally:
        procs.stop([worker])
    if any(d is None for d in docs):
        raise RuntimeError("raw loop: a result is missing")
    first = min(json.loads(d)["started_at"] for d in docs)
    return {"rate": len(jobs) / (done - first), "seconds": done - first, **figures}


def _alive(proc: subprocess.Popen, deadline: float, name: str, log: str) -> None:
    if proc.poll() is not None or time.monotonic() > deadline:
        raise RuntimeError(f"{name}: no result (see {procs.log_path(log)})")


def _threaded(redis_url: str, items: list, call, db: int, threads: int = CONNECTIONS) -> list:
    """One command per item, ``threads`` connections at once (a client per request, as an API does)."""
    from concurrent.futures import ThreadPoolExecutor

    out: list[Any] = [None] * len(items)
    pool = redis.ConnectionPool.from_url(redis_url, db=db, max_connections=threads)

    def run(lo: int) -> None:
        conn = redis.Redis(connection_pool=pool)
        for k in range(lo, len(items), threads):
            out[k] = call(conn, items[k])

    with ThreadPoolExecutor(threads) as ex:
        list(ex.map(run, range(threads)))
    pool.disconnect()
    return out


def peer_drain(name: str, redis_url: str, data_path: str, jobs: list[tuple[str, dict]], check) -> dict[str, Any]:
    peer = peer_classes()[name](redis_url, data_path, 1)
    try:
        out = harness.drain_and_steady(peer, jobs, None, check, timeout=300)
    finally:
        peer.close()
    return {"rate": out["drain_rate"], "seconds": out["drain_seconds"]}


# --- round trip ----------------------------------------------------------------------------------------
def ours_round_trips(
    dep: Deployed,
    client: redis.Redis,
    count: int,
    warmup: int = 20,
    lean: bool = False,
    shipped: bool = False,
    one: bool = False,
    keyed: bool = False,
) -> dict[str, float]:
    """Sequential submit + long poll through the API with ``requests`` (the tutorial's client), or with
    ``lean`` the standard library's ``http.client`` on one keep-alive connection: the same two HTTP
    requests without ``requests``' own cost (about 0.4 ms a request here), to tell the client's share
    of the round trip from the service's; or with ``shipped`` the project's own ``jobqueue.client``.
    With ``one``, each job is one request instead, ``POST /submit?wait=60`` (with ``requests``, or
    with ``lean`` ``http.client``). With ``keyed`` (``requests``) each submit carries an
    ``Idempotency-Key``, as the project's client sends (``shipped`` with ``one``: ``submit_and_wait``).
    Each answer also says Redis's CPU a trip (:func:`_redis_per_trip`)."""
    client.flushall()
    worker = dep.start_worker(
        "rt"
        + ("-one" if one else "")
        + ("-lean" if lean else "-client" if shipped else "")
        + ("-keyed" if keyed else "")
    )
    call = (
        _LeanClient(dep.port)
        if lean
        else _ShippedClient(dep.base)
        if shipped
        else _RequestsClient(dep.base, keyed=keyed)
    )
    try:
        return _timed_trips(call, count, warmup, one, server=lambda: tree_cpu_seconds(dep.api.pid), redis_client=client)
    finally:
        call.close()
        procs.stop([worker])


def floor_round_trips(count: int, warmup: int = 20, lean: bool = False) -> dict[str, float]:
    """The same two requests through the same client code (``requests``, or with ``lean``
    ``http.client``) against :mod:`bench.floor`, a server answering canned bytes shaped like the
    API's 202 and 200: the client's own floor, to tell from the service path in the rows above."""
    with floor.FloorServer("rt-floor" + ("-lean" if lean else "")) as server:
        call = _LeanClient(server.port) if lean else _RequestsClient(server.base)
        try:
            return _timed_trips(call, count, warmup, False)
        finally:
            call.close()


def tree_cpu_seconds(pid: int) -> float:
    """CPU (user + kernel) used so far by process ``pid`` and its children (``jobqueue-api``: the
    gunicorn master and its workers), from each thread's ``/proc/<pid>/task/<tid>/schedstat``
    (nanoseconds; ``/proc/<pid>/stat`` counts in 10 ms ticks, coarse for a few hundred trips)."""
    total = 0.0
    for proc in [pid, *children(pid)]:
        try:
            for tid in os.listdir(f"/proc/{proc}/task"):
                with open(f"/proc/{proc}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0]) / 1e9
        except (FileNotFoundError, ProcessLookupError):  # a process or thread that ended meanwhile
            continue
    return total


def _timed_trips(call, count: int, warmup: int, one: bool, server=None, redis_client=None) -> dict[str, float]:
    """``count`` sequential round trips through ``call`` after ``warmup`` untimed ones: p50, p99,
    the submit's p50 (two requests), the client's own CPU a trip (this process's) and, given
    ``server`` (the server's CPU seconds so far), the server's CPU a trip; given ``redis_client``,
    Redis's (:func:`_redis_per_trip`)."""
    samples, submits = [], []
    cpu = server_cpu = redis_cpu0 = 0.0
    for i in range(count + warmup):
        if i == warmup:
            cpu = time.process_time()
            server_cpu = server() if server is not None else 0.0
            if redis_client is not None:
                redis_client.config_resetstat()
                redis_cpu0 = redis_cpu(redis_client)
        t0 = time.perf_counter()
        if one:
            job = call.run(NOOP[0], NOOP[1])
            t1 = t2 = time.perf_counter()
        else:
            job_id = call.submit(NOOP[0], NOOP[1])
            t1 = time.perf_counter()
            job = call.wait(job_id)
            t2 = time.perf_counter()
        if job["status"] != "complete":
            raise RuntimeError(f"round trip: job ended {job['status']}")
        if i >= warmup:
            samples.append(t2 - t0)
            submits.append(t1 - t0)
    cpu = time.process_time() - cpu
    out = {
        "p50_ms": harness.percentile(samples, 50) * 1e3,
        "p99_ms": harness.percentile(samples, 99) * 1e3,
        "client_cpu_us": cpu / count * 1e6,
    }
    if server is not None:
        out["api_cpu_us"] = (server() - server_cpu) / count * 1e6
    if redis_client is not None:
        out.update(_redis_per_trip(redis_client, redis_cpu0, count))
    if not one:
        out["submit_p50_ms"] = harness.percentile(submits, 50) * 1e3
    return out


def _redis_per_trip(client: redis.Redis, cpu0: float, count: int) -> dict[str, float]:
    """Redis's CPU a trip: its process's (``INFO cpu``) and the part inside commands (``INFO
    commandstats``): the submit, the worker's claim and finish, the reads. The worker's script calls
    and a keyed submit's are all ``EVALSHA``, so a keyed submit's cost is the difference between
    two runs that differ only in the key (``rt/ours`` and ``rt/ours-keyed``)."""
    inside = sum(
        float(v["usec"])
        for name, v in client.info("commandstats").items()
        if not name.startswith(("cmdstat_config", "cmdstat_info"))
    )
    return {"redis_cpu_us": (redis_cpu(client) - cpu0) * 1e6 / count, "redis_inside_us": inside / count}


class _RequestsClient:
    def __init__(self, base: str, keyed: bool = False):
        self.base, self.session, self.keyed = base, requests.Session(), keyed

    def submit(self, operation: str, params: dict) -> str:
        headers = {"Idempotency-Key": uuid.uuid4().hex} if self.keyed else None
        return self.session.post(
            self.base + "/submit", json={"operation": operation, "params": params}, headers=headers, timeout=10
        ).json()["job_id"]

    def wait(self, job_id: str) -> dict:
        return self.session.get(f"{self.base}/status/{job_id}", params={"wait": "60"}, timeout=70).json()

    def run(self, operation: str, params: dict) -> dict:
        answer = self.session.post(
            self.base + "/submit", params={"wait": "60"}, json={"operation": operation, "params": params}, timeout=70
        )
        return _finished(answer.status_code, answer.json())

    def close(self) -> None:
        self.session.close()


class _ShippedClient:
    """``jobqueue.client.Client``: ``submit``, then ``wait`` (its long poll asks ``?wait=60`` too)."""

    def __init__(self, base: str):
        from jobqueue.client import Client

        self.api = Client(base)

    def submit(self, operation: str, params: dict) -> str:
        return self.api.submit(operation, params)

    def wait(self, job_id: str) -> dict:
        return self.api.wait(job_id, poll=60)

    def run(self, operation: str, params: dict) -> dict:
        return self.api.submit_and_wait(operation, params, wait=60)  # final: a no-op job ends well within 60 s

    def close(self) -> None:
        self.api.close()


class _LeanClient:
    def __init__(self, port: int):
        import http.client
        import socket

        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=70)
        self.conn.connect()
        self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _call(self, method: str, path: str, body: bytes | None = None) -> dict:
        return self._exchange(method, path, body)[1]

    def _exchange(self, method: str, path: str, body: bytes | None = None) -> tuple[int, dict]:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        self.conn.request(method, path, body=body, headers=headers)
        reply = self.conn.getresponse()
        return reply.status, json.loads(reply.read())

    def run(self, operation: str, params: dict) -> dict:
        body = json.dumps({"operation": operation, "params": params}).encode()
        return _finished(*self._exchange("POST", "/submit?wait=60", body))

    def submit(self, operation: str, params: dict) -> str:
        return self._call("POST", "/submit", json.dumps({"operation": operation, "params": params}).encode())["job_id"]

    def wait(self, job_id: str) -> dict:
        return self._call("GET", f"/status/{job_id}?wait=60")

    def close(self) -> None:
        self.conn.close()


ONE_EXCHANGE = (
    ("rt/ours-one", "`requests`"),
    ("rt/ours-one-lean", "`http.client`"),
    ("rt/ours-one-client", "`jobqueue.client` (`Client.submit_and_wait`)"),
)


RT_ROWS = (
    ("rt/ours", "ours: `POST /submit` + `GET /status/<id>?wait=` with `requests`"),
    ("rt/ours-lean", "ours: the same two requests with `http.client` (no `requests`)"),
    ("rt/ours-client", "ours: the same two requests with `jobqueue.client` (`Client.submit`, `Client.wait`)"),
    ("rt/ours-keyed", "ours: the same two requests with `requests`, the submit with an `Idempotency-Key`"),
    *((key, f"ours, one exchange: `POST /submit?wait=` with {how}") for key, how in ONE_EXCHANGE),
    ("rt/floor", "floor: the same two requests with `requests` against canned answers (no service)"),
    ("rt/floor-lean", "floor: the same two requests with `http.client` against canned answers"),
    ("rt/celery", "Celery `delay()` + `AsyncResult.get` (solo pool: the baseline)"),
    ("rt/celery-prefork", "Celery, the same in its default pool (prefork, one child)"),
)


def _finished(status: int, job: dict) -> dict:
    """The job of a ``POST /submit?wait=60`` answer: 200 once final (a no-op job is, well within 60 s)."""
    if status != 200:
        raise RuntimeError(f"round trip in one exchange: answered {status}: {job}")
    return job


def celery_round_trips(redis_url: str, data_path: str, count: int, default_pool: bool = False) -> dict[str, float]:
    """Celery's round trip in the solo pool (the baseline) or, ``default_pool``, in its default prefork pool."""
    peer = (CeleryDefaultPoolPeer if default_pool else peer_classes()["celery"])(redis_url, data_path, 1)
    try:
        return harness.round_trips(peer, NOOP, count)
    finally:
        peer.close()


# --- the run ------------------------------------------------------------------------------------------
def parse_args(argv=None) -> argparse.Namespace:
    quick = report.quick()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=500 if quick else 2000, help="no-op jobs per drain")
    p.add_argument("--date-jobs", type=int, default=500 if quick else 2000, help="date jobs of our drain")
    p.add_argument("--peer-date-jobs", type=int, default=30 if quick else 60, help="date jobs of each peer's drain")
    p.add_argument("--repeats", type=int, default=1 if quick else 3, help="interleaved repeats (medians)")
    p.add_argument("--round-trips", type=int, default=100 if quick else 300, help="sequential jobs per client")
    p.add_argument("--rows", type=int, default=432_000, help="rows of the synthetic dataset")
    p.add_argument("--parts", default="noop,date,rt", help="which parts to run")
    p.add_argument("--write", action="store_true", help="rewrite the 'As deployed' section of docs/benchmarks.md")
    return p.parse_args(argv)


def distinct_dates(count: int) -> list[str]:
    """Dates in a fixed shuffled order, each once while they last (the result cache is on, as deployed)."""
    import random

    every = sorted(set(dataset.job_dates(dataset.DAYS * 4)))
    random.Random(13).shuffle(every)
    return [every[i % len(every)] for i in range(count)]


def run(args) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-deployed-"))
    server = start_redis(str(workdir / "redis"))
    client = redis.Redis.from_url(server.url)
    data_path = str(dataset.ensure_dataset(args.rows))
    available = peer_classes()
    runs: dict[str, list[dict]] = defaultdict(list)
    parts = set(args.parts.split(","))
    load = [os.getloadavg()[0]]
    dep = Deployed(server.url, data_path, workdir)
    try:
        for repeat in range(args.repeats):
            if "noop" in parts:
                noop = [NOOP] * args.jobs
                for name, call in (
                    ("raw", lambda noop=noop: raw_drain(server.url, client, noop)),
                    ("ours", lambda noop=noop: ours_drain(dep, client, noop)),
                    ("dramatiq", lambda noop=noop: peer_drain("dramatiq", server.url, data_path, noop, None)),
                ):
                    if name == "dramatiq" and "dramatiq" not in available:
                        continue
                    out = call()
                    runs[f"noop/{name}"].append(out)
                    _say(repeat, args, f"noop {name}", out)
            if "date" in parts:
                dates = distinct_dates(args.date_jobs)
                out = ours_drain(dep, client, [("incident_count_by_date", {"date": d}) for d in dates])
                runs["date/ours"].append(out)
                _say(repeat, args, "date ours", out)
                peer_jobs = [("incident_count_by_date", {"date": d}) for d in dates[: args.peer_date_jobs]]
                for name in DATE_PEERS:
                    if name in available:
                        out = peer_drain(name, server.url, data_path, peer_jobs, None)
                        runs[f"date/{name}"].append(out)
                        _say(repeat, args, f"date {name}", out)
            if "rt" in parts:
                out = ours_round_trips(dep, client, args.round_trips)
                runs["rt/ours"].append(out)
                _say(repeat, args, "round trip ours", out)
                out = ours_round_trips(dep, client, args.round_trips, keyed=True)
                runs["rt/ours-keyed"].append(out)
                _say(repeat, args, "round trip ours, Idempotency-Key", out)
                out = ours_round_trips(dep, client, args.round_trips, lean=True)
                runs["rt/ours-lean"].append(out)
                _say(repeat, args, "round trip ours, http.client", out)
                out = ours_round_trips(dep, client, args.round_trips, shipped=True)
                runs["rt/ours-client"].append(out)
                _say(repeat, args, "round trip ours, jobqueue.client", out)
                out = ours_round_trips(dep, client, args.round_trips, one=True)
                runs["rt/ours-one"].append(out)
                _say(repeat, args, "round trip ours, one exchange", out)
                out = ours_round_trips(dep, client, args.round_trips, one=True, lean=True)
                runs["rt/ours-one-lean"].append(out)
                _say(repeat, args, "round trip ours, one exchange, http.client", out)
                out = ours_round_trips(dep, client, args.round_trips, one=True, shipped=True)
                runs["rt/ours-one-client"].append(out)
                _say(repeat, args, "round trip ours, one exchange, jobqueue.client", out)
                for key, lean, label in (("rt/floor", False, ""), ("rt/floor-lean", True, ", http.client")):
                    out = floor_round_trips(args.round_trips, lean=lean)
                    runs[key].append(out)
                    _say(repeat, args, "round trip floor" + label, out)
                if "celery" in available:
                    out = celery_round_trips(server.url, data_path, args.round_trips)
                    runs["rt/celery"].append(out)
                    _say(repeat, args, "round trip celery", out)
                    out = celery_round_trips(server.url, data_path, args.round_trips, default_pool=True)
                    runs["rt/celery-prefork"].append(out)
                    _say(repeat, args, "round trip celery, default pool", out)
            load.append(os.getloadavg()[0])
    finally:
        dep.close()
        client.close()
        server.stop()
    return {"runs": dict(runs), "load": load}


def _say(repeat, args, label, out) -> None:
    extra = "".join(
        f"  {k} {out[k]:.1f}"
        for k in (
            "cpu_us_per_job",
            "inside_us_per_job",
            "calls_per_job",
            "p50_ms",
            "p99_ms",
            "client_cpu_us",
            "api_cpu_us",
            "redis_cpu_us",
            "redis_inside_us",
        )
        if k in out
    )
    rate = f"{out['rate']:9,.0f} jobs/s" if "rate" in out else ""
    print(f"  [{repeat + 1}/{args.repeats}] {label:20} {rate}{extra}", flush=True)


def med(runs: list[dict], key: str) -> float | None:
    values = [r[key] for r in runs if key in r]
    return statistics.median(values) if values else None


def summarize(result: dict[str, Any]) -> dict[str, Any]:
    runs = result["runs"]
    s: dict[str, Any] = {
        k: {
            m: med(v, m)
            for m in (
                "rate",
                "cpu_us_per_job",
                "inside_us_per_job",
                "calls_per_job",
                "p50_ms",
                "p99_ms",
                "submit_p50_ms",
                "client_cpu_us",
                "api_cpu_us",
                "redis_cpu_us",
                "redis_inside_us",
            )
        }
        for k, v in runs.items()
    }
    for key in ("noop/ours", "noop/raw"):
        if key in runs:  # per-command figures of the median run (by CPU)
            ordered = sorted(runs[key], key=lambda r: r["cpu_us_per_job"])
            s[key]["commands"] = ordered[len(ordered) // 2]["commands"]
            stages = [r.get("stages_us_per_job") or {} for r in runs[key]]
            s[key]["stages"] = (
                {name: statistics.median(st[name] for st in stages if name in st) for name in stages[0]}
                if stages and stages[0]
                else {}
            )
    pairs = list(zip(runs.get("noop/ours", []), runs.get("noop/raw", [])))  # the same repeat's two drains
    if pairs:  # the raw loop's own cost swings between repeats with the machine: show the spread
        ratios = sorted(o["cpu_us_per_job"] / r["cpu_us_per_job"] for o, r in pairs)
        s["noop/ours"]["cpu_ratios"] = ratios
    return s


def targets(s: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    def r(a, b):
        return a / b if a and b else None

    out = []
    ours, raw, dram = (s.get(f"noop/{n}", {}).get("rate") for n in ("ours", "raw", "dramatiq"))
    for text, value, need in (
        (
            "No-op drain as deployed, 1 worker process: >= 1.0x the minimal raw HotQueue loop",
            r(ours, raw),
            TARGETS["noop_vs_raw"],
        ),
        ("No-op drain as deployed: >= 2.5x Dramatiq", r(ours, dram), TARGETS["noop_vs_dramatiq"]),
    ):
        out.append((text, report.fmt_ratio(value) if value else "n/a", None if value is None else value >= need))
    peers = {k.split("/")[1]: v["rate"] for k, v in s.items() if k.startswith("date/") and k != "date/ours"}
    if peers and "date/ours" in s:
        best = max(peers, key=peers.get)
        value = r(s["date/ours"]["rate"], peers[best])
        out.append(
            (
                f"incident_count_by_date drain as deployed (432k rows): >= 50x the best peer (`{best}`)",
                report.fmt_ratio(value),
                value >= TARGETS["date_vs_best"],
            )
        )
    ocpu, rcpu = s.get("noop/ours", {}).get("cpu_us_per_job"), s.get("noop/raw", {}).get("cpu_us_per_job")
    if ocpu and rcpu:
        out.append(
            (
                "Redis CPU per job (submit + drain + read back): <= 1.0x the raw loop's",
                f"{ocpu:.0f} µs vs {rcpu:.0f} µs = {ocpu / rcpu:.2f}x",
                ocpu / rcpu <= TARGETS["cpu_vs_raw"],
            )
        )
    rt, cel = s.get("rt/ours"), s.get("rt/celery")
    if rt:
        for key, limit in (("p50_ms", TARGETS["rt_p50"]), ("p99_ms", TARGETS["rt_p99"])):
            c = cel.get(key) if cel else None
            ok = rt[key] <= limit and (c is None or rt[key] <= c)
            out.append(
                (
                    f"Round trip {key[:3]}: <= {limit:g} ms and <= Celery's `AsyncResult.get`",
                    f"{rt[key]:.2f} ms (Celery {c:.2f} ms)" if c else f"{rt[key]:.2f} ms",
                    ok,
                )
            )
    return out


def markdown(args, result, s) -> str:
    load = result["load"]
    lines = [
        "## As deployed",
        "",
        report.stamp(),
        "",
        f"`bench/bench_deployed.py`: load average {min(load):.1f}-{max(load):.1f} during the run "
        f"(2 cores). Ours: every job through `POST /submit` to the running `jobqueue-api` (gunicorn, two "
        "processes, default settings), then one `jobqueue-worker` with default settings (metrics on, result "
        "cache on) started; clock from the first job's `started_at` to the last result readable over HTTP; "
        "every result then read back over HTTP. Raw loop: the minimal HotQueue loop (put; BLPOP + SET per "
        "job; client GET), started after the jobs are queued, timed the same way. Dramatiq and the "
        "date-count peers: warm workers released at a gate (see Peers). "
        f"Medians of {args.repeats} interleaved repeat(s); {args.jobs:,} no-op jobs a drain; one Redis.",
        "",
    ]
    rows = [[text, shown, report.verdict(ok)] for text, shown, ok in targets(s)]
    lines += [report.table(["target (issue 13)", "measured", "verdict"], rows), ""]
    drains = [
        [
            f"`{k}`",
            report.fmt(v.get("rate")),
            report.fmt(v.get("cpu_us_per_job"), 1),
            report.fmt(v.get("calls_per_job"), 1),
        ]
        for k, v in s.items()
        if k.startswith(("noop/", "date/"))
    ]
    lines += [
        "### Drains",
        "",
        report.table(["drain", "jobs/s", "Redis CPU µs/job", "commands/job"], drains),
        "",
        "Commands per job count those a script runs as well as the script call itself (that is how "
        "`INFO commandstats` counts them; a script's µs include its commands').",
        "",
    ]
    ocpu = s.get("noop/ours", {}).get("cpu_us_per_job")
    rcpu = s.get("noop/raw", {}).get("cpu_us_per_job")
    if ocpu and rcpu:
        ratios = s["noop/ours"].get("cpu_ratios") or []
        spread = (
            f" Ours against the raw loop of the same repeat: {ratios[0]:.2f}x to {ratios[-1]:.2f}x "
            f"over {len(ratios)} repeats."
            if ratios
            else ""
        )
        lines += [
            f"Redis CPU per job: ours {ocpu:.0f} µs, so one Redis core carries about "
            f"**{1e6 / ocpu:,.0f} of our jobs/s** (submit, run, read back); the minimal raw loop "
            f"{rcpu:.0f} µs, about {1e6 / rcpu:,.0f} jobs/s.{spread}",
            "",
        ]
        ostages, rstages = s["noop/ours"].get("stages") or {}, s["noop/raw"].get("stages") or {}
        if ostages and rstages:
            lines += [
                "Redis CPU by stage, µs a job (medians; the raw loop's put and GET come from direct "
                "clients, ours through the HTTP API):",
                "",
                report.table(
                    ["stage", "ours", "raw loop"],
                    [[name, report.fmt(ostages.get(name), 1), report.fmt(rstages.get(name), 1)] for name in ostages],
                ),
                "",
            ]
        for key in ("noop/ours", "noop/raw"):
            cmds = s[key].get("commands") or {}
            top = sorted(cmds.items(), key=lambda kv: -kv[1]["usec"])[:8]
            lines.append(
                f"- `{key.split('/')[1]}`, per job: "
                + ", ".join(f"{name} {v['calls']:.2f} calls / {v['usec']:.1f} µs" for name, v in top)
            )
        lines.append("")
    if "rt/ours" in s:
        cel = s.get("rt/celery") or {}
        rows = [
            [
                text,
                report.fmt((s.get(key) or {}).get("p50_ms"), 2),
                report.fmt((s.get(key) or {}).get("p99_ms"), 2),
                report.fmt((s.get(key) or {}).get("submit_p50_ms"), 2),
                report.fmt((s.get(key) or {}).get("client_cpu_us")),
                report.fmt((s.get(key) or {}).get("api_cpu_us")),
                report.fmt((s.get(key) or {}).get("redis_cpu_us")),
            ]
            for key, text in RT_ROWS
            if key == "rt/celery" or s.get(key)
        ]
        lines += [
            "### Round trip",
            "",
            f"{args.round_trips} sequential no-op jobs, one worker process; each "
            "client in turn, repeat by repeat. The target is judged on the `requests` row (the tutorial's "
            "client, two requests); the `http.client` row shows how much of it is the client library; the "
            "one-exchange rows submit and wait in one request (200 with the finished job). The floor rows "
            "time the same client code against a server that answers the two requests with canned bytes "
            "shaped like the API's 202 and 200 and does nothing else (`bench/floor.py`): the client's own "
            "share of a round trip. Client CPU is the benchmark process's own, a round trip; API CPU is "
            "the `jobqueue-api` processes' (the gunicorn master and both workers), a round trip; Redis CPU "
            "is redis-server's own (`INFO cpu`), a round trip (the `Idempotency-Key` row differs from the "
            "first only in the key: the difference is a keyed submit's extra cost). Celery, the "
            "baseline, runs one worker process in its `solo` pool; the row after it is the same in Celery's "
            "default pool (prefork: a parent takes the message, one child runs it), for context.",
            "",
            report.table(
                [
                    "client",
                    "p50 ms",
                    "p99 ms",
                    "`POST /submit` alone, p50 ms",
                    "client CPU µs a trip",
                    "API CPU µs a trip",
                    "Redis CPU µs a trip",
                ],
                rows,
            ),
        ]
        over = [
            f"{how} {s[key]['p50_ms']:.2f} - {s[base]['p50_ms']:.2f} = **{s[key]['p50_ms'] - s[base]['p50_ms']:.2f} ms**"
            for key, base, how in (
                ("rt/ours", "rt/floor", "`requests`"),
                ("rt/ours-lean", "rt/floor-lean", "`http.client`"),
            )
            if s.get(key) and s.get(base)
        ]
        if over:
            lines += [
                "",
                "The service path (both HTTP exchanges through the API, Redis, the worker) over the client's "
                "floor, p50: "
                + "; ".join(over)
                + (f"; Celery's whole round trip {cel['p50_ms']:.2f} ms." if cel.get("p50_ms") else "."),
            ]
        ones = [(how, s[key]) for key, how in ONE_EXCHANGE if s.get(key)]
        if ones and cel.get("p50_ms"):
            lines += [
                "",
                "One exchange against Celery in this run, p50 / p99: "
                + "; ".join(
                    f"{how} {v['p50_ms'] / cel['p50_ms']:.2f}x / {v['p99_ms'] / cel['p99_ms']:.2f}x" for how, v in ones
                )
                + ".",
            ]
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    result = run(args)
    s = summarize(result)
    out = report.REPO_ROOT / ".run" / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "deployed.json").write_text(json.dumps({"result": result, "summary": s}, indent=1, default=str))
    text = markdown(args, result, s)
    print(text)
    if args.write:
        report.write_section("deployed", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
