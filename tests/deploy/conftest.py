"""Fixtures of the deployment checks: rendered scenarios, the k8s/ manifests and the pods podman plays."""

from __future__ import annotations

import shutil

import pytest

from tests.deploy.manifests import SCENARIOS, scenario_objects


@pytest.fixture(params=SCENARIOS)
def scenario(request) -> str:
    return request.param


@pytest.fixture
def objects(scenario):
    return scenario_objects(scenario)


@pytest.fixture
def runtime(tmp_path, built_images, built_redis_images):  # the image fixtures: tests/support/images.py
    """Pods played from the locally built images; every pod and claim removed afterwards."""
    from tests.deploy.test_podman_pods import Runtime

    played = Runtime(tmp_path, {**built_images, **built_redis_images})
    try:
        yield played
    finally:
        played.close()
        shutil.rmtree(tmp_path / "claims", ignore_errors=True)
