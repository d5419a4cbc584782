"""Run chart-rendered pieces on this machine: Redis from the chart's redis.conf, and containers
of rendered pods as local processes (their command, args and env, with volume paths, ports, the
bind address and the Redis host rewritten to loopback/temp equivalents)."""

from __future__ import annotations

import base64
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from devstack.procs import free_port, stop
from devstack.redis_server import find_redis_server
from tests.deploy.manifests import REPO_ROOT, one, pod_spec, resolved_env

VENV_BIN = REPO_ROOT / ".venv" / "bin"
IMAGE_APP_DATA = "/app/data/"  # the sample dataset inside the images: the repo's data/ here


def http_ok(url: str, deadline: float, proc: subprocess.Popen, log: Path) -> requests.Response:
    """Until ``url`` answers 200 (its response), failing the test with the log's tail if the process
    that serves it exits first or ``deadline`` (monotonic) passes."""
    last: object = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"process exited with {proc.returncode} before {url} answered:\n{log.read_text()[-3000:]}")
        try:
            last = requests.get(url, timeout=2)
            if last.status_code == 200:
                return last
        except requests.RequestException as exc:
            last = exc
        time.sleep(0.25)
    pytest.fail(f"{url} never answered 200 (last: {getattr(last, 'text', last)}):\n{log.read_text()[-3000:]}")


class ChartRedis:
    """redis-server from the chart's redis.conf, with its paths, port and bind rewritten for loopback."""

    def __init__(self, conf: str, data: Path, port: int, password: str):
        self.data, self.port, self.password = data, port, password
        data.mkdir(parents=True, exist_ok=True)
        auth = data.parent / "auth.conf"
        auth.write_text(f'requirepass "{password}"\n')
        conf = (
            conf.replace("dir /data", f"dir {data}")
            .replace("include /run/redis/auth.conf", f"include {auth}")
            .replace("bind * -::*", "bind 127.0.0.1")
            .replace("port 6379", f"port {port}")
        )
        self.conf = data.parent / "redis.conf"
        self.conf.write_text(conf)
        self.proc: subprocess.Popen | None = None

    def start(self) -> ChartRedis:
        self.proc = subprocess.Popen([find_redis_server(), str(self.conf)], stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while True:
            try:
                if self.client().ping():
                    return self
            except redis.exceptions.BusyLoadingError:
                pass
            except redis.exceptions.ConnectionError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.05)

    def client(self, db: int = 0) -> redis.Redis:
        return redis.Redis(port=self.port, password=self.password, db=db, decode_responses=True)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: Redis flushes the AOF and exits cleanly
            self.proc.wait(10)


