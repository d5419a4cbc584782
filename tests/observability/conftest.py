"""Fixtures for the observability tests: promtool, and a real Prometheus per test."""

from __future__ import annotations

import pytest

from observability.rules import promtool as find_promtool
from devstack.prometheus_server import PrometheusServer, find_prometheus


@pytest.fixture(scope="session")
def promtool() -> str:
    tool = find_promtool()
    if tool is None:
        pytest.skip("no promtool (make setup installs Debian's prometheus package)")
    return tool


@pytest.fixture
def prometheus_factory(tmp_path):
    """Start real Prometheus servers with a given config; all are stopped after the test."""
    if find_prometheus() is None:
        pytest.skip("no prometheus binary (make setup installs Debian's prometheus package)")
    started: list[PrometheusServer] = []

    def start(**kwargs) -> PrometheusServer:
        server = PrometheusServer(tmp_path / f"prometheus-{len(started)}", **kwargs).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
