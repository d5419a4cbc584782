"""Fixtures of the chaos suite: a whole stack per test on its own Redis, and a report of figures.

Tests record what they measured (re-runs, recovery times, counts) with the ``figures`` fixture;
the session prints them at the end and writes ``.run/chaos-report.json``, which
``docs/reliability.md`` quotes.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import pytest

from tests.support.redis_server import find_redis_server
from tests.support.stack import running_stack, services_missing

REPO_ROOT = Path(__file__).resolve().parents[2]
REPORT = REPO_ROOT / ".run" / "chaos-report.json"
_FIGURES: dict[str, dict] = {}


@pytest.fixture
def stack(tmp_path):
    if find_redis_server() is None:
        pytest.skip("no redis-server binary")
    missing = services_missing()
    if missing:
        pytest.skip(f"service not built yet: {', '.join(missing)}")
    with running_stack(tmp_path) as s:
        yield s


@pytest.fixture
def rng(request):
    seed = int(time.time())
    print(f"\nchaos seed for {request.node.name}: {seed}")
    return random.Random(seed)


@pytest.fixture
def figures(request):
    """A dict the test fills with what it measured; reported at the end of the session."""
    data: dict = {}
    yield data
    if data:
        _FIGURES[request.node.name] = data


def pytest_terminal_summary(terminalreporter):
    if not _FIGURES:
        return
    terminalreporter.section("chaos figures")
    for name, data in _FIGURES.items():
        terminalreporter.write_line(f"{name}: {json.dumps(data, sort_keys=True)}")
    REPORT.parent.mkdir(exist_ok=True)
    previous = json.loads(REPORT.read_text()) if REPORT.exists() else {}
    previous.update({name: {**data, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
                     for name, data in _FIGURES.items()})
    REPORT.write_text(json.dumps(previous, indent=2, sort_keys=True) + "\n")
