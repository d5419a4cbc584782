"""The class's way to deploy: `kubectl apply -f k8s/test/` (the COE 332 habit), `kubectl apply -k`,
`scripts/personalize-k8s USER IMAGE` for the edits a student makes, and k8s/local for kind/minikube.

`kubectl apply -f <dir>` sends every file whose name ends in .json, .yaml or .yml
(k8s.io/cli-runtime/pkg/resource/visitor.go, FileExtensions) and knows nothing of kustomize: a
kustomization.yaml in the directory is sent as an object and fails ("resource mapping not found
... Kustomization"), and its `images:` rewrite never happens (review finding 3.5). Kustomize also
reads a file named `Kustomization`, which `-f` skips."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.deploy.manifests import K8S, REPO_ROOT, containers, k8s_objects, kubectl

KUBECTL_EXTENSIONS = (".json", ".yaml", ".yml")
ENVS = ("test", "prod")


def _apply_f(folder: Path) -> list[dict]:
    """What `kubectl apply -f folder/` reads (non-recursive)."""
    objs = []
    for path in sorted(folder.iterdir()):
        if path.suffix in KUBECTL_EXTENSIONS:
            objs.extend(d for d in yaml.safe_load_all(path.read_text()) if d is not None)
    return objs


@pytest.mark.parametrize("env", ENVS)
def test_apply_f_sends_only_kubernetes_objects(env):
    for obj in _apply_f(K8S / env):
        assert obj.get("apiVersion") and obj.get("kind"), obj
        assert obj["kind"] != "Kustomization", (
            f"kubectl apply -f k8s/{env}/ would send the kustomization to the API server"
        )


@pytest.mark.parametrize("env", ENVS)
def test_apply_f_and_apply_k_send_the_same_objects(env):
    def keys(objs):
        return sorted((o["kind"], o["metadata"]["name"]) for o in objs)

    assert keys(_apply_f(K8S / env)) == keys(k8s_objects(env))

    # and the same images: no rewrite that only -k applies
    def images(objs):
        return sorted(c["image"] for o in objs if o["kind"] in ("Deployment", "Job") for c in containers(o))

    assert images(_apply_f(K8S / env)) == images(k8s_objects(env))


@pytest.mark.parametrize("env", ENVS)
def test_images_name_a_registry_account(env):
    for obj in _apply_f(K8S / env):
        if obj["kind"] in ("Deployment", "Job"):
            for c in containers(obj):
                if "atx-jobqueue" in c["image"]:
                    assert c["image"].count("/") >= 2, f"{c['image']} would be pulled from docker.io/library/"


def test_personalize_makes_every_student_edit(tmp_path):
    work = tmp_path / "k8s"
    shutil.copytree(K8S, work)
    script = REPO_ROOT / "scripts" / "personalize-k8s"
    run = subprocess.run(
        [sys.executable, str(script), "jdoe", "docker.io/jdoe", "--tag", "0.2.0", "--dir", str(work)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    passwords = {}
    for env in ENVS:
        objs = _apply_f(work / env)
        images = {c["image"] for o in objs if o["kind"] == "Deployment" for c in containers(o)} - {"redis:7.2"}
        assert images == {"docker.io/jdoe/atx-jobqueue-api:0.2.0", "docker.io/jdoe/atx-jobqueue-worker:0.2.0"}
        (ingress,) = [o for o in objs if o["kind"] == "Ingress"]
        assert ingress["spec"]["rules"][0]["host"].startswith("jdoe-atx-jobqueue")
        (secret,) = [o for o in objs if o["kind"] == "Secret"]
        password = secret["stringData"]["redis-password"]
        assert "EDIT" not in password and len(password) == 32
        passwords[env] = password
    # again, another account: the same lines change, the password is kept
    run = subprocess.run(
        [sys.executable, str(script), "jdoe", "ghcr.io/jdoe", "--dir", str(work)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    objs = _apply_f(work / "test")
    assert "ghcr.io/jdoe/atx-jobqueue-api:0.2.0" in {
        c["image"] for o in objs if o["kind"] == "Deployment" for c in containers(o)
    }
    assert [o for o in objs if o["kind"] == "Secret"][0]["stringData"]["redis-password"] == passwords["test"]
    bad = subprocess.run(
        [sys.executable, str(script), "J Doe", "x", "--dir", str(work)], capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 2 and "USER" in bad.stderr


def test_local_overlay_runs_on_kind_and_minikube():
    objs = k8s_objects("local")
    for pvc in (o for o in objs if o["kind"] == "PersistentVolumeClaim"):
        assert "storageClassName" not in pvc["spec"], "kind/minikube have no cinder-csi: use their default class"
    images = {c["image"].split(":")[0] for o in objs if o["kind"] == "Deployment" for c in containers(o)} - {"redis"}
    assert images == {"atx-jobqueue-api", "atx-jobqueue-worker"}, "the names skaffold builds and kind/minikube load"


@pytest.mark.parametrize(
    "image,words",
    [
        ("ghcr.io/JDoe", "lower-case"),  # a GitHub user name with capitals: the kubelet's InvalidImageName
        ("docker.io/jdoe/atx-jobqueue-api:0.1.0", "--tag"),  # the whole image given: .../atx-jobqueue-api:0.1.0/atx-...
        ("docker.io/jdoe:0.1.0", "--tag"),
        ("docker.io/j doe", "not an image"),
        ("https://ghcr.io/jdoe", "not an image"),
    ],
)
def test_personalize_refuses_an_image_the_cluster_cannot_pull(tmp_path, image, words):
    """`personalize-k8s jdoe ghcr.io/JDoe` wrote `image: ghcr.io/JDoe/atx-jobqueue-api:0.1.0`, which the
    kubelet refuses (InvalidImageName: repository paths are lower-case), and an IMAGE with the
    image name and tag in it made `.../atx-jobqueue-api:0.1.0/atx-jobqueue-api:0.1.0`."""
    work = tmp_path / "k8s"
    shutil.copytree(K8S, work)
    script = REPO_ROOT / "scripts" / "personalize-k8s"
    run = subprocess.run(
        [sys.executable, str(script), "jdoe", image, "--dir", str(work)], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 2, run.stdout + run.stderr
    assert "IMAGE" in run.stderr and words in run.stderr, run.stderr
    assert not run.stdout  # nothing written
    for env in ENVS:
        for path in (work / env).glob("*.yml"):
            assert path.read_text() == (K8S / env / path.name).read_text(), path


def test_the_local_overlay_still_uses_local_images_after_personalize(tmp_path):
    """k8s/local renamed `docker.io/username/atx-jobqueue-*` to the bare local names; after
    `personalize-k8s jdoe docker.io/jdoe` the base said `docker.io/jdoe/...`, the rename matched
    nothing, and `kubectl apply -k k8s/local` (or `skaffold dev -p k8s`, which only replaces the bare
    names it builds) ran the images pushed to docker.io, not the code just built and loaded."""
    work = tmp_path / "k8s"
    shutil.copytree(K8S, work)
    script = REPO_ROOT / "scripts" / "personalize-k8s"
    for image in ("docker.io/jdoe", "ghcr.io/jdoe"):  # and again, another account
        run = subprocess.run(
            [sys.executable, str(script), "jdoe", image, "--dir", str(work)], capture_output=True, text=True, timeout=60
        )
        assert run.returncode == 0, run.stderr
        rendered = subprocess.run(
            [kubectl(), "kustomize", str(work / "local")], check=True, capture_output=True, text=True
        ).stdout
        objs = [d for d in yaml.safe_load_all(rendered) if d]
        images = {c["image"].split(":")[0] for o in objs if o["kind"] == "Deployment" for c in containers(o)}
        assert images - {"redis"} == {"atx-jobqueue-api", "atx-jobqueue-worker"}, image
