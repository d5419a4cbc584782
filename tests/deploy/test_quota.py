"""What the class-cluster install asks of a namespace's ResourceQuota, as docs/first-install.md says.

A ResourceQuota on `requests.cpu`, `limits.memory`, ... refuses a pod that would take the namespace
over it, and refuses outright a pod with a container that sets no such value when no LimitRange
default fills it in (https://kubernetes.io/docs/concepts/policy/resource-quotas/). A pod's usage is
the larger of its containers' sum and its largest init container. A rolling update adds a pod per
Deployment before it removes one (`maxSurge` 25%, rounded up: one for the chart's Deployments);
refused by the quota, the new ReplicaSet only logs FailedCreate "exceeded quota" and the rollout
never progresses. So the docs give the steady footprint, the peak of an upgrade, and the claims,
and how `api.strategy` / `worker.strategy` bring the peak down to the steady footprint.
"""

from __future__ import annotations

import math

from devstack.paths import REPO_ROOT
from tests.deploy.manifests import (
    WORKLOADS,
    containers,
    one,
    pod_spec,
    render_objects,
    scenario_objects,
    scenario_values,
)

UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9}


def quantity(text) -> float:
    text = str(text)
    for unit in ("Ki", "Mi", "Gi", "m", "k", "M", "G"):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * UNITS[unit]
    return float(text)


def pod_usage(obj: dict) -> dict[str, float]:
    spec = pod_spec(obj)
    usage = {}
    for kind in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            key = f"{kind}.{resource}"
            main = sum(quantity(c["resources"][kind][resource]) for c in spec["containers"])
            init = max((quantity(c["resources"][kind][resource]) for c in spec.get("initContainers", [])), default=0)
            usage[key] = max(main, init)
    return usage


def surge_pods(deployment: dict) -> int:
    """Pods a rollout adds above `replicas` (kubernetes pkg/controller/deployment: rolling.go adds at
    most maxSurge, resolved by util.ResolveFenceposts with the percentage rounded up, default 25%;
    recreate.go scales the old ReplicaSets to 0 and creates no new pod while an old one still runs,
    and quota admission counts a terminating pod until its grace period has passed:
    pkg/quota/v1/evaluator/core/pods.go QuotaV1Pod)."""
    replicas = deployment["spec"].get("replicas", 1)
    strategy = deployment["spec"].get("strategy") or {}
    if strategy.get("type") == "Recreate":
        return 0
    surge = (strategy.get("rollingUpdate") or {}).get("maxSurge", "25%")
    if isinstance(surge, str):
        return math.ceil(replicas * int(surge.rstrip("%")) / 100)
    return surge


def footprint(objs: list[dict]) -> dict[str, dict[str, float]]:
    steady = dict.fromkeys(("requests.cpu", "requests.memory", "limits.cpu", "limits.memory"), 0.0)
    surge = dict(steady)
    for obj in objs:
        if obj["kind"] not in ("Deployment", "StatefulSet"):
            continue
        usage = pod_usage(obj)
        replicas = obj["spec"].get("replicas", 1)
        for key, value in usage.items():
            steady[key] += replicas * value
            if obj["kind"] == "Deployment" and replicas:
                surge[key] += surge_pods(obj) * value
    claims = [o for o in objs if o["kind"] == "PersistentVolumeClaim"]
    storage = sum(quantity(c["spec"]["resources"]["requests"]["storage"]) for c in claims)
    for sts in (o for o in objs if o["kind"] == "StatefulSet"):
        for template in sts["spec"].get("volumeClaimTemplates", []):
            claims.append(template)
            storage += sts["spec"].get("replicas", 1) * quantity(template["spec"]["resources"]["requests"]["storage"])
    peak = {key: steady[key] + surge[key] for key in steady}
    return {"steady": steady, "peak": peak, "claims": {"count": len(claims), "storage": storage}}


def test_every_pod_the_chart_makes_sets_what_a_quota_counts():
    for obj in scenario_objects("class-cluster"):
        if obj["kind"] in WORKLOADS:
            for c in containers(obj):
                for kind in ("requests", "limits"):
                    assert {"cpu", "memory"} <= set(c["resources"][kind]), (obj["metadata"]["name"], c["name"])


def cpu(value: float) -> str:
    return f"{value:g}"


def mem(value: float) -> str:
    return f"{value / 2**30:g} GiB" if value >= 2**30 else f"{value / 2**20:g} MiB"


def test_first_install_gives_the_class_cluster_footprint():
    found = footprint(scenario_objects("class-cluster"))
    text = " ".join((REPO_ROOT / "docs" / "first-install.md").read_text().split())
    steady, peak, claims = found["steady"], found["peak"], found["claims"]
    row = (
        f"| running | {cpu(steady['requests.cpu'])} | {mem(steady['requests.memory'])} | "
        f"{cpu(steady['limits.cpu'])} | {mem(steady['limits.memory'])} |"
    )
    upgrade = (
        f"| during an upgrade | {cpu(peak['requests.cpu'])} | {mem(peak['requests.memory'])} | "
        f"{cpu(peak['limits.cpu'])} | {mem(peak['limits.memory'])} |"
    )
    assert row in text, row
    assert upgrade in text, upgrade
    assert f"{claims['count']} claims of {mem(claims['storage'])} in all" in text


def test_first_install_gives_what_a_test_pod_and_each_added_worker_take():
    objs = {
        o["metadata"]["labels"]["app.kubernetes.io/component"]: o
        for o in scenario_objects("class-cluster")
        if o["kind"] in WORKLOADS
    }
    text = " ".join((REPO_ROOT / "docs" / "first-install.md").read_text().split())
    for component, words in (("test", "`helm test` adds a pod of"), ("worker", "each worker KEDA adds,")):
        u = pod_usage(objs[component])
        said = (
            f"{words} {cpu(u['requests.cpu'])} CPU and {mem(u['requests.memory'])} "
            f"(limits {cpu(u['limits.cpu'])} and {mem(u['limits.memory'])})"
        )
        assert said in text, said


def test_first_install_gives_the_strategies_that_need_no_surge_room():
    """The docs' answer to a quota without room for the rollout's extra pods: with both strategies
    Recreate the peak of an upgrade is the running footprint, and the wait it costs is the worker's
    termination grace, as rendered."""
    text = " ".join((REPO_ROOT / "docs" / "first-install.md").read_text().split())
    flags = "--set api.strategy.type=Recreate --set worker.strategy.type=Recreate"
    assert flags in text
    values = scenario_values("class-cluster")
    values["api"] = {**values["api"], "strategy": {"type": "Recreate"}}
    values["worker"] = {**values["worker"], "strategy": {"type": "Recreate"}}
    objs = render_objects(values)
    found = footprint(objs)
    assert found["peak"] == found["steady"]
    assert found["peak"] != footprint(scenario_objects("class-cluster"))["peak"]
    grace = one(objs, "Deployment", "worker")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert f"`terminationGracePeriodSeconds` ({grace} s by default)" in text


def test_rolling_update_without_surge_has_no_peak_either():
    found = footprint(scenario_objects("persistence-off"))
    assert found["peak"] == found["steady"]
