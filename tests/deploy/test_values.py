"""values.yaml is documented (`## @param` on every value, tables generated from them) and
values.schema.json covers every value and rejects bad ones."""

from __future__ import annotations

import json
import subprocess
import sys

import helm_python as helm
import pytest
import yaml

from tests.deploy.manifests import CHART, REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "helm" / "tools"))
import values_table

TEXT = (CHART / "values.yaml").read_text()
VALUES = yaml.safe_load(TEXT)
DOCUMENTED = {key for _, key, _ in values_table.params(TEXT)}
SCHEMA = json.loads((CHART / "values.schema.json").read_text())


def _leaves(node, prefix=""):
    if isinstance(node, dict) and node and f"{prefix}".rstrip(".") not in DOCUMENTED:
        for k, v in node.items():
            yield from _leaves(v, f"{prefix}{k}.")
    else:
        yield prefix.rstrip(".")


def test_every_value_has_a_param_line():
    missing = [leaf for leaf in _leaves(VALUES) if leaf not in DOCUMENTED]
    assert not missing, f"values without a ## @param line: {missing}"


def test_every_param_line_names_a_value():
    for key in DOCUMENTED:
        values_table.lookup(VALUES, key)


def test_schema_knows_every_documented_value():
    for key in DOCUMENTED:
        node = SCHEMA
        for part in key.split("."):
            assert part in node.get("properties", {}), f"{key} is not in values.schema.json"
            node = node["properties"][part]


def test_generated_tables_are_current():
    run = subprocess.run(
        [sys.executable, str(REPO_ROOT / "helm" / "tools" / "values_table.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_defaults_pass_the_schema():
    with helm.Chart.load(str(CHART)) as chart:
        chart.validate_schema({})


@pytest.mark.parametrize(
    "bad",
    [
        {"autoscaling": {"mode": "kedaa"}},
        {"autoscaling": {"threshold": 0}},
        {"api": {"port": 0}},
        {"api": {"port": "5000"}},
        {"api": {"service": {"type": "ExternalName"}}},
        {"api": {"ingress": {"path": "/jobs"}}},
        {"worker": {"metricsPort": 70000}},
        {"config": {"logLevel": "TRACE"}},
        {"config": {"redisJobsDb": 16}},
        {"config": {"jobLeaseSeconds": 0}},
        {"config": {"extraEnv": [{"name": "lowercase"}]}},
        {"redis": {"appendfsync": "sometimes"}},
        {"redis": {"enabled": False}},
        {"redis": {"restore": {"file": "../../etc/passwd"}}},
        {"redis": {"restore": {"token": "two words"}}},
        {"data": {"persistence": {"accessModes": ["ReadWriteSometimes"]}}},
        {"data": {"persistence": {"size": "lots"}}},
        {"data": {"loader": {"source": "ftp"}}},
        {"podSecurityContext": {"runAsNonRoot": False, "runAsUser": 0}},
        {"containerSecurityContext": {"privileged": True}},
        {"metrics": {"serviceMonitor": {"interval": "often"}}},
        {"replicaCount": 3},
        {"api": {"replicas": 3}},
        {"image": {"registry": "ghcr.io/JDoe"}},  # the kubelet: InvalidImageName (paths are lower-case)
        {"image": {"registry": "docker.io/jdoe/atx-jobqueue-api:0.1.0"}},  # a whole image, not the account
        {"image": {"registry": "https://ghcr.io/jdoe"}},
    ],
)
def test_schema_rejects_bad_values(bad):
    with helm.Chart.load(str(CHART)) as chart:
        with pytest.raises(helm.HelmValuesError):
            chart.validate_schema(bad)


@pytest.mark.parametrize("level", ["WARN", "critical", "fatal", "INFO"])
def test_schema_accepts_the_level_names_the_programs_take(level):
    """LOG_LEVEL takes Python logging's names (WARN, CRITICAL, FATAL), upper or lower case."""
    with helm.Chart.load(str(CHART)) as chart:
        chart.validate_schema({"config": {"logLevel": level}})


@pytest.mark.parametrize(
    "registry", ["docker.io/jdoe", "ghcr.io/jdoe/", "GHCR.io/jdoe", "localhost:5000/class-2024/j_doe", "localhost", ""]
)
def test_schema_accepts_registries_a_kubelet_pulls_from(registry):
    with helm.Chart.load(str(CHART)) as chart:
        chart.validate_schema({"image": {"registry": registry}})
