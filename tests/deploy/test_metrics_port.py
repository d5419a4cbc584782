"""/metrics is not published with the API (review 3.8: it was served through the public Ingress).

The API pods serve /metrics only on a second gunicorn listener, API_METRICS_PORT; the http port
answers it 404. Nothing that publishes the API may lead to that listener: not an Ingress backend,
not a NodePort or LoadBalancer Service (Kubernetes opens every port of such a Service on every node
or on the load balancer, so a metrics port on the API Service would be public in NodePort mode, the
class-cluster default). Prometheus reaches it through a ClusterIP Service of its own (ServiceMonitor)
or the pod annotations, and the NetworkPolicy admits it.

The app tells the listeners apart by the connection's own socket (gunicorn's
``environ["gunicorn.socket"].getsockname()``, services/api/jobqueue_api/metrics.py), never by the
Host header a client writes; the real gunicorn run below sends a Host naming the metrics port to the
http port to show it.
"""

from __future__ import annotations

import base64
import time

import pytest
import requests

from devstack.procs import free_port, stop
from devstack.redis_server import find_redis_server
from jobqueue.settings import SPEC, load_settings
from tests.deploy.local import ChartRedis, LocalPod
from tests.deploy.manifests import (
    SCENARIOS,
    find,
    k8s_objects,
    one,
    pod_spec,
    render_objects,
    resolved_env,
    installed_objects,
    scenario_objects,
)

SOURCES = [f"chart:{s}" for s in SCENARIOS] + ["k8s:test", "k8s:prod"]
PUBLISHING = ("NodePort", "LoadBalancer")


def _objects(source):
    kind, name = source.split(":")
    return installed_objects(name) if kind == "chart" else k8s_objects(name)


def _api(objs):
    deployment = one(objs, "Deployment", "api")
    (main,) = [c for c in pod_spec(deployment)["containers"] if c["name"] == "api"]
    settings = load_settings({k: v for k, v in resolved_env(main, objs).items() if k in SPEC})
    return deployment, main, settings


def _metrics_served_on(settings) -> int:
    """The container port that answers /metrics: its own listener, or (API_METRICS_PORT 0) http."""
    return settings.api_metrics_port or settings.port


def _selects_api(service, deployment) -> bool:
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = service["spec"].get("selector") or {}
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _container_port(main, target) -> int:
    if isinstance(target, int):
        return target
    (port,) = [p["containerPort"] for p in main["ports"] if p["name"] == target]
    return port


def _service_port(service, port_ref) -> dict:
    key = "name" if "name" in port_ref else "number"
    (port,) = [p for p in service["spec"]["ports"] if p["name" if key == "name" else "port"] == port_ref[key]]
    return port


@pytest.mark.parametrize("source", SOURCES)
def test_the_api_has_a_metrics_listener_apart_from_http(source):
    objs = _objects(source)
    _, main, settings = _api(objs)
    assert settings.api_metrics_port, f"{source}: API_METRICS_PORT is 0: /metrics is served on the http port"
    ports = {p["name"]: p["containerPort"] for p in main["ports"]}
    assert ports == {"http": settings.port, "metrics": settings.api_metrics_port}


@pytest.mark.parametrize("source", SOURCES)
def test_no_ingress_backend_reaches_the_metrics_port(source):
    objs = _objects(source)
    deployment, main, settings = _api(objs)
    services = {s["metadata"]["name"]: s for s in find(objs, "Service")}
    for ingress in find(objs, "Ingress"):
        backends = [p["backend"] for rule in ingress["spec"].get("rules", []) for p in rule["http"]["paths"]]
        if "defaultBackend" in ingress["spec"]:
            backends.append(ingress["spec"]["defaultBackend"])
        assert backends
        for backend in backends:
            service = services[backend["service"]["name"]]
            assert _selects_api(service, deployment)
            target = _service_port(service, backend["service"]["port"]).get("targetPort")
            assert _container_port(main, target) == settings.port != _metrics_served_on(settings), (
                f"{source}: Ingress {ingress['metadata']['name']} routes to container port {target}"
            )


