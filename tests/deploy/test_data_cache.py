"""The parsed cache on the data volume (deployment review 3.4, issue 13 item 6).

The API pod's load-data init container writes the parsed columnar cache onto the data volume beside
the dataset; the API and worker pods memory-map it from their read-only mount and never parse the
file themselves, so a KEDA scale-up costs no parse and the pods of a node share the pages.

Each pod runs here with its rendered command and environment (tests/deploy/local.py: volumes as
directories, a claim one directory shared by the pods that mount it), and in addition every mount the
manifest marks read-only is a read-only bind mount in the process's own mount namespace, as the
kubelet mounts it: a write there fails with EROFS, and the directory's listing must not change."""

from __future__ import annotations

import base64
import importlib.util
import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests

from devstack.procs import free_port, stop
from devstack.redis_server import find_redis_server
from tests.deploy.local import ChartRedis, LocalPod, http_ok
from tests.deploy.manifests import k8s_objects, one, pod_spec, scenario_objects


def _can_unshare() -> bool:
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "true"], capture_output=True)
    return probe.returncode == 0


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(find_redis_server() is None, reason="no redis-server binary"),
    pytest.mark.skipif(importlib.util.find_spec("jobqueue_api.serve") is None, reason="the API is not installed"),
    pytest.mark.skipif(not _can_unshare(), reason="needs root's `unshare --mount` for read-only bind mounts"),
]

# remount each directory given (the read-only mounts) read-only in a private mount namespace, then run the rest
RO_WRAPPER = (
    'for d; do [ "$d" = -- ] && break; mount --bind "$d" "$d" && mount -o remount,bind,ro "$d" || exit 97; '
    'shift; done; shift; exec "$@"'
)


class ReadOnlyMountsPod(LocalPod):
    """A LocalPod whose read-only mounts are read-only for its processes (and their children)."""

    def _read_only_dirs(self, container: dict) -> list[str]:
        pod_ro = {
            v["name"] for v in self.spec.get("volumes", []) if (v.get("persistentVolumeClaim") or {}).get("readOnly")
        }
        return sorted(
            {
                str(self._volume_dir(m["name"]))
                for m in container.get("volumeMounts", [])
                if m.get("readOnly") or m["name"] in pod_ro
            }
        )

    def argv(self, container: dict) -> list[str]:
        argv = super().argv(container)
        ro = self._read_only_dirs(container)
        if not ro:
            return argv
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", RO_WRAPPER, "sh", *ro, "--", *argv]


