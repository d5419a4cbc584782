"""The local stand-ins for the chart's `redis` and `oliver006/redis_exporter` images
(tests/images/redis/Dockerfile) keep the upstream images' contracts that pods and people rely on:
the official redis image's ids (redis 999:999), /data owned by them as the working directory, its
entrypoint (options alone mean redis-server, run as the redis user) and CMD; the exporter's binary
as the entrypoint, at /redis_exporter too, as user 59000:59000 on port 9121. The chart's own pods
with these images run in tests/deploy/test_podman_pods.py.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid

import pytest

from devstack.procs import free_port
from tests.images.containers import inspect_image

pytestmark = [
    pytest.mark.images,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("podman") is None, reason="no podman (scripts/bootstrap.sh installs it)"),
]


def podman(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)


def test_redis_stand_in_has_the_official_images_contract(built_redis_images):
    image = built_redis_images["redis"]
    config = inspect_image(image)
    assert config.entrypoint == ["redis-entrypoint.sh"] and config.cmd == ["redis-server"]
    assert config.workdir == "/data" and "6379/tcp" in config.exposed_ports
    owner = podman(
        "run", "--rm", "--network", "none", image, "sh", "-c", "stat -c %u:%g /data; id -u redis; id -g redis"
    )
    assert owner.stdout.split() == ["999:999", "999", "999"], owner.stdout + owner.stderr
    # what the chart's sh -c commands, probes and backup/restore scripts call
    needed = "redis-server redis-cli sed grep cat printf date head tail sort wc tr cp mv ls kill sleep"
    tools = podman(
        "run", "--rm", "--network", "none", image, "sh", "-c", f"for t in {needed}; do command -v $t || exit 1; done"
    )
    assert tools.returncode == 0 and len(tools.stdout.split()) == len(needed.split()), tools.stdout + tools.stderr

    # `<image> --port N`: the entrypoint runs redis-server with those options, as the redis user
    port, name = free_port(), f"atx-redis-stand-in-{uuid.uuid4().hex[:8]}"  # a killed run's container keeps its name
    started = podman(
        "run",
        "-d",
        "--rm",
        "--name",
        name,
        "--network",
        "host",
        image,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
    )
    assert started.returncode == 0, started.stderr
    try:
        deadline = time.monotonic() + 120
        while podman("exec", name, "redis-cli", "-p", str(port), "ping").stdout.strip() != "PONG":
            assert time.monotonic() < deadline, podman("logs", name).stdout
            time.sleep(0.3)
        users = podman("top", name, "user", "comm").stdout
        assert any(line.split()[:2] == ["redis", "redis-server"] for line in users.splitlines()), users
    finally:
        podman("rm", "-f", "-t", "0", name)


def test_exporter_stand_in_runs_the_binary_as_upstream_does(built_redis_images):
    image = built_redis_images["redis-exporter"]
    config = inspect_image(image)
    assert config.entrypoint == ["/redis_exporter"] and config.user == "59000:59000"
    assert config.exposed_ports == ["9121/tcp"]
    version = podman("run", "--rm", "--network", "none", image, "--version")
    assert version.returncode == 0 and "Redis Metrics Exporter" in version.stdout + version.stderr, version
