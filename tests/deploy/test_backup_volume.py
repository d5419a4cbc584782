"""Every claim the chart makes has a pod that mounts it from the install on; the backup volume binds
beside Redis's, and the backup pods run where it is attached.

A claim of a ``WaitForFirstConsumer`` storage class (kind's and most clouds' zonal disks) is neither
provisioned nor bound until a pod that mounts it is scheduled: "delay the binding and provisioning
of a PersistentVolume until a Pod using the PersistentVolumeClaim is created"
(https://kubernetes.io/docs/concepts/storage/storage-classes/#volume-binding-mode). Until then it is
``Pending``, and:

* ``helm install/upgrade --wait`` waits for it: Helm 3's ready checker returns not ready for a PVC
  whose ``status.phase`` is not ``Bound`` (helm/helm pkg/kube/ready.go, ``volumeReady``: "PersistentVolumeClaim
  is not bound"), Helm 4's watcher uses kstatus, whose ``pvcConditions`` is InProgress "PVC is not
  Bound" (kubernetes-sigs/cli-utils pkg/kstatus/status/core.go);
* Argo CD's health of a Pending PVC is Progressing (argoproj/gitops-engine pkg/health/health_pvc.go).

The backup claim (``redis.backup.enabled``) was mounted by the backup CronJob's pods only, the first
of them at the next ``17 * * * *``: an install with backups on failed ``--wait`` (``--atomic``
then uninstalled it) unless an hour mark fell within ``--timeout``. And a claim bound by whichever
node the first backup pod landed on could be in another zone than the Redis volume, which the restore
Job mounts together with it: "volume node affinity conflict", a restore that never starts.

Now the Redis pod mounts the backup claim (read-only) from the start, and the backup pods follow it
to its node (required podAffinity on kubernetes.io/hostname, with Redis's nodeSelector and
tolerations): the claim is ReadWriteOnce, attached to that node.
"""

from __future__ import annotations

import pytest

from tests.deploy.manifests import SCENARIOS, objects_of, pod_spec, render_chart, scenario_objects

BACKUPS = {"redis": {"backup": {"enabled": True}}}
CASES = {f"ci:{s}": None for s in SCENARIOS if s != "restore"}  # restore mode: every pod at 0 on purpose
CASES |= {
    "backups on": BACKUPS,
    "backups on, Redis without a volume": {"redis": {"backup": {"enabled": True}, "persistence": {"enabled": False}}},
}


def _objects(case: str):
    values = CASES[case]
    return scenario_objects(case.removeprefix("ci:")) if values is None else objects_of(render_chart(values))


WORKLOADS = ("Deployment", "StatefulSet", "Job", "CronJob", "Pod")


def _claims_of(obj) -> set[str]:
    if obj["kind"] not in WORKLOADS:
        return set()
    return {
        v["persistentVolumeClaim"]["claimName"]
        for v in pod_spec(obj).get("volumes", [])
        if "persistentVolumeClaim" in v
    }


def _runs_at_install(obj) -> bool:
    """A Deployment or StatefulSet with pods from the install on (a count the chart writes above 0)."""
    return obj["kind"] in ("Deployment", "StatefulSet") and obj["spec"].get("replicas", 0) > 0


@pytest.mark.parametrize("case", CASES)
def test_every_claim_the_chart_makes_is_mounted_from_the_install_on(case):
    objs = _objects(case)
    mounted = set().union(*(_claims_of(o) for o in objs if _runs_at_install(o)))
    for claim in (o for o in objs if o["kind"] == "PersistentVolumeClaim"):
        name = claim["metadata"]["name"]
        users = sorted(
            f"{o['kind']}/{o['metadata']['name']}"
            for o in objs
            if o["kind"] != "PersistentVolumeClaim" and name in _claims_of(o)
        )
        assert name in mounted, (
            f"{case}: PersistentVolumeClaim {name} is mounted only by {users}: under a WaitForFirstConsumer "
            "storage class it stays Pending until one of them runs, and `helm install --wait` / Argo CD wait for it"
        )


def _backup_pod(objs):
    (cronjob,) = [o for o in objs if o["kind"] == "CronJob"]
    return pod_spec(cronjob)


def _redis(objs):
    (redis,) = [o for o in objs if o["kind"] == "StatefulSet"]
    return redis


def test_the_redis_pod_mounts_the_backup_claim_read_only():
    objs = objects_of(render_chart(BACKUPS))
    redis = pod_spec(_redis(objs))
    claim = _backup_pod(objs)["volumes"]
    (backup_claim,) = [v["persistentVolumeClaim"]["claimName"] for v in claim if "persistentVolumeClaim" in v]
    (volume,) = [v for v in redis["volumes"] if v.get("persistentVolumeClaim", {}).get("claimName") == backup_claim]
    assert volume["persistentVolumeClaim"].get("readOnly") is True
    (mount,) = [
        m for c in redis["containers"] if c["name"] == "redis" for m in c["volumeMounts"] if m["name"] == volume["name"]
    ]
    assert mount.get("readOnly") is True  # Redis never writes a snapshot there; the backup pods do


def test_an_existing_backup_claim_is_left_alone():
    """A claim of the user's (redis.backup.existingClaim) is not the chart's to bind: the Redis pod
    does not mount it (were it in another zone, or attached elsewhere, Redis would not start)."""
    objs = objects_of(render_chart({"redis": {"backup": {"enabled": True, "existingClaim": "my-backups"}}}))
    assert "my-backups" not in _claims_of(_redis(objs))
    cronjob = next(o for o in objs if o["kind"] == "CronJob")
    assert "my-backups" in _claims_of(cronjob)
    # and its backup pods are placed as before: Redis does not hold that volume, and it may be in
    # another zone (the way out for a release whose backup volume is: docs/deployment.md)
    assert "affinity" not in pod_spec(cronjob)


def test_backup_pods_run_on_the_redis_pods_node_and_may_go_there():
    placement = {
        "nodeSelector": {"pool": "stateful"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "redis", "effect": "NoSchedule"}],
    }
    objs = objects_of(render_chart({"redis": {"backup": {"enabled": True}, **placement}}))
    redis, backup = _redis(objs), _backup_pod(objs)
    terms = backup["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert any(
        t["topologyKey"] == "kubernetes.io/hostname"
        and all(
            redis["spec"]["template"]["metadata"]["labels"].get(k) == v
            for k, v in t["labelSelector"]["matchLabels"].items()
        )
        for t in terms
    ), terms
    # a node Redis may use only by a toleration or a label is one the backup pods must be allowed on too
    assert backup["nodeSelector"] == pod_spec(redis)["nodeSelector"] == placement["nodeSelector"]
    assert backup["tolerations"] == pod_spec(redis)["tolerations"] == placement["tolerations"]
