"""commonLabels, commonAnnotations, and per component (api, worker, redis) podLabels, extraEnv,
extraVolumes and extraVolumeMounts (docs/deployment.md, "Labels, annotations, extra volumes").

What the API server does with them decides the shape: a Deployment's or StatefulSet's
spec.selector is immutable ("field is immutable" on the next helm upgrade or Argo CD sync), and so
is a StatefulSet's volumeClaimTemplates, so neither may change when these values do; the pod
template's labels must still match the selector, so the chart's own app.kubernetes.io labels are
not for podLabels to replace; an object's metadata labels and annotations are mutable everywhere."""

from __future__ import annotations

import copy
import re

import helm_python as helm
import kubernetes_validate
import pytest

import yaml

from tests.deploy.manifests import (
    CHART,
    REPO_ROOT,
    SCENARIOS,
    objects_of,
    one,
    pod_spec,
    render_chart,
    render_objects,
    scenario_values,
)

VERSIONS = ["1.28.0", kubernetes_validate.latest_version()]
COMMON_LABELS = {"course": "coe332", "example.org/term": "fall-2026"}
COMMON_ANNOTATIONS = {"example.org/owner": "jdoe", "helm.sh/resource-policy": "delete"}
POD_LABELS = {c: {"team": f"{c}-team", "course": "overridden-by-pod"} for c in ("api", "worker", "redis")}
EXTRAS = {
    "commonLabels": COMMON_LABELS,
    "commonAnnotations": COMMON_ANNOTATIONS,
    **{c: {"podLabels": POD_LABELS[c]} for c in ("api", "worker", "redis")},
}
WORKLOADS = ("Deployment", "StatefulSet", "Job", "CronJob", "Pod")


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out.get(k) or {}, v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _key(obj) -> tuple[str, str]:
    return obj["kind"], obj["metadata"]["name"]


def _template(obj) -> dict | None:
    spec = obj.get("spec") or {}
    if obj["kind"] == "CronJob":
        return spec["jobTemplate"]["spec"]["template"]
    return spec.get("template") if obj["kind"] in WORKLOADS else None


def _component(obj) -> str:
    return obj["metadata"]["labels"]["app.kubernetes.io/component"]


def _without_metadata(obj) -> dict:
    """The object less what these values may change: metadata labels and annotations, the pod
    template's labels and the checksums of the ConfigMaps (their labels include commonLabels), and
    the generated Secrets' data (random in every offline render)."""
    obj = copy.deepcopy(obj)
    obj["metadata"].pop("labels", None)
    obj["metadata"].pop("annotations", None)
    if obj["kind"] == "CronJob":
        obj["spec"]["jobTemplate"].get("metadata", {}).pop("labels", None)
    if template := _template(obj):
        template["metadata"].pop("labels", None)
        for checksum in ("checksum/config", "checksum/redis-config"):  # commonLabels are in the ConfigMaps
            (template["metadata"].get("annotations") or {}).pop(checksum, None)
    if obj["kind"] == "Secret":
        obj.pop("data", None)
    return obj


def _pair(scenario: str) -> tuple[dict, dict]:
    values = scenario_values(scenario)
    before = {_key(o): o for o in render_objects(values)}
    after = {_key(o): o for o in render_objects(_merge(values, EXTRAS))}
    assert before.keys() == after.keys()
    return before, after


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_common_metadata_reaches_every_object_and_changes_nothing_else(scenario):
    before, after = _pair(scenario)
    for key, obj in after.items():
        old = before[key]
        labels = obj["metadata"]["labels"]
        assert COMMON_LABELS.items() <= labels.items(), key
        annotations = obj["metadata"]["annotations"]
        own = old["metadata"].get("annotations") or {}
        # the chart's own annotations are kept as they were, and win on a key both set
        assert own.items() <= annotations.items(), key
        assert annotations == {**COMMON_ANNOTATIONS, **own}, key
        assert _without_metadata(obj) == _without_metadata(old), f"{key}: more than metadata changed"
        if template := _template(obj):
            pod_labels = template["metadata"]["labels"]
            if obj["kind"] in ("Deployment", "StatefulSet") and _component(obj) in POD_LABELS:
                expected = {**_template(old)["metadata"]["labels"], **COMMON_LABELS, **POD_LABELS[_component(obj)]}
                assert pod_labels == expected, key  # podLabels win over commonLabels
            else:  # no podLabels value of their own: commonLabels only
                assert pod_labels == {**_template(old)["metadata"]["labels"], **COMMON_LABELS}, key
            # commonAnnotations are for objects: pods take podAnnotations (a change there rolls them)
            assert not COMMON_ANNOTATIONS.keys() & (template["metadata"].get("annotations") or {}).keys(), key


