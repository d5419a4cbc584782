"""Fixtures of the deployment checks: rendered scenarios and the k8s/ manifests."""

from __future__ import annotations

import pytest

from tests.deploy.manifests import SCENARIOS, scenario_objects
from tests.support.images import built_images, built_redis_images  # noqa: F401  (fixtures: the podman pod tests run the images)


@pytest.fixture(params=SCENARIOS)
def scenario(request) -> str:
    return request.param


@pytest.fixture
def objects(scenario):
    return scenario_objects(scenario)
