"""The chart's per-release PrometheusRule on a real Prometheus, over the series the documented
scrapes give real processes: every recording rule records, every dashboard panel has data, and
the autoscaling queries answer the backlog.

Each release's PrometheusRule selects only series labelled with its ``namespace`` and
``app_kubernetes_io_instance``, so a scrape that does not set both leaves the dashboard empty and
the workers on KEDA's fallback. The scrapes, rendered for the release (real Helm engine) and run as
static jobs over local processes (the API, a worker, Redis and Debian's redis exporter):

- ``operator``: the ServiceMonitors and the PodMonitor, as the Prometheus Operator turns them into
  scrape configs (prometheus-operator pkg/prometheus/promcfg.go: ``namespace``, ``service``,
  ``pod``, ``container``, ``job``, ``endpoint`` from the Kubernetes service discovery labels), then
  each monitor's own relabelings as rendered. Targets carry the discovery labels Kubernetes gives
  the pod behind them, its labels taken from the rendered pod template.
- ``annotations``: ``metrics.scrapeAnnotations`` (no monitors) and a pod job that keeps pods by
  their rendered ``prometheus.io/scrape`` annotation, takes the path from ``prometheus.io/path``,
  and adds exactly the relabelings docs/observability.md gives (with no labelmap: the docs'
  snippet must be enough on its own).
"""

from __future__ import annotations

import math
import re
import shutil
import time

import pytest
import yaml
from pathlib import Path

from devstack.stack import Stack
from devstack.procs import free_port
from observability import dashboard
from observability.rules import REPO_ROOT
from tests.observability.chart_values import ADAPTER_VALUES

pytestmark = pytest.mark.slow

NAMESPACE = "coe332"
RELEASE = "dev"
MONITORED = {
    "metrics": {
        "serviceMonitor": {"enabled": True},
        "podMonitor": {"enabled": True},
        "prometheusRule": {"enabled": True},
    },
    "autoscaling": {"mode": "keda"},
    "redis": {"exporter": {"enabled": True}},
}
ANNOTATED = {
    "metrics": {"scrapeAnnotations": True, "prometheusRule": {"enabled": True}},
    "autoscaling": {"mode": "keda", "scrapedWithoutServiceMonitor": True},
    "redis": {"exporter": {"enabled": True}},
}


def _render(values: dict) -> list[dict]:
    from tests.deploy.manifests import render_objects

    return render_objects(values, name=RELEASE, namespace=NAMESPACE)


def _named(objs: list[dict], kind: str, suffix: str) -> dict:
    (found,) = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == f"{RELEASE}-atx-jobqueue{suffix}"]
    return found


def _relabel(rule: dict) -> dict:
    """A monitor's relabeling (camelCase, as the CRDs spell it) as Prometheus config."""
    names = {"sourceLabels": "source_labels", "targetLabel": "target_label"}
    out = {names.get(k, k): v for k, v in rule.items()}
    if "action" in out:
        out["action"] = out["action"].lower()
    return out


def _pod_meta(workload: dict, pod: str, container: str) -> dict[str, str]:
    """The discovery labels of one pod of a rendered workload (its template's labels and annotations)."""
    template = workload["spec"]["template"]["metadata"]
    meta = {"__meta_kubernetes_namespace": NAMESPACE, "__meta_kubernetes_pod_name": pod}
    meta["__meta_kubernetes_pod_container_name"] = container
    for prefix, items in (("label", template.get("labels")), ("annotation", template.get("annotations"))):
        for key, value in (items or {}).items():
            meta[f"__meta_kubernetes_pod_{prefix}_{re.sub('[^a-zA-Z0-9_]', '_', key)}"] = str(value)
    return meta


