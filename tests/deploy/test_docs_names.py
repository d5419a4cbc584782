"""Docs name what exists (issue test 8): every object a `kubectl`/`helm` command in the README,
the docs, k8s/README.md or NOTES.txt points at is an object the chart (release `jobs`, as in the
docs, any ci/ scenario) or k8s/ renders; a container named with `-c` is in that workload; and no
runbook passes a Redis password on a command line (`redis-cli -a "$REDIS_PASSWORD"` expands in the
operator's shell, where no such variable exists). Review finding 3.7 found four wrong names."""

from __future__ import annotations

import re

import pytest

from tests.deploy.manifests import (
    CHART,
    REPO_ROOT,
    SCENARIOS,
    containers,
    k8s_objects,
    render_chart,
    objects_of,
    scenario_values,
)

RELEASE = "jobs"
KINDS = {
    "deployment": "Deployment",
    "deploy": "Deployment",
    "deployments": "Deployment",
    "service": "Service",
    "svc": "Service",
    "statefulset": "StatefulSet",
    "sts": "StatefulSet",
    "job": "Job",
    "cronjob": "CronJob",
    "secret": "Secret",
    "configmap": "ConfigMap",
    "cm": "ConfigMap",
    "pvc": "PersistentVolumeClaim",
    "persistentvolumeclaim": "PersistentVolumeClaim",
    "scaledobject": "ScaledObject",
    "hpa": "HorizontalPodAutoscaler",
    "ingress": "Ingress",
    "networkpolicy": "NetworkPolicy",
    "pod": "Pod",
    "pdb": "PodDisruptionBudget",
}
NAME = r"([a-z0-9<>][a-z0-9<>.-]*[a-z0-9>])"
SLASH_REF = re.compile(r"\b(" + "|".join(KINDS) + r")/" + NAME + r"(?:\s+-c\s+([a-z0-9-]+))?")
WORD_REF = re.compile(
    r"kubectl\b[^\n`|;]*?\b(get|describe|delete|scale|annotate|edit|patch)\s+("
    + "|".join(KINDS)
    + r")\s+((?:"
    + NAME[1:-1]
    + r"\s*)+)"
)


def _docs() -> dict[str, str]:
    files = [
        REPO_ROOT / "README.md",
        CHART / "README.md",
        REPO_ROOT / "k8s" / "README.md",
        *sorted((REPO_ROOT / "docs").glob("*.md")),
    ]
    texts = {
        str(p.relative_to(REPO_ROOT) if p.is_relative_to(REPO_ROOT) else p): p.read_text() for p in files if p.exists()
    }
    for scenario in SCENARIOS:
        notes = render_chart(scenario_values(scenario), name=RELEASE)["atx-jobqueue/templates/NOTES.txt"]
        texts[f"NOTES.txt ({scenario})"] = notes
    return texts


def _objects() -> list[dict]:
    objs = []
    for scenario in SCENARIOS:
        objs += objects_of(render_chart(scenario_values(scenario), name=RELEASE))
    for env in ("test", "prod", "local"):
        objs += k8s_objects(env) + k8s_objects(f"{env}/data-shell")  # with the optional data-shell pod
    return objs


@pytest.fixture(scope="module")
def known():
    objs = _objects()
    names: dict[str, dict[str, list]] = {}
    for o in objs:
        names.setdefault(o["kind"], {}).setdefault(o["metadata"]["name"], []).append(o)
    for sts in names.get("StatefulSet", {}).values():  # pods and claims the StatefulSet controller makes
        for o in sts:
            names.setdefault("Pod", {})[f"{o['metadata']['name']}-0"] = [o]
            for t in o["spec"].get("volumeClaimTemplates", []):
                names.setdefault("PersistentVolumeClaim", {})[f"{t['metadata']['name']}-{o['metadata']['name']}-0"] = []
    for o in objs:  # Secrets the manifests read and the docs have the user make (k8s/'s tokens)
        if o["kind"] in ("Deployment", "StatefulSet", "Pod", "Job", "CronJob"):
            for c in containers(o):
                for item in c.get("env", []):
                    ref = item.get("valueFrom", {}).get("secretKeyRef")
                    if ref:
                        names.setdefault("Secret", {}).setdefault(ref["name"], [])
    for name in list(names.get("ScaledObject", {})):  # KEDA's HPA for a ScaledObject
        names.setdefault("HorizontalPodAutoscaler", {})[f"keda-hpa-{name}"] = []
    return names


def _resolve(name: str) -> str | None:
    """A name with the release placeholder filled in; None for other placeholders (a job id...)."""
    name = name.replace("<release>", RELEASE).replace("<RELEASE>", RELEASE)
    return None if "<" in name or ">" in name else name


