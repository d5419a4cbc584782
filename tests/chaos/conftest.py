"""Fixtures of the chaos suite: a whole stack per test on its own Redis, and a report of figures.

Tests record what they measured (re-runs, recovery times, counts) with the ``figures`` fixture;
the session prints them at the end and writes ``.run/chaos-report.json``, which
``docs/reliability.md`` quotes.
"""

from __future__ import annotations

import random
import time

import pytest

from devstack.redis_server import find_redis_server
from tests.support.figures import figures, summary  # noqa: F401  (fixture)
from devstack.stack import running_stack


@pytest.fixture
def stack(tmp_path):
    if find_redis_server() is None:
        pytest.skip("no redis-server binary")
    with running_stack(tmp_path) as s:
        yield s


@pytest.fixture
def rng(request):
    seed = int(time.time())
    print(f"\nchaos seed for {request.node.name}: {seed}")
    return random.Random(seed)


def pytest_terminal_summary(terminalreporter):
    summary(terminalreporter)
