"""A user's own data file onto the data volume through data.shell's pod (docs/deployment.md, "Your
own data file"), followed literally under podman with the images built from this checkout.

The chart's data-shell scenario is played as tests/deploy/test_podman_pods.py plays pods (Redis, the
API pod whose load-data fills the volume with the image's sample, a worker), then the data-shell pod
on the same claim. `kubectl cp` is what the kubelet cannot be asked for here, so the test does what
kubectl does through `kubectl exec` (its cp.go): `test -d <destination>` in the container, then a tar
stream of the file into `tar -xmf - -C <folder>` run in the container (`podman exec -i`), as the
pod's user. Then the documented `jobqueue data fetch --from`, a file that is not data (refused, the
dataset kept), the running pods still answering from the dataset they loaded, and a restart of API
and worker (the `rollout restart`) after which a job answers from the new file.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import requests

from atx_analysis.dataset import content_hash
from tests.deploy.manifests import find, k8s_objects, one, pod_spec, render_chart, render_objects, scenario_objects
from tests.deploy.pods import Loopback, Pod, have
from tests.deploy.test_podman_pods import (
    _hardened,
    _http_ok,
    _played_spec,
    _start_redis,
    _stops_on_sigterm,
    _wait,
    podman,
    reserve_ports,
)
from tests.support.images import why_not

SHELL = {"data": {"shell": {"enabled": True}}}


def test_off_by_default_and_without_a_volume():
    assert not find(render_objects(), "Deployment", "data-shell")
    assert not find(
        render_objects({**SHELL, "data": {**SHELL["data"], "persistence": {"enabled": False}}}),
        "Deployment",
        "data-shell",
    )


def test_it_mounts_the_claim_writable_where_the_loader_does_beside_the_api_and_workers():
    objs = scenario_objects("data-shell")
    shell, api, worker = (one(objs, "Deployment", c) for c in ("data-shell", "api", "worker"))
    spec = pod_spec(shell)
    (container,) = spec["containers"]
    load = next(c for c in pod_spec(api)["initContainers"] if c["name"] == "load-data")
    assert container["command"] == ["jobqueue", "data", "hold"]
    (claim,) = [v for v in spec["volumes"] if "persistentVolumeClaim" in v]
    (api_claim,) = [v for v in pod_spec(api)["volumes"] if "persistentVolumeClaim" in v]
    assert claim["persistentVolumeClaim"] == {"claimName": api_claim["persistentVolumeClaim"]["claimName"]}
    mount = next(m for m in container["volumeMounts"] if m["name"] == claim["name"])
    assert not mount.get("readOnly") and mount["mountPath"] == next(
        m["mountPath"] for m in load["volumeMounts"] if m["name"] == "data"
    )
    env = {e["name"]: e.get("value") for e in container["env"]}
    loader_env = {e["name"]: e.get("value") for e in load["env"]}
    for name in ("DATA_PATH", "DATA_CACHE_DIR", "DATA_CACHE_MODE"):
        assert env[name] == loader_env[name], name
    assert container["resources"] == load["resources"]
    assert container["readinessProbe"]["exec"]["command"] == ["test", "-w", mount["mountPath"]]
    # ReadWriteOnce: on the node of the API and workers, by their own rule (which does not match the
    # shell, so it never draws them: their pod templates stay as they were)
    assert spec["affinity"] == pod_spec(api)["affinity"] == pod_spec(worker)["affinity"]
    term = spec["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
    assert term["labelSelector"]["matchExpressions"][0]["values"] == ["api", "worker"]
    assert shell["spec"]["replicas"] == 1 and shell["spec"]["strategy"] == {"type": "Recreate"}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]


def test_the_notes_give_the_recipe_with_this_release_s_names_and_paths():
    values = {**SHELL, "data": {**SHELL["data"], "mountPath": "/data/atx", "fileName": "incidents.json"}}
    notes = render_chart(values, name="jobs", namespace="student7")["atx-jobqueue/templates/NOTES.txt"]
    assert "-l app.kubernetes.io/instance=jobs,app.kubernetes.io/component=data-shell" in notes
    assert "kubectl --namespace student7 cp my-incidents.csv $POD:/data/atx/upload/my-incidents.csv" in notes
    assert (
        "exec $POD -- jobqueue data fetch --from /data/atx/upload/my-incidents.csv --output /data/atx/incidents.json"
        in notes
    )
    assert "rollout restart deployment/jobs-atx-jobqueue-api deployment/jobs-atx-jobqueue-worker" in notes
    assert "data.loader.force is on" not in notes
    forced = {**values, "data": {**values["data"], "loader": {"force": True}}}
    assert "data.loader.force is on" in render_chart(forced)["atx-jobqueue/templates/NOTES.txt"]
    assert "--set data.shell.enabled=true" in render_chart()["atx-jobqueue/templates/NOTES.txt"]


JOBQUEUE = str(Path(sys.executable).with_name("jobqueue"))


def _chart_redis_for_k8s(objs: list[dict], loop: Loopback, tmp_path: Path) -> Pod:
    """k8s/'s Redis is the official image on the host's 6379: the chart's Redis pod stands in with
    k8s/'s password, as in test_podman_pods.test_k8s_student_pods_under_podman_run_the_tutorial."""
    (secret,) = [o for o in objs if o["kind"] == "Secret" and "redis" in o["metadata"]["name"]]
    chart = scenario_objects("default")
    chart_loop = Loopback(chart, loop.claims)
    chart_loop.ports = loop.ports
    sts = one(chart, "StatefulSet", "redis")
    chart_secret = next(v["secret"]["secretName"] for v in pod_spec(sts)["volumes"] if v["name"] == "password")
    password = (secret.get("stringData") or {})["redis-password"]
    return Pod(sts, chart_loop, tmp_path / "redis", {chart_secret: {"redis-password": password}}, local_paths=False)


