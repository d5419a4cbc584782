"""The chart's pods under a real container runtime (issue item 9): Debian's podman 4.3
(`podman kube play --network host`) runs the rendered pod specs under their rendered
securityContext (numeric non-root user, read-only root, no capabilities) and resource limits.

- Redis: the StatefulSet's pod (redis + the exporter sidecar) with its ConfigMap and Secret files;
  exec probes run inside the container as the kubelet runs them, the exporter answers `redis_up 1`
  with auth, the AOF is written to the volume as the pod's user. Redis is filled to maxmemory, the
  backup CronJob's job pod snapshots it, Redis stops, the restore Job's pod waits for that and loads
  the snapshot, and Redis starts again with the queued job (and without the one queued after the
  snapshot), all within the rendered memory limits. The chart's and the k8s/ overlays' Redis also
  run with nothing rewritten in a network namespace of their own.
- API and worker: the default, class-cluster, exposed and keda scenarios' pods against a played
  Redis; the API pods' load-data init containers fill the data volume (the rendered API replicas
  start together, so exposed's two race on its ReadWriteMany claim), the probes answer, the
  tutorial flow (submit, poll, result) completes, and so does the chart's `helm test` pod; each
  program then stops on SIGTERM as its container's PID 1, within its terminationGracePeriodSeconds.
  Exposed also loads a dataset of the real file's size. The k8s/ overlays' API and worker pods
  (the student's `kubectl apply -f`) run the same flow. Where a limit is too small for what a pod
  loads, it is OOM-killed here.

Images: the API and worker images built from this checkout (tests/support/images.py). `redis` and
`oliver006/redis_exporter` cannot be pulled offline: local stand-ins are built from Debian's
redis-server (7.0, where the chart pins 7.2) and prometheus-redis-exporter (1.45, where it pins
v1.62.0) with the upstream images' users, entrypoints and /data (tests/images/redis/Dockerfile),
and each rendered image reference is mapped to its local image (STAND_INS).

What podman 4.3 lacks is translated, and only that: workloads become Pods; `secretKeyRef` and
`configMapRef` become literal env values (rendered Secret/ConfigMap data); volumes become host
directories (tests/deploy/pods.py: ConfigMap and Secret files written out, a claim one directory for
every pod that mounts it), owned as the kubelet's fsGroup would leave them; ports, Service names and
the bind addresses are rewritten to free loopback ports (the host network is shared with other
processes), so no `ports:` (no port mappings with host network) and the restore script's private
Redis gets a free port too (RESTORE_PORT); the loader's download URL (data.loader.source url)
becomes a loopback server that serves the dataset (no internet here); a Deployment's restartPolicy
Always becomes OnFailure when the pod has init containers (podman applies it to them too, and
restarts a finished one); podman's stop timeout becomes the pod's terminationGracePeriodSeconds.

Setup (scripts/bootstrap.sh): Debian's podman and runc, and /etc/containers/containers.conf with
cgroup_manager = "cgroupfs", runtime = "runc", default_ulimits nofile/nproc.
"""

from __future__ import annotations

import contextlib
import copy
import http.server
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests
import yaml

from devstack.paths import REPO_ROOT, SAMPLE
from devstack.procs import free_port
from tests.deploy.manifests import WORKLOADS, installed_objects, k8s_objects, one, pod_spec, scenario_objects
from tests.deploy.pods import AsRendered, Loopback, Pod, have
from tests.support.images import why_not

pytestmark = [
    pytest.mark.images,
    pytest.mark.slow,
    pytest.mark.skipif(why_not() is not None, reason=f"images: {why_not()}"),
    pytest.mark.skipif(not have("podman"), reason="no podman (scripts/bootstrap.sh installs it)"),
]

KEEP = ("securityContext", "initContainers", "containers", "volumes", "terminationGracePeriodSeconds")
# rendered repository -> key of the local image standing in for it
STAND_INS = {"redis": "redis", "oliver006/redis_exporter": "redis-exporter"}
PASSWORD = 'op"s\\pass-word 1'  # an operator's password from existingSecret: quotes, a backslash, a space
MiB = 1024**2


def podman(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)


def local_image(rendered: str, images: dict[str, str]) -> str:
    repo = rendered.rsplit(":", 1)[0]
    if repo in STAND_INS:
        return images[STAND_INS[repo]]
    return images[repo.rsplit("/", 1)[-1].removeprefix("atx-jobqueue-")]


