"""ALLOWED_HOSTS as the chart and k8s/ set it (issue 14 item 8): every way users reach the API
passes the API's own Host check, and a foreign host does not."""

from __future__ import annotations

from jobqueue_api.guards import host_allowed, parse_allowed_hosts
from tests.deploy.manifests import k8s_objects, one, pod_spec, render_chart, render_objects, resolved_env


def _allowed(objs) -> tuple[str, ...]:
    main = pod_spec(one(objs, "Deployment", "api"))["containers"][0]
    return parse_allowed_hosts(resolved_env(main, objs)["ALLOWED_HOSTS"])


def test_chart_default_allows_port_forward_and_service_names_only():
    allowed = _allowed(render_objects())
    for host in ("localhost:5000", "127.0.0.1:5000", "[::1]:5000"):
        assert host_allowed(host, allowed), host
    assert any(h.endswith(".svc.cluster.local") for h in allowed)
    assert all(host_allowed(h, allowed) for h in allowed)
    assert not host_allowed("rebind.attacker.example", allowed)


def test_chart_adds_the_ingress_host_and_the_nodeport_class_host():
    allowed = _allowed(render_objects({"api": {"ingress": {"enabled": True, "host": "me.class.example"}}}))
    assert host_allowed("me.class.example", allowed) and not host_allowed("evil.example", allowed)
    allowed = _allowed(render_objects({"api": {"service": {"type": "NodePort", "nodePortHost": "node.class.example"}}}))
    assert host_allowed("node.class.example:30123", allowed) and not host_allowed("evil.example", allowed)
    # NodePort with no host named: nobody is locked out
    assert host_allowed("10.1.2.3:30123", _allowed(render_objects({"api": {"service": {"type": "NodePort"}}})))
    # a LoadBalancer is reached at its external address (an IP or a cloud DNS name): it used to get
    # 400 host_not_allowed on every data route, and NOTES did not say how to find the address
    lb = {"api": {"service": {"type": "LoadBalancer"}}}
    assert host_allowed("203.0.113.7:5000", _allowed(render_objects(lb)))
    named = {"api": {"service": {"type": "LoadBalancer", "nodePortHost": "jobs.example.org"}}}
    assert host_allowed("jobs.example.org:5000", _allowed(render_objects(named)))
    assert not host_allowed("203.0.113.7:5000", _allowed(render_objects(named)))
    assert "get service demo-atx-jobqueue-api -w" in render_chart(lb)["atx-jobqueue/templates/NOTES.txt"]
    extra = _allowed(render_objects({"config": {"allowedHosts": ["notebook.example"]}}))
    assert host_allowed("notebook.example", extra)


def test_k8s_manifests_allow_the_class_hosts():
    for env in ("test", "prod"):
        allowed = _allowed(k8s_objects(env))
        for host in (
            "localhost:5000",
            f"student-atx-jobqueue{'-test' if env == 'test' else ''}.coe332.tacc.cloud",
            f"atx-jobqueue-{env}-api.alice.svc.cluster.local:5000",
            f"atx-jobqueue-{env}-api.alice:5000",  # <service>.<namespace>, as the chart allows it too
        ):
            assert host_allowed(host, allowed), (env, host)
        assert not host_allowed("rebind.attacker.example", allowed)


def test_named_tokens_come_from_a_secret_into_the_api_only():
    objs = render_objects({"config": {"apiTokens": {"existingSecret": "class-tokens"}}})
    api = pod_spec(one(objs, "Deployment", "api"))["containers"][0]
    assert {"name": "API_TOKENS", "valueFrom": {"secretKeyRef": {"name": "class-tokens", "key": "api-tokens"}}} in api[
        "env"
    ]
    worker = pod_spec(one(objs, "Deployment", "worker"))["containers"][0]
    assert all(e["name"] != "API_TOKENS" for e in worker.get("env", []))
