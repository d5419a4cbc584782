"""Manifest-driven smoke test: the chart's rendered pods, run here as processes.

Redis starts from the chart's redis.conf with the password of the rendered Secret; the API pod's
load-data init container fills the data "volume"; then the API and worker containers run exactly their
rendered command, args and environment (volume paths, ports, bind address and Redis host rewritten
to loopback equivalents). The probes are asked on the paths and ports the manifests declare, the
helm test pod's own script submits a job and waits for its result, and the worker gets SIGTERM
and must exit 0 within its pod's terminationGracePeriodSeconds. So the chart cannot drift from
the code: a renamed variable, port, probe path or command fails here."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import time

import pytest
import requests

from devstack.procs import stop
from devstack.redis_server import find_redis_server
from tests.deploy.local import LocalPod, chart_stack, http_ok
from tests.deploy.manifests import k8s_objects, one, render_chart, scenario_objects, scenario_values

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(find_redis_server() is None, reason="no redis-server binary"),
    pytest.mark.skipif(
        importlib.util.find_spec("jobqueue_api.serve") is None
        or importlib.util.find_spec("jobqueue_worker.main") is None,
        reason="the API or the worker is not implemented in this checkout yet",
    ),
]


@pytest.mark.parametrize("source", ["chart:default", "chart:persistence-off", "k8s:test"])
def test_rendered_api_and_worker_run_a_job(source, tmp_path):
    kind, name = source.split(":")
    chart_objs = scenario_objects("default")
    objs = scenario_objects(name) if kind == "chart" else k8s_objects(name)
    # 1. Redis from the chart's redis.conf; 2. the init containers: load-data fills the volume,
    # wait-for-data sees it
    server, api, worker = chart_stack(objs, tmp_path, conf_objs=chart_objs)
    redis_url = f"redis://127.0.0.1:{server.port}"
    procs = []
    try:
        # 3. the API: readiness (Redis + data) on the declared probe path and port
        api_log = tmp_path / "api.log"
        api_proc = api.start("api", api_log)
        procs.append(api_proc)
        main = api.container("api")
        deadline = time.monotonic() + 120
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            get = main[probe]["httpGet"]
            http_ok(f"http://127.0.0.1:{api.local_port(main, get['port'])}{get['path']}", deadline, api_proc, api_log)
        base = f"http://127.0.0.1:{api.local_port(main, 'http')}"

        # 4. the worker: its probes (metrics port) answer once it has loaded the data
        worker_log = tmp_path / "worker.log"
        worker_proc = worker.start("worker", worker_log)
        procs.append(worker_proc)
        wmain = worker.container("worker")
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            get = wmain[probe]["httpGet"]
            body = http_ok(
                f"http://127.0.0.1:{worker.local_port(wmain, get['port'])}{get['path']}",
                deadline,
                worker_proc,
                worker_log,
            )
        assert "jobqueue_" in body.text

        # the scrape annotations lead to the metrics the autoscaling query reads
        if kind == "chart":
            query = next(o for o in scenario_objects("keda") if o["kind"] == "ScaledObject")["spec"]["triggers"][0][
                "metadata"
            ]["query"]
            for pod, proc_log, proc in ((api, api_log, api_proc), (worker, worker_log, worker_proc)):
                ann = pod.spec_annotations
                c = pod.spec["containers"][0]
                url = f"http://127.0.0.1:{pod.local_port(c, int(ann['prometheus.io/port']))}{ann['prometheus.io/path']}"
                text = http_ok(url, deadline, proc, proc_log).text
                if pod is api:
                    for metric in ("jobqueue_queue_depth", "jobqueue_jobs_in_progress"):
                        assert f"{metric}{{" in query and f'{metric}{{queue="jobs"}}' in text, metric
                else:
                    assert "jobqueue_worker_busy" in text

        # NOTES' help line, as a user pastes it after the port-forward (no token: /help is public)
        if kind == "chart":
            notes = render_chart(scenario_values(name))["atx-jobqueue/templates/NOTES.txt"]
            (line,) = [line.strip() for line in notes.splitlines() if "$API/help" in line]
            run = subprocess.run(
                ["bash", "-c", line], env={**os.environ, "API": base}, capture_output=True, text=True, timeout=30
            )
            assert run.returncode == 0 and "/submit" in run.stdout and "top_locations" in run.stdout, run

        # 5. the helm test pod's own script: submit through the API, wait for the result
        test_pod = LocalPod(one(chart_objs, "Pod"), chart_objs, tmp_path, redis_url)
        test_log = tmp_path / "helm-test.log"
        code = test_pod.run("submit-and-wait", test_log, timeout=180, extra_env={"API_URL": base})
        assert code == 0, test_log.read_text() + "\n--- worker\n" + worker_log.read_text()[-3000:]
        assert "complete" in test_log.read_text()

        # a contract operation and its documented result key, straight through the API
        submitted = requests.post(f"{base}/submit", json={"operation": "top_locations", "params": {"n": 3}}, timeout=10)
        assert submitted.status_code == 202, submitted.text
        job_id = submitted.json()["job_id"]
        while True:
            job = requests.get(f"{base}/status/{job_id}", timeout=10).json()
            if job["status"] in ("complete", "failed") or time.monotonic() > deadline + 60:
                break
            time.sleep(0.2)
        assert job["status"] == "complete", job
        assert len(job["result"]["top_locations"]) == 3

        # 6. SIGTERM (scale-in): the worker exits 0 within the pod's grace period
        grace = worker.spec["terminationGracePeriodSeconds"]
        started = time.monotonic()
        assert stop(worker_proc, grace, term_group=False) == 0, worker_log.read_text()[-3000:]
        assert time.monotonic() - started < grace
    finally:
        for proc in procs:
            stop(proc, term_group=False)
        server.stop()


@pytest.mark.parametrize(
    "tokens",
    ["alice:tok-a,bob:tok-b", "alice:tok-a\nbob:tok-b\n"],
    ids=["comma-separated", "one-a-line-from-a-file"],
)
def test_helm_test_and_notes_with_named_tokens_only(tmp_path, tokens):
    """`config.apiTokens.existingSecret` alone (each student a named token, no admin token): the API
    wants a token on every job route, but the helm test pod sent none (`submit: 401`, helm test
    failed) and NOTES' curl lines had no Authorization header. The test pod now gets API_TOKENS and
    submits as its first user; NOTES ask for the user's own token. The Secret made from a file with
    one student a line (`--from-file`) used to be one entry: the API started, every student got 401
    and the test pod could not send its header; a line break now separates entries as a comma does."""
    from tests.deploy.manifests import render_objects

    values = {"config": {"apiTokens": {"existingSecret": "class-tokens"}}}
    notes = render_chart(values)["atx-jobqueue/templates/NOTES.txt"]
    assert notes.count('-H "Authorization: Bearer $JOBQUEUE_TOKEN"') == 2 and "class-tokens" in notes, notes
    objs = render_objects(values) + [
        {"kind": "Secret", "metadata": {"name": "class-tokens"}, "stringData": {"api-tokens": tokens}}
    ]
    server, api, worker = chart_stack(objs, tmp_path)
    redis_url = f"redis://127.0.0.1:{server.port}"
    procs = []
    try:
        api_log, worker_log = tmp_path / "api.log", tmp_path / "worker.log"
        procs += [api.start("api", api_log), worker.start("worker", worker_log)]
        main = api.container("api")
        base = f"http://127.0.0.1:{api.local_port(main, 'http')}"
        http_ok(base + "/readyz", time.monotonic() + 120, procs[0], api_log)
        anonymous = requests.post(f"{base}/submit", json={"operation": "unique_issues", "params": {}}, timeout=10)
        assert anonymous.status_code == 401, anonymous.text
        test_pod = LocalPod(one(objs, "Pod", "test"), objs, tmp_path, redis_url)
        test_log = tmp_path / "helm-test.log"
        code = test_pod.run("submit-and-wait", test_log, timeout=180, extra_env={"API_URL": base})
        assert code == 0, test_log.read_text() + "\n--- worker\n" + worker_log.read_text()[-3000:]
        mine = requests.get(f"{base}/jobs", headers={"Authorization": "Bearer tok-a"}, timeout=10).json()
        assert len(mine["jobs"]) == 1, mine  # the test's job is alice's, the first named user
        theirs = requests.get(f"{base}/jobs", headers={"Authorization": "Bearer tok-b"}, timeout=10)
        assert theirs.status_code == 200 and theirs.json()["jobs"] == [], theirs.text
    finally:
        for proc in procs:
            stop(proc, term_group=False)
        server.stop()
