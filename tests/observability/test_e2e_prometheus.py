"""End to end: a real Prometheus scrapes the real API and workers; autoscaling, dashboard and alerts hold.

Scenario (all on loopback, Prometheus scraping and evaluating every second):
1. API up, no worker (scaled to zero). Submit a backlog of N jobs.
   (a) the chart's autoscaling query (the ScaledObject the real Helm engine renders for this
       namespace) returns N, and so does the prometheus-adapter rule of the HPA mode;
   (b) the replicas KEDA/HPA derive from it with the chart's values are ceil(N / threshold) clamped
       to [max(1, min), max], and 0 on an empty queue (activation);
   the backlog alert (no busy worker) is pending in the live rule engine;
   (d) the live series, with the labels this scrape gave them, replayed in a promtool time-series
       test for 30 minutes make the backlog alerts fire.
2. Workers start (pods appear, Prometheus picks them up); they drain the backlog.
   (c) every dashboard panel query returns data, and no rule fails to evaluate on real series.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import time
import warnings

import pytest
import requests
import yaml

from observability import dashboard, rules
from observability.simulate_autoscaling import desired_replicas
from devstack.stack import Stack
from tests.observability.chart_values import adapter_query, autoscaling, scrape
from tests.observability.monitors import scrape_configs
from tests.support.refusals import send_refused

pytestmark = pytest.mark.slow


NAMESPACE = "atx-jobqueue-e2e"
BACKLOG = 23  # not a multiple of the threshold, so ceil() matters
JOB_SECONDS = 0.2


@pytest.fixture
def stack(redis_server, redis_url, tmp_path):
    settings = autoscaling(NAMESPACE)
    local = Stack(tmp_path / "stack", redis_server, env={"QUEUE_NAME": settings.queue_name, "LOG_LEVEL": "WARNING"})
    try:
        yield local
    except Exception:
        print(local.logs())
        raise
    finally:
        local.close()


def _start_workers(stack: Stack, n: int) -> None:
    for _ in range(n):
        stack.start_worker(metrics_path=scrape(NAMESPACE)["worker"].path)


def _scrape_configs(stack: Stack) -> list[dict]:
    monitors = scrape(NAMESPACE)
    return scrape_configs(
        stack, NAMESPACE, api_metrics_path=monitors["api"].path, worker_metrics_path=monitors["worker"].path
    )


def _sample(result: list[dict]) -> float:
    assert len(result) == 1, result
    return float(result[0]["value"][1])


def test_backlog_autoscaling_dashboard_and_alerts_against_a_real_prometheus(
    stack, prometheus_factory, promtool, tmp_path
):
    chart = autoscaling(NAMESPACE)
    stack.start_api()
    with_exporter = shutil.which("prometheus-redis-exporter") is not None
    if with_exporter:
        stack.start_redis_exporter()
    prom = prometheus_factory(rule_files=[rules.RULES_FILE], scrape_configs=_scrape_configs(stack))
    prom.wait_for_targets_up(2 if with_exporter else 1)
    query = chart.query

    # Empty queue: the query answers 0 (not "no data"), and KEDA keeps zero workers (activation).
    empty = prom.wait_for(query, lambda r: len(r) == 1)
    assert _sample(empty) == 0
    assert desired_replicas(0, chart.policy, 0) == chart.policy.min_replicas

    # --- 1. a backlog and no worker ------------------------------------------------------------
    ids = [stack.submit("sleep", {"seconds": JOB_SECONDS}) for _ in range(BACKLOG)]
    # (a) the chart's query returns the backlog
    result = prom.wait_for(query, lambda r: len(r) == 1 and float(r[0]["value"][1]) == BACKLOG, timeout=20)
    metric = _sample(result)
    assert metric == BACKLOG
    # the HPA mode's prometheus-adapter rule reads the same backlog
    assert _sample(prom.query(adapter_query(NAMESPACE, chart.queue_name))) == BACKLOG
    # the recording rule the dashboard shows is the same number
    prom.wait_for(
        f'jobqueue:backlog:max{{namespace="{NAMESPACE}"}}',
        lambda r: len(r) == 1 and float(r[0]["value"][1]) == BACKLOG,
        timeout=20,
    )

    # (b) the replica count KEDA/HPA derive from it with the chart's values
    policy = chart.policy
    intended = min(policy.max_replicas, max(1, policy.min_replicas, math.ceil(BACKLOG / policy.threshold)))
    assert policy.activation_threshold < BACKLOG, "the chart would not wake workers for this backlog"
    assert desired_replicas(metric, policy, current=0) == intended
    assert desired_replicas(metric, policy, current=intended) == intended  # stable once there
    assert desired_replicas(metric * 100, policy, current=intended) == policy.max_replicas

    # the live rule engine: jobs wait and nobody works on them -> the alert is pending (its `for` is 5m)
    pending = prom.wait_for('ALERTS{alertname="JobQueueBacklogNoBusyWorker"}', lambda r: len(r) == 1, timeout=20)
    assert pending[0]["metric"]["alertstate"] == "pending"
    assert pending[0]["metric"]["namespace"] == NAMESPACE and pending[0]["metric"]["queue"] == chart.queue_name
    # the release the monitors copy from app.kubernetes.io/instance: the join with the workers' series
    assert pending[0]["metric"]["app_kubernetes_io_instance"] == "atx-jobqueue"

    # (d) replay the live series in promtool's time-series tests
    _backlog_alerts_fire_in_promtool(prom, promtool, tmp_path)

    # --- 2. workers come up and drain it ---------------------------------------------------------
    _start_workers(stack, 2)
    prom.reload(_scrape_configs(stack))
    prom.wait_for_targets_up(4 if with_exporter else 3)
    deadline = time.monotonic() + 60
    while any(stack.status(i)["status"] != "complete" for i in ids):
        assert time.monotonic() < deadline, [stack.status(i)["status"] for i in ids]
        time.sleep(0.2)
    prom.wait_for(query, lambda r: len(r) == 1 and float(r[0]["value"][1]) == 0, timeout=20)
    processed = prom.wait_for(
        f'sum(jobqueue_jobs_processed_total{{namespace="{NAMESPACE}", operation="sleep", outcome="complete"}})',
        lambda r: len(r) == 1 and float(r[0]["value"][1]) == BACKLOG,
        timeout=20,
    )
    assert _sample(processed) == BACKLOG
    assert prom.query('ALERTS{alertname="JobQueueBacklogNoBusyWorker"}') == [] or _eventually_no_alert(prom)

    # A second batch now that Prometheus knows the workers: the first batch ran before their first
    # scrape, so its counters and histograms were born at their final values and rate() sees no
    # increase in them (as for any pod that works before it is first scraped).
    more = [stack.submit("sleep", {"seconds": JOB_SECONDS}) for _ in range(10)]
    deadline = time.monotonic() + 60
    while any(stack.status(i)["status"] != "complete" for i in more):
        assert time.monotonic() < deadline, [stack.status(i)["status"] for i in more]
        time.sleep(0.2)
    # some traffic on every API route family the dashboard shows
    for _ in range(5):
        requests.get(f"{stack.url}/status/{ids[0]}", timeout=5)
        requests.get(f"{stack.url}/status/no-such-job", timeout=5)
        assert send_refused(stack.url) == 414  # gunicorn's refusals: the refused panel by status and error

    # (c) every dashboard panel query returns data: at least one finite number
    queries = {
        k: v.replace("$namespace", NAMESPACE).replace("$release", "atx-jobqueue").replace("$__rate_interval", "1m")
        for k, v in dashboard.panel_queries(dashboard.build()).items()
    }
    if not with_exporter:
        warnings.warn("no prometheus-redis-exporter: the Redis exporter panels are not checked", stacklevel=1)
        queries = {k: v for k, v in queries.items() if not re.search(r"\bredis_", v)}

    def finite(expr: str) -> bool:
        return any(math.isfinite(float(r["value"][1])) for r in prom.query(expr))

    deadline = time.monotonic() + 120
    while True:
        empty_panels = [k for k, expr in queries.items() if not finite(expr)]
        if not empty_panels:
            break
        assert time.monotonic() < deadline, f"dashboard queries without data: {empty_panels}"
        time.sleep(1)
    replicas = prom.value(f'sum(jobqueue:worker_replicas:count{{namespace="{NAMESPACE}"}})')
    assert replicas == 2
    # the recorded numbers mean what they say on real data: 0.2 s jobs, nothing failed, 404s are not 5xx
    p50 = prom.value(f'jobqueue:job_duration_seconds:p50_5m{{namespace="{NAMESPACE}", operation="sleep"}}')
    assert JOB_SECONDS * 0.5 <= p50 <= JOB_SECONDS * 1.5, p50
    assert prom.value(f'jobqueue:job_failure_ratio:rate5m{{namespace="{NAMESPACE}"}}') == 0
    assert prom.value(f'jobqueue:http_5xx_ratio:rate5m{{namespace="{NAMESPACE}"}}') == 0
    # the 5 refused requests: counted over both gunicorn workers, recorded by their status and error
    prom.wait_for(
        f'sum(jobqueue_http_refused_total{{namespace="{NAMESPACE}"}})',
        lambda r: len(r) == 1 and float(r[0]["value"][1]) == 5,
        timeout=30,
    )
    # every kind has a series from the start, at 0, so rate() counts the first refusals: the kinds
    # refused here are those above 0 (once the rule has been evaluated on the scrape that saw them)
    refused = prom.wait_for(
        f'jobqueue:http_refused:rate5m{{namespace="{NAMESPACE}"}} > 0', lambda r: len(r) > 0, timeout=30
    )
    assert [(r["metric"]["status"], r["metric"]["error"]) for r in refused] == [("414", "uri_too_long")], refused

    # no rule failed to evaluate on the real series (e.g. many-to-many matches only show at run time)
    broken = [(r["name"], r["lastError"]) for g in prom.rule_groups() for r in g["rules"] if r["health"] == "err"]
    assert broken == []
    recorded = {r["name"] for g in prom.rule_groups() for r in g["rules"] if r["type"] == "recording"}
    assert recorded == set(rules.recordings())


def _eventually_no_alert(prom) -> bool:
    prom.wait_for('ALERTS{alertname="JobQueueBacklogNoBusyWorker"}', lambda r: r == [], timeout=10)
    return True


def _backlog_alerts_fire_in_promtool(prom, promtool, tmp_path) -> None:
    """Take the series exactly as this scrape labelled them, hold the backlog for 30 minutes with
    jobs still arriving, and let promtool evaluate the real rules over that timeline."""
    depth = prom.query(f'jobqueue_queue_depth{{namespace="{NAMESPACE}"}}')
    age = prom.query(f'jobqueue_oldest_job_age_seconds{{namespace="{NAMESPACE}"}}')
    assert len(depth) == 1 and len(age) == 1, (depth, age)
    observed = float(depth[0]["value"][1])
    assert observed == BACKLOG

    def series(sample: dict) -> str:
        labels = ", ".join(f'{k}="{v}"' for k, v in sorted(sample["metric"].items()) if k != "__name__")
        return f"{sample['metric']['__name__']}{{{labels}}}"

    # 40 minutes: the observed backlog, growing by the same amount every minute, never picked up
    inputs = [
        {"series": series(depth[0]), "values": f"{observed:g}+{observed:g}x40"},
        {"series": series(age[0]), "values": f"{float(age[0]['value'][1]):g}+60x40"},
    ]
    kept = {k: v for k, v in depth[0]["metric"].items() if k not in {"__name__", "instance", "pod"}}
    expected = {}
    for alert in ("JobQueueBacklogGrowing", "JobQueueBacklogTooOld", "JobQueueBacklogNoBusyWorker"):
        rule = rules.alerts()[alert]
        expected[alert] = {**kept, "alertname": alert, "severity": rule["labels"]["severity"]}
    # The real rules, minus annotations: promtool would compare those too, and only the
    # expressions and labels are under test here (rules_test.yml checks the annotation texts).
    stripped = rules.load_rules()
    for group in stripped["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    rules_copy = tmp_path / "rules_without_annotations.yml"
    rules_copy.write_text(yaml.safe_dump(stripped, sort_keys=False))
    suite = {
        "rule_files": [str(rules_copy)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": inputs,
                "alert_rule_test": [
                    {"eval_time": "1m", "alertname": "JobQueueBacklogTooOld", "exp_alerts": []},
                    *(
                        {"eval_time": "35m", "alertname": name, "exp_alerts": [{"exp_labels": labels}]}
                        for name, labels in expected.items()
                    ),
                ],
            }
        ],
    }
    path = tmp_path / "live_backlog_test.yml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    proc = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, f"{proc.stdout}{proc.stderr}\n{path.read_text()}"
