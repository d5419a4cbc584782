"""What the harness needs from each queue it benchmarks (a "peer"), whatever the library.

A peer starts its worker processes (gated: warm and waiting, see :mod:`gate`), queues jobs the
way its users would, says how much is still queued (``backlog``), whether given jobs have a
readable result (``check``), what the results are (``results``, for verification) and runs one
job end to end (``round_trip``). Jobs are ``(operation, params)`` pairs with the product's names:
``("sleep", {"seconds": 0})`` is the no-op, ``("incident_count_by_date", {"date": ...})``.
"""

from __future__ import annotations

import subprocess
from typing import Any

from . import gate, procs

Job = tuple[str, dict[str, Any]]


class Peer:
    name = "peer"
    description = ""
    gated = True  # False: the peer's worker cannot wait at the gate (ours, a stock CLI)

    def __init__(self, redis_url: str, data_path: str, processes: int):
        self.redis_url = redis_url
        self.data_path = data_path
        self.processes = processes
        self.procs: list[subprocess.Popen] = []
        self.run = ""

    # --- workers -----------------------------------------------------------------------------
    def worker_argvs(self) -> list[list[str]]:
        """One argv per OS process to start (a prefork pool is one argv with its own children)."""
        raise NotImplementedError

    def expected_ready(self) -> int:
        """How many processes announce themselves at the gate."""
        return len(self.worker_argvs())

    def worker_env(self) -> dict[str, str]:
        return {"BENCH_REDIS_URL": self.redis_url, "BENCH_DATA": self.data_path, "BENCH_RUN": self.run}

    def start(self, run: str) -> None:
        self.run = run
        self.procs = [procs.spawn(argv, self.worker_env(), f"{run}-{i}") for i, argv in enumerate(self.worker_argvs())]

    def wait_ready(self, timeout: float = 120.0) -> None:
        gate.wait_ready(self.redis_url, self.run, self.expected_ready(), timeout, self.procs)

    def release(self) -> None:
        gate.release(self.redis_url, self.run, self.expected_ready())

    def started_at(self, released: float) -> float:
        """When draining began: the gate release for gated peers; ungated ones say when they were ready."""
        return released

    def stop(self) -> None:
        procs.stop(self.procs)
        self.procs = []

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.procs)

    # --- jobs --------------------------------------------------------------------------------
    def submit_many(self, jobs: list[Job]) -> list[Any]:
        """Queue many jobs before the workers start (not timed; may use the library's bulk path)."""
        return [self.submit_one(op, params) for op, params in jobs]

    def submit_one(self, operation: str, params: dict[str, Any]) -> Any:
        raise NotImplementedError

    def backlog(self) -> int:
        """Jobs still waiting in the broker (cheap: one command)."""
        raise NotImplementedError

    def check(self, handles: list[Any]) -> list[bool]:
        """Whether each job's result is readable (one pipelined round trip per chunk)."""
        raise NotImplementedError

    def results(self, handles: list[Any]) -> list[dict[str, Any] | None]:
        raise NotImplementedError

    def round_trip(self, operation: str, params: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
        """Submit one job and wait for its result. May set ``self.phases`` ({"submit": s, "wait": s})."""
        raise NotImplementedError

    phases: dict[str, float] = {}

    def close(self) -> None:
        """Release client-side resources (connections) of this peer."""

    def versions(self) -> dict[str, str]:
        return {}