def reserve_ports(loop: Loopback) -> None:
    """A free loopback port for every container port the release renders, before any text is rewritten;
    a Service's port goes where its targetPort went (a client of the Service reaches the pod)."""
    workloads = [o for o in loop.objs if o["kind"] in WORKLOADS]
    for obj in workloads:
        spec = pod_spec(obj)
        for c in spec.get("initContainers", []) + spec["containers"]:
            for port in c.get("ports", []):
                loop.port(port["containerPort"])
    for service in (o for o in loop.objs if o["kind"] == "Service"):
        selector = service["spec"].get("selector") or {}
        pods = [w for w in workloads if selector and selector.items() <= _template_labels(w).items()]
        named = {
            p["name"]: p["containerPort"] for w in pods for c in pod_spec(w)["containers"] for p in c.get("ports", [])
        }
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            target = named.get(target, target)
            if isinstance(target, int) and port["port"] != target:
                assert loop.ports.get(port["port"], loop.port(target)) == loop.port(target), (
                    f"{service['metadata']['name']}: port {port['port']} is taken"
                )
                loop.ports[port["port"]] = loop.port(target)


def _template_labels(workload: dict) -> dict:
    if workload["kind"] == "Pod":
        return workload["metadata"].get("labels", {})
    if workload["kind"] == "CronJob":
        return workload["spec"]["jobTemplate"]["spec"]["template"]["metadata"].get("labels", {})
    return workload["spec"]["template"]["metadata"].get("labels", {})


def _own_like_the_kubelet(path: Path, volume: dict, group: int) -> None:
    """What the kubelet leaves with fsGroup: Secret/ConfigMap files root:fsGroup with defaultMode plus
    group read; a claim's root group-owned, group-writable and setgid; an emptyDir world-writable."""
    source = volume.get("secret") or volume.get("configMap")
    if source is not None:
        os.chown(path, 0, group)
        path.chmod(0o755)
        for item in path.iterdir():
            os.chown(item, 0, group)
            item.chmod(source.get("defaultMode", 0o644) | 0o440)
    elif "emptyDir" in volume:
        path.chmod(0o1777)
    else:
        os.chown(path, 0, group)
        path.chmod(0o2775)


def as_pod(pod: Pod, name: str, images: dict[str, str], extra_env: dict[str, dict[str, str]] | None = None) -> dict:
    """The materialized pod as a Pod podman 4.3 plays, with the translations above. ``extra_env``:
    container name -> variables to add."""
    spec = copy.deepcopy(pod.spec)
    out = {k: v for k, v in spec.items() if k in KEEP}
    policy = spec.get("restartPolicy", "Always")
    out["restartPolicy"] = "OnFailure" if policy == "Always" and spec.get("initContainers") else policy
    context = spec["securityContext"]
    group = context.get("fsGroup", context.get("runAsGroup", context["runAsUser"]))
    out["volumes"] = []
    claims = [{"name": t["metadata"]["name"]} for t in pod.workload["spec"].get("volumeClaimTemplates", [])]
    for volume in spec.get("volumes", []) + claims:
        path = pod.dirs[volume["name"]]
        _own_like_the_kubelet(path, volume, group)
        out["volumes"].append({"name": volume["name"], "hostPath": {"path": str(path), "type": "Directory"}})
    # a claim mounted readOnly at the volume is read-only in every container (hostPath has no such field)
    read_only = {v["name"] for v in spec.get("volumes", []) if (v.get("persistentVolumeClaim") or {}).get("readOnly")}
    for c in out.get("initContainers", []) + out["containers"]:
        for mount in c.get("volumeMounts", []):
            if mount["name"] in read_only:
                mount["readOnly"] = True
        env = pod.env(c)
        if env.get("BIND_HOST") == "0.0.0.0":
            env["BIND_HOST"] = "127.0.0.1"
        env.update((extra_env or {}).get(c["name"], {}))
        c["env"] = [{"name": k, "value": v} for k, v in env.items()]
        c.pop("envFrom", None)
        for key in ("command", "args"):
            if c.get(key):
                c[key] = [pod.text(a) for a in c[key]]
        # the host network has no port mappings: probes name the (rewritten) port numbers instead
        named = {port["name"]: pod.loop.port(port["containerPort"]) for port in c.pop("ports", [])}
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            get = (c.get(probe) or {}).get("httpGet")
            if get:
                get["port"] = named.get(get["port"], get["port"])
            run = (c.get(probe) or {}).get("exec")
            if run:
                run["command"] = [pod.text(a) for a in run["command"]]
        c["image"] = local_image(c["image"], images)
        c.pop("lifecycle", None)  # preStop: kube play has no use for it
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": out}


