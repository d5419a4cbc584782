"""Fixtures of the API tests: settings pointing at the session's real Redis, the app, its client."""

from __future__ import annotations

import pytest

from jobqueue.connections import jobs_redis, queue_redis
from jobqueue.settings import load_settings
from tests.conftest import REPO_ROOT

SAMPLE = REPO_ROOT / "data" / "traffic_incidents_sample.csv"


def make_settings(redis_url: str, **env: str):
    base = {"REDIS_URL": redis_url, "DIAGNOSTIC_OPERATIONS": "1", "DATA_PATH": str(SAMPLE)}
    base.update(env)
    return load_settings(base)


@pytest.fixture
def settings(redis_url):
    return make_settings(redis_url)


@pytest.fixture
def app(settings):
    from jobqueue_api import create_app

    return create_app(settings, load_data=False)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def jobs(settings):
    return jobs_redis(settings)


@pytest.fixture
def queue(settings):
    return queue_redis(settings)


@pytest.fixture(scope="session")
def dataset():
    """The bundled sample, loaded by the real loader (skips until the analysis package has one)."""
    loader = pytest.importorskip("atx_analysis.dataset")
    if not SAMPLE.exists():
        pytest.skip("no bundled sample dataset yet")
    return loader.load_dataset(str(SAMPLE))


@pytest.fixture
def data_app(settings, dataset):
    from jobqueue_api import create_app

    return create_app(settings, dataset=dataset)


def submit(client, operation="sleep", params=None, path="/submit"):
    response = client.post(path, json={"operation": operation, "params": params or {}})
    assert response.status_code == 202, response.get_json()
    return response.get_json()["job_id"]
