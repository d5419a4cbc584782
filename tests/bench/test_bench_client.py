"""bench/bench_client.py on a few requests against a real API + worker + redis-server: every client
completes its round trips and the table has a row for each. No timing assertions."""

from __future__ import annotations

import pytest

from bench import bench_client
from devstack.stack import running_stack

pytestmark = pytest.mark.slow


def test_every_client_round_trips_through_a_running_api(tmp_path):
    with running_stack(tmp_path) as stack:
        stack.start_api(web_concurrency=1)
        stack.start_worker()
        stack.wait_workers_registered(1)
        result = bench_client.measure(stack.url, count=3, repeats=1)
    assert set(result) == {*bench_client.CLIENTS, "_load"}
    for name in bench_client.CLIENTS:
        assert result[name]["health_us"] > 0 and 0 < result[name]["p50"] <= result[name]["p99"], name
    table = bench_client.markdown(result, 3, 1)
    assert all(name in table for name in bench_client.CLIENTS)
