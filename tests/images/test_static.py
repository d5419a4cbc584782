"""Fast checks of the Dockerfiles and docker-compose.yml against the code, with no image built.

They keep the files in step with what they point at (console scripts, package names, settings,
ports, probe paths) and run even with SKIP_IMAGES=1; test_images.py proves the images work.
"""

from __future__ import annotations

import re
import tomllib

import pytest

from devstack.paths import REPO_ROOT
from jobqueue.settings import SPEC

SERVICES = {"api": "atx-jobqueue-api", "worker": "atx-jobqueue-worker"}
# Read by libraries rather than by jobqueue.settings, yet part of the deployment contract.
LIBRARY_ENV = {"PROMETHEUS_MULTIPROC_DIR"}


def dockerfile(service: str) -> str:
    return (REPO_ROOT / "services" / service / "Dockerfile").read_text()


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    return [(m.group(1).upper(), m.group(2).strip()) for m in re.finditer(r"^\s*(\w+)\s+(.*)$", joined, re.M)]


def exposed(service: str) -> list[int]:
    return [int(p.split("/")[0]) for k, v in instructions(dockerfile(service)) if k == "EXPOSE" for p in v.split()]


@pytest.mark.parametrize("service", SERVICES)
def test_dockerfile_follows_the_image_rules(service):
    steps = instructions(dockerfile(service))
    froms = [v for k, v in steps if k == "FROM"]
    assert froms == ["${PYTHON_IMAGE} AS builder", "${PYTHON_IMAGE}"], "two stages, one base build argument"
    args = dict(v.split("=", 1) for k, v in steps if k == "ARG" and "=" in v)
    assert re.fullmatch(r"(docker\.io/library/)?python:3\.\d+-slim", args["PYTHON_IMAGE"])
    runs = " ".join(v for k, v in steps if k == "RUN")
    package = SERVICES[service]
    assert f"uv sync --frozen --no-dev --no-editable --package {package}" in runs
    final = steps[max(i for i, (k, _) in enumerate(steps) if k == "FROM") :]
    users = [v for k, v in final if k == "USER"]
    assert users and re.fullmatch(r"[1-9]\d*:[1-9]\d*", users[-1]), "numeric non-root USER in the final stage"
    assert not [v for k, v in final if k == "RUN"], "the final stage runs nothing (no compilers, no package manager)"
    assert ("WORKDIR", "/app") in final


@pytest.mark.parametrize("service", SERVICES)
def test_dockerfile_command_is_the_packages_console_script(service):
    project = tomllib.loads((REPO_ROOT / "services" / service / "pyproject.toml").read_text())["project"]
    assert project["name"] == SERVICES[service]
    cmd = [v for k, v in instructions(dockerfile(service)) if k == "CMD"][-1]
    script = re.fullmatch(r'\["([\w-]+)"\]', cmd).group(1)
    assert script in project["scripts"]


def test_worker_package_depends_on_core_and_analysis_only():
    """The worker image installs exactly this; a web framework here would land in it."""
    project = tomllib.loads((REPO_ROOT / "services/worker/pyproject.toml").read_text())["project"]
    assert sorted(project["dependencies"]) == ["atx-analysis", "atx-jobqueue-core"]


def test_core_needs_the_analysis_stack_only_as_an_extra():
    """`pip install atx-jobqueue-core` is the client; pandas & co. come with the services' own dependencies."""
    project = tomllib.loads((REPO_ROOT / "shared/core/pyproject.toml").read_text())["project"]
    assert "atx-analysis" not in project["dependencies"]
    assert project["optional-dependencies"]["analysis"] == ["atx-analysis"]


def test_dockerignore_keeps_local_state_out():
    lines = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    assert patterns[0] == "*", "an allow-list: everything is excluded first"
    allowed = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    assert allowed == {"pyproject.toml", "uv.lock", "shared", "services", "data/traffic_incidents_sample.csv"}


# --- docker-compose.yml --------------------------------------------------------------------------


def interpolate(value):
    """Compose's ${VAR:-default} with nothing set: the defaults a fresh laptop gets."""
    if isinstance(value, str):
        return re.sub(r"\$\{(\w+)(?::?-([^}]*))?\}", lambda m: m.group(2) or "", value)
    if isinstance(value, list):
        return [interpolate(v) for v in value]
    if isinstance(value, dict):
        return {k: interpolate(v) for k, v in value.items()}
    return value


@pytest.fixture(scope="module")
def compose():
    yaml = pytest.importorskip("yaml")
    return interpolate(yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text()))


