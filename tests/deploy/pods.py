"""Run any rendered container here with its real program, as its pod would: every volume of the
pod made a directory (ConfigMap and Secret volumes filled with their rendered files, a claim one
directory shared by every pod that mounts it), and the paths, Service names, ports and bind
addresses in its command, args, env and mounted files rewritten to their loopback equivalents.

Images map to this machine's binaries: the official redis image to Debian's redis-server and
redis-cli (both on PATH), oliver006/redis_exporter to Debian's prometheus-redis-exporter (the image's
entrypoint is the binary, so a container without a command runs it).

Under a container runtime (test_podman_pods.py, ``local_paths=False``) the same materialized pod
keeps the rendered mount paths: the runtime mounts each directory there, so only Service names,
ports and bind addresses are rewritten."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from devstack.procs import free_port
from tests.deploy.manifests import pod_spec, resolved_env

ENTRYPOINTS = {"oliver006/redis_exporter": "prometheus-redis-exporter"}


class Loopback:
    """The rewriting shared by the pods of one test: Service names to 127.0.0.1, ports to free ones."""

    isolated = False

    def __init__(self, objs: list[dict], claims: Path):
        self.objs, self.claims = objs, claims
        self.services = sorted((o["metadata"]["name"] for o in objs if o["kind"] == "Service"), key=len, reverse=True)
        self.ports: dict[int, int] = {}

    def port(self, port: int) -> int:
        return self.ports.setdefault(int(port), free_port())

    def text(self, text: str, mounts: list[tuple[str, Path]]) -> str:
        """One pass, so a path already made local is never rewritten again."""
        local = {mount: str(path) for mount, path in mounts}
        local.update({name: "127.0.0.1" for name in self.services})
        keys = sorted(local, key=len, reverse=True)
        if keys:
            pattern = "|".join(
                rf"(?<![\w.-]){re.escape(k)}(?=[/\s\"':]|$)" if k.startswith("/") else rf"\b{re.escape(k)}\b(?!-)"
                for k in keys
            )
            text = re.sub(pattern, lambda m: local[m[0]], text, flags=re.M)
        for port, port_here in self.ports.items():
            text = re.sub(
                rf"(?<=port ){port}\b|(?<=-p ){port}\b|(?<=:){port}\b|^{port}$", str(port_here), text, flags=re.M
            )
        return text.replace("bind * -::*", "bind 127.0.0.1").replace("protected-mode no", "protected-mode yes")


class AsRendered(Loopback):
    """No rewriting at all: for a pod in its own network namespace (ports, Service names and bind
    addresses as rendered), under a container runtime (mount paths as rendered)."""

    isolated = True

    def port(self, port: int) -> int:
        return int(port)

    def text(self, text: str, mounts: list[tuple[str, Path]]) -> str:
        assert not mounts, "an isolated pod keeps its rendered mount paths"
        return text


class Pod:
    """One rendered workload's pod, materialized under ``root``."""

    def __init__(
        self,
        workload: dict[str, Any],
        loop: Loopback,
        root: Path,
        secret_overrides: dict[str, dict[str, str]] | None = None,
        local_paths: bool = True,
    ):
        self.workload, self.loop, self.spec = workload, loop, pod_spec(workload)
        self.local_paths = local_paths
        self.root = root / f"pod-{workload['kind'].lower()}"  # not the workload's name: that is also a Service's
        self.dirs: dict[str, Path] = {}
        configmaps = {o["metadata"]["name"]: o.get("data", {}) for o in loop.objs if o["kind"] == "ConfigMap"}
        secrets = {
            o["metadata"]["name"]: {
                **{k: base64.b64decode(v).decode() for k, v in (o.get("data") or {}).items()},
                **(o.get("stringData") or {}),
            }
            for o in loop.objs
            if o["kind"] == "Secret"
        }
        secrets.update(secret_overrides or {})
        self.secrets = secrets
        templates = [t["metadata"]["name"] for t in workload.get("spec", {}).get("volumeClaimTemplates", [])]
        for name in templates:
            self.dirs[name] = self._dir(loop.claims / f"{name}-{workload['metadata']['name']}-0")
        for volume in self.spec.get("volumes", []):
            claim = volume.get("persistentVolumeClaim")
            self.dirs[volume["name"]] = self._dir(
                loop.claims / claim["claimName"] if claim else self.root / volume["name"]
            )
        mounts = self.rewritten()
        for volume in self.spec.get("volumes", []):
            name = volume["name"]
            if "persistentVolumeClaim" in volume or "emptyDir" in volume:
                continue
            else:
                source = volume.get("configMap") or volume.get("secret")
                data = configmaps[source["name"]] if "configMap" in volume else secrets[source["secretName"]]
                folder = self._dir(self.root / name)
                items = source.get("items") or [{"key": k, "path": k} for k in data]
                for item in items:
                    content = data[item["key"]]
                    (folder / item["path"]).write_text(loop.text(content, mounts) if "configMap" in volume else content)
                self.dirs[name] = folder
        self.procs: list[subprocess.Popen] = []

    @staticmethod
    def _dir(path: Path) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        return path

    def mounts(self) -> list[tuple[str, Path]]:
        """Every mount path of the pod's containers -> its local directory, longest first."""
        out = {}
        for c in self.spec.get("initContainers", []) + self.spec["containers"]:
            for m in c.get("volumeMounts", []):
                out[m["mountPath"].rstrip("/")] = self.dirs[m["name"]]
        return sorted(out.items(), key=lambda kv: -len(kv[0]))

    def rewritten(self) -> list[tuple[str, Path]]:
        """The mount paths that text of this pod has rewritten to local directories (none in a runtime)."""
        return self.mounts() if self.local_paths else []

    def text(self, text: str) -> str:
        return self.loop.text(text, self.rewritten())

    def container(self, name: str) -> dict:
        (found,) = [c for c in self.spec.get("initContainers", []) + self.spec["containers"] if c["name"] == name]
        return found

    def argv(self, container: dict) -> list[str]:
        argv = list(container.get("command") or []) + list(container.get("args") or [])
        if not container.get("command"):
            image = container["image"].rsplit(":", 1)[0]
            argv = [ENTRYPOINTS[image], *argv]
        return [self.text(a) for a in argv]

    def env(self, container: dict) -> dict[str, str]:
        objs = [o for o in self.loop.objs if o["kind"] != "Secret"]
        objs += [
            {
                "kind": "Secret",
                "metadata": {"name": n},
                "data": {k: base64.b64encode(v.encode()).decode() for k, v in d.items()},
            }
            for n, d in self.secrets.items()
        ]
        env = {k: self.text(v) for k, v in resolved_env(container, objs).items()}
        if "REDIS_EXPORTER_WEB_LISTEN_ADDRESS" in env and not self.loop.isolated:
            env["REDIS_EXPORTER_WEB_LISTEN_ADDRESS"] = "127.0.0.1" + env["REDIS_EXPORTER_WEB_LISTEN_ADDRESS"]
        return env

    def start(self, name: str, log: Path, extra_env: dict[str, str] | None = None) -> subprocess.Popen:
        container = self.container(name)
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(self.root),
            "LANG": "C.UTF-8",
            **self.env(container),
            **(extra_env or {}),
        }
        proc = subprocess.Popen(
            self.argv(container),
            env=env,
            cwd=self.root,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.procs.append(proc)
        return proc

    def run(self, name: str, log: Path, timeout: float, extra_env: dict[str, str] | None = None) -> int:
        proc = self.start(name, log, extra_env)
        try:
            return proc.wait(timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    def probe(self, container: dict, probe: str) -> bool:
        """Run an exec probe as the kubelet would (in the container's environment)."""
        command = [self.text(a) for a in container[probe]["exec"]["command"]]
        env = {"PATH": os.environ["PATH"], **self.env(container)}
        return subprocess.run(command, env=env, cwd=self.root, capture_output=True, timeout=10).returncode == 0


def have(*binaries: str) -> bool:
    return all(shutil.which(b) for b in binaries)
