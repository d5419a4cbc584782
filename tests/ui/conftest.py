"""The browser pages' fixtures are the API tests' (a real Redis, the app, its test client)."""

from tests.api.conftest import app, client, data_app, dataset, jobs, queue, settings  # noqa: F401
