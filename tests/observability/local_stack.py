"""The real API (gunicorn) and workers as subprocesses, and a scrape config like the chart's.

The chart scrapes the API through a ServiceMonitor (port ``http``, ``/metrics``) and each worker
pod through a PodMonitor (port ``metrics``, ``/metrics``). In a cluster those add the target
labels ``namespace``, ``pod``, ``service``/``endpoint`` and a ``job`` per monitor; the static
jobs here carry the same labels, so the rules' ``without (instance, pod)`` and ``on (namespace)``
and the chart's autoscaling query (which filters on ``namespace``) meet series shaped as in a
cluster.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.support.prometheus_server import static_job
from tests.support.redis_server import free_port

BIN = Path(sys.executable).parent
REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLE = REPO_ROOT / "data" / "traffic_incidents_sample.csv"


class Proc:
    def __init__(self, name: str, args: list[str], env: dict[str, str], workdir: Path):
        self.name = name
        self.log_path = workdir / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(args, env=env, cwd=REPO_ROOT, stdout=self._log, stderr=subprocess.STDOUT)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self, timeout: float = 30.0) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def wait_http(url: str, proc: Proc, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited: {proc.log_tail()}")
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} not answering 200 after {timeout}s: {proc.log_tail()}")


class LocalStack:
    """API + workers on loopback against a given Redis; stop() ends everything it started."""

    def __init__(self, workdir: Path, redis_url: str, queue_name: str = "jobs", namespace: str = "atx-jobqueue",
                 release: str = "atx-jobqueue", extra_env: dict[str, str] | None = None,
                 api_metrics_path: str = "/metrics", worker_metrics_path: str = "/metrics"):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.namespace = namespace
        self.api_metrics_path = api_metrics_path
        self.worker_metrics_path = worker_metrics_path
        self.release = release
        self.env = {**os.environ, "REDIS_URL": redis_url, "QUEUE_NAME": queue_name, "BIND_HOST": "127.0.0.1",
                    "DATA_PATH": str(SAMPLE), "DIAGNOSTIC_OPERATIONS": "1", "LOG_LEVEL": "WARNING",
                    "WEB_CONCURRENCY": "2", **(extra_env or {})}
        self.api: Proc | None = None
        self.api_port = 0
        self.workers: list[tuple[Proc, int]] = []
        self.redis_url = redis_url
        self.exporter: Proc | None = None
        self.exporter_port = 0

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def start_api(self) -> "LocalStack":
        self.api_port = free_port()
        env = {**self.env, "PORT": str(self.api_port),
               "PROMETHEUS_MULTIPROC_DIR": str(self.workdir / "api-metrics")}
        self.api = Proc("api", [str(BIN / "jobqueue-api")], env, self.workdir)
        wait_http(f"{self.api_url}/healthz", self.api)  # /readyz also wants the dataset; metrics do not
        return self

    def start_workers(self, count: int) -> "LocalStack":
        started = []
        for _ in range(count):
            port = free_port()
            env = {**self.env, "WORKER_METRICS_PORT": str(port), "WORKER_CONCURRENCY": "1"}
            proc = Proc(f"worker-{len(self.workers)}", [str(BIN / "jobqueue-worker")], env, self.workdir)
            self.workers.append((proc, port))
            started.append((proc, port))
        for proc, port in started:
            wait_http(f"http://127.0.0.1:{port}{self.worker_metrics_path}", proc)
        return self

    def start_redis_exporter(self) -> "LocalStack":
        """Debian's prometheus-redis-exporter, as the chart's optional redis_exporter sidecar."""
        binary = shutil.which("prometheus-redis-exporter")
        if binary is None:
            raise RuntimeError("no prometheus-redis-exporter (make setup installs it)")
        self.exporter_port = free_port()
        self.exporter = Proc("redis-exporter", [binary, f"-redis.addr={self.redis_url}",
                                                f"-web.listen-address=127.0.0.1:{self.exporter_port}"],
                             dict(os.environ), self.workdir)
        wait_http(f"http://127.0.0.1:{self.exporter_port}/metrics", self.exporter)
        return self

    def submit(self, operation: str, params: dict) -> str:
        resp = requests.post(f"{self.api_url}/submit", json={"operation": operation, "params": params}, timeout=10)
        assert resp.status_code == 202, resp.text
        return resp.json()["job_id"]

    def status(self, job_id: str) -> dict:
        return requests.get(f"{self.api_url}/status/{job_id}", timeout=10).json()

    def scrape_configs(self) -> list[dict]:
        """Jobs equivalent to the chart's ServiceMonitor (API) and PodMonitor (workers)."""
        api = static_job(f"{self.release}-api", [f"127.0.0.1:{self.api_port}"],
                         {"namespace": self.namespace, "pod": f"{self.release}-api-0",
                          "service": f"{self.release}-api", "endpoint": "http"}, metrics_path=self.api_metrics_path)
        jobs = [api]
        if self.exporter:
            # the chart's second ServiceMonitor: the redis_exporter sidecar, port "metrics"
            jobs.append(static_job(f"{self.release}-redis", [f"127.0.0.1:{self.exporter_port}"],
                                   {"namespace": self.namespace, "pod": f"{self.release}-redis-0",
                                    "service": f"{self.release}-redis", "endpoint": "metrics"}))
        if self.workers:
            # one job for all worker pods, as one PodMonitor gives (job="<namespace>/<name>")
            jobs.append({"job_name": f"{self.namespace}/{self.release}-worker", "metrics_path": self.worker_metrics_path,
                         "static_configs": [
                             {"targets": [f"127.0.0.1:{port}"],
                              "labels": {"namespace": self.namespace, "pod": f"{self.release}-worker-{i}",
                                         "endpoint": "metrics"}}
                             for i, (_, port) in enumerate(self.workers)]})
        return jobs

    def stop(self) -> None:
        for proc, _ in self.workers:
            proc.stop()
        for proc in (self.api, self.exporter):
            if proc:
                proc.stop()

    def logs(self) -> str:
        procs = ([self.api] if self.api else []) + [p for p, _ in self.workers]
        return "\n".join(f"--- {p.name}\n{p.log_tail(1500)}" for p in procs)
