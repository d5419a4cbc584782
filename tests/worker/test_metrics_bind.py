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


@pytest.mark.parametrize(
    "settings,said",
    [
        ({"WORKER_METRICS_HOST": "127.0.0.1"}, "WORKER_METRICS_PORT {port} is in use on 127.0.0.1 by another program"),
        ({"WORKER_METRICS_HOST": "192.0.2.1"}, "WORKER_METRICS_HOST 192.0.2.1 is not an address of this machine"),
    ],
)
def test_a_metrics_port_the_worker_cannot_take_names_the_setting(redis_url, settings, said):
    """The log said only "cannot serve metrics" and a port, while the chart's liveness probe (on that
    port) restarted the worker again and again; the jobs still run."""
    import os
    import socket
    import subprocess

    from devstack.paths import BIN

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        env = {**os.environ, "REDIS_URL": redis_url, "WORKER_METRICS_PORT": str(port), **settings}
        run = subprocess.run(
            [str(BIN / "jobqueue-worker"), "--burst"], env=env, capture_output=True, text=True, timeout=60
        )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr
    assert "cannot serve metrics: " + said.format(port=port) in run.stdout, run.stdout[-2000:]
