"""Fixtures shared by every test: a real redis-server per test session, flushed per test."""

from __future__ import annotations

import pytest

from devstack.paths import SAMPLE
from devstack.redis_server import RedisServer, find_redis_server
from tests.support.harness import Harness

# The image fixtures (session-scoped: both images built once) are registered here, once for the whole
# run. Imported into tests/deploy/conftest.py and tests/images/conftest.py instead, each conftest had a
# fixture of its own, and the images were built (and inspected) once per directory.
pytest_plugins = ["tests.support.images", "tests.support.suite_count"]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """One real redis-server for the session, on a free port, AOF on."""
    if find_redis_server() is None:
        pytest.skip("no redis-server binary (make setup installs one)")
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server):
    """The session's Redis, emptied (all dbs) before each test that asks for it."""
    redis_server.client().flushall()
    return redis_server.url


@pytest.fixture
def fresh_redis(tmp_path):
    """A redis-server of this test's own, for tests that stop, kill or restart it."""
    if find_redis_server() is None:
        pytest.skip("no redis-server binary")
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture
def settings_env(redis_url, monkeypatch):
    """Environment variables pointing a service at the test Redis and the bundled sample."""
    env = {"REDIS_URL": redis_url, "DATA_PATH": str(SAMPLE)}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


@pytest.fixture
def harness(redis_url) -> Harness:
    """Settings, store and submit on the session's Redis, for core and worker tests."""
    return Harness(redis_url)
