"""Fixtures of the security tests."""

from __future__ import annotations

import pytest

from devstack.redis_server import find_redis_server
from devstack.stack import running_stack
from tests.security.token import TOKEN


@pytest.fixture(scope="module")
def token_api(tmp_path_factory):
    """The API under gunicorn with API_TOKEN set (no workers: these tests never need a result)."""
    if find_redis_server() is None:
        pytest.skip("no redis-server binary")
    with running_stack(tmp_path_factory.mktemp("token"), API_TOKEN=TOKEN) as stack:
        stack.start_api(web_concurrency=1)
        yield stack
