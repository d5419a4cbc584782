"""The upgrades the docs describe, checked against the fields the API server never lets an update
change: a StatefulSet's spec other than replicas, template, updateStrategy,
persistentVolumeClaimRetentionPolicy, minReadySeconds and ordinals (apps/validation); any
workload's selector; a Job's pod template; a PersistentVolumeClaim's spec other than
resources.requests, whose storage request may grow but never shrink (core/validation:
"field can not be less than status.capacity" once a resize has completed). Such an upgrade fails half-applied (`UPGRADE FAILED: ... Forbidden`, the
release `failed`), so the chart must not need one on an ordinary upgrade, and the docs must say
which values are fixed at install and what to do instead."""

from __future__ import annotations

import pytest

from devstack.paths import REPO_ROOT
from tests.deploy.manifests import render_objects

STATEFULSET_MUTABLE = {
    "replicas",
    "template",
    "updateStrategy",
    "persistentVolumeClaimRetentionPolicy",
    "minReadySeconds",
    "ordinals",
}
RESTORE = {"redis": {"restore": {"enabled": True, "file": "dump-20260101T001700Z.rdb"}}}
MONITORED = {"metrics": {"serviceMonitor": {"enabled": True}}}


def refused_changes(before: list[dict], after: list[dict]) -> list[str]:
    old = {(o["kind"], o["metadata"]["name"]): o for o in before}
    refused = []
    for new in after:
        kind, name = new["kind"], new["metadata"]["name"]
        was = old.get((kind, name))
        if was is None or kind not in {"StatefulSet", "Deployment", "Job", "PersistentVolumeClaim"}:
            continue
        spec, was_spec = new["spec"], was["spec"]
        if kind == "StatefulSet":
            refused += [
                f"StatefulSet {name} spec.{field}"
                for field in sorted(set(spec) | set(was_spec))
                if field not in STATEFULSET_MUTABLE and spec.get(field) != was_spec.get(field)
            ]
        if kind in {"Deployment", "StatefulSet"} and spec["selector"] != was_spec["selector"]:
            refused.append(f"{kind} {name} spec.selector")
        if kind == "Job" and spec["template"] != was_spec["template"]:
            refused.append(f"Job {name} spec.template")
        unchanged = {k: v for k, v in spec.items() if k != "resources"} == {
            k: v for k, v in was_spec.items() if k != "resources"
        }
        if kind == "PersistentVolumeClaim" and not unchanged:
            refused.append(f"PersistentVolumeClaim {name} spec")
        if kind == "PersistentVolumeClaim" and storage_bytes(spec) < storage_bytes(was_spec):
            refused.append(f"PersistentVolumeClaim {name} spec.resources.requests.storage")
    return refused


UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


def storage_bytes(spec: dict) -> float:
    text = str(spec["resources"]["requests"]["storage"])
    number = text.rstrip("KMGTPEikmgtpe")
    return float(number) * UNITS.get(text[len(number) :], 1)


ORDINARY = {
    "a new image tag": ({}, {"image": {"tag": "0.2.0"}}),
    "the API token on": ({}, {"config": {"apiToken": {"enabled": True}}}),
    "NodePort and Ingress": ({}, {"api": {"service": {"type": "NodePort"}, "ingress": {"enabled": True}}}),
    "KEDA on": ({}, {"autoscaling": {"mode": "keda"}, **MONITORED}),
    "backups on": ({}, {"redis": {"backup": {"enabled": True}}}),
    "the exporter on": ({}, {"redis": {"exporter": {"enabled": True}}}),
    "Redis memory": ({}, {"redis": {"resources": {"limits": {"memory": "1Gi"}}, "maxmemory": "700mb"}}),
    "a bigger data claim": ({}, {"data": {"persistence": {"size": "4Gi"}}}),
    "the data volume on": ({"data": {"persistence": {"enabled": False}}}, {}),
    "restore mode on": ({}, RESTORE),
    "restore mode off": (RESTORE, {}),
}


@pytest.mark.parametrize("change", list(ORDINARY))
def test_ordinary_upgrades_change_nothing_the_api_server_refuses(change):
    before, after = ORDINARY[change]
    assert refused_changes(render_objects(before, name="jobs"), render_objects(after, name="jobs")) == []


# values fixed at install: what the API server refuses, and the words of docs/deployment.md that say so
FIXED = {
    "redis.persistence.size": (
        {"redis": {"persistence": {"size": "2Gi"}}},
        "StatefulSet jobs-atx-jobqueue-redis spec.volumeClaimTemplates",
        "kubectl delete statefulset jobs-atx-jobqueue-redis --cascade=orphan",
    ),
    "redis.persistence.storageClass": (
        {"redis": {"persistence": {"storageClass": "cinder-csi"}}},
        "StatefulSet jobs-atx-jobqueue-redis spec.volumeClaimTemplates",
        "`redis.persistence.enabled`, `storageClass` and `size` are the Redis StatefulSet's",
    ),
    "data.persistence.accessModes": (
        {"data": {"persistence": {"accessModes": ["ReadWriteMany"]}}},
        "PersistentVolumeClaim jobs-atx-jobqueue-data spec",
        "`data.persistence.existingClaim=<its name>`",
    ),
    "redis.restore.file": (
        RESTORE,
        "Job jobs-atx-jobqueue-redis-restore spec.template",
        "leave restore mode (step 2), then run step 1 again with the\nright file",
    ),
}


@pytest.mark.parametrize("value", list(FIXED))
def test_values_fixed_at_install_are_documented_with_the_way_out(value):
    after, refused, words = FIXED[value]
    before = RESTORE if value == "redis.restore.file" else {}
    if value == "redis.restore.file":
        after = {"redis": {"restore": {"enabled": True, "file": "dump-20260101T011700Z.rdb"}}}
    assert refused in refused_changes(render_objects(before, name="jobs"), render_objects(after, name="jobs"))
    assert words in (REPO_ROOT / "docs" / "deployment.md").read_text(), (
        f"docs/deployment.md does not say what to do for {value}"
    )


# `helm rollback` re-applies an earlier revision's manifests as stored: each ordinary upgrade run
# backwards. The ones the docs must warn about, with their way out:
ROLLBACK_WARNINGS = {
    # the API server refuses it
    "a bigger data claim": (
        ["PersistentVolumeClaim jobs-atx-jobqueue-data spec.resources.requests.storage"],
        "roll back with `helm upgrade` keeping the new `data.persistence.size`",
    ),
    # accepted: Redis, API and workers go to 0, and the restore Job runs again (restore.sh then
    # refuses the snapshot it already restored: test_redis_backup_restore.py), so an outage
    "restore mode off": ([], "never roll back to a revision in restore mode"),
}


@pytest.mark.parametrize("change", list(ORDINARY))
def test_rollbacks_of_ordinary_upgrades_are_accepted_or_documented(change):
    before, after = ORDINARY[change]
    refused = refused_changes(render_objects(after, name="jobs"), render_objects(before, name="jobs"))
    expected, words = ROLLBACK_WARNINGS.get(change, ([], None))
    assert refused == expected
    if words:
        text = " ".join((REPO_ROOT / "docs" / "deployment.md").read_text().split())
        assert words in text, f"docs/deployment.md does not warn about rolling back {change}"
