"""Every container of the Redis side runs here with its real program and its rendered command, env
and files (tests/deploy/pods.py), and reaches its healthy state (issue test 2; the API, worker,
load-data, wait-for-data and helm test containers run in test_smoke_manifests.py):

- redis: the StatefulSet's `sh -c` (password file -> auth.conf, then redis-server with the
  ConfigMap's redis.conf), with an operator's password holding `"` and `\\`; its exec probes pass.
- exporter: Debian's prometheus-redis-exporter with the rendered env answers `redis_up 1` with auth
  on. Review finding 2.1: given REDIS_PASSWORD_FILE with a bare password it exits ("password file
  format error"), since that file is a JSON map of addresses to passwords (exporter/pwd_file.go).
- backup, then restore: the CronJob's container snapshots a Redis holding a queued job; Redis
  stops; the restore Job's init container waits until Redis no longer answers, its main container
  loads the snapshot; the StatefulSet's Redis starts again with the job still queued.
"""

from __future__ import annotations

import shutil
import time

import pytest
import redis
import requests

from devstack.procs import stop
from tests.deploy.manifests import scenario_objects
from tests.deploy.pods import Loopback, Pod, have

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not have("redis-server", "redis-cli"), reason="no redis-server/redis-cli"),
]

PASSWORD = 'op"s\\pass-word 1'  # an operator's password from existingSecret: quotes, a backslash, a space


def _workload(objs, kind, component):
    (found,) = [
        o for o in objs if o["kind"] == kind and o["metadata"]["labels"]["app.kubernetes.io/component"] == component
    ]
    return found


def _secret_name(objs):
    (secret,) = [
        o for o in objs if o["kind"] == "Secret" and o["metadata"]["labels"]["app.kubernetes.io/component"] == "redis"
    ]
    return secret["metadata"]["name"]


def _start_redis(pod: Pod, loop: Loopback, log) -> redis.Redis:
    container = pod.container("redis")
    proc = pod.start("redis", log)
    client = redis.Redis(port=loop.port(6379), password=PASSWORD, db=1, decode_responses=True)
    deadline = time.monotonic() + 120
    while not pod.probe(container, "startupProbe"):
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "the startupProbe never passed:\n" + log.read_text()
        time.sleep(0.2)
    assert pod.probe(container, "readinessProbe") and pod.probe(container, "livenessProbe")
    return client


@pytest.fixture
def loop(tmp_path):
    objs = scenario_objects("monitoring-on")
    loop = Loopback(objs, tmp_path / "claims")
    loop.port(6379), loop.port(9121)
    return loop


def test_redis_and_its_exporter_run_with_auth(loop, tmp_path):
    objs = loop.objs
    sts = _workload(objs, "StatefulSet", "redis")
    pod = Pod(sts, loop, tmp_path, {_secret_name(objs): {"redis-password": PASSWORD}})
    try:
        client = _start_redis(pod, loop, tmp_path / "redis.log")
        assert client.ping()
        config = client.config_get("*")
        assert config["save"] == "" and config["maxmemory-policy"] == "noeviction" and int(config["maxmemory"]) > 0
        exporter = pod.container("exporter")
        proc = pod.start("exporter", tmp_path / "exporter.log")
        port = pod.env(exporter)["REDIS_EXPORTER_WEB_LISTEN_ADDRESS"].rsplit(":", 1)[1]
        deadline, text = time.monotonic() + 30, ""
        while "redis_up 1" not in text:
            assert proc.poll() is None, "the exporter exited:\n" + (tmp_path / "exporter.log").read_text()
            assert time.monotonic() < deadline, text[-2000:]
            try:
                text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            except requests.ConnectionError:
                time.sleep(0.2)
        for probe in ("livenessProbe", "readinessProbe"):
            path = exporter[probe]["httpGet"]["path"]
            assert requests.get(f"http://127.0.0.1:{port}{path}", timeout=5).status_code == 200
    finally:
        for proc in pod.procs:
            stop(proc)