class Runtime:
    """The pods one test plays; every one still up is taken down at the end."""

    def __init__(self, root: Path, images: dict[str, str]):
        self.root, self.images = root, images
        self.suffix = uuid.uuid4().hex[:6]
        self.played: dict[str, Path] = {}

    def write(self, pod: Pod, role: str, extra_env: dict[str, dict[str, str]] | None = None) -> tuple[str, Path]:
        name = f"atx-{role}-{self.suffix}"
        path = self.root / f"{name}.yaml"
        path.write_text(yaml.safe_dump(as_pod(pod, name, self.images, extra_env)))
        return name, path

    def play(
        self, pod: Pod, role: str, extra_env: dict[str, dict[str, str]] | None = None, network: str = "host"
    ) -> str:
        name, path = self.write(pod, role, extra_env)
        self.played[name] = path
        done = podman("kube", "play", "--network", network, str(path), timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
        return name

    def play_together(self, pods: list[tuple[Pod, str]]) -> list[str]:
        """Several pods played at once, as a Deployment's replicas start (their init containers race)."""
        written = [self.write(pod, role) for pod, role in pods]
        self.played.update(written)
        plays = [
            subprocess.Popen(
                ["podman", "kube", "play", "--network", "host", str(path)],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for _, path in written
        ]
        outputs = [play.communicate(timeout=300)[0] for play in plays]
        for play, out in zip(plays, outputs, strict=True):
            assert play.returncode == 0, out
        return [name for name, _ in written]

    def down(self, name: str) -> None:
        """`kube down`: SIGTERM to every container (then SIGKILL after podman's 10 s), as a pod deletion."""
        podman("kube", "down", str(self.played.pop(name)), timeout=120)

    def stop(self, name: str) -> dict[str, dict]:
        """`podman pod stop` with the pod's terminationGracePeriodSeconds (podman 4.3's kube play does not
        apply it): SIGTERM to each container's PID 1, SIGKILL after the grace; the final State of each
        container (init containers are gone by then) by container name."""
        containers = json.loads(podman("pod", "inspect", name).stdout)["Containers"]
        grace = yaml.safe_load(self.played[name].read_text())["spec"].get("terminationGracePeriodSeconds", 30)
        done = podman("pod", "stop", "--time", str(grace), name, timeout=grace + 60)
        assert done.returncode == 0, done.stderr
        states = {}
        for c in containers:
            info = json.loads(podman("inspect", c["Id"]).stdout)[0]
            if info["Name"].startswith(name + "-"):  # not the pod's infra container
                states[info["Name"].removeprefix(name + "-")] = info["State"]
        return states

    def close(self) -> None:
        for name in list(self.played):
            self.down(name)

    def logs(self, pod: str, container: str) -> str:
        done = podman("logs", "--tail", "60", f"{pod}-{container}")
        return f"--- {pod}-{container}:\n{done.stdout}{done.stderr}"

    def inspect(self, pod: str, container: str) -> dict:
        return json.loads(podman("inspect", f"{pod}-{container}").stdout)[0]

    def wait_exit(self, pod: str, container: str, timeout: float) -> int:
        done = podman("wait", f"{pod}-{container}", timeout=timeout)
        assert done.returncode == 0, done.stderr
        return int(done.stdout.strip())

    def exec_probe(self, pod: str, container: dict, probe: str) -> subprocess.CompletedProcess:
        """An exec probe as the kubelet runs it: its command inside the running container."""
        return podman("exec", f"{pod}-{container['name']}", *container[probe]["exec"]["command"], timeout=30)


def _played_spec(runtime: Runtime, pod_name: str) -> dict:
    return yaml.safe_load(runtime.played[pod_name].read_text())["spec"]


def _wait(predicate, seconds: float, what: str, logs=lambda: "") -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not within {seconds} s\n{logs()}")
        time.sleep(0.5)


def _http_ok(url: str) -> requests.Response | None:
    try:
        answer = requests.get(url, timeout=3)
    except requests.RequestException:
        return None
    return answer if answer.status_code == 200 else None


def _get_inside(pid: int, url: str) -> str | None:
    """GET ``url`` from inside the network namespace of process ``pid`` (the body of a 200, else None)."""
    code = f"import urllib.request; print(urllib.request.urlopen({url!r}, timeout=5).read().decode())"
    done = subprocess.run(
        ["nsenter", "-t", str(pid), "-n", sys.executable, "-c", code], capture_output=True, text=True, timeout=30
    )
    return done.stdout if done.returncode == 0 else None


def _probes_pass(runtime: Runtime, pod_name: str, container: str, netns_of: int | None = None) -> None:
    """Each probe as the kubelet runs it: exec inside the container, httpGet to the pod's address
    (the host's loopback with host network, else from inside the pod's namespace ``netns_of``)."""
    spec = next(c for c in _played_spec(runtime, pod_name)["containers"] if c["name"] == container)
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        if "exec" in spec.get(probe, {}):
            done = runtime.exec_probe(pod_name, spec, probe)
            assert done.returncode == 0, f"{probe} of {container} failed: {done.stdout}{done.stderr}"
        elif "httpGet" in spec.get(probe, {}):
            get = spec[probe]["httpGet"]
            url = f"http://127.0.0.1:{get['port']}{get['path']}"
            ok = _http_ok(url) if netns_of is None else _get_inside(netns_of, url) is not None
            assert ok, f"{probe} of {container}: {get}"


def _hardened(runtime: Runtime, pod_name: str, container: dict, user: int) -> None:
    """The rendered securityContext and limits, as the runtime applied them."""
    info = runtime.inspect(pod_name, container["name"])
    assert info["Config"]["User"].split(":")[0] == str(user), info["Config"]["User"]
    assert info["HostConfig"]["ReadonlyRootfs"] is True
    assert not info["EffectiveCaps"], info["EffectiveCaps"]
    limit = container["resources"]["limits"]["memory"]
    assert (
        info["HostConfig"]["Memory"] == int(limit.removesuffix("Mi")) * MiB
        if limit.endswith("Mi")
        else info["HostConfig"]["Memory"] == int(limit.removesuffix("Gi")) * 1024 * MiB
    )
    assert info["State"]["OOMKilled"] is False
    assert info["RestartCount"] == 0, f"{container['name']} restarted"


def memory_peak(runtime: Runtime, pod_name: str, container: str) -> int | None:
    """The container cgroup's peak memory (cgroup v1 max_usage_in_bytes, v2 memory.peak; page cache
    included), or None where the kernel does not keep it."""
    pid = runtime.inspect(pod_name, container)["State"]["Pid"]
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for candidate in (
            [Path("/sys/fs/cgroup/memory") / path.lstrip("/") / "memory.max_usage_in_bytes"]
            if "memory" in controllers.split(",")
            else [Path("/sys/fs/cgroup") / path.lstrip("/") / "memory.peak"]
            if controllers == ""
            else []
        ):
            if candidate.exists():
                return int(candidate.read_text())
    return None


def _stops_on_sigterm(runtime: Runtime, pod_name: str, own: tuple[str, ...]) -> None:
    """Each container ends on the SIGTERM a pod deletion sends, as PID 1 of its container (where a
    signal without a handler is ignored), not by the SIGKILL after the grace period; the project's
    own programs and redis-server exit 0."""
    started = time.monotonic()
    states = runtime.stop(pod_name)
    took = time.monotonic() - started
    for container, state in states.items():
        assert not state["OOMKilled"], f"{container} was OOM-killed"
        assert state["ExitCode"] != 137, (
            f"{container} needed SIGKILL ({took:.0f} s)\n{runtime.logs(pod_name, container)}"
        )
        if container in own:
            assert state["ExitCode"] == 0, (
                f"{container} exited {state['ExitCode']}\n{runtime.logs(pod_name, container)}"
            )


def _start_redis(runtime: Runtime, pod: Pod, role: str) -> tuple[str, redis.Redis]:
    name = runtime.play(pod, role)
    spec = next(c for c in _played_spec(runtime, name)["containers"] if c["name"] == "redis")
    (secret,) = [v["secret"] for v in pod.spec["volumes"] if v["name"] == "password"]
    password = pod.secrets[secret["secretName"]][secret["items"][0]["key"]]
    client = redis.Redis(port=pod.loop.port(6379), password=password, db=1, decode_responses=True)
    _wait(
        lambda: runtime.exec_probe(name, spec, "startupProbe").returncode == 0,
        60,
        "the Redis startupProbe",
        lambda: runtime.logs(name, "redis"),
    )
    return name, client


@contextlib.contextmanager
def serving(data: Path) -> Iterator[str]:
    """A loopback HTTP server answering every GET with ``data``, as the portal's CSV export would."""
    body = data.read_bytes()

    class Export(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/csv")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Export)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/rows.csv?accessType=DOWNLOAD"
    finally:
        server.shutdown()
        server.server_close()


def _download_from(deployment: dict, url: str) -> bool:
    """Point the load-data container's --url at ``url``; False when it downloads nothing."""
    for c in pod_spec(deployment).get("initContainers", []):
        if "--url" in c.get("command", []):
            c["command"][c["command"].index("--url") + 1] = url
            return True
    return False


def _fill_with_results(jobs: redis.Redis) -> list[str]:
    """Write 50 kB results with a TTL until Redis answers OOM (maxmemory, noeviction); their keys."""
    value, keys = os.urandom(50_000), []
    while True:
        batch = [f"job:fill-{len(keys) + i}:result" for i in range(50)]
        pipe = jobs.pipeline(transaction=False)
        for key in batch:
            pipe.set(key, value, ex=7 * 86400)
        try:
            pipe.execute()
        except redis.exceptions.OutOfMemoryError:
            return [k for k in keys + batch if jobs.exists(k)]
        keys += batch
        assert len(keys) < 100_000, "Redis never refused a write: no maxmemory?"


def test_redis_exporter_backup_and_restore_pods_under_podman(runtime, tmp_path):
    objs = scenario_objects("monitoring-on")
    loop = Loopback(objs, tmp_path / "claims")
    reserve_ports(loop)
    sts = one(objs, "StatefulSet", "redis")
    secret = next(v["secret"]["secretName"] for v in pod_spec(sts)["volumes"] if v["name"] == "password")
    overrides = {secret: {"redis-password": PASSWORD}}
    user = pod_spec(sts)["securityContext"]["runAsUser"]

    # Redis and its exporter, healthy, hardened, with auth
    redis_pod = Pod(sts, loop, tmp_path / "redis", overrides, local_paths=False)
    name, client = _start_redis(runtime, redis_pod, "redis")
    _probes_pass(runtime, name, "redis")
    config = client.config_get("*")
    assert config["save"] == "" and config["maxmemory-policy"] == "noeviction" and int(config["maxmemory"]) > 0
    assert config["dir"] == "/data", "redis.conf's dir is the mounted volume"
    exporter = next(c for c in _played_spec(runtime, name)["containers"] if c["name"] == "exporter")
    port = exporter["livenessProbe"]["httpGet"]["port"]
    _wait(
        lambda: "redis_up 1" in ((_http_ok(f"http://127.0.0.1:{port}/metrics") or requests.Response()).text or ""),
        60,
        "the exporter's redis_up 1",
        lambda: runtime.logs(name, "exporter"),
    )
    _probes_pass(runtime, name, "exporter")
    for container in pod_spec(sts)["containers"]:
        _hardened(runtime, name, container, user)
    client.rpush("hotqueue:jobs", '"job-1"')
    jobs = redis.Redis(port=loop.port(6379), password=PASSWORD, db=0)
    jobs.set("job:job-1", '{"status": "submitted"}')
    # then results (plot PNGs live 7 days) until maxmemory refuses writes: Redis, the backup and the
    # restore must hold a full Redis within their rendered memory limits
    results = _fill_with_results(jobs)
    assert runtime.inspect(name, "redis")["State"]["OOMKilled"] is False
    aof = loop.claims / f"data-{sts['metadata']['name']}-0" / "appendonlydir"
    _wait(lambda: aof.is_dir() and any(f.stat().st_size for f in aof.iterdir()), 60, "the AOF on the volume")
    assert aof.stat().st_uid == user, "Redis writes the volume as the pod's user"

    # the backup CronJob's job pod snapshots the running Redis
    backup = runtime.play(
        Pod(one(objs, "CronJob", "redis-backup"), loop, tmp_path / "backup", overrides, local_paths=False), "backup"
    )
    assert runtime.wait_exit(backup, "backup", 120) == 0, runtime.logs(backup, "backup")
    (snapshot,) = (loop.claims / "demo-atx-jobqueue-redis-backup").glob("dump-*.rdb")
    jobs.delete(*results[:20])  # room for one more write
    client.rpush("hotqueue:jobs", '"job-after-the-backup"')

    # restore mode: the Job's init container waits while Redis still answers, then the snapshot loads
    restore_objs = scenario_objects("restore")
    restore_loop = Loopback(restore_objs, loop.claims)
    restore_loop.ports = loop.ports
    job = one(restore_objs, "Job", "redis-backup")
    restore_pod = Pod(job, restore_loop, tmp_path / "restore", overrides, local_paths=False)
    wanted = restore_pod.env(restore_pod.container("restore"))["RESTORE_FILE"]
    snapshot.rename(snapshot.with_name(wanted))  # the file the operator named in redis.restore.file
    restore_name, restore_file = runtime.write(
        restore_pod, "restore", {"restore": {"RESTORE_PORT": str(restore_loop.port(6390))}}
    )
    runtime.played[restore_name] = restore_file
    playing = subprocess.Popen(
        ["podman", "kube", "play", "--network", "host", str(restore_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        time.sleep(5)
        assert (
            podman("container", "exists", f"{restore_name}-restore").returncode != 0
            or runtime.inspect(restore_name, "restore")["State"]["Status"] != "running"
        ), "the restore started while Redis still answers"
        _stops_on_sigterm(runtime, name, own=("redis",))  # the restore upgrade scales the StatefulSet to 0
        runtime.down(name)
        out, _ = playing.communicate(timeout=120)
    finally:
        if playing.poll() is None:
            playing.kill()
    assert playing.returncode == 0, out
    assert runtime.wait_exit(restore_name, "restore", 120) == 0, runtime.logs(restore_name, "restore")
    assert "loaded " + wanted in runtime.logs(restore_name, "restore")
    runtime.down(restore_name)

    # restore off again: Redis starts from the restored AOF
    again = Pod(sts, loop, tmp_path / "redis-again", overrides, local_paths=False)
    name, client = _start_redis(runtime, again, "redis-again")
    assert client.lrange("hotqueue:jobs", 0, -1) == ['"job-1"']
    assert jobs.get("job:job-1") == b'{"status": "submitted"}'
    assert jobs.exists(*results[20:]) == len(results) - 20, "every result of the snapshot is back"
    assert runtime.inspect(name, "redis")["State"]["OOMKilled"] is False


@pytest.mark.parametrize("scenario", ["default", "class-cluster", "exposed", "keda"])
def test_api_and_worker_pods_under_podman_run_the_tutorial(runtime, tmp_path, scenario):
    _play_the_tutorial(runtime, tmp_path, scenario, None, SAMPLE)


def test_full_size_data_fits_the_rendered_limits(runtime, tmp_path, request):
    """The exposed scenario's loader downloads a dataset of the real file's size (432,444 rows,
    96 MB, `make data`'s generator): load-data, API and worker must do their work within their
    rendered memory limits (a container over its limit is OOM-killed here, as on a cluster)."""
    data = REPO_ROOT / "data" / "full" / "traffic_incidents.csv"
    if not data.exists():
        data = tmp_path / "full.csv"
        made = subprocess.run(
            [
                str(Path(sys.executable).parent / "jobqueue"),
                "data",
                "generate",
                "--rows",
                "432444",
                "--output",
                str(data),
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert made.returncode == 0, made.stderr
    peaks = _play_the_tutorial(runtime, tmp_path, "exposed", None, data)
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        with request.config.pluginmanager.get_plugin("capturemanager").global_and_fixture_disabled():
            reporter.write_line(
                "\npodman, full-size data: peak memory (page cache included) "
                + ", ".join(f"{name} {peak / MiB:.0f} MiB of {limit}" for name, (peak, limit) in peaks.items())
            )


@pytest.mark.parametrize("env", ["test", "prod"])
def test_k8s_student_pods_under_podman_run_the_tutorial(runtime, tmp_path, env):
    """The API and worker pods of `kubectl apply -f k8s/<env>/` (the student's path). Their Redis is
    the official image with no port in its command, so it cannot move off the host's 6379 on the
    shared host network: the chart's Redis pod stands in, with k8s/'s Secret (its own pod runs as
    rendered in test_redis_pod_as_rendered_in_its_own_network_namespace)."""
    objs = k8s_objects(env)
    loop = Loopback(objs, tmp_path / "claims")
    reserve_ports(loop)
    (secret,) = [o for o in objs if o["kind"] == "Secret" and "redis" in o["metadata"]["name"]]
    password = {**(secret.get("stringData") or {})}
    chart = scenario_objects("default")
    chart_loop = Loopback(chart, loop.claims)
    chart_loop.ports = loop.ports
    sts = one(chart, "StatefulSet", "redis")
    chart_secret = next(v["secret"]["secretName"] for v in pod_spec(sts)["volumes"] if v["name"] == "password")
    redis_pod = Pod(
        sts,
        chart_loop,
        tmp_path / "redis",
        {chart_secret: {"redis-password": password["redis-password"]}},
        local_paths=False,
    )
    _play_the_tutorial(runtime, tmp_path, objs, loop, SAMPLE, redis_pod)


def _play_the_tutorial(
    runtime: Runtime,
    tmp_path: Path,
    objs: list[dict] | str,
    loop: Loopback | None,
    data: Path,
    redis_pod: Pod | None = None,
) -> dict[str, tuple[int, str]]:
    """Redis (``redis_pod``, else the scenario's StatefulSet), API and worker pods of ``objs`` (or of
    that scenario) played, the tutorial job and the chart's helm test pod run; the peak memory of each
    container that has one, with its limit."""
    scenario = objs if isinstance(objs, str) else None
    if scenario is not None:
        objs = installed_objects(scenario)
        loop = Loopback(objs, tmp_path / "claims")
        reserve_ports(loop)
    assert isinstance(objs, list) and loop is not None
    redis_pod = redis_pod or Pod(one(objs, "StatefulSet", "redis"), loop, tmp_path / "redis", local_paths=False)
    redis_name, _ = _start_redis(runtime, redis_pod, "redis")
    with serving(data) as url:
        api_deployment = one(objs, "Deployment", "api")
        assert _download_from(api_deployment, url) == (scenario == "exposed"), (
            "only the exposed API pods download their data"
        )
        # the API's rendered replicas start together: their load-data containers race on the shared claim
        replicas = [Pod(api_deployment, loop, tmp_path / "api", local_paths=False)]
        for i in range(1, api_deployment["spec"].get("replicas", 1)):
            other = Loopback(objs, loop.claims)  # same Redis and claims, ports of its own
            other.ports = {
                **loop.ports,
                **{p["containerPort"]: free_port() for p in pod_spec(api_deployment)["containers"][0]["ports"]},
            }
            replicas.append(Pod(api_deployment, other, tmp_path / f"api-{i}", local_paths=False))
        apis = runtime.play_together([(pod, f"api-{i}" if i else "api") for i, pod in enumerate(replicas)])
        worker_name = runtime.play(
            Pod(one(objs, "Deployment", "worker"), loop, tmp_path / "worker", local_paths=False), "worker"
        )
    names = {"api": apis[0], "worker": worker_name}
    pods = [("api", name) for name in apis] + [("worker", worker_name)]

    def logs() -> str:
        return "\n".join(runtime.logs(n, c) for c, n in pods) + runtime.logs(redis_name, "redis")

    for extra in apis[1:]:
        spec = next(c for c in _played_spec(runtime, extra)["containers"] if c["name"] == "api")
        _wait(
            lambda spec=spec: _http_ok(f"http://127.0.0.1:{spec['readinessProbe']['httpGet']['port']}/readyz"),
            180,
            f"{extra}'s readinessProbe",
            logs,
        )
        _probes_pass(runtime, extra, "api")

    api = next(c for c in _played_spec(runtime, names["api"])["containers"] if c["name"] == "api")
    base = f"http://127.0.0.1:{api['readinessProbe']['httpGet']['port']}"
    _wait(lambda: _http_ok(base + "/readyz"), 180, "the API's readinessProbe", logs)
    _probes_pass(runtime, names["api"], "api")
    for port in pod_spec(one(objs, "Deployment", "api"))["containers"][0].get("ports", []):
        if port["name"] == "metrics":  # the API's own metrics port (a Service of its own, off the Ingress)
            answer = _http_ok(f"http://127.0.0.1:{loop.port(port['containerPort'])}/metrics")
            assert answer is not None and "jobqueue_" in answer.text, f"the API's metrics port\n{logs()}"
    worker = next(c for c in _played_spec(runtime, names["worker"])["containers"] if c["name"] == "worker")
    get = worker["readinessProbe"]["httpGet"] if "httpGet" in worker.get("readinessProbe", {}) else None
    metrics = f"http://127.0.0.1:{get['port'] if get else loop.port(9100)}/metrics"
    _wait(lambda: _http_ok(metrics), 180, "the worker's metrics", logs)
    assert "jobqueue_" in requests.get(metrics, timeout=5).text
    _probes_pass(runtime, names["worker"], "worker")
    for component, name in pods:
        for container in pod_spec(one(objs, "Deployment", component))["containers"]:
            _hardened(
                runtime, name, container, pod_spec(one(objs, "Deployment", component))["securityContext"]["runAsUser"]
            )

    # the tutorial: submit, poll, result
    headers = {}
    token = next((e["value"] for e in api["env"] if e["name"] == "API_TOKEN"), None)
    if token:
        assert (
            requests.post(
                base + "/submit", json={"operation": "top_locations", "params": {"n": 3}}, timeout=10
            ).status_code
            == 401
        )
        headers = {"Authorization": f"Bearer {token}"}
    job = requests.post(
        base + "/submit", json={"operation": "top_locations", "params": {"n": 3}}, headers=headers, timeout=10
    )
    assert job.status_code == 202, job.text
    job_id = job.json()["job_id"]
    doc: dict = {}

    def finished() -> bool:
        doc.update(requests.get(f"{base}/status/{job_id}", headers=headers, timeout=10).json())
        return doc["status"] in ("complete", "failed")

    _wait(finished, 120, "the tutorial job", logs)
    assert doc["status"] == "complete", f"{doc}\n{logs()}"
    assert len(doc["result"]["top_locations"]) == 3
    claim = next(
        v["persistentVolumeClaim"]["claimName"]
        for v in pod_spec(api_deployment)["volumes"]
        if "persistentVolumeClaim" in v
    )
    loaded = loop.claims / claim / "traffic_incidents.csv"
    assert loaded.stat().st_size == data.stat().st_size, "the loader filled the volume with the dataset"

    # `helm test`: the chart's test pod submits through the API Service and waits for the result
    if scenario is not None:
        test_pod = runtime.play(
            Pod(one(objs, "Pod", "test"), loop, tmp_path / "helm-test", local_paths=False), "helm-test"
        )
        assert runtime.wait_exit(test_pod, "submit-and-wait", 180) == 0, (
            runtime.logs(test_pod, "submit-and-wait") + logs()
        )

    peaks = {}
    for component, name in names.items():
        for container in pod_spec(one(objs, "Deployment", component))["containers"]:
            peak = memory_peak(runtime, name, container["name"])
            if peak is not None:
                peaks[container["name"]] = (peak, container["resources"]["limits"]["memory"])
    for component, name in pods:  # after the job too: nothing was OOM-killed or restarted
        for container in pod_spec(one(objs, "Deployment", component))["containers"]:
            _hardened(
                runtime, name, container, pod_spec(one(objs, "Deployment", component))["securityContext"]["runAsUser"]
            )

    # a rollout or scale-in deletes the pods: each program ends on SIGTERM as its container's PID 1
    for component, name in pods:
        _stops_on_sigterm(runtime, name, own=(component,))
    _stops_on_sigterm(runtime, redis_name, own=("redis",))
    return peaks


@pytest.mark.parametrize("source", ["chart:monitoring-on", "k8s:test", "k8s:prod"])
def test_redis_pod_as_rendered_in_its_own_network_namespace(runtime, tmp_path, source):
    """Nothing rewritten: the Redis pod (the chart's StatefulSet with its exporter, or the k8s/
    overlays' Deployment a student applies) in a network namespace of its own (`--network none`:
    loopback only, as a pod's sandbox before the CNI adds its interface), with its ports, bind
    addresses and (the chart's) exporter REDIS_ADDR and `:9121` exactly as rendered. Probes and the
    exporter's /metrics are reached from inside (nsenter). podman 4.3 cannot put other pods into that
    namespace ("pods presently do not support network mode path"), so the API and worker pods use
    the rewritten loopback of the tests above."""
    kind, name = source.split(":")
    objs = scenario_objects(name) if kind == "chart" else k8s_objects(name)
    workload = one(objs, "StatefulSet" if kind == "chart" else "Deployment", "redis")
    pod = Pod(workload, AsRendered(objs, tmp_path / "claims"), tmp_path / "redis", local_paths=False)
    if kind == "chart":
        config = (pod.dirs["config"] / "redis.conf").read_text()
        assert "bind * -::*" in config and "port 6379" in config and "protected-mode no" in config
    played = runtime.play(pod, "redis-isolated", network="none")
    redis_c = next(c for c in _played_spec(runtime, played)["containers"] if c["name"] == "redis")
    _wait(
        lambda: runtime.exec_probe(played, redis_c, "startupProbe").returncode == 0,
        60,
        "the Redis startupProbe",
        lambda: runtime.logs(played, "redis"),
    )
    pid = runtime.inspect(played, "redis")["State"]["Pid"]
    for container in pod_spec(workload)["containers"]:
        _probes_pass(runtime, played, container["name"], netns_of=pid)
        _hardened(runtime, played, container, pod_spec(workload)["securityContext"]["runAsUser"])
    if any(c["name"] == "exporter" for c in pod_spec(workload)["containers"]):
        port = next(p["containerPort"] for p in pod.container("exporter")["ports"] if p["name"] == "metrics")
        _wait(
            lambda: "redis_up 1" in (_get_inside(pid, f"http://127.0.0.1:{port}/metrics") or ""),
            60,
            "the exporter's redis_up 1",
            lambda: runtime.logs(played, "exporter"),
        )
    _stops_on_sigterm(runtime, played, own=("redis",))
