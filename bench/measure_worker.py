"""Measure one real worker: start-up time and per-operation throughput, the inputs of the autoscaling model.

Starts its own redis-server, the real API and ONE real ``jobqueue-worker`` on loopback (result
cache off, so every job really runs), and for each operation queues ``--jobs`` copies before the
worker exists, then times the drain. Prints a Markdown table for docs/autoscaling.md:

    .venv/bin/python -m bench.measure_worker --data data/full/traffic_incidents.csv

Start-up = worker process start -> its metrics port answers (the worker serves metrics only
after loading the dataset, so: ready to take jobs); in a cluster add scheduling and image pull.
The drain time includes the worker's jobs being picked up while it starts, so per-job seconds
are measured from the moment it is ready.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from devstack.redis_server import RedisServer
from devstack.stack import Stack

OPERATIONS = {
    "incident_count_by_date": {"date": "2024-03-06"},
    "top_locations": {"n": 10},
    "average_response_time": {},
    "unique_issues": {},
    "incidents_by_road": {"road": "S CONGRESS AVE"},
    "top_roads": {"n": 10},
    "daily_counts": {"start": "2024-01-01", "end": "2024-01-31"},
    "plot_top_locations": {"n": 10},
    "plot_daily_counts": {"start": "2024-01-01", "end": "2024-06-30"},
}


def drain_seconds(stack: Stack, ids: list[str], timeout: float = 600) -> float:
    started = time.monotonic()
    pending = set(ids)
    while pending:
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{len(pending)} jobs not done")
        for job_id in list(pending):
            status = stack.status(job_id)["status"]
            if status in {"complete", "failed"}:
                if status == "failed":
                    raise RuntimeError(f"job failed: {stack.status(job_id)}")
                pending.discard(job_id)
        time.sleep(0.02)
    return time.monotonic() - started


def measure(data: Path, jobs: int, rounds: int, operations: list[str]) -> list[tuple[str, float, float]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="measure-worker-") as tmp:
        tmp_path = Path(tmp)
        redis = RedisServer(tmp_path / "redis", appendonly=False).start()
        stack = Stack(
            tmp_path / "stack",
            redis,
            env={
                "DATA_PATH": str(data.resolve()),
                "DATA_CACHE_DIR": str(tmp_path / "cache"),
                "RESULT_CACHE": "0",
                "LOG_LEVEL": "WARNING",
            },
        )
        try:
            stack.start_api()
            startups = []
            for op in operations:
                params = OPERATIONS[op]
                per_job = []
                for _ in range(rounds):
                    ids = [stack.submit(op, params) for _ in range(jobs)]
                    t0 = time.monotonic()
                    proc = stack.start_worker(metrics_path="/metrics")  # answers once the dataset is loaded
                    startups.append(time.monotonic() - t0)
                    per_job.append(drain_seconds(stack, ids) / jobs)
                    proc.stop()
                    stack.workers.pop()
                rows.append((op, statistics.median(per_job), 1 / statistics.median(per_job)))
            rows.append(("(worker start-up, s)", statistics.median(startups), 0.0))
        finally:
            stack.close()
            redis.stop()
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, default=Path("data/traffic_incidents_sample.csv"), help="the dataset the worker loads"
    )
    parser.add_argument("--jobs", type=int, default=20, help="jobs per operation per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per operation")
    parser.add_argument(
        "--operations", nargs="+", choices=sorted(OPERATIONS), default=list(OPERATIONS), help="operations to time"
    )
    args = parser.parse_args(argv)
    rows = measure(args.data, args.jobs, args.rounds, args.operations)
    print(f"data: {args.data}; {args.jobs} jobs x {args.rounds} rounds per operation; one worker; result cache off\n")
    print("| operation | seconds per job (median) | jobs/s per worker |")
    print("| --- | ---: | ---: |")
    for op, seconds, rate in rows:
        print(f"| {op} | {seconds:.3f} | {rate:.1f} |" if rate else f"| {op} | {seconds:.2f} | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
