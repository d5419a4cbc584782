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


def _restore_job(token: str, scripts: Path) -> tuple[str, dict[str, str]]:
    """The chart's restore Job container: its command (restore.sh at ``scripts`` instead of the
    ConfigMap's mount) and RESTORE_TOKEN as it sets it."""
    values = {"redis": {"backup": {"enabled": True}, "restore": {"enabled": True, "file": "x.rdb", "token": token}}}
    objs = render_objects(values)
    (container,) = one(objs, "Job", "redis-backup")["spec"]["template"]["spec"]["containers"]
    (scripts / "restore.sh").write_text(one(objs, "ConfigMap", "redis")["data"]["restore.sh"])
    assert container["command"][:2] == ["sh", "-c"]
    script = container["command"][2].replace("/scripts/restore.sh", str(scripts / "restore.sh"))
    env = {e["name"]: e["value"] for e in container["env"]}
    return script, {"RESTORE_TOKEN": env["RESTORE_TOKEN"]}


def test_restore_refuses_a_snapshot_it_already_restored_until_given_a_new_token(rendered, tmp_path):
    """A rollback to a restore-mode revision (or the same restore Job applied again) runs the Job's
    command with the same file and token: refused, nothing touched, so what was written since the
    first restore survives. A new redis.restore.token restores the snapshot again on purpose."""
    backups, data = tmp_path / "backup", tmp_path / "data"
    backups.mkdir()
    (tmp_path / "password").write_text(PASSWORD)
    server = ChartRedis(rendered["redis.conf"], data, free_port(), PASSWORD).start()
    try:
        server.client(0).set("job:1", "in the snapshot")
        env = {
            "REDIS_HOST": "127.0.0.1",
            "REDIS_PORT": str(server.port),
            "BACKUP_DIR": str(backups),
            "REDIS_PASSWORD_FILE": str(tmp_path / "password"),
        }
        run = _run(rendered["backup.sh"], env, tmp_path)
        assert run.returncode == 0, run.stderr
    finally:
        server.stop()
    (snapshot,) = backups.glob("dump-*.rdb")
    restore_env = {"RESTORE_FILE": snapshot.name, "DATA_DIR": str(data), "BACKUP_DIR": str(backups)}

    scripts = tmp_path / "scripts"
    scripts.mkdir()

    def restore(token: str) -> subprocess.CompletedProcess:
        script, env = _restore_job(token, scripts)
        return _run(script, {**restore_env, **env, "RESTORE_PORT": str(free_port())}, tmp_path)

    first = restore("")
    assert first.returncode == 0, first.stdout + first.stderr
    server = ChartRedis(rendered["redis.conf"], data, server.port, PASSWORD).start()
    try:
        assert server.client(0).get("job:1") == "in the snapshot"
        server.client(0).set("job:2", "written after the restore")
    finally:
        server.stop()

    before = sorted(p.name for p in data.iterdir())
    again = restore("")
    assert again.returncode == 3, again.stdout + again.stderr
    assert f"refused: {snapshot.name} was already restored into this volume" in again.stderr
    assert "Nothing was changed" in again.stderr and "new redis.restore.token" in again.stderr
    assert sorted(p.name for p in data.iterdir()) == before, "a refused restore touches nothing"
    server = ChartRedis(rendered["redis.conf"], data, server.port, PASSWORD).start()
    try:
        assert server.client(0).get("job:2") == "written after the restore"
    finally:
        server.stop()

    deliberate = restore("2026-01-02")
    assert deliberate.returncode == 0, deliberate.stdout + deliberate.stderr
    server = ChartRedis(rendered["redis.conf"], data, server.port, PASSWORD).start()
    try:
        assert server.client(0).get("job:1") == "in the snapshot"
        assert server.client(0).get("job:2") is None
    finally:
        server.stop()
    history = (data / "restore-history").read_text().splitlines()
    assert [line.split(" token=")[1].split(" at ")[0] for line in history] == ["", "2026-01-02"]