def kubectl_cp(container: str, local: Path, remote: str) -> subprocess.CompletedProcess:
    """What `kubectl cp <local> <pod>:<remote>` runs in the container: `test -d <remote>` (a folder
    gets the file inside it), then `tar -xmf - -C <folder of the destination>` reading a tar stream
    whose one entry is named after the destination's last part."""
    into_folder = podman("exec", container, "test", "-d", remote).returncode == 0
    dest = f"{remote.rstrip('/')}/{local.name}" if into_folder else remote
    folder, name = dest.rsplit("/", 1)
    stream = io.BytesIO()
    with tarfile.open(fileobj=stream, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(local, arcname=name)
    return subprocess.run(
        ["podman", "exec", "-i", container, "tar", "-xmf", "-", "-C", folder or "/"],
        input=stream.getvalue(),
        capture_output=True,
        timeout=120,
    )


def expected_top_locations(data: Path) -> dict:
    done = subprocess.run(
        [JOBQUEUE, "analyze", "top_locations", "n=3", "--data", str(data)],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "DATA_CACHE_MODE": "off"},
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.images
@pytest.mark.slow
@pytest.mark.skipif(why_not() is not None, reason=f"images: {why_not()}")
@pytest.mark.skipif(not have("podman"), reason="no podman (scripts/bootstrap.sh installs it)")
@pytest.mark.parametrize("source", ["chart", "k8s"])
def test_own_file_through_the_data_shell_pod_reaches_the_workers(runtime, tmp_path, source):
    """The chart's data.shell, and k8s/test with its optional k8s/test/data-shell folder applied."""
    if source == "chart":
        objs = scenario_objects("data-shell")
        loop = Loopback(objs, tmp_path / "claims")
        reserve_ports(loop)
        redis_pod = Pod(one(objs, "StatefulSet", "redis"), loop, tmp_path / "redis", local_paths=False)
    else:
        objs = k8s_objects("test") + k8s_objects("test/data-shell")
        loop = Loopback(objs, tmp_path / "claims")
        reserve_ports(loop)
        redis_pod = _chart_redis_for_k8s(objs, loop, tmp_path)
    redis_name, _ = _start_redis(runtime, redis_pod, "redis")
    api_deployment, worker_deployment = one(objs, "Deployment", "api"), one(objs, "Deployment", "worker")
    shell_deployment = one(objs, "Deployment", "data-shell")

    def start_api_and_worker(tag: str) -> tuple[str, str, str]:
        api = runtime.play(Pod(api_deployment, loop, tmp_path / f"api-{tag}", local_paths=False), f"api-{tag}")
        worker = runtime.play(
            Pod(worker_deployment, loop, tmp_path / f"worker-{tag}", local_paths=False), f"worker-{tag}"
        )
        spec = next(c for c in _played_spec(runtime, api)["containers"] if c["name"] == "api")
        base = f"http://127.0.0.1:{spec['readinessProbe']['httpGet']['port']}"
        _wait(lambda: _http_ok(base + "/readyz"), 180, "the API's readinessProbe", lambda: runtime.logs(api, "api"))
        return api, worker, base

    def run_job(base: str) -> dict:
        job = requests.post(base + "/submit", json={"operation": "top_locations", "params": {"n": 3}}, timeout=10)
        assert job.status_code == 202, job.text
        url = f"{base}/status/{job.json()['job_id']}?wait=30"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            doc = requests.get(url, timeout=40).json()
            if doc["status"] in ("complete", "failed"):
                return doc
        pytest.fail("the job did not finish")

    api, worker, base = start_api_and_worker("1")
    sample = requests.get(base + "/data", timeout=10).json()
    claim = next(
        v["persistentVolumeClaim"]["claimName"]
        for v in pod_spec(api_deployment)["volumes"]
        if "persistentVolumeClaim" in v
    )
    volume = loop.claims / claim
    assert sample["identity"] == content_hash(volume / "traffic_incidents.csv")

    # why a pod of its own: the API container mounts the volume read-only, so kubectl cp into it fails
    own = tmp_path / "my-incidents.csv"
    made = subprocess.run(
        [JOBQUEUE, "data", "generate", "--rows", "3000", "--seed", "9", "--format", "soda-json", "--output", str(own)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr
    into_api = kubectl_cp(f"{api}-api", own, "/srv/data/my-incidents.csv")
    assert into_api.returncode != 0 and b"Read-only file system" in into_api.stderr, into_api.stderr

    # the data-shell pod on the same claim, as rendered: ready once the volume is writable
    shell = runtime.play(Pod(shell_deployment, loop, tmp_path / "shell", local_paths=False), "data-shell")
    container = f"{shell}-data-shell"
    spec = next(c for c in _played_spec(runtime, shell)["containers"] if c["name"] == "data-shell")
    _wait(
        lambda: runtime.exec_probe(shell, spec, "readinessProbe").returncode == 0,
        60,
        "the shell's readinessProbe",
        lambda: runtime.logs(shell, "data-shell"),
    )
    _hardened(
        runtime,
        shell,
        pod_spec(shell_deployment)["containers"][0],
        pod_spec(shell_deployment)["securityContext"]["runAsUser"],
    )
    _wait(
        lambda: "kubectl cp" in runtime.logs(shell, "data-shell"),
        30,
        "the shell's instructions",
        lambda: runtime.logs(shell, "data-shell"),
    )
    log = runtime.logs(shell, "data-shell")
    mine = "/srv/data/upload/my-incidents.csv"
    assert "kubectl cp --namespace coe332 my-incidents.csv " in log and f":{mine}" in log, log
    assert f"jobqueue data fetch --from {mine} --output /srv/data/traffic_incidents.csv" in log, log

    # the user's own file (SODA JSON: any format of docs/data.md) copied in as kubectl cp does
    copied = kubectl_cp(container, own, mine)
    assert copied.returncode == 0, copied.stderr
    assert (volume / "upload" / own.name).read_bytes() == own.read_bytes()

    # a file that is not data is refused and the dataset stays
    junk = tmp_path / "junk.csv"
    junk.write_text("just,some\ntext,here\n")
    assert kubectl_cp(container, junk, "/srv/data/upload/").returncode == 0  # into the folder
    refused = podman(
        "exec",
        container,
        "jobqueue",
        "data",
        "fetch",
        "--from",
        "/srv/data/upload/junk.csv",
        "--output",
        "/srv/data/traffic_incidents.csv",
    )
    assert refused.returncode == 2 and "left as it was" in refused.stderr, refused.stderr
    assert content_hash(volume / "traffic_incidents.csv") == sample["identity"]

    fetched = podman(
        "exec", container, "jobqueue", "data", "fetch", "--from", mine, "--output", "/srv/data/traffic_incidents.csv"
    )
    assert fetched.returncode == 0, fetched.stderr
    report = json.loads(fetched.stdout)
    assert report["rows"] == 3000 and report["format"] == "soda-json" and report["cache"], report
    assert podman("exec", container, "rm", mine, "/srv/data/upload/junk.csv").returncode == 0
    new_identity = content_hash(own)
    assert content_hash(volume / "traffic_incidents.csv") == new_identity

    # running pods keep the dataset they loaded at start
    assert requests.get(base + "/data", timeout=10).json()["identity"] == sample["identity"]
    before = run_job(base)
    assert before["status"] == "complete" and before["dataset"] == sample["identity"], before

    # `kubectl rollout restart`: new API and worker pods (load-data keeps the file, maps its cache)
    for name in (api, worker):
        runtime.down(name)
    api, worker, base = start_api_and_worker("2")
    now = requests.get(base + "/data", timeout=10).json()
    assert now["identity"] == new_identity and now["rows"] == 3000 and now["from_cache"] is True, now
    after = run_job(base)
    assert after["status"] == "complete" and after["dataset"] == new_identity, after
    assert after["result"] == expected_top_locations(own), "the worker answers from the new file"
    assert after["result"] != before["result"]

    # turning the shell off deletes its pod: it ends on the SIGTERM, exit 0
    _stops_on_sigterm(runtime, shell, own=("data-shell",))
    _stops_on_sigterm(runtime, redis_name, own=("redis",))
