"""Every rendered object and every k8s/ file is valid for Kubernetes 1.28 and the newest version
kubernetes-validate bundles, in strict mode (unknown fields fail); custom resources are checked
against strict schemas from the KEDA and prometheus-operator models."""

from __future__ import annotations

import copy
import json

import kubernetes_validate
import pytest

from tests.deploy.manifests import k8s_objects, one, scenario_objects
from tests.deploy.schemas import custom_kinds, custom_resource_errors

VERSIONS = ["1.28.0", kubernetes_validate.latest_version()]


_VALID: set[tuple[str, str]] = set()  # objects already found valid (scenarios share most objects)


def _validate(obj, version):
    fingerprint = (version, json.dumps(obj, sort_keys=True))
    if fingerprint in _VALID:
        return
    _check(obj, version)
    _VALID.add(fingerprint)


def _check(obj, version):
    key = (obj["apiVersion"], obj["kind"])
    if key in custom_kinds():
        errors = custom_resource_errors(obj)
        assert not errors, f"{obj['kind']}/{obj['metadata']['name']}: {errors}"
        return
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        raise AssertionError(
            f"{obj['kind']}/{obj['metadata']['name']} on {version}: {exc.message} at {list(exc.path)}"
        ) from None


@pytest.mark.parametrize("version", VERSIONS)
def test_rendered_chart_is_valid(objects, version):
    for obj in objects:
        _validate(obj, version)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("env", ["test", "prod"])
def test_k8s_manifests_are_valid(env, version):
    for obj in k8s_objects(env):
        _validate(obj, version)


def test_strict_validation_catches_a_typo_in_a_deployment():
    deployment = copy.deepcopy(one(scenario_objects("default"), "Deployment", "api"))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, VERSIONS[0], strict=True)


@pytest.mark.parametrize(
    ("kind", "scenario", "typo"),
    [
        ("ScaledObject", "keda", ("spec", "minReplicas", 0)),
        ("ScaledObject", "keda", ("spec", "triggers", 0, "metadata", "threshold", 5)),
        ("ServiceMonitor", "keda", ("spec", "endpoints", 0, "scrapeInterval", "15s")),
        ("PodMonitor", "keda", ("spec", "podMetricsEndpoint", [])),
    ],
)
def test_strict_crd_schemas_catch_typos(kind, scenario, typo):
    obj = copy.deepcopy(one(scenario_objects(scenario), kind))
    assert not custom_resource_errors(obj)
    *path, key, value = typo
    node = obj
    for step in path:
        node = node[step]
    node[key] = value  # an unknown field, or (threshold) a number where KEDA wants a string
    assert custom_resource_errors(obj), f"{kind}: {typo} went through"