def _references(text: str):
    for m in SLASH_REF.finditer(text):
        yield KINDS[m[1]], m[2], m[3]
    for m in WORD_REF.finditer(text):
        for name in m[3].split():
            yield KINDS[m[2]], name, None


def _ours(name: str) -> bool:
    return "atx-jobqueue" in name or name.startswith((f"{RELEASE}-", "keda-hpa-"))


def test_every_named_object_exists(known):
    problems = []
    for doc, text in _docs().items():
        for kind, raw, container in _references(text):
            name = _resolve(raw)
            if name is None or not _ours(name):
                continue
            if name not in known.get(kind, {}):
                problems.append(f"{doc}: {kind} {raw}")
            elif container:
                workloads = known[kind][name]
                if workloads and not any(c["name"] == container for w in workloads for c in containers(w)):
                    problems.append(f"{doc}: {kind} {raw} has no container {container}")
    assert not problems, "names in the docs that nothing renders:\n" + "\n".join(sorted(set(problems)))


def test_no_runbook_puts_the_redis_password_on_a_command_line():
    for doc, text in _docs().items():
        assert not re.search(r"redis-cli\b[^\n]*\s-a\s", text), (
            f"{doc}: redis-cli -a (use REDISCLI_AUTH from the mounted file)"
        )


def test_the_checker_catches_a_wrong_name(known):
    bad = "kubectl logs deploy/jobs-api\nkubectl describe hpa keda-hpa-jobs-worker\n"
    refs = [(k, n) for k, n, _ in _references(bad)]
    assert ("Deployment", "jobs-api") in refs and ("HorizontalPodAutoscaler", "keda-hpa-jobs-worker") in refs
    assert "keda-hpa-jobs-atx-jobqueue-worker" in known["HorizontalPodAutoscaler"]


def test_notes_ask_nothing_a_class_account_cannot_do():
    for doc, text in _docs().items():
        if doc.startswith("NOTES.txt"):
            assert "kubectl get nodes" not in text, f"{doc}: listing nodes is forbidden to namespace-only accounts"


def test_runbooks_read_the_redis_password_from_the_file_the_container_mounts():
    """The runbooks' `kubectl exec ... -c redis -- sh -c 'REDISCLI_AUTH="$(cat <file>)" redis-cli ...'`
    reads the password from a file in the container; that file must be where the Redis container
    mounts the password Secret's key, under every scenario that runs Redis."""
    files = set()
    for doc in ("docs/operations.md", "docs/observability.md"):
        files |= set(
            re.findall(r"-c redis -- sh -c 'REDISCLI_AUTH=\"\$\(cat ([^)]+)\)\"", (REPO_ROOT / doc).read_text())
        )
    assert files, "no runbook reads the Redis password from its file"
    for scenario in SCENARIOS:
        objs = objects_of(render_chart(scenario_values(scenario), name=RELEASE))
        for sts in (o for o in objs if o["kind"] == "StatefulSet"):
            spec = sts["spec"]["template"]["spec"]
            (redis,) = [c for c in spec["containers"] if c["name"] == "redis"]
            secrets = {v["name"]: v["secret"] for v in spec["volumes"] if "secret" in v}
            mounted = {
                f"{m['mountPath']}/{item['path']}"
                for m in redis["volumeMounts"]
                if m["name"] in secrets
                for item in secrets[m["name"]].get("items", [])
            }
            assert files <= mounted, (scenario, files, mounted)


def test_first_install_shows_the_pods_the_class_cluster_install_runs():
    """docs/first-install.md, step 2: the expected `kubectl get pods` ends with every pod of step 1's
    install Running, one line each. It showed one worker while the class-cluster values run two, so
    a reader watching two workers start could not match the listing."""
    text = (REPO_ROOT / "docs" / "first-install.md").read_text()
    listing = text.split("## 2. Pods start", 1)[1].split("```text", 1)[1].split("```", 1)[0]
    running = [line.split()[0] for line in listing.splitlines() if " Running " in line]
    objects = objects_of(render_chart(scenario_values("class-cluster"), name=RELEASE))
    expected = {"redis": 1}
    for obj in objects:
        if obj["kind"] == "Deployment":
            component = obj["metadata"]["labels"]["app.kubernetes.io/component"]
            expected[component] = obj["spec"]["replicas"]
    shown = {c: sum(1 for n in running if n.startswith(f"{RELEASE}-atx-jobqueue-{c}-")) for c in expected}
    assert shown == expected, f"the listing's Running pods {shown}, the class-cluster install runs {expected}"
