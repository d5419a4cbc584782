"""bench/bench_memory.py judges the 25% share at ten times the data only (issue 13's target 6)."""

from __future__ import annotations

from bench import bench_memory


def _run(rows: int, alone_rss: float, extra_uss: float) -> dict:
    proc = {"rss_mb": alone_rss, "pss_mb": alone_rss / 2, "uss_mb": extra_uss, "anon_mb": extra_uss}
    timed = {"ready_seconds": 1.0, "pss_mb": 200.0}
    return {
        "rows": rows,
        "workers": 3,
        "loader": {"seconds": 3.0, "peak_mb": 400.0},
        "alone": proc,
        "together": [proc, proc, proc],
        "ready_seconds": 0.5,
        "peak_mb": 110.0,
        "parsed": {**proc, "ready_seconds": 6.0, "peak_mb": 430.0},
        "extra_uss_mb": extra_uss,
        "share": extra_uss / alone_rss,
        "node_total_mb": 3 * alone_rss / 2,
        "forked": [proc, proc, proc],
        "forked_total_mb": 3 * alone_rss / 2,
        "api": {"cache": timed, "parse": timed},
    }


def _verdicts(text: str) -> dict[str, str]:
    rows = [line.split(" | ") for line in text.splitlines() if "each extra worker process" in line]
    return {cells[0].strip("| ").split(" rows")[0]: cells[-1].strip(" |") for cells in rows}


def test_the_share_is_judged_at_ten_times_the_data_and_only_reported_at_the_sample_size():
    text = bench_memory.markdown([_run(432_444, 169.0, 77.0), _run(4_324_440, 332.0, 78.0)])
    assert _verdicts(text) == {"432,444": "n/a", "4,324,440": "PASS"}
    assert "432,444 rows: each extra worker process adds at most 25% of the first one's RSS (reported" in text


def test_a_share_over_a_quarter_at_ten_times_the_data_is_a_miss():
    text = bench_memory.markdown([_run(4_324_440, 332.0, 100.0)])
    assert _verdicts(text) == {"4,324,440": "MISS"}
