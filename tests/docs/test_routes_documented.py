"""Every route the API serves is named in docs/api.md (the JSON routes) or docs/ui.md (the web page).

The error table is held to the code by test_error_table.py; the routes were not, and `POST
/ui/logout`, the web page's "Log out", was in no guide. The routes are read from the app's own URL
map, so a new one is checked too."""

from __future__ import annotations

import re

from jobqueue.settings import load_settings

from devstack.paths import REPO_ROOT

GUIDES = (REPO_ROOT / "docs" / "api.md").read_text() + (REPO_ROOT / "docs" / "ui.md").read_text()
# Not routes a user calls: Flask's redirect to the page without the slash, and the page's own files.
NOT_CALLED = {"/docs/", "/ui/static/<filename>"}


def _routes() -> set[str]:
    from jobqueue_api import create_app

    app = create_app(load_settings({}), load_data=False)
    return {re.sub(r"<(?:\w+:)?(\w+)>", r"<\1>", rule.rule) for rule in app.url_map.iter_rules()}


def documented(route: str) -> bool:
    """Named as written, a parameter by any name (`/ui/jobs/<id>` is `/ui/jobs/<job_id>`)."""
    pattern = re.sub(r"<\w+>", r"<\\w+>", re.escape(route))
    return re.search(pattern + r"(?![\w/<])", GUIDES) is not None


def test_every_route_is_in_the_guides():
    routes = _routes()
    assert {"/submit", "/status/<job_id>", "/ui/jobs/<job_id>"} <= routes, routes  # the map was read
    missing = sorted(r for r in routes - NOT_CALLED if not documented(r))
    assert not missing, f"routes neither docs/api.md nor docs/ui.md names: {missing}"


def test_the_check_sees_an_undocumented_route():
    assert documented("/submit")
    assert not documented("/sub")  # a prefix of a documented route is not the route
    assert documented("/ui/jobs/<job_id>")  # ui.md writes it /ui/jobs/<id>
    assert not documented("/no/such/route")
