"""Two renders with the same values are the same manifests (as `helm template`, Argo CD and Flux
render them: `lookup` finds nothing without a cluster), except the data of Secrets the chart
generates, which docs/deployment.md and the chart README say to replace with existingSecret under
GitOps. Within one render, a checksum annotation means the same thing everywhere it appears.

Review finding 2.5: the Redis password and API token were `randAlphaNum` per render, and the
`checksum/redis-secret` annotation re-rendered the Secret template per include, so the API and the
worker had different checksums in one render and every render rolled every pod."""

from __future__ import annotations

from collections import defaultdict

import pytest

from tests.deploy.manifests import CHART, REPO_ROOT, SCENARIOS, render_objects, scenario_values

GITOPS = {"redis": {"auth": {"existingSecret": "jobs-redis"}}, "config": {"apiToken": {"existingSecret": "jobs-token"}}}


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out.get(k) or {}, v) if isinstance(v, dict) else v
    return out


def _generated_secret(obj) -> bool:
    return (
        obj["kind"] == "Secret" and (obj["metadata"].get("annotations") or {}).get("helm.sh/resource-policy") == "keep"
    )


def _checksums(objs) -> dict[str, set[str]]:
    sums = defaultdict(set)
    for obj in objs:
        template = (
            (obj.get("spec") or {}).get("template")
            or (obj.get("spec") or {}).get("jobTemplate", {}).get("spec", {}).get("template")
            or {}
        )
        for key, value in ((template.get("metadata") or {}).get("annotations") or {}).items():
            if key.startswith("checksum/"):
                sums[key].add(value)
    return sums


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_two_renders_differ_only_in_generated_secret_data(scenario):
    values = scenario_values(scenario)
    first, second = render_objects(values), render_objects(values)
    assert len(first) == len(second)
    for a, b in zip(first, second):
        if _generated_secret(a):
            a, b = {**a, "data": None}, {**b, "data": None}
        assert a == b, f"{a['kind']}/{a['metadata']['name']} differs between two renders of {scenario}"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_gitops_renders_are_identical(scenario):
    values = _merge(scenario_values(scenario), GITOPS)
    assert render_objects(values) == render_objects(values)


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_a_checksum_has_one_value_per_render(scenario):
    objs = render_objects(scenario_values(scenario))
    for key, values in _checksums(objs).items():
        assert len(values) == 1, (
            f"{key} has {len(values)} values in one render of {scenario}: pods disagree on the content"
        )
    again = _checksums(render_objects(scenario_values(scenario)))
    assert again == _checksums(objs), "a checksum changes between renders: every sync would roll the pods"


def test_docs_give_the_gitops_path():
    for doc in (REPO_ROOT / "docs" / "deployment.md", CHART / "README.md"):
        text = doc.read_text()
        assert "redis.auth.existingSecret" in text and "Argo CD" in text, doc