@pytest.mark.parametrize("source", SOURCES)
def test_no_published_service_opens_the_metrics_port(source):
    objs = _objects(source)
    deployment, main, settings = _api(objs)
    routed = {
        p["backend"]["service"]["name"]
        for i in find(objs, "Ingress")
        for rule in i["spec"].get("rules", [])
        for p in rule["http"]["paths"]
    }
    for service in find(objs, "Service"):
        if not _selects_api(service, deployment):
            continue
        name, kind = service["metadata"]["name"], service["spec"].get("type", "ClusterIP")
        targets = {_container_port(main, p.get("targetPort", p["port"])) for p in service["spec"]["ports"]}
        if kind in PUBLISHING:
            assert _metrics_served_on(settings) not in targets, f"{source}: {kind} Service {name} publishes /metrics"
        if _metrics_served_on(settings) in targets:
            assert kind == "ClusterIP" and targets == {settings.api_metrics_port}, f"{source}: {name}"
            assert name not in routed, f"{source}: an Ingress routes to {name}"


def test_nodeport_and_loadbalancer_modes_keep_metrics_private():
    for kind in PUBLISHING:
        objs = render_objects({"api": {"service": {"type": kind}}, "metrics": {"serviceMonitor": {"enabled": True}}})
        deployment, main, settings = _api(objs)
        for service in find(objs, "Service"):
            if _selects_api(service, deployment) and service["spec"]["type"] == kind:
                targets = {_container_port(main, p["targetPort"]) for p in service["spec"]["ports"]}
                assert targets == {settings.port} != {_metrics_served_on(settings)}, (kind, targets)


@pytest.mark.parametrize("source", SOURCES)
def test_prometheus_is_pointed_at_the_metrics_port(source):
    objs = _objects(source)
    deployment, main, settings = _api(objs)
    annotations = deployment["spec"]["template"]["metadata"].get("annotations") or {}
    if "prometheus.io/port" in annotations:
        assert int(annotations["prometheus.io/port"]) == settings.api_metrics_port
    monitors = [
        m for m in find(objs, "ServiceMonitor") if m["metadata"]["labels"]["app.kubernetes.io/component"] == "api"
    ]
    assert annotations.get("prometheus.io/scrape") == "true" or monitors, f"{source}: nothing scrapes the API"
    for monitor in monitors:
        selected = [
            s
            for s in find(objs, "Service")
            if all(s["metadata"]["labels"].get(k) == v for k, v in monitor["spec"]["selector"]["matchLabels"].items())
        ]
        assert len(selected) == 1, [s["metadata"]["name"] for s in selected]
        (endpoint,) = monitor["spec"]["endpoints"]
        port = _service_port(selected[0], {"name": endpoint["port"]})
        assert _container_port(main, port["targetPort"]) == settings.api_metrics_port
        # the series keep the API Service's name: the autoscaling query and the alerts select it
        api_service = one(objs, "Service", "api")["metadata"]["name"]
        assert {"action": "replace", "targetLabel": "service", "replacement": api_service} in endpoint["relabelings"]
        query = next((o for o in objs if o["kind"] == "ScaledObject"), None)
        if query:
            assert f'service="{api_service}"' in query["spec"]["triggers"][0]["metadata"]["query"]


@pytest.mark.parametrize("source", SOURCES)
def test_network_policy_admits_the_metrics_port(source):
    objs = _objects(source)
    deployment, _, _ = _api(objs)
    policies = [
        p
        for p in find(objs, "NetworkPolicy")
        if all(
            deployment["spec"]["template"]["metadata"]["labels"].get(k) == v
            for k, v in p["spec"]["podSelector"]["matchLabels"].items()
        )
    ]
    if not policies:
        pytest.skip("no NetworkPolicy")
    ports = {port["port"] for p in policies for rule in p["spec"].get("ingress", []) for port in rule.get("ports", [])}
    assert {"http", "metrics"} <= ports


