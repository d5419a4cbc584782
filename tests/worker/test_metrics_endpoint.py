"""The worker's metrics port answers like a metrics endpoint (jobqueue.metrics_http), as the API's
/metrics does: the exposition on /metrics only (GET and HEAD), 404 elsewhere, 405 with Allow for
other methods. prometheus_client's stock server served the metrics on every path (a scrape config
or probe with a mistyped path stayed green) and refused HEAD with 405.

A real ``jobqueue-worker`` (one process, and the supervisor summing its children's files) and a
real Prometheus; nothing is mocked."""

from __future__ import annotations

import gzip

import pytest
import requests

from devstack.prometheus_server import find_prometheus, static_job
from devstack.stack import running_stack

pytestmark = pytest.mark.slow

ALLOW = {"GET", "HEAD", "OPTIONS"}


def _allow(resp: requests.Response) -> set[str]:
    return {m.strip() for m in resp.headers.get("Allow", "").split(",") if m.strip()}


@pytest.mark.parametrize("concurrency", ["1", "2"])
def test_worker_metrics_only_on_metrics_with_get_and_head(tmp_path, concurrency):
    with running_stack(tmp_path) as stack:
        worker = stack.start_worker(metrics_path="/metrics", WORKER_CONCURRENCY=concurrency)
        url = f"http://127.0.0.1:{worker.port}"

        got = requests.get(url + "/metrics", timeout=10)
        assert got.status_code == 200
        assert got.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        assert "jobqueue_worker_busy" in got.text

        head = requests.head(url + "/metrics", timeout=10)
        assert head.status_code == 200, head.headers  # was 405
        assert head.content == b""
        assert head.headers["Content-Type"] == got.headers["Content-Type"]
        assert int(head.headers["Content-Length"]) > 0

        for path in ("/", "/anything", "/favicon.ico", "/metrics/", "/metricsx"):
            resp = requests.get(url + path, timeout=10)
            assert resp.status_code == 404, (path, resp.status_code)  # was 200 with the metrics
            assert "jobqueue_" not in resp.text

        for method in ("POST", "PUT", "DELETE", "PATCH", "PROPFIND"):
            resp = requests.request(method, url + "/metrics", timeout=10)
            assert resp.status_code == 405, (method, resp.status_code)
            assert _allow(resp) == ALLOW, resp.headers
        options = requests.options(url + "/metrics", timeout=10)
        assert options.status_code == 200 and _allow(options) == ALLOW

        # what prometheus_client negotiated is kept: OpenMetrics on request, gzip on request, and
        # (one process; prometheus_client's restricted registry finds nothing in the multiprocess
        # collector, with or without this server) ?name[]= to select series
        om = requests.get(url + "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
        assert om.headers["Content-Type"].startswith("application/openmetrics-text")
        assert om.text.rstrip().endswith("# EOF")
        raw = requests.get(url + "/metrics", headers={"Accept-Encoding": "gzip"}, stream=True, timeout=10)
        assert raw.headers.get("Content-Encoding") == "gzip"
        assert b"jobqueue_worker_busy" in gzip.decompress(raw.raw.read())
        if concurrency != "1":
            return
        picked = requests.get(url + "/metrics", params={"name[]": "jobqueue_worker_busy"}, timeout=10)
        assert "jobqueue_worker_busy" in picked.text and "jobqueue_jobs_processed" not in picked.text


def test_prometheus_scrapes_the_worker_on_metrics_and_not_elsewhere(tmp_path):
    """A real Prometheus: the target on /metrics is up; one with a mistyped path is down with a
    404, where the stock server left it up and a scrape config's typo unnoticed."""
    if find_prometheus() is None:
        pytest.skip("no prometheus binary (make setup installs Debian's prometheus package)")
    from devstack.prometheus_server import PrometheusServer

    with running_stack(tmp_path / "stack") as stack:
        worker = stack.start_worker(metrics_path="/metrics")
        target = f"127.0.0.1:{worker.port}"
        prom = PrometheusServer(
            tmp_path / "prometheus",
            scrape_configs=[
                static_job("worker", [target]),
                static_job("worker-typo", [target], metrics_path="/metric"),
            ],
        ).start()
        try:
            prom.wait_for("up", lambda r: len(r) == 2, timeout=60)
            by_job = {t["labels"]["job"]: t for t in prom.targets()}
            assert by_job["worker"]["health"] == "up", by_job["worker"]
            assert by_job["worker-typo"]["health"] == "down", by_job["worker-typo"]
            assert "404" in by_job["worker-typo"]["lastError"], by_job["worker-typo"]
            assert prom.value('up{job="worker"}') == 1
            assert prom.value('jobqueue_worker_busy{job="worker"}') == 0
        finally:
            prom.stop()
