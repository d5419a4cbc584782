"""The browser pages' fixtures: the API tests' (a real Redis, the app, its test client) for the
server-side page tests, and for the browser tests a Playwright-driven Chromium (browser.py), a
fresh page per test and a real stack per module (redis-server, the API under gunicorn, a worker)."""

from __future__ import annotations

import pytest

from devstack.redis_server import find_redis_server
from devstack.stack import running_stack
from tests.api.conftest import app, client, data_app, dataset, jobs, queue, settings  # noqa: F401
from tests.ui.browser import OWNERS, TOKEN, launch, new_context


@pytest.fixture(scope="module")
def pw():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(pw):
    b = launch(pw)
    yield b
    b.close()


def _stack_or_skip():
    if find_redis_server() is None:
        pytest.skip("no redis-server binary")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    _stack_or_skip()
    with running_stack(tmp_path_factory.mktemp("ui")) as s:
        s.start_api(web_concurrency=1)
        s.start_worker()
        s.wait_api(path="/readyz")
        s.wait_workers_registered(1)
        yield s


@pytest.fixture(scope="module")
def idle_stack(tmp_path_factory):
    """The API with no worker: jobs stay queued (a busy worker may already hold the next jobs, as it
    claims in batches, so only an idle queue makes "cancel a queued job" deterministic)."""
    _stack_or_skip()
    with running_stack(tmp_path_factory.mktemp("ui-idle")) as s:
        s.start_api(web_concurrency=1)
        yield s


@pytest.fixture(scope="module")
def owners_stack(tmp_path_factory):
    """Named tokens (API_TOKENS): each user sees only their own jobs; API_TOKEN is the admin."""
    _stack_or_skip()
    with running_stack(
        tmp_path_factory.mktemp("ui-owners"),
        API_TOKEN=TOKEN,
        API_TOKENS=",".join(f"{k}:{v}" for k, v in OWNERS.items()),
    ) as s:
        s.start_api(web_concurrency=1)
        yield s


@pytest.fixture(scope="module")
def token_stack(tmp_path_factory):
    _stack_or_skip()
    with running_stack(tmp_path_factory.mktemp("ui-token"), API_TOKEN=TOKEN) as s:
        s.start_api(web_concurrency=1)
        yield s


@pytest.fixture
def page(browser):
    """A fresh page in its own context; ``page.problems`` collects page errors, CSP violations and
    dialogs, none of which may happen."""
    context = new_context(browser, viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.problems = []
    pg.on("pageerror", lambda e: pg.problems.append(f"pageerror: {e}"))
    pg.on(
        "console",
        lambda m: (
            pg.problems.append(f"console {m.type}: {m.text}")
            if m.type == "error" and "Content Security Policy" in m.text
            else None
        ),
    )
    pg.dialog_guard = lambda d: (pg.problems.append(f"dialog: {d.message}"), d.dismiss())
    pg.on("dialog", pg.dialog_guard)
    yield pg
    context.close()
