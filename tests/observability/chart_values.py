"""What the chart tells KEDA, the HPA's adapter and Prometheus, as the e2e test needs it.

Rendered with the real Helm engine (tests/deploy/manifests.py, helm-python-sdk) for the test's
namespace: the ScaledObject's query, threshold, activation and replica bounds are exactly what
KEDA would receive, and the ServiceMonitor/PodMonitor say how the API and workers are scraped.
The prometheus-adapter rule (helm/prometheus-adapter-values.yaml) is the HPA-mode equivalent.
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml

from observability.rules import REPO_ROOT
from observability.simulate_autoscaling import VALUES_FILE, Policy, load_values

ADAPTER_VALUES = REPO_ROOT / "helm" / "prometheus-adapter-values.yaml"


@dataclass(frozen=True)
class Autoscaling:
    query: str  # the PromQL KEDA runs, rendered for the namespace
    queue_name: str
    policy: Policy


@dataclass(frozen=True)
class Scrape:
    path: str
    port: str


def _render(values: dict, namespace: str) -> list[dict]:
    from tests.deploy.manifests import render_objects

    # release "atx-jobqueue": the app_kubernetes_io_instance tests/observability/monitors.py gives
    return render_objects(values, namespace=namespace, name="atx-jobqueue")


def _one(objs: list[dict], kind: str, name_part: str = "") -> dict:
    found = [o for o in objs if o["kind"] == kind and name_part in o["metadata"]["name"]]
    assert len(found) == 1, f"expected one {kind} *{name_part}*, got {[o['metadata']['name'] for o in found]}"
    return found[0]


def autoscaling(namespace: str) -> Autoscaling:
    """The chart's default autoscaling with mode keda, as the rendered ScaledObject states it."""
    scaled = _one(
        _render({"autoscaling": {"mode": "keda"}, "metrics": {"serviceMonitor": {"enabled": True}}}, namespace),
        "ScaledObject",
    )["spec"]
    (trigger,) = scaled["triggers"]
    assert trigger["type"] == "prometheus"
    meta = trigger["metadata"]
    behavior = scaled.get("advanced", {}).get("horizontalPodAutoscalerConfig", {}).get("behavior", {})
    policy = Policy(
        threshold=float(meta["threshold"]),
        activation_threshold=float(meta.get("activationThreshold", 0)),
        min_replicas=int(scaled.get("minReplicaCount", 0)),
        max_replicas=int(scaled.get("maxReplicaCount", 100)),
        polling_interval=int(scaled.get("pollingInterval", 30)),
        cooldown_period=int(scaled.get("cooldownPeriod", 300)),
        scale_down_stabilization=int(behavior.get("scaleDown", {}).get("stabilizationWindowSeconds", 300)),
    )
    queue = (load_values(VALUES_FILE).get("config") or {}).get("queueName", "jobs")
    return Autoscaling(meta["query"], queue, policy)


def scrape(namespace: str) -> dict[str, Scrape]:
    """How the chart's monitors scrape the API (ServiceMonitor) and the workers (PodMonitor)."""
    objs = _render({"metrics": {"serviceMonitor": {"enabled": True}, "podMonitor": {"enabled": True}}}, namespace)
    api = _one(objs, "ServiceMonitor", "api")["spec"]["endpoints"]
    worker = _one(objs, "PodMonitor", "worker")["spec"]["podMetricsEndpoints"]
    assert len(api) == 1 and len(worker) == 1
    return {
        "api": Scrape(api[0].get("path", "/metrics"), api[0]["port"]),
        "worker": Scrape(worker[0].get("path", "/metrics"), worker[0]["port"]),
    }


def adapter_query(namespace: str, queue: str) -> str:
    """The prometheus-adapter external rule's query, with the matchers the HPA's selector gives it."""
    (rule,) = yaml.safe_load(ADAPTER_VALUES.read_text())["rules"]["external"]
    objs = _render({"autoscaling": {"mode": "hpa"}, "metrics": {"serviceMonitor": {"enabled": True}}}, namespace)
    (metric,) = _one(objs, "HorizontalPodAutoscaler")["spec"]["metrics"]
    labels = metric["external"]["metric"]["selector"]["matchLabels"]
    assert labels["queue"] == queue
    matchers = ",".join([f'namespace="{namespace}"', *(f'{k}="{v}"' for k, v in sorted(labels.items()))])
    return rule["metricsQuery"].replace("<<.LabelMatchers>>", matchers)
