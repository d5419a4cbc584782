"""Helm's release lifecycle, applied to the rendered chart: what exists when each hook runs.

Helm (https://helm.sh/docs/topics/charts_hooks/) runs pre-install hooks "after templates are
rendered, but before any resources are created", one weight at a time (then by kind and name), and
waits for a hook Job or Pod to finish; then it creates the release's resources; then post-install
hooks; `helm test` pods run on an installed release. A hook pod whose ServiceAccount, Secret,
ConfigMap, claim or pull secret Helm has not created yet never starts (the ServiceAccount admission
plugin rejects it; a missing claim keeps it Pending), and the install times out after --timeout.
Upgrades are the same with the previous revision's objects in place.

Helm also gives a hook without a delete policy the default `before-hook-creation` ("If no hook
deletion policy annotation is specified, the before-hook-creation behavior applies by default"),
and never updates a hook as part of the release: an object holding data must not be a hook.
"""

from __future__ import annotations

import pytest

from tests.deploy.manifests import SCENARIOS, WORKLOADS, pod_spec, scenario_objects

HOOK = "helm.sh/hook"
# Helm's install order of kinds (pkg/release/util/kind_sorter.go), enough for this chart's kinds
KIND_ORDER = [
    "Namespace",
    "NetworkPolicy",
    "ResourceQuota",
    "LimitRange",
    "PodSecurityPolicy",
    "PodDisruptionBudget",
    "ServiceAccount",
    "Secret",
    "SecretList",
    "ConfigMap",
    "StorageClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleList",
    "ClusterRoleBinding",
    "ClusterRoleBindingList",
    "Role",
    "RoleList",
    "RoleBinding",
    "RoleBindingList",
    "Service",
    "DaemonSet",
    "Pod",
    "ReplicationController",
    "ReplicaSet",
    "Deployment",
    "HorizontalPodAutoscaler",
    "StatefulSet",
    "Job",
    "CronJob",
    "IngressClass",
    "Ingress",
    "APIService",
]
# Upgrades where the previous revision lacks objects the new one adds (review finding 2.7b: an
# upgrade that turns persistence on), besides every scenario upgraded to itself.
UPGRADES = [(s, s) for s in SCENARIOS] + [
    ("persistence-off", "default"),
    ("default", "class-cluster"),
    ("default", "monitoring-on"),
    ("monitoring-on", "restore"),
]


def _hooks(obj) -> set[str]:
    value = (obj["metadata"].get("annotations") or {}).get(HOOK, "")
    return {h.strip() for h in value.split(",") if h.strip()}


def _key(obj) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"]


def _order(obj) -> tuple:
    weight = int((obj["metadata"].get("annotations") or {}).get("helm.sh/hook-weight", "0"))
    kind = KIND_ORDER.index(obj["kind"]) if obj["kind"] in KIND_ORDER else len(KIND_ORDER)
    return weight, kind, obj["metadata"]["name"]


def needs(obj) -> set[tuple[str, str]]:
    """The namespaced objects a pod of this workload needs before it can start."""
    spec = pod_spec(obj)
    out = set()
    if spec.get("serviceAccountName", "default") != "default":
        out.add(("ServiceAccount", spec["serviceAccountName"]))
    out |= {("Secret", s["name"]) for s in spec.get("imagePullSecrets", [])}
    for volume in spec.get("volumes", []):
        if "secret" in volume and not volume["secret"].get("optional"):
            out.add(("Secret", volume["secret"]["secretName"]))
        if "configMap" in volume and not volume["configMap"].get("optional"):
            out.add(("ConfigMap", volume["configMap"]["name"]))
        if "persistentVolumeClaim" in volume:
            out.add(("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"]))
    for c in spec.get("initContainers", []) + spec["containers"]:
        for source in c.get("envFrom", []):
            for kind, field in (("Secret", "secretRef"), ("ConfigMap", "configMapRef")):
                if field in source and not source[field].get("optional"):
                    out.add((kind, source[field]["name"]))
        for item in c.get("env", []):
            for kind, field in (("Secret", "secretKeyRef"), ("ConfigMap", "configMapKeyRef")):
                ref = item.get("valueFrom", {}).get(field)
                if ref and not ref.get("optional"):
                    out.add((kind, ref["name"]))
    return out


def run_phase(objs, phase: str, existing: set, rendered: set) -> list[str]:
    """Create the hooks of one phase in Helm's order; report every hook pod that would find an object
    the chart renders missing. (Objects the chart does not render, like an existingSecret, are the
    operator's and assumed present.)"""
    problems = []
    for hook in sorted((o for o in objs if phase in _hooks(o)), key=_order):
        existing.add(_key(hook))
        if hook["kind"] in WORKLOADS:
            missing = {n for n in needs(hook) if n in rendered and n not in existing}
            if missing:
                problems.append(
                    f"{phase} hook {hook['kind']}/{hook['metadata']['name']} (weight "
                    f"{_order(hook)[0]}) needs {sorted(missing)}, which Helm has not created yet"
                )
            policy = (hook["metadata"].get("annotations") or {}).get(
                "helm.sh/hook-delete-policy", "before-hook-creation"
            )
            if "hook-succeeded" in policy:
                existing.discard(_key(hook))
    return problems


def release_objects(objs) -> set:
    return {_key(o) for o in objs if not _hooks(o)}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_install_hooks_find_what_they_need(scenario):
    objs = scenario_objects(scenario)
    rendered = {_key(o) for o in objs}
    existing: set = set()
    problems = run_phase(objs, "pre-install", existing, rendered)
    existing |= release_objects(objs)
    problems += run_phase(objs, "post-install", existing, rendered)
    problems += run_phase(objs, "test", existing, rendered)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(("before", "after"), UPGRADES, ids=[f"{a}->{b}" for a, b in UPGRADES])
def test_upgrade_hooks_find_what_they_need(before, after):
    objs = scenario_objects(after)
    rendered = {_key(o) for o in objs}
    existing = release_objects(scenario_objects(before))
    problems = run_phase(objs, "pre-upgrade", existing, rendered)
    existing |= release_objects(objs)
    problems += run_phase(objs, "post-upgrade", existing, rendered)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_nothing_holding_data_is_a_hook(scenario):
    """A claim or a kept Secret as a hook is deleted and recreated empty by the default
    before-hook-creation policy when the hook runs again (a reinstall), is never created by an
    upgrade (pre-install only) and never updated with the release."""
    for obj in scenario_objects(scenario):
        annotations = obj["metadata"].get("annotations") or {}
        holds_data = obj["kind"] == "PersistentVolumeClaim" or annotations.get("helm.sh/resource-policy") == "keep"
        if holds_data:
            assert not _hooks(obj), (
                f"{obj['kind']}/{obj['metadata']['name']} holds data but is a {annotations[HOOK]} hook"
            )


def test_the_model_sees_a_hook_that_needs_a_release_object():
    """The check itself: a pre-install Job using the release's ServiceAccount is reported."""
    sa = {"kind": "ServiceAccount", "metadata": {"name": "demo"}}
    job = {
        "kind": "Job",
        "metadata": {"name": "load", "annotations": {HOOK: "pre-install"}},
        "spec": {"template": {"spec": {"serviceAccountName": "demo", "containers": [{"name": "c"}]}}},
    }
    problems = run_phase([sa, job], "pre-install", set(), {_key(sa), _key(job)})
    assert problems and "ServiceAccount" in problems[0]
