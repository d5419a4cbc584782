"""Every deployed form keeps Redis behind a password and a NetworkPolicy, runs hardened containers,
and never carries a secret in plain text.

Forms: every Helm chart scenario (rendered by the real Helm engine) and both k8s/ overlays
(kustomize). What tests/deploy already proves is referenced, not repeated:
- chart pods non-root, read-only root, no capabilities: test_chart_render.py::test_pods_are_locked_down
- chart API/worker REDIS_PASSWORD from the Secret: ...::test_every_app_pod_gets_the_redis_password_from_the_secret
- chart Redis policy in the monitoring-on scenario: ...::test_only_api_worker_and_backup_pods_reach_redis
- checkov with reasons for each suppression: test_checkov.py
Added here: the Redis server itself enforcing the password, the policy in every form and every
scenario (all policies selecting Redis together, since they add up), k8s/ container hardening, no
plain-text secrets anywhere, and the compose files (none exist today; any added must comply).
"""

from __future__ import annotations

import re

import pytest
import yaml

from tests.deploy.manifests import (
    K8S,
    REPO_ROOT,
    SCENARIOS,
    WORKLOADS,
    containers,
    find,
    k8s_objects,
    pod_spec,
    scenario_objects,
)

FORMS = [pytest.param(("chart", s), id=f"chart-{s}") for s in SCENARIOS] + [
    pytest.param(("k8s", env), id=f"k8s-{env}") for env in ("test", "prod")
]
SECRETISH = re.compile(r"PASSWORD|TOKEN|SECRET|PASSWD|CREDENTIAL", re.I)
# names with such a word that hold no secret: a count of them (TOKEN_FAILURE_LIMIT)
NOT_A_SECRET = re.compile(r"_LIMIT$")
# pods that legitimately talk to Redis besides the API and the workers: the chart's backup CronJob
REDIS_CLIENTS = {"api", "worker", "redis-backup"}
REDIS_PORTS = {"6379", "redis"}


def _objects(form):
    kind, name = form
    return scenario_objects(name) if kind == "chart" else k8s_objects(name)


def _pod_labels(obj) -> dict:
    if obj["kind"] == "Pod":
        return obj["metadata"].get("labels", {})
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    return obj["spec"]["template"]["metadata"]["labels"]


def _component(obj) -> str:
    return _pod_labels(obj).get("app.kubernetes.io/component", obj["metadata"]["name"])


def _redis_workloads(objs):
    return [o for o in objs if o["kind"] in WORKLOADS and _component(o) == "redis"]


def _selects(selector: dict, labels: dict) -> bool:
    assert set(selector) <= {"matchLabels"}, f"selector form this test does not model: {selector}"
    return selector.get("matchLabels", {}).items() <= labels.items()


@pytest.mark.parametrize("form", FORMS)
def test_redis_server_enforces_a_password_from_a_secret(form):
    objs = _objects(form)
    redis_pods = _redis_workloads(objs)
    if not redis_pods:
        pytest.skip("this form uses an external Redis (its password comes from the operator's Secret)")
    secrets = {o["metadata"]["name"] for o in find(objs, "Secret")}
    for workload in redis_pods:
        spec = pod_spec(workload)
        (server,) = [c for c in spec["containers"] if c["name"] == "redis"]
        script = " ".join(server.get("command", []) + server.get("args", []))
        assert "requirepass" in script, "redis-server is started without requirepass"
        secret_volumes = {v["name"]: v["secret"]["secretName"] for v in spec.get("volumes", []) if "secret" in v}
        mounted = [m for m in server.get("volumeMounts", []) if m["name"] in secret_volumes]
        from_env = [e for e in server.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})]
        assert mounted or from_env, "the password does not come from a Secret"
        for m in mounted:
            assert m["mountPath"] in script or any(m["mountPath"] in str(v) for v in server.get("env", [])), (
                "the Secret is mounted but the start command does not read it"
            )
            name = secret_volumes[m["name"]]
            assert name in secrets or form[0] == "chart", f"Secret {name} is not part of this form"
        for probe in ("livenessProbe", "readinessProbe"):
            cmd = " ".join(server.get(probe, {}).get("exec", {}).get("command", []))
            assert "REDISCLI_AUTH" in cmd or "-a " in cmd, f"{probe} would fail against a password-protected Redis"


@pytest.mark.parametrize("form", FORMS)
def test_only_api_and_worker_pods_can_reach_redis(form):
    """All NetworkPolicies that select the Redis pods, together, admit only the API and worker pods
    (and the chart's backup job) of this release: no namespace-wide, ipBlock or empty peers."""
    objs = _objects(form)
    redis_pods = _redis_workloads(objs)
    if not redis_pods:
        pytest.skip("no Redis in this form")
    redis_labels = _pod_labels(redis_pods[0])
    policies = [p for p in find(objs, "NetworkPolicy") if _selects(p["spec"]["podSelector"], redis_labels)]
    assert policies, "no NetworkPolicy selects the Redis pods: every pod in the namespace can reach Redis"
    peers = []
    for policy in policies:
        assert "Ingress" in policy["spec"].get("policyTypes", ["Ingress"])
        for rule in policy["spec"].get("ingress", []):
            ports = {str(p.get("port")) for p in rule.get("ports", [])}
            if ports and not ports & REDIS_PORTS:
                continue  # e.g. the exporter's metrics port for Prometheus: not Redis
            assert rule.get("from"), f"{policy['metadata']['name']}: an ingress rule without 'from' admits everyone"
            for peer in rule["from"]:
                assert set(peer) == {"podSelector"}, f"peer admits more than pods of this namespace: {peer}"
                peers.append(peer["podSelector"])
    workloads = [o for o in objs if o["kind"] in WORKLOADS]
    admitted = {_component(o) for o in workloads if any(_selects(sel, _pod_labels(o)) for sel in peers)}
    assert {"api", "worker"} <= admitted, admitted
    assert admitted <= REDIS_CLIENTS, f"pods that must not reach Redis can: {admitted - REDIS_CLIENTS}"
    stranger = {"app": "stranger", "app.kubernetes.io/component": "debug"}
    assert not any(_selects(sel, stranger) for sel in peers)


