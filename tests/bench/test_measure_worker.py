"""bench/measure_worker.py runs the real worker and reports a sane table."""

from __future__ import annotations

import pytest

from devstack.paths import SAMPLE

pytestmark = pytest.mark.slow


def test_measure_worker_times_real_jobs():
    from bench.measure_worker import measure

    rows = {
        op: (seconds, rate) for op, seconds, rate in measure(SAMPLE, jobs=3, rounds=1, operations=["unique_issues"])
    }
    seconds, rate = rows["unique_issues"]
    assert 0 < seconds < 5 and rate == pytest.approx(1 / seconds)
    assert 0 < rows["(worker start-up, s)"][0] < 60
