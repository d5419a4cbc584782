"""A real Prometheus (Debian's ``prometheus`` binary) on a free loopback port, for tests.

Give it scrape configs and rule files; it writes its own config and TSDB under ``workdir``,
scrapes and evaluates every second by default, and offers the HTTP API calls tests need
(instant/range queries, targets, alerts, rules) plus ``wait_for`` to poll until a query satisfies
a predicate. Used by tests/observability and by anything that wants to look at metrics the way
an operator would.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any
from collections.abc import Callable

import requests
import yaml

from devstack.procs import free_port


def find_prometheus() -> str | None:
    return shutil.which("prometheus")


def static_job(
    name: str, targets: list[str], labels: dict[str, str] | None = None, metrics_path: str = "/metrics"
) -> dict:
    """A scrape job over fixed host:port targets, with optional target labels (e.g. namespace, pod)."""
    group: dict[str, Any] = {"targets": targets}
    if labels:
        group["labels"] = labels
    return {"job_name": name, "metrics_path": metrics_path, "static_configs": [group]}


class PrometheusError(RuntimeError):
    pass


class PrometheusServer:
    def __init__(
        self,
        workdir: Path,
        scrape_configs: list[dict] | None = None,
        rule_files: list[Path] | None = None,
        scrape_interval: str = "1s",
        evaluation_interval: str = "1s",
        port: int | None = None,
    ):
        binary = find_prometheus()
        if binary is None:
            raise RuntimeError("no prometheus binary: apt-get install prometheus")
        self.binary = binary
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.scrape_configs = scrape_configs or []
        self.rule_files = [Path(p).resolve() for p in (rule_files or [])]
        self.scrape_interval = scrape_interval
        self.evaluation_interval = evaluation_interval
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.workdir / "prometheus.yml"

    @property
    def log_path(self) -> Path:
        return self.workdir / "prometheus.log"

    def write_config(self) -> None:
        config = {
            "global": {
                "scrape_interval": self.scrape_interval,
                "scrape_timeout": self.scrape_interval,
                "evaluation_interval": self.evaluation_interval,
            },
            "rule_files": [str(p) for p in self.rule_files],
            "scrape_configs": self.scrape_configs,
        }
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    def start(self, timeout: float = 120.0) -> PrometheusServer:
        self.write_config()
        args = [
            self.binary,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--web.enable-lifecycle",
            "--storage.tsdb.retention.time=1d",
            "--log.level=warn",
        ]
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(args, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise PrometheusError(f"prometheus exited: {self.log_path.read_text()[-3000:]}")
            try:
                if requests.get(f"{self.url}/-/ready", timeout=0.5).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"prometheus not ready after {timeout}s: {self.log_path.read_text()[-3000:]}")

    def reload(self, scrape_configs: list[dict] | None = None) -> None:
        """Rewrite the config (optionally with new scrape jobs) and make Prometheus load it."""
        if scrape_configs is not None:
            self.scrape_configs = scrape_configs
        self.write_config()
        requests.post(f"{self.url}/-/reload", timeout=10).raise_for_status()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    # --- HTTP API ----------------------------------------------------------------------------
    def _get(self, path: str, **params: Any) -> Any:
        resp = requests.get(f"{self.url}/api/v1/{path}", params=params, timeout=10)
        body = resp.json()
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict]:
        """Instant query; the result vector (``[{"metric": {...}, "value": [ts, "v"]}, ...]``)."""
        data = self._get("query", query=expr)
        if data["resultType"] == "scalar":
            return [{"metric": {}, "value": data["result"]}]
        return data["result"]

    def value(self, expr: str) -> float | None:
        """The single value of a one-series query, or None when it returns nothing."""
        result = self.query(expr)
        if not result:
            return None
        if len(result) > 1:
            raise PrometheusError(f"{expr} returned {len(result)} series, expected one: {result}")
        return float(result[0]["value"][1])

    def query_range(self, expr: str, start: float, end: float, step: float = 1.0) -> list[dict]:
        return self._get("query_range", query=expr, start=start, end=end, step=step)["result"]

    def targets(self) -> list[dict]:
        return self._get("targets", state="active")["activeTargets"]

    def alerts(self) -> list[dict]:
        return self._get("alerts")["alerts"]

    def rule_groups(self) -> list[dict]:
        return self._get("rules")["groups"]

    def wait_for(
        self, expr: str, predicate: Callable[[list[dict]], bool], timeout: float = 120.0, interval: float = 0.5
    ) -> list[dict]:
        """Poll ``expr`` until ``predicate(result)`` holds; return that result or raise with the last one."""
        deadline = time.monotonic() + timeout
        result: list[dict] = []
        while True:
            result = self.query(expr)
            if predicate(result):
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"{expr}: condition not met in {timeout}s; last result {result}")
            time.sleep(interval)

    def wait_for_targets_up(self, count: int, timeout: float = 120.0) -> list[dict]:
        """Wait until ``count`` active targets report health "up"."""
        deadline = time.monotonic() + timeout
        while True:
            targets = self.targets()
            if sum(t["health"] == "up" for t in targets) >= count:
                return targets
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"targets not up in {timeout}s: {[(t['scrapeUrl'], t['health'], t['lastError']) for t in targets]}"
                )
            time.sleep(0.3)
