"""The backup and restore procedure of docs/deployment.md, run for real: the chart's own redis.conf,
backup.sh and restore.sh (as rendered into the Redis ConfigMap) against a local redis-server."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from devstack.procs import free_port
from devstack.redis_server import find_redis_server
from tests.deploy.local import ChartRedis
from tests.deploy.manifests import one, render_objects

PASSWORD = "s3cret-Test-pw"

pytestmark = pytest.mark.skipif(find_redis_server() is None, reason="no redis-server binary")


@pytest.fixture(scope="module")
def rendered():
    objs = render_objects({"redis": {"backup": {"enabled": True}}})
    return one(objs, "ConfigMap", "redis")["data"]


def _run(script: str, env: dict[str, str], tmp: Path) -> subprocess.CompletedProcess:
    path = tmp / "script.sh"
    path.write_text(script)
    return subprocess.run(
        ["sh", str(path)], env={"PATH": os.environ["PATH"], **env}, capture_output=True, text=True, timeout=60
    )


def test_redis_conf_turns_on_aof_and_a_password(rendered, tmp_path):
    server = ChartRedis(rendered["redis.conf"], tmp_path / "data", free_port(), PASSWORD).start()
    try:
        info = server.client().info("persistence")
        assert info["aof_enabled"] == 1
        assert server.client().config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
        import socket

        with socket.create_connection(("127.0.0.1", server.port)) as plain:
            plain.sendall(b"PING\r\n")
            assert plain.recv(100).startswith(b"-NOAUTH")
    finally:
        server.stop()


def test_backup_then_restore_brings_back_the_snapshot(rendered, tmp_path):
    backups = tmp_path / "backup"
    backups.mkdir()
    (tmp_path / "password").write_text(PASSWORD)
    server = ChartRedis(rendered["redis.conf"], tmp_path / "data", free_port(), PASSWORD).start()
    try:
        server.client(0).set("job:1", '{"status": "complete"}')
        server.client(1).rpush("hotqueue:jobs", "a", "b", "c")
        env = {
            "REDIS_HOST": "127.0.0.1",
            "REDIS_PORT": str(server.port),
            "BACKUP_DIR": str(backups),
            "BACKUP_KEEP": "2",
            "REDIS_PASSWORD_FILE": str(tmp_path / "password"),
        }
        for _ in range(3):
            run = _run(rendered["backup.sh"], env, tmp_path)
            assert run.returncode == 0, run.stderr
            time.sleep(1.05)  # snapshot names have one-second resolution
        snapshots = sorted(backups.glob("dump-*.rdb"))
        assert len(snapshots) == 2, "BACKUP_KEEP=2 keeps the two newest"
        assert not list(backups.glob(".*partial"))
        server.client(0).set("written-after-backup", "x")
    finally:
        server.stop()

    run = _run(
        rendered["restore.sh"],
        {
            "RESTORE_FILE": snapshots[-1].name,
            "DATA_DIR": str(tmp_path / "data"),
            "BACKUP_DIR": str(backups),
            "RESTORE_PORT": str(free_port()),
        },
        tmp_path,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert list((tmp_path / "data").glob("appendonlydir.before-restore-*")), "the old AOF is kept, not deleted"

    server = ChartRedis(rendered["redis.conf"], tmp_path / "data", server.port, PASSWORD).start()
    try:
        assert server.client(0).get("job:1") == '{"status": "complete"}'
        assert server.client(1).lrange("hotqueue:jobs", 0, -1) == ["a", "b", "c"]
        assert server.client(0).get("written-after-backup") is None
    finally:
        server.stop()
    # the restored data lives in the new AOF, not only in dump.rdb
    (tmp_path / "data" / "dump.rdb").unlink()
    server = ChartRedis(rendered["redis.conf"], tmp_path / "data", server.port, PASSWORD).start()
    try:
        assert server.client(1).llen("hotqueue:jobs") == 3
    finally:
        server.stop()


def test_restore_refuses_a_missing_snapshot(rendered, tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "backup").mkdir()
    run = _run(
        rendered["restore.sh"],
        {"RESTORE_FILE": "dump-nope.rdb", "DATA_DIR": str(tmp_path / "data"), "BACKUP_DIR": str(tmp_path / "backup")},
        tmp_path,
    )
    assert run.returncode != 0 and "missing" in run.stderr