def _listing(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


def _log_records(log: Path, message: str) -> list[dict]:
    out = []
    for line in log.read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and rec.get("msg") == message:
            out.append(rec)
    return out


def _expected(data: Path, operation: str, params: dict) -> object:
    """The answer computed here by parsing the file in this process (no cache involved)."""
    import atx_analysis.operations  # noqa: F401  (fills the registry)
    from atx_analysis.dataset import load_dataset
    from atx_analysis.registry import REGISTRY

    op = REGISTRY.get(operation)
    return op.run(load_dataset(data, cache=False), op.validate(params))


def _run_job(base: str, operation: str, params: dict, deadline: float) -> dict:
    submitted = requests.post(f"{base}/submit", json={"operation": operation, "params": params}, timeout=10)
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["job_id"]
    while True:
        job = requests.get(f"{base}/status/{job_id}", params={"wait": 5}, timeout=15).json()
        if job["status"] in ("complete", "failed") or time.monotonic() > deadline:
            return job


class Deployment:
    """Redis, then the rendered API and worker pods of one source, on one shared data claim."""

    def __init__(self, source: str, root: Path):
        kind, name = source.split(":")
        self.objs = scenario_objects(name) if kind == "chart" else k8s_objects(name)
        secret = one(self.objs, "Secret", "redis")
        password = (
            base64.b64decode(secret["data"]["redis-password"]).decode()
            if "data" in secret
            else secret["stringData"]["redis-password"]
        )
        conf = one(scenario_objects("default"), "ConfigMap", "redis")["data"]["redis.conf"]
        self.root = root
        self.redis = ChartRedis(conf, root / "redis" / "data", free_port(), password).start()
        url = f"redis://127.0.0.1:{self.redis.port}"
        self.api = ReadOnlyMountsPod(one(self.objs, "Deployment", "api"), self.objs, root, url)
        self.worker = ReadOnlyMountsPod(one(self.objs, "Deployment", "worker"), self.objs, root, url)
        (claim,) = {
            v["persistentVolumeClaim"]["claimName"]
            for v in pod_spec(one(self.objs, "Deployment", "worker"))["volumes"]
            if "persistentVolumeClaim" in v
        }
        self.claim = root / f"pvc-{claim}"
        self.procs: list[subprocess.Popen] = []

    def data_file(self) -> Path:
        return Path(self.api.env(self.api.container("api"))["DATA_PATH"])

    def init(self, pod: LocalPod) -> str:
        out = ""
        for init in pod.spec.get("initContainers", []):
            log = self.root / f"{init['name']}.log"
            code = pod.run(init["name"], log, timeout=120)
            assert code == 0, log.read_text()
            out += log.read_text()
        return out

    def start_api(self, deadline: float) -> tuple[str, Path]:
        log = self.root / f"api-{len(self.procs)}.log"
        proc = self.api.start("api", log)
        self.procs.append(proc)
        main = self.api.container("api")
        base = f"http://127.0.0.1:{self.api.local_port(main, 'http')}"
        http_ok(f"{base}/readyz", deadline, proc, log)
        return base, log

    def start_worker(self, deadline: float) -> Path:
        log = self.root / f"worker-{len(self.procs)}.log"
        proc = self.worker.start("worker", log)
        self.procs.append(proc)
        main = self.worker.container("worker")
        http_ok(f"http://127.0.0.1:{self.worker.local_port(main, 'metrics')}/metrics", deadline, proc, log)
        return log

    def close(self) -> None:
        for proc in self.procs:
            stop(proc, term_group=False)
        self.redis.stop()


@pytest.fixture
def deployment(request, tmp_path):
    dep = Deployment(request.param, tmp_path)
    yield dep
    dep.close()


SOURCES = ["chart:default", "k8s:test"]
TUTORIAL_JOB = ("incident_count_by_date", {"date": "2024-03-06"})


@pytest.mark.parametrize("deployment", SOURCES, indirect=True)
def test_pods_map_the_loaders_cache_from_the_read_only_volume(deployment):
    """Fails on the chart before this change: the loader built its cache in its own /tmp and threw
    it away, and each pod parsed the file into its own emptyDir (from_cache false)."""
    deadline = time.monotonic() + 180
    deployment.init(deployment.api)  # load-data: the dataset and its cache onto the claim
    caches = sorted(p.name for p in deployment.claim.rglob("*.arrow"))
    assert caches, f"the loader wrote no parsed cache onto the data volume: {sorted(_listing(deployment.claim))}"
    waited = deployment.init(deployment.worker)  # wait-for-data, read-only
    assert "parsed cache" in waited and "found" in waited, waited
    before = _listing(deployment.claim)

    base, api_log = deployment.start_api(deadline)
    info = requests.get(f"{base}/data", timeout=10).json()
    assert info["from_cache"] is True, info
    worker_log = deployment.start_worker(deadline)
    (loaded,) = _log_records(worker_log, "dataset loaded")
    assert loaded["from_cache"] is True and Path(loaded["cache_file"]).name in caches, loaded

    operation, params = TUTORIAL_JOB
    job = _run_job(base, operation, params, deadline)
    assert job["status"] == "complete", job
    assert job["result"] == _expected(deployment.data_file(), operation, params)
    for log in (api_log, worker_log):
        assert "parsing it in memory" not in log.read_text()
        assert "Read-only file system" not in log.read_text(), "a pod tried to write to the read-only volume"
    assert _listing(deployment.claim) == before, "a pod changed the data volume"


@pytest.mark.parametrize("deployment", ["chart:default"], indirect=True)
def test_a_missing_or_stale_cache_means_parsing_in_memory_with_a_warning(deployment):
    deadline = time.monotonic() + 180
    deployment.init(deployment.api)
    for cache in deployment.claim.rglob("*.arrow"):
        cache.unlink()  # missing: e.g. a volume filled by hand
    waited = deployment.init(deployment.worker)  # the loader is done: no waiting for a cache
    assert "left no parsed cache" in waited, waited
    before = _listing(deployment.claim)
    worker_log = deployment.start_worker(deadline)
    (loaded,) = _log_records(worker_log, "dataset loaded")
    assert loaded["from_cache"] is False and loaded["cache_file"] is None, loaded
    assert "parsing it in memory" in worker_log.read_text()

    # stale: the file replaced behind the loader's back (no loader run, so no init containers: the
    # API container restarting), its cache not rebuilt
    data = deployment.data_file()
    lines = data.read_text().splitlines(keepends=True)
    data.write_text("".join(lines[: len(lines) // 2]))
    before = _listing(deployment.claim)
    base, api_log = deployment.start_api(deadline)
    info = requests.get(f"{base}/data", timeout=10).json()
    assert info["from_cache"] is False and 0 < info["rows"] < len(lines) - 1, info
    assert "parsing it in memory" in api_log.read_text()
    operation, params = TUTORIAL_JOB
    job = _run_job(base, operation, params, deadline)
    assert job["status"] == "complete", job
    assert _listing(deployment.claim) == before, "a pod wrote to the read-only volume"
