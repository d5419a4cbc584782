"""k8s/ exposes the API (NodePort, Ingress) and can require a token: the API container reads
API_TOKEN and API_TOKENS from an optional Secret that k8s/README.md has the student create. The
README's own commands make that Secret (real kubectl, client-side dry run), it is valid in strict
mode, and the API built from the rendered environment with it refuses a request without a token
and takes each student's; without it (the references are optional, so the kubelet sets nothing)
the API asks for none, as before."""

from __future__ import annotations

import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from devstack.paths import SAMPLE
from jobqueue.settings import load_settings
from tests.deploy.manifests import K8S, containers, k8s_objects, one, resolved_env, run_with_kubectl

TOKEN_VARS = {"API_TOKEN": "api-token", "API_TOKENS": "api-tokens"}


def _api_container(objs: list[dict]) -> dict:
    (api,) = [c for c in containers(one(objs, "Deployment", "api")) if c["name"] == "api"]
    return api


@pytest.mark.parametrize("env", ["test", "prod", "local"])
def test_the_api_reads_its_tokens_from_an_optional_secret(env):
    objs = k8s_objects(env)
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in _api_container(objs)["env"] if e["name"] in TOKEN_VARS}
    secret = f"atx-jobqueue-{'test' if env == 'local' else env}-api-tokens"
    assert refs == {var: {"name": secret, "key": key, "optional": True} for var, key in TOKEN_VARS.items()}
    assert not any(o["kind"] == "Secret" and o["metadata"]["name"] == secret for o in objs), (
        "the tokens are the student's to make, never a placeholder everyone can read in the repository"
    )
    for c in containers(one(objs, "Deployment", "worker")):
        assert not {e["name"] for e in c.get("env", [])} & set(TOKEN_VARS), "workers never see a token"


def _readme_secret(env: str, tmp_path: Path) -> dict:
    """The README's token file and `kubectl create secret` lines, run as written (for prod with the
    names it says to change), the Secret printed by a client-side dry run instead of sent."""
    block = re.search(r"## Require a token.*?```bash\n(.*?)```", (K8S / "README.md").read_text(), re.S)
    assert block, "k8s/README.md has no 'Require a token' commands"
    lines = [line for line in block[1].splitlines() if line.startswith(("for ", "kubectl create secret"))]
    assert len(lines) == 2, lines
    script = "\n".join(lines).replace("atx-jobqueue-test-", f"atx-jobqueue-{env}-")
    script += " --dry-run=client -o yaml"
    made = run_with_kubectl(script, tmp_path)
    assert made.returncode == 0, made.stderr
    return yaml.safe_load(made.stdout)


def _app(objs: list[dict], redis_url: str):
    from jobqueue_api import create_app

    env = resolved_env(_api_container(objs), objs)
    env.pop("REDIS_PASSWORD")  # the session's Redis has none; the rest is the container's as rendered
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(REDIS_URL=redis_url, DATA_PATH=str(SAMPLE))
    settings = load_settings(env)
    return create_app(settings, load_data=False).test_client()


SUBMIT = {"operation": "top_locations", "params": {"n": 2}}


@pytest.mark.parametrize("env", ["test", "prod"])
def test_with_the_readmes_secret_the_api_requires_tokens(env, tmp_path, redis_url):
    secret = _readme_secret(env, tmp_path)
    kubernetes_validate.validate(secret, kubernetes_validate.latest_version(), strict=True)
    assert secret["metadata"]["name"] == f"atx-jobqueue-{env}-api-tokens"
    students = dict(line.split(":", 1) for line in (tmp_path / "class-tokens.txt").read_text().splitlines())
    assert set(students) == {"alice", "bob", "carol"}

    client = _app(k8s_objects(env) + [secret], redis_url)
    assert client.post("/submit").status_code == 401  # the README's curl check
    assert client.post("/submit", json=SUBMIT).status_code == 401
    submitted = client.post("/submit", json=SUBMIT, headers={"Authorization": f"Bearer {students['bob']}"})
    assert submitted.status_code == 202, submitted.get_json()
    mine = client.get(
        f"/status/{submitted.get_json()['job_id']}", headers={"Authorization": f"Bearer {students['bob']}"}
    )
    assert mine.status_code == 200 and mine.get_json()["owner"] == "bob"
    other = client.get(
        f"/status/{submitted.get_json()['job_id']}", headers={"Authorization": f"Bearer {students['alice']}"}
    )
    assert other.status_code == 404, "a student sees only their own jobs"


def test_without_the_secret_the_api_asks_for_no_token(redis_url):
    objs = k8s_objects("test")
    assert not set(resolved_env(_api_container(objs), objs)) & set(TOKEN_VARS)
    assert _app(objs, redis_url).post("/submit", json=SUBMIT).status_code == 202
