"""Autoscaling cannot fail silently (issue test 7), checked with promtool on the rendered query.

KEDA's prometheus scaler treats a 0 as real data; with `ignoreNullValues: "false"` an empty result
is an error, and after `fallback.failureThreshold` errors KEDA runs `fallback.replicas`
(https://keda.sh/docs/latest/scalers/prometheus/, https://keda.sh/docs/latest/reference/scaledobject-spec/#fallback).
Review finding 2.8: `or vector(0)` turned "not scraped" into "no backlog", and the query took any
release's series in the namespace.
"""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from observability.rules import promtool as find_promtool
from tests.deploy.manifests import CHART, NAMESPACE, RELEASE, render_objects, scenario_objects

MONITORED = {"metrics": {"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}}}


def _one(objs, kind):
    (found,) = [o for o in objs if o["kind"] == kind]
    return found


def _promtool_test(tmp_path, rule_groups: list, series: list[dict], tests: list[dict]) -> subprocess.CompletedProcess:
    tool = find_promtool()
    if tool is None:
        pytest.skip("no promtool (make setup installs Debian's prometheus package)")
    (tmp_path / "rules.yml").write_text(yaml.safe_dump({"groups": rule_groups}))
    (tmp_path / "test.yml").write_text(
        yaml.safe_dump(
            {
                "rule_files": ["rules.yml"],
                "evaluation_interval": "1m",
                "tests": [{"interval": "1m", "input_series": series, **t} for t in tests],
            }
        )
    )
    return subprocess.run([tool, "test", "rules", "test.yml"], cwd=tmp_path, capture_output=True, text=True, timeout=60)


def _series(release: str, depth: int, running: int, scrape: str = "serviceMonitor") -> list[dict]:
    """The API's backlog series as a scrape labels them: the ServiceMonitor adds the API Service's
    name as ``service``; the annotation job of docs/observability.md has no Service to name."""
    labels = f'namespace="{NAMESPACE}",app_kubernetes_io_instance="{release}",queue="jobs",pod="{release}-api-0"'
    if scrape == "serviceMonitor":
        labels += f',service="{release}-atx-jobqueue-api"'

    return [
        {"series": f"jobqueue_queue_depth{{{labels}}}", "values": f"{depth}x30"},
        {"series": f"jobqueue_jobs_in_progress{{{labels}}}", "values": f"{running}x30"},
    ]


@pytest.mark.parametrize("scrape", ["serviceMonitor", "annotations"])
def test_query_is_empty_without_series_and_takes_only_this_release(scrape, tmp_path):
    objs = render_objects({**MONITORED, "autoscaling": {"mode": "keda"}})
    trigger = _one(objs, "ScaledObject")["spec"]["triggers"][0]["metadata"]
    query = trigger["query"]
    # a neighbour release (jobs-prod beside jobs-test) in the same namespace, queue "jobs": 40 waiting
    neighbour = _series("other", 40, 2, scrape)
    ours = _series(RELEASE, 5, 1, scrape)
    run = _promtool_test(
        tmp_path,
        [],
        neighbour + ours,
        [{"promql_expr_test": [{"expr": query, "eval_time": "10m", "exp_samples": [{"labels": "{}", "value": 6}]}]}],
    )
    assert run.returncode == 0, run.stdout + run.stderr
    run = _promtool_test(
        tmp_path, [], neighbour, [{"promql_expr_test": [{"expr": query, "eval_time": "10m", "exp_samples": []}]}]
    )
    assert run.returncode == 0, (
        "without this release's series the query must be empty (an error for KEDA), not 0:\n" + run.stdout
    )


def test_keda_falls_back_instead_of_trusting_an_empty_answer():
    scaled = _one(scenario_objects("keda"), "ScaledObject")["spec"]
    (trigger,) = scaled["triggers"]
    assert trigger["metadata"]["ignoreNullValues"] == "false"
    assert scaled["fallback"]["failureThreshold"] >= 1 and scaled["fallback"]["replicas"] >= 1
    assert trigger["metadata"].get("metricType", "AverageValue") == "AverageValue", "KEDA's fallback needs AverageValue"


@pytest.mark.parametrize("mode", ["keda", "hpa"])
def test_autoscaling_without_a_scrape_refuses_to_render(mode):
    with pytest.raises(Exception, match="serviceMonitor"):
        render_objects({"autoscaling": {"mode": mode}})
    render_objects({"autoscaling": {"mode": mode, "scrapedWithoutServiceMonitor": True}})


def test_an_alert_fires_when_the_queue_series_is_absent(tmp_path):
    rule = _one(render_objects(MONITORED), "PrometheusRule")
    (group,) = [g for g in rule["spec"]["groups"] if g["name"].startswith("atx-jobqueue.release.")]
    alert = {
        "alertname": "JobQueueMetricsAbsent",
        "eval_time": "15m",
        "exp_alerts": [
            {
                "exp_labels": {
                    "severity": "warning",
                    "namespace": NAMESPACE,
                    "app_kubernetes_io_instance": RELEASE,
                },
                "exp_annotations": {k: v for k, v in group["rules"][0]["annotations"].items()},
            }
        ],
    }
    # only a neighbour's series: ours are absent, the alert fires after its 10 minutes
    run = _promtool_test(tmp_path, [group], _series("other", 1, 0), [{"alert_rule_test": [alert]}])
    assert run.returncode == 0, run.stdout + run.stderr
    for scrape in ("serviceMonitor", "annotations"):  # ours, by either documented scrape: quiet
        run = _promtool_test(
            tmp_path,
            [group],
            _series(RELEASE, 1, 0, scrape),
            [{"alert_rule_test": [{"alertname": "JobQueueMetricsAbsent", "eval_time": "15m"}]}],
        )
        assert run.returncode == 0, scrape + ": " + run.stdout + run.stderr
    # ours scraped without the release label, which the release's scoped rules select on: it fires
    unlabelled = [
        {**s, "series": re.sub(r'app_kubernetes_io_instance="[^"]*",', "", s["series"])} for s in _series(RELEASE, 1, 0)
    ]
    run = _promtool_test(tmp_path, [group], unlabelled, [{"alert_rule_test": [alert]}])
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.parametrize("scrape", ["serviceMonitor", "annotations"])
def test_hpa_mode_adapter_rule_takes_only_this_release(scrape, tmp_path):
    """The prometheus-adapter rule with the matchers the rendered HPA's selector gives it
    (prometheus-adapter turns the selector into <<.LabelMatchers>>, plus the namespace:
    pkg/naming/metrics_query.go, BuildExternal)."""
    adapter = yaml.safe_load((CHART.parent / "prometheus-adapter-values.yaml").read_text())
    (rule,) = adapter["rules"]["external"]
    hpa = _one(render_objects({**MONITORED, "autoscaling": {"mode": "hpa"}}), "HorizontalPodAutoscaler")
    labels = hpa["spec"]["metrics"][0]["external"]["metric"]["selector"]["matchLabels"]
    matchers = ",".join([f'namespace="{NAMESPACE}"', *(f'{k}="{v}"' for k, v in sorted(labels.items()))])
    query = rule["metricsQuery"].replace("<<.LabelMatchers>>", matchers)
    run = _promtool_test(
        tmp_path,
        [],
        _series("other", 40, 2, scrape) + _series(RELEASE, 5, 1, scrape),
        [
            {
                "promql_expr_test": [
                    {
                        "expr": query,
                        "eval_time": "10m",
                        "exp_samples": [
                            {
                                "labels": f'{{app_kubernetes_io_instance="{RELEASE}",namespace="{NAMESPACE}",queue="jobs"}}',
                                "value": 6,
                            }
                        ],
                    }
                ]
            }
        ],
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_the_runbooks_manual_scale_holds_under_keda():
    """docs/operations.md's "backlog grows, no worker" row scales the workers by hand. Under KEDA a
    `kubectl scale` does not hold: KEDA's scale executor (pkg/scaling/executor/scale_scaledobjects.go)
    sets a target it sees no active trigger for back to 0 (minReplicaCount 0, once the cooldown has
    passed since the last active time) or to minReplicaCount, and the HPA KEDA owns scales it to
    what the metric says. `autoscaling.keda.sh/paused-replicas` holds a count until it is removed
    (the chart's restore mode uses it for 0), so the runbook pauses the ScaledObject the chart renders."""
    from devstack.paths import REPO_ROOT

    objs = render_objects({"autoscaling": {"mode": "keda"}, **MONITORED}, name="jobs")
    scaled = _one(objs, "ScaledObject")
    assert scaled["spec"]["scaleTargetRef"]["name"] == scaled["metadata"]["name"]
    restore = render_objects(
        {"autoscaling": {"mode": "keda"}, **MONITORED, "redis": {"restore": {"enabled": True, "file": "x.rdb"}}}
    )
    assert _one(restore, "ScaledObject")["metadata"]["annotations"]["autoscaling.keda.sh/paused-replicas"] == "0"
    (row,) = [
        line
        for line in (REPO_ROOT / "docs" / "operations.md").read_text().splitlines()
        if line.startswith("| backlog grows, `jobqueue_workers_alive` is 0")
    ]
    target = scaled["metadata"]["name"].replace("jobs-", "<release>-", 1)
    assert f"kubectl annotate scaledobject/{target} autoscaling.keda.sh/paused-replicas=2" in row
    assert f"kubectl annotate scaledobject/{target} autoscaling.keda.sh/paused-replicas-" in row