@pytest.mark.parametrize("scenario", ["default", "persistence-off", "monitoring-on"])
def test_common_annotations_alone_roll_no_pod(scenario):
    """Annotations are metadata: setting them changes no pod template, so no Deployment rolls and
    Redis does not restart (the checksums hash the ConfigMaps as rendered without them)."""
    values = scenario_values(scenario)
    before = {_key(o): o for o in render_objects(values)}
    after = {_key(o): o for o in render_objects(_merge(values, {"commonAnnotations": COMMON_ANNOTATIONS}))}
    templates = [key for key, obj in after.items() if _template(obj)]
    assert ("StatefulSet", "demo-atx-jobqueue-redis") in templates
    for key in templates:
        assert _template(after[key]) == _template(before[key]), key


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_selectors_and_claim_templates_never_change(scenario):
    """An immutable field that changed would fail every upgrade after the values were set."""
    before, after = _pair(scenario)
    for key, obj in after.items():
        spec, old = obj.get("spec") or {}, before[key].get("spec") or {}
        for field in ("selector", "podSelector", "volumeClaimTemplates"):
            assert spec.get(field) == old.get(field), f"{key}: spec.{field} changed"
        if obj["kind"] in ("Deployment", "StatefulSet"):
            selected = spec["selector"]["matchLabels"]
            assert selected.items() <= _template(obj)["metadata"]["labels"].items(), key


@pytest.mark.parametrize("version", VERSIONS)
def test_extras_render_valid_objects(version):
    values = _merge(
        scenario_values("monitoring-on"),
        _merge(
            EXTRAS,
            {
                c: {
                    "extraEnv": [
                        {"name": "TZ", "value": "America/Chicago"},
                        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                    ],
                    "extraVolumes": [{"name": "ca", "configMap": {"name": "campus-ca"}}],
                    "extraVolumeMounts": [{"name": "ca", "mountPath": "/etc/campus-ca", "readOnly": True}],
                }
                for c in ("api", "worker", "redis")
            },
        ),
    )
    objs = render_objects(values)
    for kind, component, container in (
        ("Deployment", "api", "api"),
        ("Deployment", "worker", "worker"),
        ("StatefulSet", "redis", "redis"),
    ):
        obj = one(objs, kind, component)
        spec = pod_spec(obj)
        (main,) = [c for c in spec["containers"] if c["name"] == container]
        assert {"name": "TZ", "value": "America/Chicago"} in main["env"]
        assert main["env"][-1]["name"] == "NODE"  # after the chart's own (and config.extraEnv)
        assert {"name": "ca", "mountPath": "/etc/campus-ca", "readOnly": True} in main["volumeMounts"]
        assert {"name": "ca", "configMap": {"name": "campus-ca"}} in spec["volumes"]
        others = [c for c in spec["containers"] + spec.get("initContainers", []) if c["name"] != container]
        for other in others:  # the exporter, the data init containers: untouched
            assert all(m["name"] != "ca" for m in other.get("volumeMounts", [])), other["name"]
            assert all(e["name"] != "TZ" for e in other.get("env", [])), other["name"]
    for obj in objs:
        if obj["apiVersion"].startswith(("keda.sh", "monitoring.coreos.com")):
            continue  # custom resources: test_kube_schemas checks them, and these values add metadata only
        kubernetes_validate.validate(obj, version, strict=True)


def test_defaults_render_no_extras():
    objs = render_objects({})
    for kind, component in (("Deployment", "api"), ("Deployment", "worker"), ("StatefulSet", "redis")):
        obj = one(objs, kind, component)
        assert "team" not in _template(obj)["metadata"]["labels"]
    assert "env" not in pod_spec(one(objs, "StatefulSet", "redis"))["containers"][0]


@pytest.mark.parametrize(
    ("values", "says"),
    [
        (
            {"api": {"extraVolumes": [{"name": "tmp", "emptyDir": {}}]}},
            'api.extraVolumes: the name "tmp" is one of the chart\'s own volumes',
        ),
        (
            {"redis": {"extraVolumes": [{"name": "data", "emptyDir": {}}]}},
            'redis.extraVolumes: the name "data" is one of the chart\'s own volumes',
        ),
        (
            {"worker": {"podLabels": {"app.kubernetes.io/component": "jobs"}}},
            'worker.podLabels: "app.kubernetes.io/component" is a label the chart sets itself',
        ),
        (
            {"commonAnnotations": {"helm.sh/hook": "pre-install"}},
            'commonAnnotations: "helm.sh/hook" would make every object of the release a Helm hook',
        ),
    ],
)
def test_values_the_api_server_or_helm_would_trip_on_are_refused(values, says):
    with pytest.raises(helm.HelmError, match=says):
        render_objects(values)


