"""`make observe` (scripts/observe.sh): the local stack plus Prometheus, scraped and labelled right."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import requests
from unittest.mock import ANY

from observability import rules
from devstack.paths import REPO_ROOT
from devstack.prometheus_server import PrometheusServer, find_prometheus
from devstack.make_env import stack_env
from devstack.procs import free_port
from devstack.redis_server import find_redis_server
from tests.support.local_stack import all_gone, stack_pids
from tests.support.loopback import needs_ipv6
from tests.support.refusals import send_refused

pytestmark = pytest.mark.slow


@pytest.fixture(
    params=[
        "metrics-on-api-port",
        "metrics-port",
        pytest.param("ipv6", marks=needs_ipv6),
    ]
)
def observe(request, tmp_path):
    """make observe as run locally (/metrics on PORT), with API_METRICS_PORT as the chart runs the
    API (/metrics only on its own listener, which observe.sh must scrape instead), and with
    BIND_HOST=::1 (the targets were 127.0.0.1:<port>, where nothing listened then)."""
    if find_prometheus() is None or find_redis_server() is None:
        pytest.skip("needs prometheus and redis-server (make setup)")
    env = stack_env(str(tmp_path / "run"), prometheus=True, WORKER_METRICS_BASE=str(free_port(2)), WORKERS="2")
    env.pop("API_METRICS_PORT", None)
    env.pop("WORKER_METRICS_HOST", None)
    if request.param in ("metrics-port", "ipv6"):
        env["API_METRICS_PORT"] = str(free_port())
    if request.param == "ipv6":
        env["BIND_HOST"] = "::1"
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    try:
        proc = subprocess.run(
            [str(REPO_ROOT / "scripts" / "observe.sh")], env=env, capture_output=True, text=True, timeout=600
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        yield env
    finally:
        subprocess.run([str(REPO_ROOT / "scripts" / "down.sh")], env=env, capture_output=True, timeout=120)


def test_make_observe_scrapes_api_and_each_worker_with_the_rules_loaded(observe, tmp_path):
    prom = PrometheusServer(tmp_path / "unused", port=int(observe["PROMETHEUS_PORT"]))  # a client to the running one
    exporter = shutil.which("prometheus-redis-exporter") is not None
    prom.wait_for_targets_up(4 + exporter, timeout=120)  # api, 2 workers, itself (and the Redis exporter)
    assert {g["name"] for g in prom.rule_groups()} == {g["name"] for g in rules.load_rules()["groups"]}
    if exporter:  # the dashboard's Redis row read series nothing exported here: always empty
        sel = '{job="atx-jobqueue-redis"}'
        for expr in (
            "redis_memory_used_bytes",
            "redis_connected_clients",
            "rate(redis_commands_processed_total%s[1m])",
        ):
            expr = expr % sel if "%s" in expr else expr + sel
            prom.wait_for(expr, lambda r: len(r) == 1, timeout=30)

    api = f"http://{'[::1]' if observe.get('BIND_HOST') == '::1' else '127.0.0.1'}:{observe['PORT']}"
    if observe.get("API_METRICS_PORT"):
        assert requests.get(f"{api}/metrics", timeout=10).status_code == 404
    job = requests.post(f"{api}/submit", json={"operation": "unique_issues", "params": {}}, timeout=10).json()["job_id"]
    assert requests.get(f"{api}/status/{job}?wait=30", timeout=40).json()["status"] == "complete"

    # each worker pod is one replica: a worker must not export the API's or another worker's series;
    # API and workers carry the release the backlog alert joins them on
    assert len(prom.query('jobqueue_redis_up{app_kubernetes_io_instance="atx-jobqueue"}')) == 1
    prom.wait_for(
        'jobqueue:worker_replicas:count{job="atx-jobqueue-worker", app_kubernetes_io_instance="atx-jobqueue"}',
        lambda r: len(r) == 1 and float(r[0]["value"][1]) == 2,
        timeout=30,
    )
    assert prom.query('jobqueue_worker_busy{job="atx-jobqueue-api"}') == []
    assert prom.query('jobqueue_http_requests_total{job="atx-jobqueue-worker"}') == []
    done = prom.wait_for(
        'sum(jobqueue_jobs_processed_total{operation="unique_issues", outcome="complete"})',
        lambda r: len(r) == 1 and float(r[0]["value"][1]) >= 1,
        timeout=30,
    )
    assert float(done[0]["value"][1]) == 1
    if observe.get("API_METRICS_PORT") or observe.get("BIND_HOST"):
        return  # the dashboard once is enough
    _dashboard_fills(prom, api, redis_panels=exporter)


def _dashboard_fills(prom, api: str, redis_panels: bool) -> None:
    """Every panel of the dashboard has data over make observe's Prometheus, its variables as
    Grafana substitutes them: make observe sets no namespace label, so the Namespace variable has no
    values and stays "All" (.*, which matches a missing label); the release is atx-jobqueue, or All.
    (grafana/scenes MultiValueVariable: a variable with no options and includeAll takes the All value,
    and a custom all value is substituted as it is, unescaped.)"""
    import math
    import time

    from observability import dashboard

    board = dashboard.build()
    assert prom.query("group by (namespace) (jobqueue_redis_up)") == [{"metric": {}, "value": ANY}]
    # rates need an increase between two scrapes (every 5 s): more jobs now that all are scraped
    for _ in range(3):
        job = requests.post(f"{api}/submit", json={"operation": "unique_issues", "params": {}}, timeout=10).json()
        requests.get(f"{api}/status/{job['job_id']}?wait=30", timeout=40)
        assert send_refused(api) == 414  # the refused panel's series by status and error
    for release in ("atx-jobqueue", ".*"):
        queries = {
            title: expr.replace("$namespace", ".*").replace("$release", release).replace("$__rate_interval", "1m")
            for title, expr in dashboard.panel_queries(board).items()
            if redis_panels or "redis_" not in expr
        }
        deadline = time.monotonic() + 45
        while True:
            empty = [
                t for t, e in queries.items() if not any(math.isfinite(float(r["value"][1])) for r in prom.query(e))
            ]
            if not empty:
                break
            assert time.monotonic() < deadline, f"panels without data (release {release}): {empty}"
            time.sleep(1)


def test_the_stop_hint_stops_everything_observe_started(tmp_path):
    """`RUN_DIR=/tmp/me make observe` ended with "Stop everything with: make down": that bare command
    looks in the default RUN_DIR and left this Prometheus, API, workers and Redis running."""

    if find_prometheus() is None or find_redis_server() is None:
        pytest.skip("needs prometheus and redis-server (make setup)")
    run_dir = tmp_path / "run"
    env = stack_env(str(run_dir), prometheus=True, WORKERS="1")
    try:
        proc = subprocess.run(
            [str(REPO_ROOT / "scripts" / "observe.sh")], env=env, capture_output=True, text=True, timeout=600
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        [hint] = [
            line.split("Stop everything with: ", 1)[1]
            for line in proc.stdout.splitlines()
            if line.startswith("Stop everything with: ")
        ]
        pids = stack_pids(run_dir)
        # redis, api, worker-1, prometheus (and the Redis exporter)
        assert len(pids) == 4 + (shutil.which("prometheus-redis-exporter") is not None), pids
        shell_env = {k: v for k, v in env.items() if k not in ("RUN_DIR", "PORT", "REDIS_PORT", "PROMETHEUS_PORT")}
        subprocess.run(["bash", "-c", hint], cwd=REPO_ROOT, env=shell_env, check=True, capture_output=True, timeout=120)
        assert all_gone(pids), hint
    finally:
        subprocess.run([str(REPO_ROOT / "scripts" / "down.sh")], env=env, capture_output=True, timeout=120)


def test_a_relative_run_dir_is_scraped_too(tmp_path):
    """`RUN_DIR=myrun make observe`: Prometheus resolves file_sd paths against its config file's
    folder, so the relative target paths observe.sh wrote pointed nowhere and it scraped only itself."""
    if find_prometheus() is None or find_redis_server() is None:
        pytest.skip("needs prometheus and redis-server (make setup)")
    # the scripts run from the checkout
    env = stack_env(os.path.relpath(tmp_path / "run", REPO_ROOT), prometheus=True, WORKERS="1")
    try:
        proc = subprocess.run(
            [str(REPO_ROOT / "scripts" / "observe.sh")], env=env, capture_output=True, text=True, timeout=600
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        prom = PrometheusServer(tmp_path / "unused", port=int(env["PROMETHEUS_PORT"]))
        prom.wait_for_targets_up(3, timeout=120)  # api, worker, itself
    finally:
        subprocess.run([str(REPO_ROOT / "scripts" / "down.sh")], env=env, capture_output=True, timeout=120)


def test_zero_prefixed_ports_are_scraped_where_make_up_serves_them(tmp_path):
    """`make up` reads PORT=07500 as port 7500; observe.sh wrote its scrape targets with bash
    arithmetic and printf %d, which read such a number as octal (07500 -> 3904), so Prometheus
    scraped ports nobody served."""
    if find_prometheus() is None or find_redis_server() is None:
        pytest.skip("needs prometheus and redis-server (make setup)")
    env = stack_env(str(tmp_path / "run"), prometheus=True, WORKERS="1")
    port, base = env["PORT"], env["WORKER_METRICS_BASE"]
    env.update(PORT=f"0{port}", WORKER_METRICS_BASE=f"0{base}")
    env.pop("API_METRICS_PORT", None)
    try:
        proc = subprocess.run(
            [str(REPO_ROOT / "scripts" / "observe.sh")], env=env, capture_output=True, text=True, timeout=600
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        targets = tmp_path / "run" / "prometheus" / "targets"
        assert f'"127.0.0.1:{port}"' in (targets / "api.json").read_text()
        assert f'"127.0.0.1:{base}"' in (targets / "worker.json").read_text()
        prom = PrometheusServer(tmp_path / "unused", port=int(env["PROMETHEUS_PORT"]))
        prom.wait_for_targets_up(3, timeout=120)  # api, worker, itself
    finally:
        subprocess.run([str(REPO_ROOT / "scripts" / "down.sh")], env=env, capture_output=True, timeout=120)


@pytest.mark.parametrize("metrics_port", [False, True])
def test_under_script_name_the_api_is_scraped_inside_its_prefix(tmp_path, metrics_port):
    """`SCRIPT_NAME=/class/jq make observe`: gunicorn puts every listener under the prefix, the API's
    metrics port too, and answers /metrics outside it with its own 500: Prometheus scraped the API as
    down, and the banner's metrics URL (with API_METRICS_PORT) was that 500."""
    if find_prometheus() is None or find_redis_server() is None:
        pytest.skip("needs prometheus and redis-server (make setup)")
    env = stack_env(str(tmp_path / "run"), prometheus=True, WORKERS="1", SCRIPT_NAME="/class/jq")
    if metrics_port:
        env["API_METRICS_PORT"] = str(free_port())
    try:
        proc = subprocess.run(
            [str(REPO_ROOT / "scripts" / "observe.sh")], env=env, capture_output=True, text=True, timeout=600
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        (url,) = [w for w in proc.stdout.split() if w.endswith("/metrics") and "(API)" in proc.stdout.split(w)[1][:7]]
        assert requests.get(url, timeout=10).status_code == 200, url
        prom = PrometheusServer(tmp_path / "unused", port=int(env["PROMETHEUS_PORT"]))
        prom.wait_for_targets_up(3, timeout=120)  # api, worker, itself
    finally:
        subprocess.run([str(REPO_ROOT / "scripts" / "down.sh")], env=env, capture_output=True, timeout=120)


@pytest.mark.parametrize(
    "prom_port,status,words",
    [("70000", 1, "prometheus did not become ready"), ("abc", 2, "PROMETHEUS_PORT must be a whole number")],
)
def test_a_prometheus_that_cannot_start_is_an_error_not_a_banner(tmp_path, prom_port, status, words):
    """PROMETHEUS_PORT=70000: Prometheus exited at once ("invalid port"), and observe.sh waited 30 s,
    then printed its banner with the Prometheus address and exit status 0."""
    if find_prometheus() is None or find_redis_server() is None:
        pytest.skip("needs prometheus and redis-server (make setup)")
    env = stack_env(str(tmp_path / "run"), PROMETHEUS_PORT=prom_port, WORKERS="1")
    try:
        proc = subprocess.run(
            [str(REPO_ROOT / "scripts" / "observe.sh")], env=env, capture_output=True, text=True, timeout=600
        )
        assert proc.returncode == status, proc.stdout + proc.stderr
        assert words in proc.stderr, proc.stderr
        assert "Prometheus: http" not in proc.stdout
    finally:
        subprocess.run([str(REPO_ROOT / "scripts" / "down.sh")], env=env, capture_output=True, timeout=120)
