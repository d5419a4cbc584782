"""bench/bench_analysis.py renders its section and target verdicts from saved figures (no measuring)."""

from __future__ import annotations

import json
import subprocess
import sys

from devstack.paths import REPO_ROOT


def test_render_from_json_writes_only_its_section(tmp_path):
    ops = {
        name: {"ours_ms": 0.002, "naive_ms": 2.0, "ratio": 1000.0}
        for name in [
            "incident_count_by_date",
            "top_locations",
            "average_response_time",
            "unique_issues",
            "incidents_by_road",
        ]
    }
    ops["plot_top_locations"] = {"ours_ms": 300.0, "naive_ms": 450.0, "ratio": 1.5}
    cold = {"ours, cached": {"seconds": 0.8, "rss_mb": 100, "peak_mb": 101, "runs": 4, "pandas_imported": False}}
    saved = {
        "machine": {
            "date": "2026-11-27 19:00 UTC",
            "cpu": "test cpu",
            "cores": 2,
            "memory_gib": 24,
            "python": "3.11",
            "numpy": "2",
            "pandas": "3",
            "pyarrow": "26",
            "load_average": [1, 1, 1],
        },
        "results": [{"rows": 432444, "file_mib": 92, "ops": ops, "cold": cold}],
    }
    (tmp_path / "run.json").write_text(json.dumps(saved))
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\n## Peers\n<!-- bench:peers -->\nkeep me\n<!-- /bench:peers -->\n")
    r = subprocess.run(
        [sys.executable, "bench/bench_analysis.py", "--from-json", str(tmp_path / "run.json"), "--write"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env={"BENCH_DOC": str(doc), "PATH": ""},
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    text = doc.read_text()
    assert "keep me" in text and "## Analysis operations\n<!-- bench:analysis -->" in text
    assert "| `plot_top_locations` at least 3x the naive code | 1.5x | MISS |" in text  # issue 13: plots at 3x
    assert "| worker cold start at 432k rows at most 1 s | 0.80 s | PASS |" in text
    assert "| road search under 5 ms | 0.002 ms | PASS |" in text
