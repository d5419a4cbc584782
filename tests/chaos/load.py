"""Client side of the chaos tests: concurrent submitters, a job mix, and a counter of final results.

Every submitter thread has its own HTTP session and records what it saw for each request (status
code or connection error), so a test can say exactly which jobs the API acknowledged (202) and
what else clients were shown while a fault was going on.
"""

from __future__ import annotations

import collections
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Callable, Iterator

import redis
import requests

from jobqueue import keys
from jobqueue.jobs import JobStore

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def scaled(full: int, ci: int) -> int:
    """``full`` for ``make chaos``; ``ci`` under CI=true (CHAOS_FULL=1 forces full size anywhere)."""
    if os.environ.get("CHAOS_FULL") == "1":
        return full
    return ci if IN_CI else full


@dataclass
class Outcome:
    status: int | None  # HTTP status, None for a connection error
    job_id: str | None
    error: str | None
    at: float  # time.monotonic() when the answer arrived
    spec: dict[str, Any] | None = None


@dataclass
class Tally:
    outcomes: list[Outcome] = field(default_factory=list)

    def statuses(self) -> collections.Counter:
        return collections.Counter(o.status for o in self.outcomes)

    def acked(self) -> dict[str, dict[str, Any]]:
        """Job id -> the submitted spec, for every request answered 202."""
        return {o.job_id: o.spec for o in self.outcomes if o.status == 202 and o.job_id}

    def server_errors(self, allowed: set[int] = frozenset({503})) -> list[Outcome]:
        return [o for o in self.outcomes if o.status is not None and o.status >= 500 and o.status not in allowed]

    def connection_errors(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status is None]


def _post(session: requests.Session, url: str, spec: dict[str, Any], headers: dict[str, str]) -> Outcome:
    try:
        resp = session.post(url + "/submit", json=spec, timeout=30, headers=headers)
    except requests.RequestException as exc:
        return Outcome(None, None, type(exc).__name__, time.monotonic(), spec)
    job_id = None
    if resp.status_code == 202:
        job_id = resp.json()["job_id"]
    return Outcome(resp.status_code, job_id, None if resp.ok else resp.text[:200], time.monotonic(), spec)


def submit_all(url: str, specs: list[dict[str, Any]], clients: int = 32, token: str = "") -> Tally:
    """Submit each spec once from ``clients`` concurrent clients; returns when all are answered."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    local = threading.local()

    def one(spec: dict[str, Any]) -> Outcome:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        return _post(local.session, url, spec, headers)

    with ThreadPoolExecutor(max_workers=clients) as pool:
        return Tally(list(pool.map(one, specs)))


class BackgroundLoad:
    """``clients`` threads submitting ``make_spec()`` jobs back to back until :meth:`stop`."""

    def __init__(self, url: str, make_spec: Callable[[], dict[str, Any]], clients: int = 8, pause: float = 0.0):
        self.url, self.make_spec, self.pause = url, make_spec, pause
        self.tally = Tally()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def _run(self) -> None:
        session = requests.Session()
        while not self._stop.is_set():
            outcome = _post(session, self.url, self.make_spec(), {})
            with self._lock:
                self.tally.outcomes.append(outcome)
            if outcome.status != 202:
                time.sleep(0.02)  # a refused client backs off a little, as a real one would
            elif self.pause:
                time.sleep(self.pause)

    def __enter__(self) -> BackgroundLoad:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> Tally:
        self._stop.set()
        for t in self._threads:
            t.join(40)
        return self.tally

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def first_after(self, t: float, status: int) -> Outcome | None:
        with self._lock:
            return next((o for o in self.tally.outcomes if o.at >= t and o.status == status), None)

    def count(self) -> int:
        with self._lock:
            return len(self.tally.outcomes)


class DoneCounter:
    """Counts the ``jobs:done`` announcements per job id: a job announced twice had two final results.
    It sets ``keys.ANNOUNCE_ALL`` (jobs db) while it listens: otherwise only waited jobs are announced."""

    def __init__(self, client: redis.Redis, channel: str):
        self.counts: collections.Counter[str] = collections.Counter()
        self._client = client  # keep it: a collected client closes its pool, our connection with it
        client.set(keys.ANNOUNCE_ALL, "1")
        self._pubsub = client.pubsub(ignore_subscribe_messages=True)
        self._pubsub.subscribe(channel)
        self._pubsub.get_message(timeout=1.0)  # the subscribe confirmation: we are listening
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            message = self._pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
            if message and message["type"] == "message":
                self.counts[JobStore.done_message(message["data"])[0]] += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._pubsub.close()
        self._client.delete(keys.ANNOUNCE_ALL)


# --- the job mix -------------------------------------------------------------------------------
def sleep_spec(seconds: float) -> dict[str, Any]:
    return {"operation": "sleep", "params": {"seconds": round(seconds, 9)}}


def analysis_specs(operations: Any, rng: random.Random) -> Iterator[dict[str, Any]]:
    """Endless valid submissions of the analysis operations, parameters varied where bounded ints."""
    ops = [op for op in operations if op.name != "sleep" and not op.produces_png]
    while True:
        op = rng.choice(ops)
        spec = op.example_submission()
        for p in op.params:
            if p.type == "int" and p.minimum is not None and p.maximum is not None:
                spec["params"][p.name] = rng.randint(int(p.minimum), min(int(p.maximum), int(p.minimum) + 25))
        yield spec


def job_mix(
    n: int, operations: Any, rng: random.Random, sleep_share: float = 0.4, max_sleep: float = 0.3
) -> list[dict[str, Any]]:
    """``n`` submissions: ``sleep_share`` of them sleeps (distinct durations up to ``max_sleep``), the
    rest analysis operations. Distinct sleep durations make every result traceable to its job."""
    analyses = analysis_specs(operations, rng)
    specs = []
    for i in range(n):
        if rng.random() < sleep_share:
            specs.append(sleep_spec(rng.uniform(0, max_sleep) + i * 1e-9))
        else:
            specs.append(next(analyses))
    return specs