def _operator_jobs(objs: list[dict], targets: dict[str, list[str]]) -> list[dict]:
    common = [
        {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
        {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
        {"source_labels": ["__meta_kubernetes_pod_container_name"], "target_label": "container"},
    ]
    jobs = []
    for monitor in (o for o in objs if o["kind"] == "ServiceMonitor"):
        component = monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"]
        (service,) = [
            s
            for s in objs
            if s["kind"] == "Service"
            and s["metadata"]["labels"].get("app.kubernetes.io/component") == component
            and any(p["name"] == "metrics" for p in s["spec"]["ports"])
        ]
        workload = next(
            o
            for o in objs
            if o["kind"] in ("Deployment", "StatefulSet")
            and all(
                o["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in service["spec"]["selector"].items()
            )
        )
        (endpoint,) = monitor["spec"]["endpoints"]
        container = next(
            c["name"]
            for c in workload["spec"]["template"]["spec"]["containers"]
            if any(p["name"] == endpoint["port"] for p in c.get("ports", []))
        )
        meta = _pod_meta(workload, f"{workload['metadata']['name']}-0", container)
        meta["__meta_kubernetes_service_name"] = service["metadata"]["name"]
        jobs.append(
            {
                "job_name": f"serviceMonitor/{NAMESPACE}/{monitor['metadata']['name']}/0",
                "metrics_path": endpoint.get("path", "/metrics"),
                "static_configs": [{"targets": targets[component], "labels": meta}],
                "relabel_configs": [
                    *common,
                    {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "service"},
                    {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "job"},
                    {"target_label": "endpoint", "replacement": endpoint["port"]},
                    *(_relabel(r) for r in endpoint.get("relabelings", [])),
                ],
            }
        )
    for monitor in (o for o in objs if o["kind"] == "PodMonitor"):
        workload = _named(objs, "Deployment", "-worker")
        (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
        groups = [
            {"targets": [target], "labels": _pod_meta(workload, f"{RELEASE}-atx-jobqueue-worker-{i}", "worker")}
            for i, target in enumerate(targets["worker"])
        ]
        jobs.append(
            {
                "job_name": f"podMonitor/{NAMESPACE}/{monitor['metadata']['name']}/0",
                "metrics_path": endpoint.get("path", "/metrics"),
                "static_configs": groups,
                "relabel_configs": [
                    *common,
                    {"target_label": "job", "replacement": f"{NAMESPACE}/{monitor['metadata']['name']}"},
                    {"target_label": "endpoint", "replacement": endpoint["port"]},
                    *(_relabel(r) for r in endpoint.get("relabelings", [])),
                ],
            }
        )
    return jobs


def docs_annotation_relabelings() -> list[dict]:
    """The relabelings docs/observability.md tells an annotation-driven pod job to add."""
    text = (REPO_ROOT / "docs" / "observability.md").read_text()
    section = text.split("an annotation job gets it from", 1)[1]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    return yaml.safe_load(block)


def _annotation_job(objs: list[dict], targets: dict[str, list[str]]) -> dict:
    groups = []
    for workload, component, container in (
        (_named(objs, "Deployment", "-api"), "api-metrics", "api"),
        (_named(objs, "StatefulSet", "-redis"), "redis", "exporter"),
        (_named(objs, "Deployment", "-worker"), "worker", "worker"),
    ):
        for i, target in enumerate(targets[component]):
            groups.append({"targets": [target], "labels": _pod_meta(workload, f"{component}-{i}", container)})
    return {
        "job_name": "kubernetes-pods",
        "static_configs": groups,
        "relabel_configs": [
            {
                "source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"],
                "action": "keep",
                "regex": "true",
            },
            {
                "source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_path"],
                "target_label": "__metrics_path__",
                "regex": "(.+)",
            },
            *docs_annotation_relabelings(),
        ],
    }


def _rule_file(objs: list[dict], tmp_path) -> str:
    (rule,) = [o for o in objs if o["kind"] == "PrometheusRule"]
    path = tmp_path / "release-rules.yml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False))
    return str(path)


def _adapter_query(objs: list[dict]) -> str:
    (rule,) = yaml.safe_load(ADAPTER_VALUES.read_text())["rules"]["external"]
    hpa = _render({**MONITORED, "autoscaling": {"mode": "hpa"}})
    (metric,) = next(o for o in hpa if o["kind"] == "HorizontalPodAutoscaler")["spec"]["metrics"]
    labels = {"namespace": NAMESPACE, **metric["external"]["metric"]["selector"]["matchLabels"]}
    return rule["metricsQuery"].replace("<<.LabelMatchers>>", ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())))


