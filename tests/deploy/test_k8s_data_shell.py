"""k8s/'s optional data-shell pod (k8s/<env>/data-shell/, k8s/README.md "Your own data file"; the chart's data.shell):
the same pod as the chart's, on the claim, node, paths and image of that env's API and workers, and
not sent by `kubectl apply -f k8s/<env>/` or `-k k8s/<env>`. Played under podman with the chart's in
tests/deploy/test_data_shell.py."""

from __future__ import annotations

import shutil
import subprocess
import sys

import kubernetes_validate
import pytest

from tests.deploy.manifests import K8S, REPO_ROOT, containers, find, k8s_objects, one, pod_spec, resolved_env
from tests.deploy.test_kube_schemas import VERSIONS
from tests.deploy.test_student_path import _apply_f


@pytest.mark.parametrize("env", ["test", "prod"])
def test_optional_the_env_alone_has_no_shell(env):
    assert not find(k8s_objects(env), "Deployment", "data-shell")
    assert not find(_apply_f(K8S / env), "Deployment", "data-shell")  # -f reads no sub-folder
    assert {o["kind"] for o in _apply_f(K8S / env / "data-shell")} == {"Deployment", "NetworkPolicy"}


@pytest.mark.parametrize("env", ["test", "prod", "local"])
def test_it_mounts_the_claim_writable_where_load_data_does_beside_the_api_and_workers(env):
    objs = k8s_objects(env)
    shell_objs = k8s_objects(f"{env}/data-shell")
    shell, api, worker = (
        one(shell_objs, "Deployment", "data-shell"),
        *(one(objs, "Deployment", c) for c in ("api", "worker")),
    )
    spec = pod_spec(shell)
    (container,) = spec["containers"]
    load = next(c for c in pod_spec(api)["initContainers"] if c["name"] == "load-data")
    assert container["command"] == ["jobqueue", "data", "hold"]
    assert container["image"] == pod_spec(worker)["containers"][0]["image"]  # local: the renamed image too
    (claim,) = [v for v in spec["volumes"] if "persistentVolumeClaim" in v]
    (api_claim,) = [v for v in pod_spec(api)["volumes"] if "persistentVolumeClaim" in v]
    assert claim["persistentVolumeClaim"] == {"claimName": api_claim["persistentVolumeClaim"]["claimName"]}
    mount = next(m for m in container["volumeMounts"] if m["name"] == claim["name"])
    load_mount = next(m for m in load["volumeMounts"] if m["name"] == "data")
    assert not mount.get("readOnly") and mount["mountPath"] == load_mount["mountPath"]
    env_of = resolved_env(container, objs + shell_objs)
    loader_env = resolved_env(load, objs)
    for name in ("DATA_PATH", "DATA_CACHE_DIR", "DATA_CACHE_MODE"):
        assert env_of[name] == loader_env[name], name
    assert env_of["POD_NAMESPACE"] == "coe332"  # its log prints the commands with --namespace
    assert container["resources"] == load["resources"]
    assert container["securityContext"] == load["securityContext"]
    assert spec["securityContext"] == pod_spec(api)["securityContext"]
    assert container["readinessProbe"]["exec"]["command"] == ["test", "-w", mount["mountPath"]]
    # ReadWriteOnce: on the node of the API and workers, by their own rule, which does not match it
    assert spec["affinity"] == pod_spec(api)["affinity"] == pod_spec(worker)["affinity"]
    term = spec["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
    assert (
        shell["spec"]["template"]["metadata"]["labels"]["app"]
        not in term["labelSelector"]["matchExpressions"][0]["values"]
    )
    assert shell["spec"]["replicas"] == 1 and shell["spec"]["strategy"] == {"type": "Recreate"}
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    policy = one(shell_objs, "NetworkPolicy", "data-shell")
    assert policy["spec"] == {
        "podSelector": {"matchLabels": shell["spec"]["selector"]["matchLabels"]},
        "policyTypes": ["Ingress"],
    }


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("env", ["test", "prod", "local"])
def test_valid_in_strict_mode(env, version):
    for obj in k8s_objects(f"{env}/data-shell"):
        kubernetes_validate.validate(obj, version, strict=True)


def test_personalize_edits_the_shell_s_image_too(tmp_path):
    work = tmp_path / "k8s"
    shutil.copytree(K8S, work)
    run = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "personalize-k8s"), "jdoe", "docker.io/jdoe", "--tag", "0.2.0"]
        + ["--dir", str(work)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    for env in ("test", "prod"):
        (shell,) = find(_apply_f(work / env / "data-shell"), "Deployment", "data-shell")
        assert [c["image"] for c in containers(shell)] == ["docker.io/jdoe/atx-jobqueue-worker:0.2.0"]
    local = (work / "local" / "data-shell" / "Kustomization").read_text()
    assert "- name: docker.io/jdoe/atx-jobqueue-worker\n" in local
