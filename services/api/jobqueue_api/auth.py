"""Optional bearer tokens for the job and analysis routes: ``API_TOKEN`` and named ``API_TOKENS``.

``API_TOKEN`` alone: one trust domain, every holder sees every job (as before). ``API_TOKENS``
(``name:token,...``, from a Secret) gives each user a token of their own: a job records its
submitter's name (``Job.owner``) and a named token sees, waits on, reads, cancels and deletes only
its own jobs; ``API_TOKEN`` is then the admin token that sees all. Neither set: no authentication,
everyone sees all (the class default).

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

from flask import Blueprint, g, request

from jobqueue.settings import token_entries

from .errors import ApiError
from .ratelimit import client_of
from .state import current

COOKIE = "jobqueue_token"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def given_token() -> tuple[str | None, bool]:
    """The token the request presents and whether it came from the page's cookie."""
    header = request.headers.get("Authorization")
    if header is not None:
        given = bearer(header)
        if given is not None and "," in given:
            one_token(given)
        return given, False
    cookie = request.cookies.get(COOKIE)
    return (cookie, True) if cookie else (None, False)


def bearer(header: str) -> str | None:
    """The token of an ``Authorization`` header (``Bearer <token>``); None for any other scheme."""
    scheme, _, given = header.partition(" ")
    return given.strip() if scheme.lower() == "bearer" else None


def one_token(given: str) -> None:
    """400 for a Bearer token with a comma that is no token the API knows: the server joins two
    ``Authorization`` headers with one (``Bearer a,Bearer b``), and a token (RFC 6750, and every
    ``API_TOKENS`` entry) has none. Judged as a wrong token, it was counted against the client's
    ``TOKEN_FAILURE_LIMIT`` as a guess, and the 401 said the token was unknown."""
    settings = current().settings
    if identify_among(settings.api_token, named_tokens(settings.api_tokens), given)[0]:
        return  # an API_TOKEN that holds a comma is still its own
    raise ApiError(
        400,
        "invalid_authorization",
        "send one 'Authorization: Bearer <token>' header: the one received holds a comma, as two "
        "Authorization headers do once joined, and a token has none",
    )


def named_tokens(raw: str) -> dict[str, str]:
    """``API_TOKENS`` (``alice:tok1,bob:tok2``, or one entry a line) as token -> name."""
    out: dict[str, str] = {}
    for entry in token_entries(raw):
        name, sep, token = entry.partition(":")
        if sep and name.strip() and token.strip():
            out[token.strip()] = name.strip()
    return out


def tokens_required() -> bool:
    settings = current().settings
    return bool(settings.api_token or settings.api_tokens)


def identify(given: str | None) -> tuple[bool, str | None]:
    """(known, owner name) of the token the current request presents: the admin ``API_TOKEN`` has
    no owner (sees all). A wrong one counts against the request's client, and a client whose
    ``TOKEN_FAILURE_LIMIT`` is spent gets its 429 instead of a verdict (``guesses.py``); one
    request is judged once, however many times its token is asked about."""
    if not given:
        return False, None
    verdict = g.get("jobqueue_token_verdict")
    if verdict is not None and verdict[0] == given:
        return verdict[1]
    state = current()
    admin, named = state.settings.api_token, named_tokens(state.settings.api_tokens)
    client = client_of(None, request.remote_addr)
    known = state.guesses.judge(client, given, lambda token: identify_among(admin, named, token))
    g.jobqueue_token_verdict = (given, known)
    return known


def identify_among(admin: str, named: dict[str, str], given: str | None) -> tuple[bool, str | None]:
    """:func:`identify` against ``admin`` (API_TOKEN) and ``named`` (:func:`named_tokens` of
    API_TOKENS): the one verdict of both request paths (the fast path parses the tokens once)."""
    if given is None:
        return False, None
    sent = _utf8(given)
    if admin and hmac.compare_digest(sent, _utf8(admin)):
        return True, None
    found = None
    for token, name in named.items():  # compare with every one: constant time
        if hmac.compare_digest(sent, _utf8(token)):
            found = name
    return (found is not None), found


def _utf8(token: str) -> bytes:
    """A token's bytes for the comparison. A lone surrogate (``{"token": "\\ud800"}`` posted to
    ``/ui/login``: JSON escapes can write one, a header cannot) is kept as its escape's bytes, so
    the token is simply unknown (401) instead of failing to encode (a 500)."""
    return token.encode("utf-8", "surrogatepass")


