"""bench_api's arithmetic: ratios come from adjacent runs, and CPU is read for a whole process tree."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from bench.bench_api import cpu_seconds, summarise, tree_cpu


def test_ratios_are_medians_of_adjacent_pairs_not_ratios_of_medians():
    # other work on the machine comes and goes: each pair of adjacent runs sees the same conditions
    bare = [
        {"rps": r, "p50_ms": 1.0, "p99_ms": 10.0, "server_cpu_us": 200, "redis_cpu_us": 0} for r in (4000, 2000, 1000)
    ]
    ours = [
        {"rps": r, "p50_ms": 2.0, "p99_ms": 12.0, "server_cpu_us": 300, "redis_cpu_us": 20} for r in (2000, 600, 500)
    ]
    summary = summarise({"ours": ours, "bare": bare})
    assert summary["rps_ratios"] == [0.5, 0.3, 0.5]
    assert summary["rps_ratio"] == 0.5  # the ratio of the medians would say 600 / 2000 = 0.3
    assert summary["ours"]["rps"] == 600
    assert summary["p99_ratio"] == 1.2
    assert summary["ours"]["server_cpu_us"] == 300


def test_tree_cpu_counts_children():
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\ntime.sleep(30)",
        ]
    )
    try:
        deadline = time.monotonic() + 30
        while cpu_seconds(child.pid) < 0.25 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert tree_cpu(os.getpid()) >= cpu_seconds(os.getpid()) + 0.25
    finally:
        child.kill()
        child.wait()
    assert cpu_seconds(child.pid) == 0.0  # gone
