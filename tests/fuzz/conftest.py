"""Fixtures of the bad-input tests: one real API (gunicorn) per module, no workers unless asked."""

from __future__ import annotations

import pytest

from devstack.redis_server import find_redis_server
from devstack.stack import running_stack
from tests.fuzz.limits import MAX_WAIT_SECONDS
from tests.support.figures import figures, summary  # noqa: F401  (fixture)


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    if find_redis_server() is None:
        pytest.skip("no redis-server binary")
    with running_stack(tmp_path_factory.mktemp("api"), MAX_WAIT_SECONDS=str(MAX_WAIT_SECONDS)) as stack:
        stack.start_api(web_concurrency=2)
        yield stack


def pytest_terminal_summary(terminalreporter):
    summary(terminalreporter)
