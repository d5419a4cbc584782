"""Issue 14 item 9: worker metrics listen where the API does (BIND_HOST: 127.0.0.1 under make up),
not on every interface; the chart and k8s/ ask for 0.0.0.0 explicitly (WORKER_METRICS_HOST)."""

from __future__ import annotations

import pytest

from devstack.stack import running_stack

pytestmark = pytest.mark.slow


def listening_address(port: int) -> str:
    """The local address a LISTEN socket on ``port`` is bound to, from /proc/net/tcp."""
    for line in open("/proc/net/tcp").read().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        addr, hexport = local.split(":")
        if state == "0A" and int(hexport, 16) == port:
            return ".".join(str(int(addr[i : i + 2], 16)) for i in (6, 4, 2, 0))
    raise AssertionError(f"nothing listens on {port}")


def test_worker_metrics_follow_bind_host_unless_told(tmp_path):
    with running_stack(tmp_path) as stack:  # BIND_HOST=127.0.0.1, as make up sets it
        local = stack.start_worker(metrics_path="/metrics")
        assert listening_address(local.port) == "127.0.0.1"
        everywhere = stack.start_worker(metrics_path="/metrics", WORKER_METRICS_HOST="0.0.0.0")
        assert listening_address(everywhere.port) == "0.0.0.0"
