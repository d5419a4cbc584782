"""Argo CD runs the chart's lifecycle itself: it renders with `helm template` and applies the objects,
mapping Helm's annotations onto its own (argo-cd docs/user-guide/helm.md, "Helm Hooks"; the mapping is
gitops-engine's pkg/sync/hook and pkg/sync/hook/helm/type.go).

- Hooks: `pre-install`/`pre-upgrade` become PreSync, `post-install`/`post-upgrade` PostSync. Any
  other `helm.sh/hook` (the chart's `test` pod) is a hook of no phase: never applied, and not part of
  the app's sync status. Everything else is applied in the Sync phase, on every sync.
- `helm.sh/resource-policy: keep` is read as `argocd.argoproj.io/sync-options: Delete=false` (Argo CD
  2.8, argo-cd#13157): kept when the Application is deleted. It does not stop pruning: an object
  that a value change drops from the render is deleted by a pruning sync (argo-cd#17819, open),
  where `helm upgrade` keeps it (pkg/kube/client.go skips deleting a kept object). Only
  `Prune=false` keeps it there.

So an operator who turns backups off under Argo CD with pruning would lose the backup volume and
every snapshot on it, and one who moves the dataset to `data.persistence.existingClaim` (the way out
for an access mode, docs/deployment.md) the old claim. What Helm keeps, Argo CD must keep too.
"""

from __future__ import annotations

import pytest

from devstack.paths import REPO_ROOT
from tests.deploy.manifests import SCENARIOS, render_objects, scenario_objects

HELM_TO_ARGO = {
    "pre-install": "PreSync",
    "pre-upgrade": "PreSync",
    "post-install": "PostSync",
    "post-upgrade": "PostSync",
    "pre-delete": "PreDelete",
    "post-delete": "PostDelete",
}


def annotations(obj: dict) -> dict:
    return obj["metadata"].get("annotations") or {}


def csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def argo_phases(obj: dict) -> list[str]:
    """The phases Argo CD applies ``obj`` in (gitops-engine syncPhases / hook.Types)."""
    ann = annotations(obj)
    if "argocd.argoproj.io/hook" in ann:
        return csv(ann["argocd.argoproj.io/hook"])
    if "helm.sh/hook" in ann:
        if ann["helm.sh/hook"] == "crd-install":
            return ["Sync"]
        return [HELM_TO_ARGO[t] for t in csv(ann["helm.sh/hook"]) if t in HELM_TO_ARGO]
    return ["Sync"]


def sync_options(obj: dict) -> set[str]:
    return set(csv(annotations(obj).get("argocd.argoproj.io/sync-options", "")))


def helm_keeps(obj: dict) -> bool:
    return annotations(obj).get("helm.sh/resource-policy") == "keep"


def argo_prunes(obj: dict) -> bool:
    return "Prune=false" not in sync_options(obj)


def argo_deletes_with_the_app(obj: dict) -> bool:
    return "Delete=false" not in sync_options(obj) and not helm_keeps(obj)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_argo_cd_applies_every_object_but_the_helm_test_pod(scenario):
    """No Helm hook the chart has changes meaning under Argo CD: the test pod is never applied (so a
    sync neither runs it nor waits on it), and every other object is an ordinary Sync object."""
    for obj in scenario_objects(scenario):
        ann = annotations(obj)
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        if "helm.sh/hook" in ann:
            assert ann["helm.sh/hook"] == "test" and argo_phases(obj) == [], name
        else:
            assert argo_phases(obj) == ["Sync"], name


# value changes that drop an object from the render (docs/deployment.md's own steps among them)
DROPPED = {
    "backups off": ({"redis": {"backup": {"enabled": True}}}, {}),
    "restore mode off, backups never on": (
        {"redis": {"restore": {"enabled": True, "file": "dump-20260101T001700Z.rdb"}}},
        {},
    ),
    "the data volume moved to an existing claim": ({}, {"data": {"persistence": {"existingClaim": "jobs-data-rwx"}}}),
    "the Redis password moved to an existing Secret": ({}, {"redis": {"auth": {"existingSecret": "jobs-redis"}}}),
    "the API token moved to an existing Secret": (
        {"config": {"apiToken": {"enabled": True}}},
        {"config": {"apiToken": {"enabled": True, "existingSecret": "jobs-token"}}},
    ),
}


@pytest.mark.parametrize("change", list(DROPPED))
def test_what_helm_keeps_argo_cd_neither_prunes_nor_deletes(change):
    before, after = DROPPED[change]
    old = render_objects(before, name="jobs")
    new = {(o["kind"], o["metadata"]["name"]) for o in render_objects(after, name="jobs")}
    dropped = [o for o in old if (o["kind"], o["metadata"]["name"]) not in new and "helm.sh/hook" not in annotations(o)]
    kept = [o for o in dropped if helm_keeps(o)]
    assert kept, f"{change}: the model expected Helm to keep an object here"
    for obj in kept:
        name = f"{obj['kind']}/{obj['metadata']['name']}"
        assert not argo_prunes(obj), f"{change}: Argo CD would prune {name}, which helm upgrade keeps"
        assert not argo_deletes_with_the_app(obj), f"{name} would go with the Application"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_kept_object_carries_both_policies(scenario):
    for obj in scenario_objects(scenario):
        if helm_keeps(obj) or "argocd.argoproj.io/sync-options" in annotations(obj):
            assert helm_keeps(obj) and {"Prune=false", "Delete=false"} <= sync_options(obj), obj["metadata"]["name"]


def test_docs_say_what_argo_cd_keeps():
    text = " ".join((REPO_ROOT / "docs" / "deployment.md").read_text().split())
    assert "argocd.argoproj.io/sync-options: Prune=false,Delete=false" in text
    assert "never applies the `helm test` pod" in text


def test_the_redis_claim_template_stays_as_installed_releases_have_it():
    """Argo CD's client-side diff shows a StatefulSet whose volumeClaimTemplates lack `apiVersion`,
    `kind` and `status` as OutOfSync for ever (argo-cd#16707, open; #11143 with server-side apply),
    and some charts add them to quiet it. This chart must not: volumeClaimTemplates are immutable,
    and a change of those fields on an installed StatefulSet can fail the update (kubernetes#87583;
    prometheus-operator strips them before every update for that reason). The docs give the
    Argo CD-side way out instead."""
    (sts,) = [o for o in render_objects({}, name="jobs") if o["kind"] == "StatefulSet"]
    for template in sts["spec"]["volumeClaimTemplates"]:
        assert not {"apiVersion", "kind", "status"} & set(template)
    text = " ".join((REPO_ROOT / "docs" / "deployment.md").read_text().split())
    assert "ServerSideDiff=true" in text and "/spec/volumeClaimTemplates" in text
