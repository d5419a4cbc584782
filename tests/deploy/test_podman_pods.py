"""The chart's API and worker pods under a real container runtime (issue item 9): Debian's podman
4.3 (`podman kube play --network host`) runs the rendered pod specs with the images built from this
checkout (tests/support/images.py builds them once per session), under their rendered
securityContext (numeric non-root user, read-only root, no capabilities) and resource limits; the
API pod's load-data init container fills the data volume, the worker's wait-for-data sees it, the
probes answer, and the tutorial flow (submit, poll, result) completes. Where a limit is too small
for what a pod loads, it is OOM-killed here.

What podman 4.3 lacks is translated, and only that: Deployments become Pods; `secretKeyRef` and
`configMapRef` become literal env values (rendered Secret/ConfigMap data); volumes become host
directories (a claim one directory for every pod that mounts it, owned by the pod's user as fsGroup
would make it); ports, Service names and the bind address are rewritten to free loopback ports
(the host network is shared with other processes). Redis runs on the host from the StatefulSet's
own command and redis.conf (tests/deploy/pods.py): the official redis image cannot be pulled offline.

Setup (scripts/bootstrap.sh): Debian's podman and runc, and /etc/containers/containers.conf with
cgroup_manager = "cgroupfs", runtime = "runc", default_ulimits nofile/nproc.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import requests
import yaml

from devstack.procs import stop
from tests.deploy.manifests import pod_spec, resolved_env, scenario_objects
from tests.deploy.pods import Loopback, Pod, have
from tests.support.images import why_not

pytestmark = [pytest.mark.images, pytest.mark.slow,
              pytest.mark.skipif(why_not() is not None, reason=f"images: {why_not()}"),
              pytest.mark.skipif(not have("podman", "redis-server"), reason="no podman (scripts/bootstrap.sh installs it)")]

KEEP = ("securityContext", "initContainers", "containers", "volumes")


def podman(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)


def as_pod(workload: dict, name: str, loop: Loopback, dirs: dict[str, Path], images: dict[str, str]) -> dict:
    """The workload's pod template as a Pod podman 4.3 plays, with the translations above."""
    spec = pod_spec(workload)
    out = {k: v for k, v in spec.items() if k in KEEP}
    # podman applies the pod's restart policy to init containers too: Always (a Deployment's) would
    # restart a finished load-data forever
    out["restartPolicy"] = "OnFailure"
    uid = spec["securityContext"]["runAsUser"]
    out["volumes"] = []
    for volume in spec.get("volumes", []):
        path = dirs[volume["name"]]
        path.mkdir(parents=True, exist_ok=True)
        os.chown(path, uid, spec["securityContext"].get("fsGroup", uid))
        out["volumes"].append({"name": volume["name"], "hostPath": {"path": str(path), "type": "Directory"}})
    for c in out.get("initContainers", []) + out["containers"]:
        env = resolved_env(c, loop.objs)
        env = {k: loop.text(v, []) for k, v in env.items()}
        if env.get("BIND_HOST") == "0.0.0.0":
            env["BIND_HOST"] = "127.0.0.1"
        c["env"] = [{"name": k, "value": v} for k, v in env.items()]
        c.pop("envFrom", None)
        c["command"] = [loop.text(a, []) for a in c.get("command", [])]
        # the host network has no port mappings: probes name the (rewritten) port numbers instead
        named = {port["name"]: loop.port(port["containerPort"]) for port in c.pop("ports", [])}
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            get = (c.get(probe) or {}).get("httpGet")
            if get:
                get["port"] = named.get(get["port"], get["port"])
        repo = c["image"].rsplit(":", 1)[0].rsplit("/", 1)[-1]
        c["image"] = images[repo.removeprefix("atx-jobqueue-")]
        c.pop("lifecycle", None)  # preStop: kube play has no use for it
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": out}