class LocalPod:
    """One rendered workload's pod, its containers runnable here.

    Volumes become directories under ``root`` (one per PVC claim or per emptyDir), so a claim
    shared by the loader, the API and the workers is one directory; container ports get free
    loopback ports and the env variables naming them follow."""

    def __init__(self, workload: dict[str, Any], objects: list[dict[str, Any]], root: Path, redis_url: str):
        self.spec = pod_spec(workload)
        template = workload.get("spec", {}).get("template", {})
        self.spec_annotations = (template.get("metadata") or {}).get("annotations", {})
        self.objects, self.root, self.redis_url = objects, root, redis_url
        self.port_map: dict[int, int] = {}

    def _volume_dir(self, name: str) -> Path:
        (volume,) = [v for v in self.spec["volumes"] if v["name"] == name]
        key = (
            f"pvc-{volume['persistentVolumeClaim']['claimName']}"
            if "persistentVolumeClaim" in volume
            else f"{id(self)}-{name}"
        )
        path = self.root / key
        path.mkdir(parents=True, exist_ok=True)
        return path

    def container(self, name: str) -> dict[str, Any]:
        (found,) = [c for c in self.spec.get("initContainers", []) + self.spec["containers"] if c["name"] == name]
        return found

    def local_port(self, container: dict[str, Any], port: int | str) -> int:
        if isinstance(port, str):
            (port,) = [p["containerPort"] for p in container["ports"] if p["name"] == port]
        return self.port_map.setdefault(port, free_port())

    def env(self, container: dict[str, Any]) -> dict[str, str]:
        mounts = {m["mountPath"].rstrip("/"): self._volume_dir(m["name"]) for m in container.get("volumeMounts", [])}
        env = resolved_env(container, self.objects)
        for name, value in env.items():
            for mount, local in sorted(mounts.items(), key=lambda kv: -len(kv[0])):
                if value == mount or value.startswith(mount + "/"):
                    env[name] = str(local) + value[len(mount) :]
                    break
            else:
                if value.startswith(IMAGE_APP_DATA):
                    env[name] = str(REPO_ROOT / "data" / value[len(IMAGE_APP_DATA) :])
        for p in container.get("ports", []):
            for name, value in env.items():
                if value == str(p["containerPort"]) and name.endswith("PORT"):
                    env[name] = str(self.local_port(container, p["containerPort"]))
        if "REDIS_URL" in env:
            env["REDIS_URL"] = self.redis_url
        if env.get("BIND_HOST") == "0.0.0.0":
            env["BIND_HOST"] = "127.0.0.1"  # servers in tests bind loopback only
        return env

    def argv(self, container: dict[str, Any]) -> list[str]:
        """The command and args, with mount paths (and the image's data folder) in them made local."""
        mounts = sorted(
            ((m["mountPath"].rstrip("/"), self._volume_dir(m["name"])) for m in container.get("volumeMounts", [])),
            key=lambda kv: -len(kv[0]),
        )
        mounts.append((IMAGE_APP_DATA.rstrip("/"), REPO_ROOT / "data"))

        # one pass over all mounts (longest first): a path made local is never rewritten again
        # (the data volume's local directory lies under /tmp, itself a mount)
        local_of = {mount: str(local) for mount, local in mounts}
        pattern = re.compile("(" + "|".join(re.escape(mount) for mount, _ in mounts) + r")(?=/|\s|$|\")")

        def local_paths(arg: str) -> str:
            return pattern.sub(lambda m: local_of[m.group(1)], arg)

        argv = [local_paths(a) for a in list(container["command"]) + list(container.get("args", []))]
        local = VENV_BIN / argv[0]
        return [str(local) if local.exists() else argv[0], *argv[1:]]

    def start(self, name: str, log: Path, extra_env: dict[str, str] | None = None) -> subprocess.Popen:
        container = self.container(name)
        env = {
            "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
            "HOME": str(self.root),
            "LANG": "C.UTF-8",
            **self.env(container),
            **(extra_env or {}),
        }
        return subprocess.Popen(
            self.argv(container),
            env=env,
            cwd=self.root,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def run(self, name: str, log: Path, timeout: float, extra_env: dict[str, str] | None = None) -> int:
        proc = self.start(name, log, extra_env)
        try:
            return proc.wait(timeout)
        finally:
            stop(proc, term_group=False)


def chart_stack(
    objs: list[dict], tmp_path: Path, conf_objs: list[dict] | None = None
) -> tuple[ChartRedis, LocalPod, LocalPod]:
    """Redis started from the chart's redis.conf (taken from ``conf_objs``, else ``objs``: k8s/
    configures Redis on its command line) with the password of the rendered ``redis`` Secret, and
    the API and worker pods of ``objs`` with their init containers run (load-data fills the data
    volume, wait-for-data sees it): what a smoke test starts from. The caller starts the main
    containers and stops the returned Redis."""
    secret = one(objs, "Secret", "redis")
    password = (
        base64.b64decode(secret["data"]["redis-password"]).decode()
        if "data" in secret
        else secret["stringData"]["redis-password"]
    )
    conf = one(conf_objs or objs, "ConfigMap", "redis")["data"]["redis.conf"]
    server = ChartRedis(conf, tmp_path / "redis" / "data", free_port(), password).start()
    try:
        redis_url = f"redis://127.0.0.1:{server.port}"
        pods = (
            LocalPod(one(objs, "Deployment", "api"), objs, tmp_path, redis_url),
            LocalPod(one(objs, "Deployment", "worker"), objs, tmp_path, redis_url),
        )
        for pod in pods:
            for init in pod.spec.get("initContainers", []):
                log = tmp_path / f"{init['name']}.log"
                assert pod.run(init["name"], log, timeout=60) == 0, log.read_text()
    except BaseException:
        server.stop()
        raise
    return server, pods[0], pods[1]
