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
- ``annotations-labelmap``: the same job with the usual ``labelmap`` of every pod label first (the
  docs' other way to the release label), so the series carry the pods' other labels too.

The scaler's side is read as KEDA and prometheus-adapter read it: the rendered ScaledObject's query,
and the adapter rule of helm/prometheus-adapter-values.yaml with the rendered HPA's selector (its
``seriesQuery`` lists the metric, its ``metricsQuery`` answers it). The annotation scrapes set no
``service`` label (a pod job has no Service to name), so a scaler selecting
``service="<release>-atx-jobqueue-api"`` saw nothing there and KEDA ran its fallback replicas.
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
from devstack.procs import free_port, wait_http
from observability import dashboard
from observability.rules import REPO_ROOT
from tests.observability.chart_values import ADAPTER_VALUES
from tests.support.refusals import send_refused

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


def _annotation_job(objs: list[dict], targets: dict[str, list[str]], labelmap: bool = False) -> dict:
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
            *([{"action": "labelmap", "regex": "__meta_kubernetes_pod_label_(.+)"}] if labelmap else []),
            *docs_annotation_relabelings(),
        ],
    }


def _rule_file(objs: list[dict], tmp_path) -> str:
    (rule,) = [o for o in objs if o["kind"] == "PrometheusRule"]
    path = tmp_path / "release-rules.yml"
    path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}, sort_keys=False))
    return str(path)


def _adapter_rule(text: str | None = None) -> dict:
    (rule,) = yaml.safe_load(text or ADAPTER_VALUES.read_text())["rules"]["external"]
    return rule


def _hpa_selector(values: dict, chart: Path | None = None) -> dict[str, str]:
    from tests.deploy.manifests import render_objects

    extra = {"chart": chart} if chart else {}
    hpa = render_objects(
        {**values, "autoscaling": {**values["autoscaling"], "mode": "hpa"}}, name=RELEASE, namespace=NAMESPACE, **extra
    )
    (metric,) = next(o for o in hpa if o["kind"] == "HorizontalPodAutoscaler")["spec"]["metrics"]
    return metric["external"]["metric"]["selector"]["matchLabels"]


def _adapter_query(rule: dict, selector: dict[str, str]) -> str:
    """The metricsQuery as prometheus-adapter fills it for the HPA: the selector's requirements, then
    the namespace of the HPA (pkg/naming/metrics_query.go, BuildExternal)."""
    labels = {**selector, "namespace": NAMESPACE}
    return rule["metricsQuery"].replace("<<.LabelMatchers>>", ",".join(f'{k}="{v}"' for k, v in labels.items()))


def _backlog(prom, expr: str, expected: float) -> None:
    """``expr`` answers one series of value ``expected`` (what the scaler divides by its threshold)."""
    prom.wait_for(expr, lambda r: len(r) == 1 and float(r[0]["value"][1]) == expected, timeout=30)