def _wait_http(url: str, deadline: float, what: str, logs) -> requests.Response:
    last = None
    while time.monotonic() < deadline:
        try:
            last = requests.get(url, timeout=3)
            if last.status_code == 200:
                return last
        except requests.RequestException as exc:
            last = exc
        time.sleep(1)
    pytest.fail(f"{what}: {url} never answered 200 (last: {getattr(last, 'text', last)})\n{logs()}")


def test_api_and_worker_pods_under_podman_run_the_tutorial(built_images, tmp_path):
    objs = scenario_objects("class-cluster")
    loop = Loopback(objs, tmp_path / "claims")
    for port in (6379, 5000, 9100, 9102):  # 9102: the API's metrics listener (API_METRICS_PORT)
        loop.port(port)
    redis_pod = Pod(next(o for o in objs if o["kind"] == "StatefulSet"), loop, tmp_path / "host")
    suffix = uuid.uuid4().hex[:6]
    play = tmp_path / "pods.yaml"
    docs, names = [], []
    for component in ("api", "worker"):
        deployment = next(o for o in objs if o["kind"] == "Deployment" and o["metadata"]["labels"]["app.kubernetes.io/component"] == component)
        dirs = {v["name"]: (loop.claims / v["persistentVolumeClaim"]["claimName"] if "persistentVolumeClaim" in v
                            else tmp_path / component / v["name"]) for v in pod_spec(deployment)["volumes"]}
        names.append(f"atx-{component}-{suffix}")
        docs.append(as_pod(deployment, names[-1], loop, dirs, built_images))
    play.write_text(yaml.safe_dump_all(docs))

    def logs() -> str:
        out = podman("pod", "logs", "--tail", "40", *names[:1]).stdout if names else ""
        return out + "\n" + "\n".join(podman("logs", "--tail", "40", f"{n}-{c}").stdout for n, c in zip(names, ("api", "worker")))

    try:
        redis_proc = redis_pod.start("redis", tmp_path / "redis.log")
        started = time.monotonic()
        while not redis_pod.probe(redis_pod.container("redis"), "startupProbe"):
            assert redis_proc.poll() is None and time.monotonic() - started < 30, (tmp_path / "redis.log").read_text()
            time.sleep(0.2)
        played = podman("kube", "play", "--network", "host", str(play), timeout=300)
        assert played.returncode == 0, played.stdout + played.stderr
        deadline = time.monotonic() + 180
        base = f"http://127.0.0.1:{loop.port(5000)}"
        for path in ("/healthz", "/readyz"):  # the probes' paths and port, as the kubelet asks them
            _wait_http(base + path, deadline, "API", logs)
        metrics = _wait_http(f"http://127.0.0.1:{loop.port(9100)}/metrics", deadline, "worker", logs)
        assert "jobqueue_" in metrics.text

        # hardening and limits as rendered
        for name, component in zip(names, ("api", "worker")):
            info = json.loads(podman("inspect", f"{name}-{component}").stdout)[0]
            assert info["Config"]["User"].split(":")[0] == "10001"
            assert info["HostConfig"]["ReadonlyRootfs"] is True
            assert "CAP_NET_RAW" not in (info["EffectiveCaps"] or [])
            assert info["HostConfig"]["Memory"] == 1024 ** 3
            assert info["State"]["OOMKilled"] is False

        # the tutorial: submit, poll, result
        job = requests.post(base + "/submit", json={"operation": "top_locations", "params": {"n": 3}}, timeout=10)
        assert job.status_code == 202, job.text
        job_id = job.json()["job_id"]
        while time.monotonic() < deadline + 60:
            doc = requests.get(f"{base}/status/{job_id}", timeout=10).json()
            if doc["status"] in ("complete", "failed"):
                break
            time.sleep(0.5)
        assert doc["status"] == "complete", f"{doc}\n{logs()}"
        assert len(doc["result"]["top_locations"]) == 3
        assert (loop.claims / "demo-atx-jobqueue-data" / "traffic_incidents.csv").stat().st_size > 0
    finally:
        podman("kube", "down", str(play), timeout=120)
        stop(redis_proc) if "redis_proc" in locals() else None
        shutil.rmtree(tmp_path / "claims", ignore_errors=True)