def test_metrics_from_restricts_only_the_metrics_port():
    peers = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    objs = render_objects({"networkPolicy": {"metricsFrom": peers}})
    (policy,) = [p for p in find(objs, "NetworkPolicy", "api")]
    rules = {rule["ports"][0]["port"]: rule.get("from") for rule in policy["spec"]["ingress"]}
    assert rules == {"http": None, "metrics": peers}


def test_the_chart_refuses_one_port_for_both():
    with pytest.raises(Exception, match=r"api\.metricsPort \(5000\) must differ from api\.port"):
        render_objects({"api": {"port": 5000, "metricsPort": 5000}})


@pytest.mark.slow
@pytest.mark.skipif(find_redis_server() is None, reason="no redis-server")
@pytest.mark.parametrize("source", ["chart:class-cluster", "k8s:test"])
def test_real_gunicorn_serves_metrics_only_on_the_metrics_listener(source, tmp_path):
    """The API container as rendered (command, env; ports rewritten to free loopback ones)."""
    objs = _objects(source)
    secret = one(objs, "Secret", "redis")
    password = (
        base64.b64decode(secret["data"]["redis-password"]).decode()
        if "data" in secret
        else secret["stringData"]["redis-password"]
    )
    conf = one(scenario_objects("default"), "ConfigMap", "redis")["data"]["redis.conf"]
    server = ChartRedis(conf, tmp_path / "redis" / "data", free_port(), password).start()
    deployment, main, _ = _api(objs)
    pod = LocalPod(deployment, objs, tmp_path, f"redis://127.0.0.1:{server.port}")
    proc = None
    log = tmp_path / "api.log"
    try:
        for init in pod.spec.get("initContainers", []):
            assert pod.run(init["name"], tmp_path / f"{init['name']}.log", timeout=60) == 0
        proc = pod.start("api", log)
        http = f"http://127.0.0.1:{pod.local_port(main, 'http')}"
        metrics_port = pod.local_port(main, "metrics")
        metrics = f"http://127.0.0.1:{metrics_port}"
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                if requests.get(f"{http}/healthz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.25)

        scraped = requests.get(f"{metrics}/metrics", timeout=10)
        assert scraped.status_code == 200 and scraped.headers["Content-Type"].startswith("text/plain")
        assert 'jobqueue_queue_depth{queue="jobs"}' in scraped.text
        # a pod-IP scrape: any Host works on the metrics listener (no ALLOWED_HOSTS entry needed)
        assert requests.get(f"{metrics}/metrics", headers={"Host": "10.1.2.3:9102"}, timeout=10).status_code == 200

        for host in (None, f"127.0.0.1:{metrics_port}", "localhost"):
            public = requests.get(f"{http}/metrics", headers={"Host": host} if host else {}, timeout=10)
            assert public.status_code == 404, (host, public.status_code, public.text[:200])
            assert public.headers["Content-Type"].startswith("application/json") and public.json()["error"], host
        # the metrics listener serves nothing else
        for method, path in (("GET", "/healthz"), ("GET", "/jobs"), ("POST", "/submit"), ("GET", "/openapi.json")):
            other = requests.request(
                method,
                f"{metrics}{path}",
                json={"operation": "unique_issues"} if method == "POST" else None,
                timeout=10,
            )
            assert other.status_code == 404 and other.headers["Content-Type"].startswith("application/json"), (
                path,
                other.text[:200],
            )
        # the API itself is unchanged on http, and its OpenAPI document no longer offers /metrics there
        assert requests.get(f"{http}/healthz", timeout=10).status_code == 200
        assert "/metrics" not in requests.get(f"{http}/openapi.json", timeout=10).json()["paths"]
        routes = requests.get(f"{http}/help?format=json", timeout=10).json()["routes"]
        assert [r["path"] for r in routes if "/metrics" in r["path"]] == [f":{metrics_port}/metrics"]
    finally:
        if proc is not None:
            stop(proc, term_group=False)
        server.stop()
