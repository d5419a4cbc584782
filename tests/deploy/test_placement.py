"""Placement of the pods that share a ReadWriteOnce volume, and what `kubectl drain` does to them.

A ReadWriteOnce volume attaches to one node: a second pod on another node waits in
ContainerCreating with "Multi-Attach error" (the attach/detach controller). So every pod that mounts
such a claim, the loader included, must be bound to one node by a *required* rule. The scheduler
does not do it by itself (review findings 2.2, 2.3: the loader landed elsewhere on upgrades and in
k8s/ and never ran).

The drain model: every pod starts on node X; X is cordoned; pods are evicted one at a time, each
eviction allowed only if every PodDisruptionBudget selecting the pod keeps enough healthy pods; a
Deployment/StatefulSet pod gets a replacement that the scheduler places on another node only if its
required podAffinity is met there, or, for a term no running pod matches anywhere, if the pod
matches the term itself (the scheduler's exception for the first pod of a group,
pkg/scheduler/framework/plugins/interpodaffinity/filtering.go). The drain must empty X and every
replacement must be scheduled in the end (review finding 2.4: required co-location plus budgets
left the drain stuck forever with the service down).
"""

from __future__ import annotations

import math

import pytest

from tests.deploy.manifests import SCENARIOS, k8s_objects, pod_spec, scenario_objects

SOURCES = [f"chart:{s}" for s in SCENARIOS] + ["k8s:test", "k8s:prod"]
HOSTNAME = "kubernetes.io/hostname"


def _objects(source):
    kind, name = source.split(":")
    return scenario_objects(name) if kind == "chart" else k8s_objects(name)


def _template_labels(obj) -> dict:
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    if obj["kind"] == "Pod":
        return obj["metadata"]["labels"]
    return obj["spec"]["template"]["metadata"]["labels"]


def _replicas(obj) -> int:
    if obj["kind"] in ("Deployment", "StatefulSet"):
        return obj["spec"].get("replicas", 2)  # no count: an autoscaler owns it; 2 is the interesting case
    if obj["kind"] == "CronJob":
        return 0 if obj["spec"].get("suspend") else 1
    if obj["kind"] == "Job":
        return 1
    return 0  # the helm test Pod mounts no claim and runs only on `helm test`


def _matches(selector: dict, labels: dict) -> bool:
    if not all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        value, op = labels.get(expr["key"]), expr["operator"]
        if (op == "In" and value not in expr["values"]) or (op == "NotIn" and value in expr["values"]):
            return False
        if (op == "Exists" and expr["key"] not in labels) or (op == "DoesNotExist" and expr["key"] in labels):
            return False
    return True


def _required_terms(obj) -> list[dict]:
    affinity = (pod_spec(obj).get("affinity") or {}).get("podAffinity") or {}
    return affinity.get("requiredDuringSchedulingIgnoredDuringExecution") or []


def rwo_claims(objs) -> dict[str, list[dict]]:
    """ReadWriteOnce claim name -> the workloads (with pods) that mount it."""
    access = {o["metadata"]["name"]: o["spec"]["accessModes"] for o in objs if o["kind"] == "PersistentVolumeClaim"}
    users: dict[str, list[dict]] = {}
    for obj in objs:
        if obj["kind"] not in ("Deployment", "StatefulSet", "Job", "CronJob") or _replicas(obj) == 0:
            continue
        claims = [
            v["persistentVolumeClaim"]["claimName"]
            for v in pod_spec(obj).get("volumes", [])
            if "persistentVolumeClaim" in v
        ]
        if obj["kind"] == "StatefulSet":
            claims += [
                f"{t['metadata']['name']}-{obj['metadata']['name']}-{i}"
                for t in obj["spec"].get("volumeClaimTemplates", [])
                for i in range(_replicas(obj))
            ]
        for claim in claims:
            # a claim the manifests do not create (existingClaim, a StatefulSet's) counts as ReadWriteOnce
            if access.get(claim, ["ReadWriteOnce"]) == ["ReadWriteOnce"]:
                users.setdefault(claim, []).append(obj)
    return users