def _finite(prom, expr: str) -> bool:
    return any(math.isfinite(float(r["value"][1])) for r in prom.query(expr))


@pytest.mark.parametrize("scrape", ["operator", "annotations"])
def test_the_release_rules_fill_the_dashboard_and_the_scaler_over_a_documented_scrape(
    scrape, redis_server, prometheus_factory, tmp_path
):
    if shutil.which("prometheus-redis-exporter") is None:
        pytest.skip("no prometheus-redis-exporter (make setup installs it)")
    objs = _render(MONITORED if scrape == "operator" else ANNOTATED)
    stack = Stack(tmp_path / "stack", redis_server, env={"LOG_LEVEL": "WARNING"})
    try:
        metrics_port = free_port()
        stack.start_api(API_METRICS_PORT=str(metrics_port))
        stack.start_redis_exporter()
        stack.start_worker(metrics_path="/metrics")
        targets = {
            "api-metrics": [f"127.0.0.1:{metrics_port}"],
            "redis": [f"127.0.0.1:{stack.exporter.port}"],
            "worker": [f"127.0.0.1:{w.port}" for w in stack.workers],
        }
        jobs = _operator_jobs(objs, targets) if scrape == "operator" else [_annotation_job(objs, targets)]
        rule_file = _rule_file(objs, tmp_path)
        prom = prometheus_factory(rule_files=[rule_file], scrape_configs=jobs)
        prom.wait_for_targets_up(3)
        for target in prom.targets():  # each target is labelled as the release's own
            assert (target["labels"].get("namespace"), target["labels"].get("app_kubernetes_io_instance")) == (
                NAMESPACE,
                RELEASE,
            ), target["labels"]

        # what the scaler reads: KEDA's query and the prometheus-adapter rule, for this release
        keda = next(o for o in objs if o["kind"] == "ScaledObject")["spec"]["triggers"][0]["metadata"]["query"]
        jobs_before = [stack.submit("sleep", {"seconds": 0.05}) for _ in range(3)]
        stack.wait_all_final(jobs_before, timeout=60)
        if scrape == "operator":  # the annotation job has no `service` label: the values say to add one
            prom.wait_for(keda, lambda r: len(r) == 1, timeout=20)
            prom.wait_for(_adapter_query(objs), lambda r: len(r) == 1, timeout=20)
        # after the first scrapes, more jobs (failures and 404s too), so that rates have increases
        time.sleep(3)
        more = [stack.submit("sleep", {"seconds": 0.05}) for _ in range(5)]
        stack.wait_all_final(more, timeout=60)
        for _ in range(3):
            stack.status("no-such-job")

        recordings = [r["name"] for g in prom.rule_groups() for r in g["rules"] if r["type"] == "recording"]
        assert len(recordings) == len(
            [r for g in yaml.safe_load(Path(rule_file).read_text())["groups"] for r in g["rules"] if "record" in r]
        )
        optional = {"jobqueue:http_5xx_ratio:rate2m"}  # no value while no 5xx was answered (by design)
        deadline = time.monotonic() + 40
        while True:
            missing = [name for name in recordings if name not in optional and not prom.query(name)]
            if not missing:
                break
            assert time.monotonic() < deadline, f"recording rules without series: {missing}"
            time.sleep(1)

        board = dashboard.build()
        for namespace, release in ((NAMESPACE, RELEASE), (".*", ".*"), (NAMESPACE, ".*")):  # "All" is .*
            queries = {
                title: expr.replace("$namespace", namespace)
                .replace("$release", release)
                .replace("$__rate_interval", "1m")
                for title, expr in dashboard.panel_queries(board).items()
            }
            deadline = time.monotonic() + 30
            while True:
                empty = [title for title, expr in queries.items() if not _finite(prom, expr)]
                if not empty:
                    break
                assert time.monotonic() < deadline, f"panels without data ({namespace}, {release}): {empty}"
                time.sleep(1)
        broken = [(r["name"], r["lastError"]) for g in prom.rule_groups() for r in g["rules"] if r["health"] == "err"]
        assert broken == []
    except Exception:
        print(stack.logs())
        raise
    finally:
        stack.close()