def _the_previous_scalers_answer_too(prom, rule: dict, selector: dict[str, str], values: dict, tmp_path) -> None:
    """While `helm upgrade` and the adapter's upgrade happen one after the other, each old piece
    meets a new one: the previous chart's query and HPA selector (on `service`), the previous
    adapter rule (grouped by `service`). Over the ServiceMonitor's series, which carry both labels,
    every pairing answers the backlog (docs/deployment.md, Upgrade)."""
    import subprocess

    from tests.deploy.manifests import chart_at
    from tests.deploy.test_upgrade_from_previous import PREVIOUS

    chart = chart_at(PREVIOUS, tmp_path)
    old_objs = _render_with(values, chart)
    old_keda = next(o for o in old_objs if o["kind"] == "ScaledObject")["spec"]["triggers"][0]["metadata"]["query"]
    assert "service=" in old_keda, old_keda
    old_rule = _adapter_rule(
        subprocess.run(
            ["git", "-C", str(REPO_ROOT), "show", f"{PREVIOUS}:helm/prometheus-adapter-values.yaml"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    old_selector = _hpa_selector(values, chart)
    assert "service" in old_selector and "app_kubernetes_io_instance" not in old_selector, old_selector
    _backlog(prom, old_keda, 7)
    _backlog(prom, _adapter_query(old_rule, selector), 7)
    _backlog(prom, _adapter_query(rule, old_selector), 7)


def _render_with(values: dict, chart: Path) -> list[dict]:
    from tests.deploy.manifests import render_objects

    return render_objects(values, name=RELEASE, namespace=NAMESPACE, chart=chart)


def _finite(prom, expr: str) -> bool:
    return any(math.isfinite(float(r["value"][1])) for r in prom.query(expr))


@pytest.mark.parametrize("scrape", ["operator", "annotations", "annotations-labelmap"])
def test_the_release_rules_fill_the_dashboard_and_the_scaler_over_a_documented_scrape(
    scrape, redis_server, redis_url, prometheus_factory, tmp_path
):  # redis_url: the session's Redis emptied, so the backlog is this test's jobs alone
    if shutil.which("prometheus-redis-exporter") is None:
        pytest.skip("no prometheus-redis-exporter (make setup installs it)")
    values = MONITORED if scrape == "operator" else ANNOTATED
    objs = _render(values)
    stack = Stack(tmp_path / "stack", redis_server, env={"LOG_LEVEL": "WARNING"})
    try:
        metrics_port = free_port()
        stack.start_api(API_METRICS_PORT=str(metrics_port))
        stack.start_redis_exporter()
        worker_port = free_port()  # its target is listed now; the worker starts after the backlog is read
        targets = {
            "api-metrics": [f"127.0.0.1:{metrics_port}"],
            "redis": [f"127.0.0.1:{stack.exporter.port}"],
            "worker": [f"127.0.0.1:{worker_port}"],
        }
        if scrape == "operator":
            jobs = _operator_jobs(objs, targets)
        else:
            jobs = [_annotation_job(objs, targets, labelmap=scrape == "annotations-labelmap")]
        rule_file = _rule_file(objs, tmp_path)
        prom = prometheus_factory(rule_files=[rule_file], scrape_configs=jobs)

        # what the scaler reads, for this release: a backlog no worker takes yet (7 jobs waiting)
        keda = next(o for o in objs if o["kind"] == "ScaledObject")["spec"]["triggers"][0]["metadata"]["query"]
        rule, selector = _adapter_rule(), _hpa_selector(values)
        waiting = [stack.submit("sleep", {"seconds": 0.05}) for _ in range(7)]
        prom.wait_for_targets_up(2)
        _backlog(prom, keda, 7)
        listed = prom._get("series", **{"match[]": rule["seriesQuery"]})  # the adapter lists the metric
        assert {(s["namespace"], s["app_kubernetes_io_instance"], s["queue"]) for s in listed} == {
            (NAMESPACE, RELEASE, "jobs")
        }, listed
        _backlog(prom, _adapter_query(rule, selector), 7)
        if scrape == "operator":  # the upgrade's in-between: old scaler objects with new ones, and back
            _the_previous_scalers_answer_too(prom, rule, selector, values, tmp_path)

        worker = stack.start_worker(WORKER_METRICS_PORT=str(worker_port))
        worker.port = worker_port
        wait_http(f"http://127.0.0.1:{worker_port}/metrics", worker)
        prom.wait_for_targets_up(3)
        for target in prom.targets():  # each target is labelled as the release's own
            assert (target["labels"].get("namespace"), target["labels"].get("app_kubernetes_io_instance")) == (
                NAMESPACE,
                RELEASE,
            ), target["labels"]
        stack.wait_all_final(waiting, timeout=60)
        _backlog(prom, keda, 0)  # drained: 0, not "no data" (which KEDA would count as a failure)
        _backlog(prom, _adapter_query(rule, selector), 0)
        # after the first scrapes, more jobs (failures and 404s too), so that rates have increases
        time.sleep(3)
        more = [stack.submit("sleep", {"seconds": 0.05}) for _ in range(5)]
        stack.wait_all_final(more, timeout=60)
        for _ in range(3):
            stack.status("no-such-job")
            assert send_refused(stack.url) == 414  # counted by gunicorn's worker, recorded by status and error

        recordings = [r["name"] for g in prom.rule_groups() for r in g["rules"] if r["type"] == "recording"]
        assert len(recordings) == len(
            [r for g in yaml.safe_load(Path(rule_file).read_text())["groups"] for r in g["rules"] if "record" in r]
        )
        optional = {"jobqueue:http_5xx_ratio:rate2m"}  # no value while no 5xx was answered (by design)
        deadline = time.monotonic() + 120
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
            deadline = time.monotonic() + 120
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