@pytest.mark.parametrize("source", SOURCES)
def test_every_pod_of_a_readwriteonce_claim_is_bound_to_one_node(source):
    for claim, workloads in rwo_claims(_objects(source)).items():
        pods = [w for w in workloads for _ in range(_replicas(w))]
        if len(pods) < 2 or all(w["kind"] == "StatefulSet" for w in workloads):
            continue  # one pod (a StatefulSet's claims are per pod)

        def follows(w, other) -> bool:
            terms = [t for t in _required_terms(w) if t.get("topologyKey") == HOSTNAME]
            return any(_matches(t["labelSelector"], _template_labels(other)) for t in terms)

        for w in workloads:
            others = [o for o in workloads if o is not w] + ([w] if _replicas(w) > 1 else [])
            for other in others:
                # data.shell's pod follows the API and workers by their rule; they need not follow
                # it (their pod templates stay as they were); the backup pods follow the Redis pod,
                # which mounts the backup claim from the install on (test_backup_volume.py)
                component = _template_labels(other).get("app.kubernetes.io/component")
                one_way = component in ("data-shell", "redis-backup") and follows(other, w)
                assert follows(w, other) or one_way, (
                    f"{source}: {w['kind']}/{w['metadata']['name']} and {other['kind']}/{other['metadata']['name']} mount "
                    f"the ReadWriteOnce claim {claim}, and no required podAffinity puts them on one node"
                )


class Cluster:
    """Pods on nodes, PodDisruptionBudgets, and the scheduler's required podAffinity rule."""

    def __init__(self, objs):
        self.pdbs = [o for o in objs if o["kind"] == "PodDisruptionBudget"]
        self.pods = []  # dicts: owner, labels, terms, node (None: pending)
        for obj in objs:
            if obj["kind"] in ("Deployment", "StatefulSet"):
                for _ in range(_replicas(obj)):
                    self.pods.append(
                        {"owner": obj, "labels": _template_labels(obj), "terms": _required_terms(obj), "node": "X"}
                    )

    def _budget_allows(self, pod) -> bool:
        for pdb in self.pdbs:
            if not _matches(pdb["spec"]["selector"], pod["labels"]):
                continue
            selected = [p for p in self.pods if _matches(pdb["spec"]["selector"], p["labels"])]
            healthy = sum(1 for p in selected if p["node"] is not None)
            expected = len(selected)
            spec = pdb["spec"]
            if "maxUnavailable" in spec:
                value = spec["maxUnavailable"]
                allowed_down = math.floor(expected * int(value[:-1]) / 100) if isinstance(value, str) else value
                desired = expected - allowed_down
            else:
                value = spec["minAvailable"]
                desired = math.ceil(expected * int(value[:-1]) / 100) if isinstance(value, str) else value
            if healthy - 1 < desired:
                return False
        return True

    def _schedulable(self, pod, node: str) -> bool:
        for term in pod["terms"]:
            if term.get("topologyKey") != HOSTNAME:
                continue
            running = [p for p in self.pods if p["node"] is not None and _matches(term["labelSelector"], p["labels"])]
            if any(p["node"] == node for p in running):
                continue
            if not running and _matches(term["labelSelector"], pod["labels"]):
                continue  # the first pod of its group
            return False
        return True

    def schedule(self, nodes=("Y", "Z")) -> None:
        progress = True
        while progress:
            progress = False
            for pod in self.pods:
                if pod["node"] is None:
                    for node in nodes:
                        if self._schedulable(pod, node):
                            pod["node"], progress = node, True
                            break

    def drain(self, node: str = "X") -> list[str]:
        """Evict every pod of ``node``; the names of the pods left when no eviction is allowed."""
        while True:
            on_node = [p for p in self.pods if p["node"] == node]
            if not on_node:
                return []
            evictable = [p for p in on_node if self._budget_allows(p)]
            if not evictable:
                return [p["owner"]["metadata"]["name"] for p in on_node]
            evictable[0]["node"] = None  # evicted; its controller makes a pending replacement
            self.schedule()


@pytest.mark.parametrize("source", SOURCES)
def test_a_node_drain_completes_and_every_pod_comes_back(source):
    cluster = Cluster(_objects(source))
    stuck = cluster.drain()
    assert not stuck, f"{source}: kubectl drain never evicts {stuck}: budgets refuse while replacements cannot schedule"
    cluster.schedule()
    pending = [p["owner"]["metadata"]["name"] for p in cluster.pods if p["node"] is None]
    assert not pending, f"{source}: after the drain these pods never schedule: {pending}"


def test_the_drain_model_sees_a_budget_deadlock():
    """The model itself: two co-located workers with maxUnavailable 1 cannot leave node X."""
    labels = {"app": "w"}
    term = {"topologyKey": HOSTNAME, "labelSelector": {"matchLabels": labels}}
    worker = {
        "kind": "Deployment",
        "metadata": {"name": "w"},
        "spec": {
            "replicas": 2,
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}},
                    "containers": [],
                },
            },
        },
    }
    pdb = {
        "kind": "PodDisruptionBudget",
        "metadata": {"name": "w"},
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": labels}},
    }
    assert Cluster([worker, pdb]).drain() == ["w"]
    assert Cluster([worker]).drain() == []
