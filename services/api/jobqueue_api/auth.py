"""Optional bearer token (``API_TOKEN``) for the job and analysis routes.

Off by default: on a class cluster the API is reached through ``kubectl port-forward`` and only
its user can connect. Set ``API_TOKEN`` when an Ingress or NodePort exposes it; health, metrics and
the documentation routes stay open so probes and Prometheus need no secret.

A browser cannot add an ``Authorization`` header to an ``<img>`` or a link, so the web page
(``/ui/``) asks for the token once and keeps it in an HttpOnly, SameSite=Strict cookie
(:data:`COOKIE`). A request authenticated by that cookie that changes state must also carry the
page's CSRF token (:func:`csrf_token`) in :data:`CSRF_HEADER`; a header-authenticated request needs
none (no browser attaches a bearer header on its own).
"""

from __future__ import annotations

import hashlib
import hmac

from flask import Blueprint, request

from .errors import ApiError
from .state import current

COOKIE = "jobqueue_token"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def given_token() -> tuple[str | None, bool]:
    """The token the request presents and whether it came from the page's cookie."""
    header = request.headers.get("Authorization")
    if header is not None:
        scheme, _, given = header.partition(" ")
        return (given.strip() if scheme.lower() == "bearer" else None), False
    cookie = request.cookies.get(COOKIE)
    return (cookie, True) if cookie else (None, False)


def token_matches(given: str | None) -> bool:
    token = current().settings.api_token
    return bool(token) and given is not None and hmac.compare_digest(given.encode(), token.encode())


def csrf_token(token: str) -> str:
    """The page's anti-CSRF value: derived from the token, so only a page served to its holder has it."""
    return hmac.new(token.encode(), b"atx-jobqueue ui csrf", hashlib.sha256).hexdigest()


def check_csrf(token: str | None) -> None:
    sent = request.headers.get(CSRF_HEADER, "")
    if token is None or not hmac.compare_digest(sent.encode(), csrf_token(token).encode()):
        raise ApiError(403, "csrf_failed", f"a change made with the page's cookie needs the page's {CSRF_HEADER} header")


def protect(blueprint: Blueprint) -> None:
    @blueprint.before_request
    def _check_token() -> None:
        if not current().settings.api_token:
            return
        given, via_cookie = given_token()
        if given is None or not token_matches(given):
            err = ApiError(401, "unauthorized", "this route needs 'Authorization: Bearer <API_TOKEN>'")
            err.headers["WWW-Authenticate"] = 'Bearer realm="atx-jobqueue"'
            raise err
        if via_cookie and request.method not in SAFE_METHODS:
            check_csrf(given)
