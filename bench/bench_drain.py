"""Worker drain: N no-op jobs through our worker (at-least-once delivery on) vs the raw HotQueue loop.

Same Redis, same job documents, same run, interleaved repeats; prints medians and ratios and, with
``--write-docs``, rewrites the "Worker drain" section of docs/benchmarks.md.
    .venv/bin/python bench/bench_drain.py [--jobs 5000] [--repeats 5] [--write-docs]
"""

from __future__ import annotations

import argparse
import platform
import re
import sys
import time
from importlib.metadata import version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import drain_harness as h

CONFIGS = [("raw", 1), ("ours", 1), ("raw", 2), ("ours", 2)]
DOCS = h.REPO / "docs" / "benchmarks.md"


def run(jobs: int, repeats: int) -> dict[tuple[str, int], list[float]]:
    server = h.start_redis()
    rates: dict[tuple[str, int], list[float]] = {c: [] for c in CONFIGS}
    try:
        h.drain_once(server.url, "ours", 1, min(jobs, 1000))  # warm-up (page cache, Redis allocator)
        for rep in range(repeats):
            for kind, procs in CONFIGS:
                seconds = h.drain_once(server.url, kind, procs, jobs)
                rates[(kind, procs)].append(jobs / seconds)
                print(f"  repeat {rep + 1}: {kind:4s} x{procs}: {jobs / seconds:8.0f} jobs/s", flush=True)
    finally:
        server.stop()
    return rates


def table(rates: dict[tuple[str, int], list[float]], jobs: int, repeats: int) -> str:
    med = {c: h.median(v) for c, v in rates.items()}
    lines = [
        f"No-op `sleep` jobs (seconds 0), {jobs} per run, median of {repeats} interleaved runs; "
        f"warm workers, clock from pushing the ids to every result readable.",
        "",
        "| worker | processes | jobs/s (median) | runs | ratio to raw HotQueue loop |",
        "| --- | ---: | ---: | --- | ---: |",
    ]
    names = {
        "raw": "raw HotQueue loop (tutorial; no delivery guarantee)",
        "ours": "jobqueue-worker (at-least-once, leases, fencing)",
    }
    for kind, procs in CONFIGS:
        runs = ", ".join(f"{r:.0f}" for r in rates[(kind, procs)])
        ratio = med[(kind, procs)] / med[("raw", procs)]
        lines.append(f"| {names[kind]} | {procs} | {med[(kind, procs)]:.0f} | {runs} | {ratio:.2f}x |")
    lines += [
        "",
        f"Machine: {platform.node()}, {platform.machine()}, {_cpus()} CPUs, Python "
        f"{platform.python_version()}, redis-py {version('redis')}, hotqueue {version('hotqueue')}, "
        f"{_redis_version()}; measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
    ]
    return "\n".join(lines)


def _cpus() -> int:
    import os

    return os.cpu_count() or 0


def _redis_version() -> str:
    import subprocess

    try:
        out = subprocess.run(
            [h.RedisServer.__init__.__globals__["find_redis_server"](), "--version"], capture_output=True, text=True
        ).stdout
        return "redis-server " + re.search(r"v=(\S+)", out).group(1)
    except Exception:
        return "redis-server (unknown version)"


def write_docs(text: str, rates: dict[tuple[str, int], list[float]]) -> None:
    """Rewrite only the "Worker drain" section of docs/benchmarks.md (bench.report's markers)."""
    from bench import report

    med = {c: h.median(v) for c, v in rates.items()}
    one = med[("ours", 1)] / med[("raw", 1)]
    verdict = (
        f"- No-op drain, 1 worker process, ours >= 1.0x the raw HotQueue loop: "
        f"{report.verdict(one >= 1.0)} ({one:.2f}x)"
    )
    body = f"{report.stamp()}\n\n{_ABOUT}\n\n{text}\n\n{verdict}"
    report.write_section("worker-drain", "## Worker drain\n\n" + body)


_ABOUT = (
    "`bench/bench_drain.py` (`.venv/bin/python bench/bench_drain.py --write-docs`). Both workers "
    "read the same job documents and dispatch through the same catalogue; ours also claims into "
    "a processing list, keeps a lease, fences the final write and publishes completion. Peers "
    "(RQ, Celery, Dramatiq) on the same harness: see Peers."
)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=5000, help="jobs in one drain")
    parser.add_argument("--repeats", type=int, default=5, help="drains of each worker (medians)")
    parser.add_argument("--write-docs", action="store_true", help="also rewrite its section of docs/benchmarks.md")
    args = parser.parse_args()
    rates = run(args.jobs, args.repeats)
    text = table(rates, args.jobs, args.repeats)
    print(text)
    if args.write_docs:
        write_docs(text, rates)
        print(f"wrote {DOCS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
