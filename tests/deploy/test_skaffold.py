"""skaffold.yaml (no skaffold binary here) agrees with the chart, k8s/ and the repository layout."""

from __future__ import annotations

import yaml

from tests.deploy.manifests import CHART, REPO_ROOT, one, render_objects

SKAFFOLD = yaml.safe_load((REPO_ROOT / "skaffold.yaml").read_text())
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())


def _has_value(key: str) -> bool:
    node = VALUES
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def test_both_images_build_from_the_root_with_their_dockerfiles():
    artifacts = {a["image"]: a for a in SKAFFOLD["build"]["artifacts"]}
    assert set(artifacts) == {VALUES["image"]["api"]["repository"], VALUES["image"]["worker"]["repository"]}
    for image, service in (("atx-jobqueue-api", "api"), ("atx-jobqueue-worker", "worker")):
        assert artifacts[image]["context"] == "."
        assert artifacts[image]["docker"]["dockerfile"] == f"services/{service}/Dockerfile"
        assert (REPO_ROOT / "services" / service).is_dir()


def test_helm_release_sets_real_values_and_forwards_the_api_service():
    (release,) = SKAFFOLD["manifests"]["helm"]["releases"]
    assert (REPO_ROOT / release["chartPath"] / "Chart.yaml").exists()
    for key in list(release["setValueTemplates"]) + list(release["setValues"]):
        assert _has_value(key), key
    values = {}
    for key, value in release["setValues"].items():
        node = values
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    objs = render_objects(values, name=release["name"])
    service = one(objs, "Service", "api")
    (forward,) = SKAFFOLD["portForward"]
    assert forward["resourceName"] == service["metadata"]["name"]
    assert forward["port"] == service["spec"]["ports"][0]["port"]


def test_k8s_profile_deploys_the_test_manifests():
    (profile,) = [p for p in SKAFFOLD["profiles"] if p["name"] == "k8s"]
    (path,) = profile["manifests"]["kustomize"]["paths"]
    from tests.deploy.manifests import containers, k8s_objects

    objs = k8s_objects(path.split("/")[-1])
    # skaffold replaces the images whose names are its artifacts' names
    images = {c["image"].split(":")[0] for o in objs if o["kind"] == "Deployment" for c in containers(o)} - {"redis"}
    assert images == {a["image"] for a in SKAFFOLD["build"]["artifacts"]}
    service = one(objs, "Service", "api")
    (forward,) = profile["portForward"]
    assert (
        forward["resourceName"] == service["metadata"]["name"]
        and forward["port"] == service["spec"]["ports"][0]["port"]
    )