@pytest.mark.parametrize("env", ["test", "prod"])
def test_k8s_containers_are_hardened(env):
    """The chart's pods are checked by test_pods_are_locked_down; the plain manifests get the same."""
    workloads = [o for o in k8s_objects(env) if o["kind"] in WORKLOADS]
    assert {"api", "worker", "redis"} <= {_component(o) for o in workloads}
    for obj in workloads:
        spec = pod_spec(obj)
        name = obj["metadata"]["name"]
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"].get("runAsUser", 1) != 0, name
        assert spec.get("automountServiceAccountToken") is False, name
        assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC"), name
        for c in containers(obj):
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, (name, c["name"])
            assert sc["allowPrivilegeEscalation"] is False, (name, c["name"])
            assert sc["capabilities"]["drop"] == ["ALL"] and not sc["capabilities"].get("add"), (name, c["name"])
            assert not sc.get("privileged"), (name, c["name"])


@pytest.mark.parametrize("form", FORMS)
def test_no_secret_in_plain_text(form):
    """Passwords and tokens reach pods only through Secrets: never as a literal env value or in a
    ConfigMap, where anyone who may read ConfigMaps (or `kubectl describe pod`) would see them."""
    objs = _objects(form)
    for cm in find(objs, "ConfigMap"):
        for key, value in (cm.get("data") or {}).items():
            assert not SECRETISH.search(key) or NOT_A_SECRET.search(key), (
                f"ConfigMap {cm['metadata']['name']} holds {key}"
            )
            assert not re.search(r"^\s*requirepass\s+\S", str(value), re.M), (
                f"{cm['metadata']['name']}/{key} holds a password"
            )
    for obj in objs:
        if obj["kind"] not in WORKLOADS:
            continue
        for c in containers(obj):
            for e in c.get("env", []):
                if SECRETISH.search(e["name"]) and not e["name"].endswith("_FILE"):  # _FILE: a path to one
                    assert "value" not in e or e["value"] in ("", None), (
                        f"{obj['metadata']['name']}/{c['name']}: {e['name']} is a literal"
                    )


def test_api_token_when_enabled_comes_from_a_secret():
    from tests.deploy.manifests import render_objects

    objs = render_objects({"config": {"apiToken": {"enabled": True}}})
    (api,) = [o for o in find(objs, "Deployment", "api")]
    env = {e["name"]: e for c in containers(api) for e in c.get("env", [])}
    assert "secretKeyRef" in env["API_TOKEN"]["valueFrom"]
    # (the workers get it too, from the same Secret: they have no use for it; docs/security.md notes it)


def test_k8s_secrets_are_marked_for_editing():
    """The k8s/ Secrets ship placeholders: each must be flagged EDIT so nobody applies it as is."""
    for path in sorted(K8S.rglob("*secret*.y*ml")):
        text = path.read_text()
        doc = yaml.safe_load(text)
        for value in (doc.get("stringData") or {}).values():
            assert "EDIT" in value or "EDIT" in text.split(value, 1)[1].splitlines()[0], path.name


COMPOSE_FILES = sorted(
    p
    for p in REPO_ROOT.glob("**/*compose*.y*ml")
    if not any(part in {".venv", "node_modules", ".run"} for part in p.parts)
)


def test_compose_files_protect_redis():
    """No compose file ships today (make up runs a loopback-only Redis). Any that is added must start
    Redis with requirepass from a secret or an environment variable, never a literal password."""
    for path in COMPOSE_FILES:
        doc = yaml.safe_load(path.read_text())
        for name, service in (doc.get("services") or {}).items():
            image = str(service.get("image", ""))
            if not image.startswith("redis"):
                continue
            command = (
                " ".join(service["command"])
                if isinstance(service.get("command"), list)
                else str(service.get("command", ""))
            )
            assert "requirepass" in command, f"{path.name}: {name} runs without a password"
            assert re.search(r"requirepass\s+\"?\$", command) or "/run/secrets/" in command, (
                f"{path.name}: {name} has a literal password"
            )
    assert isinstance(COMPOSE_FILES, list)


def test_local_stack_redis_listens_on_loopback_only():
    """make up's Redis has no password; what keeps it private is binding 127.0.0.1 only."""
    script = (REPO_ROOT / "scripts" / "up.sh").read_text()
    assert "--bind 127.0.0.1" in script and "--protected-mode no" not in script