def test_backup_then_restore_round_trips_a_queued_job(loop, tmp_path):
    if not shutil.which("sh"):
        pytest.skip("no sh")
    objs = loop.objs
    overrides = {_secret_name(objs): {"redis-password": PASSWORD}}
    redis_pod = Pod(_workload(objs, "StatefulSet", "redis"), loop, tmp_path / "a", overrides)
    try:
        client = _start_redis(redis_pod, loop, tmp_path / "redis.log")
        client.rpush("hotqueue:jobs", '"job-1"')
        redis.Redis(port=loop.port(6379), password=PASSWORD, db=0).set("job:job-1", '{"status": "submitted"}')
        backup = Pod(_workload(objs, "CronJob", "redis-backup"), loop, tmp_path / "b", overrides)
        log = tmp_path / "backup.log"
        assert backup.run("backup", log, timeout=60) == 0, log.read_text()
        (snapshot,) = (loop.claims / "demo-atx-jobqueue-redis-backup").glob("dump-*.rdb")
        client.rpush("hotqueue:jobs", '"job-after-the-backup"')
    finally:
        for proc in redis_pod.procs:
            stop(proc)  # the restore upgrade scales the StatefulSet to 0

    restore_objs = scenario_objects("restore")
    restore_loop = Loopback(restore_objs, loop.claims)
    restore_loop.ports = loop.ports
    job = _workload(restore_objs, "Job", "redis-backup")
    restore = Pod(job, restore_loop, tmp_path / "c", overrides)
    for init in job["spec"]["template"]["spec"].get("initContainers", []):
        log = tmp_path / f"{init['name']}.log"
        assert restore.run(init["name"], log, timeout=30) == 0, log.read_text()
    wanted = restore.env(restore.container("restore"))["RESTORE_FILE"]
    snapshot.rename(snapshot.with_name(wanted))  # the file the operator named in redis.restore.file
    log = tmp_path / "restore.log"
    # its own loopback: the pod's private Redis port must not meet another test's
    assert restore.run("restore", log, timeout=60, extra_env={"RESTORE_PORT": str(restore_loop.port(6390))}) == 0, (
        log.read_text()
    )

    redis_pod = Pod(_workload(restore_objs, "StatefulSet", "redis"), restore_loop, tmp_path / "d", overrides)
    try:
        client = _start_redis(redis_pod, restore_loop, tmp_path / "redis-again.log")
        assert client.lrange("hotqueue:jobs", 0, -1) == ['"job-1"']
        assert redis.Redis(port=loop.port(6379), password=PASSWORD, db=0).get("job:job-1") == b'{"status": "submitted"}'
    finally:
        for proc in redis_pod.procs:
            stop(proc)


def test_restore_waits_while_redis_still_answers(loop, tmp_path):
    """The restore Job's first container does not let the restore start over a running Redis."""
    objs = loop.objs
    overrides = {_secret_name(objs): {"redis-password": PASSWORD}}
    redis_pod = Pod(_workload(objs, "StatefulSet", "redis"), loop, tmp_path / "a", overrides)
    restore_objs = scenario_objects("restore")
    restore_loop = Loopback(restore_objs, loop.claims)
    restore_loop.ports = loop.ports
    restore = Pod(_workload(restore_objs, "Job", "redis-backup"), restore_loop, tmp_path / "c", overrides)
    try:
        _start_redis(redis_pod, loop, tmp_path / "redis.log")
        waiting = restore.start("wait-for-redis-stop", tmp_path / "wait.log")
        time.sleep(3)
        assert waiting.poll() is None, "the restore would start while Redis still runs"
        for proc in redis_pod.procs:
            stop(proc)
        assert waiting.wait(15) == 0
    finally:
        for proc in redis_pod.procs + restore.procs:
            stop(proc)
