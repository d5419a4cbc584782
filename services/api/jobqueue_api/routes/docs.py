"""``/docs``: Swagger UI over ``/openapi.json``, the page FastAPI users look for first.

Swagger UI's files are vendored under ``static/vendor/swagger-ui`` (versions and licences in
``static/vendor/README.md``), so the page works on a cluster with no internet. Like FastAPI's own
``/docs``, this page is not itself listed in the OpenAPI document (see :data:`BROWSER_PATHS`).
"""

from __future__ import annotations

import posixpath

from flask import Blueprint, Response, abort, redirect, render_template

from ..auth import csrf_token, given_token, token_matches, tokens_required
from ..errors import ApiError
from ..guesses import REFUSED
from ..pages import root, secure_page


class _Pages(Blueprint):
    def send_static_file(self, filename: str) -> Response:
        """A static file answers at its own name only: werkzeug's safe_join normalises the name, so
        ``ui.css/``, ``ui.css//`` and ``./ui.css`` served the file too, where every route refuses a
        trailing slash (404). (Here, not in a before-request hook: the fast paths stand aside for
        any hook they do not know.)"""
        if posixpath.normpath(filename) != filename:
            abort(404)
        return super().send_static_file(filename)


bp = _Pages("docs", __name__, static_folder="../static", static_url_path="/ui/static")
bp.after_request(secure_page)


# Browser pages and their assets: HTML for people, not API operations, so /openapi.json leaves them
# out (tests/api/test_openapi.py holds every other rule to the document).
BROWSER_PATHS = ("/docs", "/ui")


@bp.get("/docs")
def docs():
    # Logged in on the web page, Try it out sends its cookie: a submit or delete made with it must
    # carry the page's CSRF value (it was a 403 csrf_failed from /docs), so this page has it too
    given, via_cookie = given_token()
    try:
        known = bool(given and via_cookie and tokens_required() and token_matches(given))
    except ApiError as exc:  # the client's wrong-token budget is spent (guesses.py): the page, without
        if exc.code != REFUSED:  # the CSRF value its cookie would have earned
            raise
        known = False
    csrf = csrf_token(given) if known and given else ""
    return render_template("docs.html", root=root(), csrf=csrf)


@bp.get("/docs/")
def docs_slash():
    return redirect("../docs")