def test_compose_redis_is_official_persistent_and_password_protected(compose):
    redis = compose["services"]["redis"]
    assert redis["image"] in ("redis:7", "docker.io/library/redis:7")
    command = redis["command"]
    assert command[0] == "redis-server"
    assert command[command.index("--appendonly") + 1] == "yes"
    password = command[command.index("--requirepass") + 1]
    assert password, "requirepass must not be empty"
    assert any(v.endswith(":/data") for v in redis["volumes"])
    for service in SERVICES:
        assert compose["services"][service]["environment"]["REDIS_PASSWORD"] == password
        assert compose["services"][service]["depends_on"]["redis"]["condition"] == "service_healthy"


@pytest.mark.parametrize("service", SERVICES)
def test_compose_service_matches_image_and_settings(compose, service):
    spec = compose["services"][service]
    assert spec["build"]["context"] == "."
    assert (REPO_ROOT / spec["build"]["dockerfile"]) == REPO_ROOT / "services" / service / "Dockerfile"
    assert set(spec["build"].get("args", {})) <= {"PYTHON_IMAGE", "UV_VERSION"}
    unknown = set(spec["environment"]) - set(SPEC) - LIBRARY_ENV
    assert unknown == set(), "environment variables the code does not read"
    assert spec["read_only"] is True and spec["tmpfs"] == ["/tmp"] and spec["cap_drop"] == ["ALL"]
    assert "user" not in spec, "the image's own numeric USER applies"


def test_compose_ports_and_healthchecks_follow_the_cluster_probes(compose):
    api, worker = compose["services"]["api"], compose["services"]["worker"]
    api_port = int(api["environment"]["PORT"])
    assert exposed("api") == [api_port]
    assert [int(p.rsplit(":", 1)[1]) for p in api["ports"]] == [api_port]
    assert api["ports"][0].startswith("127.0.0.1:"), "published on loopback only"
    assert f"http://127.0.0.1:{api_port}/readyz" in " ".join(api["healthcheck"]["test"])

    metrics_port = int(worker["environment"]["WORKER_METRICS_PORT"])
    assert exposed("worker") == [metrics_port]
    assert "ports" not in worker, "no host port, so `--scale worker=N` works"
    assert f"http://127.0.0.1:{metrics_port}/metrics" in " ".join(worker["healthcheck"]["test"])
    assert "ports" not in compose["services"]["redis"], "Redis is not published on the host"


def test_compose_stopping_a_worker_never_cuts_a_job(compose):
    """As the chart (tests/deploy/test_timeouts.py): a stopped or scaled-in worker lets its job in
    hand end by itself (SHUTDOWN_GRACE_SECONDS >= JOB_TIMEOUT_SECONDS), and compose's SIGKILL comes
    after the grace plus a margin to record the outcome."""
    from jobqueue.settings import load_settings

    worker = compose["services"]["worker"]
    env = {k: str(v) for k, v in worker["environment"].items() if k in SPEC}
    settings = load_settings(env)
    assert settings.shutdown_grace_seconds >= settings.job_timeout_seconds, (
        f"SHUTDOWN_GRACE_SECONDS {settings.shutdown_grace_seconds:g} < JOB_TIMEOUT_SECONDS "
        f"{settings.job_timeout_seconds:g}: `docker compose stop` or `--scale` hands back longer jobs"
    )
    stop = worker["stop_grace_period"]
    assert stop.endswith("s"), stop
    assert int(stop[:-1]) >= settings.shutdown_grace_seconds + 10


def test_compose_own_data_file_as_its_comments_say_reaches_the_api_and_the_worker():
    """The file's own recipe for a data file of your own, followed literally (uncomment DATA_PATH and
    the `volumes:` lines). It used to be the worker's alone: the API kept the bundled sample, so
    /data, /analysis and the web page showed the sample and submissions were checked against its
    date range (daily_counts' default end) while the worker ran on your file."""
    import yaml

    text = (REPO_ROOT / "docker-compose.yml").read_text()
    edited = re.sub(r"(?m)^(\s*)# (DATA_PATH: |volumes:|  - \./data:)", r"\1\2", text)
    assert edited != text
    services = interpolate(yaml.safe_load(edited))["services"]
    api, worker = services["api"], services["worker"]
    assert api["environment"]["DATA_PATH"] == worker["environment"]["DATA_PATH"] == "/data/traffic_incidents.csv"
    assert api["volumes"] == worker["volumes"] == ["./data:/data:ro"]
