"""Strict JSON schemas for the custom resources the chart can render, made from the cloudcoil
models (generated from the KEDA and prometheus-operator CRDs). The models accept unknown fields;
here every object schema gets additionalProperties: false, so a typo such as `minReplicas` in a
ScaledObject fails instead of being silently dropped by the API server."""

from __future__ import annotations

import functools
from typing import Any

import jsonschema


def _models() -> dict[tuple[str, str], type]:
    from cloudcoil.models.keda import v1alpha1 as keda
    from cloudcoil.models.prometheus_operator import v1 as monitoring

    return {
        ("keda.sh/v1alpha1", "ScaledObject"): keda.ScaledObject,
        ("keda.sh/v1alpha1", "TriggerAuthentication"): keda.TriggerAuthentication,
        ("monitoring.coreos.com/v1", "ServiceMonitor"): monitoring.ServiceMonitor,
        ("monitoring.coreos.com/v1", "PodMonitor"): monitoring.PodMonitor,
        ("monitoring.coreos.com/v1", "PrometheusRule"): monitoring.PrometheusRule,
    }


def _strict(node: Any) -> Any:
    if isinstance(node, dict):
        node = {k: _strict(v) for k, v in node.items()}
        if "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        return node
    if isinstance(node, list):
        return [_strict(v) for v in node]
    return node


def custom_kinds() -> set[tuple[str, str]]:
    return set(_models())


@functools.cache
def strict_validator(api_version: str, kind: str) -> jsonschema.protocols.Validator:
    model = _models()[(api_version, kind)]
    schema = _strict(model.model_json_schema(by_alias=True))
    return jsonschema.Draft202012Validator(schema)


def custom_resource_errors(obj: dict[str, Any]) -> list[str]:
    validator = strict_validator(obj["apiVersion"], obj["kind"])
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj)]
