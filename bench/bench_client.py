#!/usr/bin/env python3
"""The client's own cost (issue 13, round trip): CPU a request and round-trip latency of the
project's ``jobqueue.client.Client`` on its lean transport, against the same client through a
``requests`` session (``session=``), plain ``requests`` and the standard library's ``http.client``
on one keep-alive connection -- all in this one process, taking turns, against a running API.

    make up                                  # or any running API with DIAGNOSTIC_OPERATIONS=1 and a worker
    .venv/bin/python bench/bench_client.py --url http://127.0.0.1:5000 [--requests 300] [--repeats 5]

Per repeat and client: ``--requests`` ``GET /healthz`` (client CPU a request, from this process's
own rusage: the server's share is not in it), then as many sequential no-op round trips (submit +
long poll; and ``Client.run``, one exchange, for the project's client). Figures are medians over
repeats; the load average is printed with them, since other work on the machine moves latency
(CPU a request much less).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402

from bench import report  # noqa: E402

NOOP = ("sleep", {"seconds": 0})


class HttpClient:
    """``http.client`` on one keep-alive connection: the floor a Python client can reach."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=70)

    def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        self.conn.request(method, path, json.dumps(body) if body is not None else None, headers)
        return json.loads(self.conn.getresponse().read())

    def turn(self) -> None:
        """A new connection for each turn: the API closes one idle for CLIENT_TIMEOUT_SECONDS (5 s),
        and http.client does not notice before it sends (the other clients do)."""
        self.conn.close()

    def health(self) -> None:
        self._call("GET", "/healthz")

    def round_trip(self) -> dict:
        job_id = self._call("POST", "/submit", {"operation": NOOP[0], "params": NOOP[1]})["job_id"]
        return self._call("GET", f"/status/{job_id}?wait=60")


class Requests:
    """Plain ``requests.Session``, the tutorial's client."""

    def __init__(self, url: str) -> None:
        self.url, self.session = url, requests.Session()

    def health(self) -> None:
        self.session.get(self.url + "/healthz", timeout=10).json()

    def round_trip(self) -> dict:
        body = {"operation": NOOP[0], "params": NOOP[1]}
        job_id = self.session.post(self.url + "/submit", json=body, timeout=10).json()["job_id"]
        return self.session.get(f"{self.url}/status/{job_id}", params={"wait": "60"}, timeout=70).json()


class Ours:
    """``jobqueue.client.Client``: lean (no ``session=``) or through a ``requests`` session."""

    def __init__(self, url: str, lean: bool, one: bool = False) -> None:
        from jobqueue.client import Client
        from jobqueue.http import retrying_session

        self.client = Client(url) if lean else Client(url, session=retrying_session())
        self.one = one

    def health(self) -> None:
        self.client._request("GET", "/healthz").json()

    def round_trip(self) -> dict:
        if self.one:
            return self.client.submit_and_wait(NOOP[0], NOOP[1], wait=60)
        return self.client.wait(self.client.submit(NOOP[0], NOOP[1]), poll=60)


CLIENTS = {
    "`http.client`, one keep-alive connection": lambda url: HttpClient(url),
    "`requests.Session`": lambda url: Requests(url),
    "`jobqueue.client`, `session=retrying_session()` (requests)": lambda url: Ours(url, lean=False),
    "`jobqueue.client` (lean transport)": lambda url: Ours(url, lean=True),
    "`jobqueue.client` (lean), one exchange: `submit_and_wait`": lambda url: Ours(url, lean=True, one=True),
}


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(url: str, count: int, repeats: int) -> dict[str, dict[str, float]]:
    clients = {name: make(url) for name, make in CLIENTS.items()}
    for client in clients.values():  # connections open, code warm
        getattr(client, "turn", lambda: None)()
        client.health()
        client.round_trip()
    runs: dict[str, dict[str, list[float]]] = {
        name: {"health_us": [], "trip_us": [], "p50": [], "p99": []} for name in clients
    }
    loads = []
    for _ in range(repeats):
        for name, client in clients.items():  # turns: the same machine state for each
            getattr(client, "turn", lambda: None)()
            start = _cpu()
            for _ in range(count):
                client.health()
            runs[name]["health_us"].append((_cpu() - start) / count * 1e6)
            times, start = [], _cpu()
            for _ in range(count):
                t0 = time.perf_counter()
                if client.round_trip()["status"] != "complete":
                    raise RuntimeError(f"{name}: a no-op job did not complete within the wait")
                times.append(time.perf_counter() - t0)
            runs[name]["trip_us"].append((_cpu() - start) / count * 1e6)
            times.sort()
            runs[name]["p50"].append(times[len(times) // 2] * 1e3)
            runs[name]["p99"].append(times[min(len(times) - 1, int(len(times) * 0.99))] * 1e3)
        loads.append(os.getloadavg()[0])
    out = {name: {key: statistics.median(values) for key, values in r.items()} for name, r in runs.items()}
    out["_load"] = {"min": min(loads), "max": max(loads)}
    return out


def markdown(result: dict[str, dict[str, float]], count: int, repeats: int) -> str:
    load = result["_load"]
    rows = [
        [name, report.fmt(r["health_us"]), report.fmt(r["trip_us"]), report.fmt(r["p50"], 2), report.fmt(r["p99"], 2)]
        for name, r in result.items()
        if not name.startswith("_")
    ]
    return "\n".join(
        [
            f"{count} requests and {count} sequential no-op round trips per client and repeat, medians of "
            f"{repeats} repeats taking turns in one process; load average {load['min']:.1f}-{load['max']:.1f}.",
            "",
            report.table(
                [
                    "client",
                    "client CPU / `GET /healthz`, µs",
                    "client CPU / round trip, µs",
                    "round trip p50 ms",
                    "p99 ms",
                ],
                rows,
            ),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--url", default=os.environ.get("JOBQUEUE_URL", "http://127.0.0.1:5000"), help="the API to call"
    )
    parser.add_argument("--requests", type=int, default=300, help="round trips in one run")
    parser.add_argument("--repeats", type=int, default=5, help="runs (medians are reported)")
    args = parser.parse_args(argv)
    print(markdown(measure(args.url.rstrip("/"), args.requests, args.repeats), args.requests, args.repeats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
