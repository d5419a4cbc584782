"""What `helm uninstall` leaves in the namespace, and the docs' list of it.

Helm v4's pkg/action/uninstall.go deletes the objects of the release's manifest except those with
`helm.sh/resource-policy: keep` ("These resources were kept due to the resource policy"). Hooks are
not in the manifest: a hook object stays unless its own delete policy removed it (the `helm test`
pod: `hook-succeeded` deletes it after a pass, `before-hook-creation` at the next `helm test`, so a
failed test's pod stays). A StatefulSet's claims are made by its controller, never part of the
release; they go with the StatefulSet only under `persistentVolumeClaimRetentionPolicy.whenDeleted:
Delete`. An operator starting over must delete each of these by hand, so the docs name them all.
"""

from __future__ import annotations

import pytest

from devstack.paths import REPO_ROOT
from tests.deploy.manifests import render_objects

VALUES = {
    "defaults": {},
    "backups and the admin token on": {
        "redis": {"backup": {"enabled": True}},
        "config": {"apiToken": {"enabled": True}},
    },
}
SHORT = {"Secret": "secret", "PersistentVolumeClaim": "pvc", "Pod": "pod"}


def left_after_uninstall(objs: list[dict], last_test_failed: bool) -> set[str]:
    left = set()
    for obj in objs:
        ann = obj["metadata"].get("annotations") or {}
        name = f"{SHORT.get(obj['kind'], obj['kind'])}/{obj['metadata']['name']}"
        if "helm.sh/hook" in ann:
            policies = ann.get("helm.sh/hook-delete-policy", "before-hook-creation").split(",")
            deleted_by = "hook-failed" if last_test_failed else "hook-succeeded"
            if deleted_by not in policies:
                left.add(name)
        elif ann.get("helm.sh/resource-policy") == "keep":
            left.add(name)
        if obj["kind"] == "StatefulSet":
            retention = (obj["spec"].get("persistentVolumeClaimRetentionPolicy") or {}).get("whenDeleted", "Retain")
            if retention == "Retain":
                for template in obj["spec"].get("volumeClaimTemplates", []):
                    for ordinal in range(obj["spec"].get("replicas", 1)):
                        left.add(f"pvc/{template['metadata']['name']}-{obj['metadata']['name']}-{ordinal}")
    return left


@pytest.mark.parametrize("values", list(VALUES))
def test_the_docs_name_everything_an_uninstall_leaves(values):
    objs = render_objects(VALUES[values], name="jobs")
    left = left_after_uninstall(objs, last_test_failed=True)
    assert left_after_uninstall(objs, last_test_failed=False) < left  # a passed test leaves no pod
    text = " ".join((REPO_ROOT / "docs" / "deployment.md").read_text().split())
    start = text.index("`helm uninstall jobs` deletes")
    section = text[start : start + 2000]
    for name in sorted(left):
        assert f"`{name}`" in section, f"docs/deployment.md's uninstall list lacks {name}"


def test_the_start_over_command_deletes_what_is_left():
    objs = render_objects(VALUES["backups and the admin token on"], name="jobs")
    left = left_after_uninstall(objs, last_test_failed=True)
    text = (REPO_ROOT / "docs" / "deployment.md").read_text()
    deleted = set()
    for line in text.splitlines():
        if line.startswith("kubectl delete --ignore-not-found "):
            words = line.split()[3:]
            if "/" in words[0]:
                deleted |= set(words)
            else:
                deleted |= {f"{words[0]}/{name}" for name in words[1:]}
    assert deleted == left