def token_matches(given: str | None) -> bool:
    return identify(given)[0]


# auth-scheme names a 401 may repeat from a header it refuses: the IANA registry's and a few common
# ones. Anything else in the scheme's place may be the token itself (sent alone, after a tab, as a
# name:token line), which the message must never show.
_SCHEMES = frozenset(
    ("basic", "concealed", "digest", "dpop", "gnap", "hoba", "mutual", "negotiate", "ntlm", "oauth")
    + ("privatetoken", "scram-sha-1", "scram-sha-256", "vapid", "token", "apikey", "jwt", "aws4-hmac-sha256")
)


def why_refused(header: str | None, given: str | None) -> str:
    """What was wrong with a refused token, for the 401's message (never the token itself): no
    header, another scheme, no token, a whole ``name:token`` line of the class's tokens file (the
    token after it is that name's own: the hint tells nothing its sender does not hold), or a token
    the API does not know."""
    if header is None and given is None:
        return ""
    if header is not None and given is None:
        scheme, space, _ = header.partition(" ")
        if space and scheme.lower() in _SCHEMES:
            return f"; the header sent uses the scheme {scheme!r}"
        if space:
            return "; the header sent uses a scheme other than 'Bearer'"
        # one word: the token alone, 'Bearer<TAB>token', a name:token line; not repeated (it may be a token)
        return "; the header sent has no scheme: write 'Bearer', a space, then the token"
    if not given:
        return "; the header sent has no token after 'Bearer'"
    return pasted_line_hint(given) or "; the token sent is not one this API knows"


def pasted_line_hint(given: str) -> str | None:
    """The hint for a whole ``name:token`` line sent as the token, when the token after ``name:``
    is that name's own (so the hint tells nothing its sender does not hold); else None."""
    name, sep, rest = given.partition(":")
    settings = current().settings  # (the whole line was judged, and counted, by identify)
    named = named_tokens(settings.api_tokens)
    if sep and name.strip() and identify_among(settings.api_token, named, rest.strip()) == (True, name.strip()):
        return (
            f": send the token alone, without {name.strip() + ':'!r} in front "
            "(a line of the class's tokens file is name:token)"
        )
    return None


def owner() -> str | None:
    """The name the current request acts as (None: no named tokens, or the admin token)."""
    return g.get("jobqueue_owner")


def csrf_token(token: str) -> str:
    """The page's anti-CSRF value: derived from the token, so only a page served to its holder has it."""
    return hmac.new(token.encode(), b"atx-jobqueue ui csrf", hashlib.sha256).hexdigest()


def check_csrf(token: str | None) -> None:
    sent = request.headers.get(CSRF_HEADER, "")
    if token is None or not hmac.compare_digest(sent.encode(), csrf_token(token).encode()):
        raise ApiError(
            403, "csrf_failed", f"a change made with the page's cookie needs the page's {CSRF_HEADER} header"
        )


# blueprints whose routes need a token when tokens are configured (:func:`protect`)
PROTECTED: set[str] = set()


def protect(blueprint: Blueprint) -> None:
    """Require a token on ``blueprint``'s routes when ``API_TOKEN``/``API_TOKENS`` is set: checked
    by the app's before-request hook (``hooks.py``), after the Host and Content-Type guards."""
    PROTECTED.add(blueprint.name)


def protected(blueprints: list[str]) -> bool:
    """Whether a request routed to these blueprints (``request.blueprints``) needs a token."""
    return any(name in PROTECTED for name in blueprints)


def check_token() -> None:
    """The 401 of a missing or unknown token (403 for a cookie-authenticated change without the
    page's CSRF header); otherwise remember who the request acts as (:func:`owner`)."""
    given, via_cookie = given_token()
    known, name = identify(given)
    if not known:
        header = request.headers.get("Authorization")
        why = why_refused(header, given) if not via_cookie else "; the page's login has expired: log in again"
        err = ApiError(401, "unauthorized", "this route needs 'Authorization: Bearer <your token>'" + why)
        err.headers["WWW-Authenticate"] = 'Bearer realm="atx-jobqueue"'
        raise err
    g.jobqueue_owner = name
    if via_cookie and request.method not in SAFE_METHODS:
        check_csrf(given)
