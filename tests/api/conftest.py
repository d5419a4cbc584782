"""Fixtures of the API tests: settings pointing at the session's real Redis, the app, its client."""

from __future__ import annotations

import pytest

from devstack.paths import SAMPLE
from jobqueue.connections import jobs_redis, queue_redis

from .support import make_settings


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
