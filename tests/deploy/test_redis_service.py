"""Redis clients reach Redis through a ClusterIP Service; the headless Service stays for the StatefulSet.

A headless Service's name has DNS records only for Ready pods (ServiceSpec.publishNotReadyAddresses
defaults to false; https://kubernetes.io/docs/concepts/services-networking/dns-pod-service/#a-aaaa-records):
while Redis restarts, loads its AOF or fails a probe, the name is NXDOMAIN, and resolvers may cache
that answer (negative caching, RFC 2308) past the moment Redis is back. A ClusterIP Service's name always resolves to
its virtual IP, so a client sees "connection refused" and retries (review 3.8). The StatefulSet's
``serviceName`` cannot change on upgrade (apps/v1 StatefulSet spec: every field but replicas,
ordinals, template, updateStrategy, persistentVolumeClaimRetentionPolicy and minReadySeconds is
forbidden to update), so the headless Service keeps its name and clients move to a new one.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest

from tests.deploy.manifests import (
    CHART,
    chart_at,
    SCENARIOS,
    containers,
    find,
    k8s_objects,
    objects_of,
    one,
    render_chart,
    render_objects,
    resolved_env,
    scenario_objects,
    scenario_values,
)

SOURCES = [f"chart:{s}" for s in SCENARIOS] + ["k8s:test", "k8s:prod"]
# The chart before the client Service existed: its StatefulSet's serviceName is what installed
# releases carry, and what an upgrade must keep.
BEFORE_CLIENT_SERVICE = "c38722a"


def _objects(source):
    kind, name = source.split(":")
    return scenario_objects(name) if kind == "chart" else k8s_objects(name)


def _redis_workload(objs):
    found = [
        o
        for o in objs
        if o["kind"] in ("StatefulSet", "Deployment")
        and o["metadata"]["labels"].get("app.kubernetes.io/component") == "redis"
    ]
    return found[0] if found else None


def _redis_services(objs, redis):
    labels = pod_spec_labels(redis)
    return [
        s
        for s in find(objs, "Service")
        if s["spec"].get("selector") and all(labels.get(k) == v for k, v in s["spec"]["selector"].items())
    ]


def pod_spec_labels(workload):
    return workload["spec"]["template"]["metadata"]["labels"]


def _client_hosts(objs):
    """(where, host) of every place a rendered container names a Redis host."""
    for obj in objs:
        if obj["kind"] not in ("Deployment", "StatefulSet", "Job", "CronJob", "Pod"):
            continue
        for c in containers(obj):
            where = f"{obj['kind']}/{obj['metadata']['name']}/{c['name']}"
            env = resolved_env(c, objs)
            if "REDIS_URL" in env:
                yield where, urlsplit(env["REDIS_URL"]).hostname
            if "REDIS_HOST" in env:
                yield where, env["REDIS_HOST"]
            if "REDIS_ADDR" in env:  # redis_exporter
                yield where, urlsplit(env["REDIS_ADDR"]).hostname
            script = " ".join(c.get("command", []) + c.get("args", []))
            for m in re.finditer(r"redis-cli\b[^\n]*?\s-h\s+(\S+)", script):
                yield where, m[1]


@pytest.mark.parametrize("source", SOURCES)
def test_every_redis_client_uses_a_clusterip_service(source):
    objs = _objects(source)
    redis = _redis_workload(objs)
    if redis is None:
        pytest.skip("Redis is outside the release (externalRedis.url)")
    services = {s["metadata"]["name"]: s for s in _redis_services(objs, redis)}
    hosts = list(_client_hosts(objs))
    assert any(w.startswith("Deployment/") and "-api/" in w for w, _ in hosts), "the API names no Redis host"
    for where, host in hosts:
        if host in ("127.0.0.1", "localhost"):  # the exporter sidecar, in the Redis pod itself
            assert where.startswith(f"{redis['kind']}/"), f"{source}: {where} reaches Redis on loopback"
            continue
        assert host in services, f"{source}: {where} names {host}, which is no Service of the Redis pod"
        svc = services[host]
        assert svc["spec"].get("clusterIP") != "None", (
            f"{source}: {where} uses the headless Service {host}: its name is NXDOMAIN while Redis is NotReady"
        )
        assert any(p["name"] == "redis" for p in svc["spec"]["ports"]), f"{source}: {host} has no redis port"


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if s != "external-redis"])
def test_the_statefulset_keeps_its_headless_service(scenario):
    objs = scenario_objects(scenario)
    sts = one(objs, "StatefulSet", "redis")
    governing = [s for s in find(objs, "Service") if s["metadata"]["name"] == sts["spec"]["serviceName"]]
    assert len(governing) == 1 and governing[0]["spec"]["clusterIP"] == "None"
    # the exporter's metrics port is on one Service only, so a ServiceMonitor never scrapes it twice
    with_metrics = [s for s in _redis_services(objs, sts) if any(p["name"] == "metrics" for p in s["spec"]["ports"])]
    assert len(with_metrics) == (1 if any(c["name"] == "exporter" for c in containers(sts)) else 0)


@pytest.mark.parametrize("values", [{}, {"fullnameOverride": "q"}, {"nameOverride": "jq"}])
def test_service_name_is_what_released_charts_used(values):
    """serviceName is <fullname>-redis, as in every chart released so far (no git needed)."""
    sts = one(render_objects(values), "StatefulSet", "redis")
    fullname = one(render_objects(values), "ConfigMap", "config")["metadata"]["name"]
    assert sts["spec"]["serviceName"] == f"{fullname}-redis"


# data-shell sets data.shell, which that chart's schema did not have yet (its Redis is default's)
@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if s not in ("external-redis", "data-shell")])
def test_upgrade_keeps_the_statefulset_service_name(scenario, tmp_path):
    """`helm upgrade` from the chart before the client Service: every immutable StatefulSet field is
    unchanged (the API server rejects the patch otherwise), and the headless Service stays headless
    (spec.clusterIP is immutable too)."""
    old_chart = chart_at(BEFORE_CLIENT_SERVICE, tmp_path)
    values = scenario_values(scenario)
    # values that came after that chart (its schema refuses them) set the Deployments' rollout and
    # the API's wrong-token budget and the date reading only and touch no Redis object, so the old chart
    # renders without them
    newer = {"api": {"strategy"}, "worker": {"strategy"}, "config": {"tokenFailureLimit", "dataDayFirst"}}
    old_values = {
        key: {k: v for k, v in part.items() if k not in newer[key]} if key in newer else part
        for key, part in values.items()
    }
    old = objects_of(render_chart(old_values, chart=old_chart))
    new = scenario_objects(scenario)
    old_sts, new_sts = one(old, "StatefulSet", "redis"), one(new, "StatefulSet", "redis")
    for field in ("serviceName", "selector", "volumeClaimTemplates", "podManagementPolicy"):
        assert old_sts["spec"].get(field) == new_sts["spec"].get(field), field
    old_services = {s["metadata"]["name"]: s["spec"].get("clusterIP") for s in old if s["kind"] == "Service"}
    new_services = {s["metadata"]["name"]: s["spec"].get("clusterIP") for s in new if s["kind"] == "Service"}
    for name, cluster_ip in old_services.items():
        assert new_services.get(name, "gone") == cluster_ip, (
            f"Service {name}: clusterIP {cluster_ip} changed or removed"
        )


def test_chart_readme_names_both_services():
    text = (CHART / "README.md").read_text()
    assert "ClusterIP client Service" in text and "headless Service" in text