@pytest.mark.parametrize(
    "bad",
    [
        {"commonAnnotations": {"example.org/replicas": 3}},  # annotation values are strings
        {"commonAnnotations": {"my owner": "jdoe"}},
        {"api": {"podLabels": {"owner": "Jane Doe"}}},
        {"worker": {"extraEnv": [{"name": "lower"}]}},
        {"redis": {"extraVolumes": [{"configMap": {"name": "x"}}]}},  # no name
        {"api": {"extraVolumes": [{"name": "Certs", "emptyDir": {}}]}},
        {"worker": {"extraVolumeMounts": [{"name": "ca"}]}},  # no mountPath
        {"redis": {"extraVolumeMounts": [{"name": "ca", "mountPath": "etc/ca"}]}},  # relative
        {"api": {"extraVolumeMounts": [{"name": "ca", "mountPath": "/etc/ca", "readonly": True}]}},  # typo
    ],
)
def test_schema_refuses(bad):
    with helm.Chart.load(str(CHART)) as chart:
        with pytest.raises(helm.HelmValuesError):
            chart.validate_schema(bad)


def test_the_documented_example_renders_valid_objects():
    text = (REPO_ROOT / "docs" / "deployment.md").read_text()
    section = text.split("### Labels, annotations, extra volumes", 1)[1]
    values = yaml.safe_load(re.search(r"```yaml\n(.*?)```", section, re.S).group(1))
    objs = render_objects(values)
    api = one(objs, "Deployment", "api")
    assert _template(api)["metadata"]["labels"]["team"] == "traffic"
    assert api["metadata"]["annotations"]["example.org/owner"] == "jdoe"
    (container,) = pod_spec(api)["containers"]
    assert container["volumeMounts"][-1] == values["api"]["extraVolumeMounts"][0]
    assert pod_spec(api)["volumes"][-1] == values["api"]["extraVolumes"][0]
    for obj in (api, one(objs, "Deployment", "worker"), one(objs, "StatefulSet", "redis")):
        kubernetes_validate.validate(obj, VERSIONS[-1], strict=True)


class _NoDuplicateKeys(yaml.SafeLoader):
    """yaml.safe_load keeps the last of two equal keys without a word; kubectl, Argo CD and the API
    server refuse such a manifest or keep one of them. This loader refuses it."""


def _mapping(loader: _NoDuplicateKeys, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        assert key not in seen, f"duplicate key {key!r} at {key_node.start_mark}"
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_NoDuplicateKeys.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def _own_labels() -> dict[str, str]:
    """The labels the chart sets itself on an object (the API Deployment's, with no values)."""
    return dict(one(render_objects({}), "Deployment", "api")["metadata"]["labels"])


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_no_manifest_repeats_a_key(scenario):
    """Every rendered document, with the extras set, parses with no key given twice."""
    for path, text in render_chart(_merge(scenario_values(scenario), EXTRAS)).items():
        if not path.endswith(".txt"):
            list(yaml.load_all(text, Loader=_NoDuplicateKeys))


def test_the_chart_sets_the_labels_commonlabels_may_not():
    """The keys the refusal below covers are the chart's own, as rendered (a label the chart adds
    later is covered without a change here)."""
    assert set(_own_labels()) == {
        "helm.sh/chart",
        "app.kubernetes.io/name",
        "app.kubernetes.io/instance",
        "app.kubernetes.io/component",
        "app.kubernetes.io/version",
        "app.kubernetes.io/managed-by",
        "app.kubernetes.io/part-of",
    }


@pytest.mark.parametrize("key", sorted(_own_labels()))
def test_a_common_label_the_chart_sets_itself_is_refused_naming_it(key):
    """It rendered the key twice in every object's metadata.labels (the first, the chart's, then
    the user's), and on the pods the user's value, so a pod whose app.kubernetes.io/name or
    instance was the user's no longer matched its Deployment's immutable selector. Refused, like
    the same keys in podLabels, with the key named and another way offered."""
    with pytest.raises(helm.HelmError, match=f'commonLabels: "{re.escape(key)}" is a label the chart sets itself'):
        render_objects({"commonLabels": {"course": "coe332", key: "mine"}})


def test_every_clashing_common_label_is_named_at_once():
    values = {"commonLabels": {"app.kubernetes.io/name": "a", "helm.sh/chart": "b", "course": "coe332"}}
    with pytest.raises(helm.HelmError) as refused:
        render_objects(values)
    message = str(refused.value)
    assert '"app.kubernetes.io/name", "helm.sh/chart" are labels the chart sets itself' in message
    assert "nameOverride" in message


def test_other_app_kubernetes_io_common_labels_render_once():
    """A well-known key the chart does not set is the user's to give, once."""
    values = {"commonLabels": {"app.kubernetes.io/created-by": "instructor", "example.org/part-of": "coe332"}}
    rendered = render_chart(values)
    objs = objects_of(rendered)
    for path, text in rendered.items():
        if not path.endswith(".txt"):
            list(yaml.load_all(text, Loader=_NoDuplicateKeys))
    api = one(objs, "Deployment", "api")
    assert api["metadata"]["labels"]["app.kubernetes.io/created-by"] == "instructor"
    assert api["spec"]["selector"]["matchLabels"].items() <= _template(api)["metadata"]["labels"].items()
