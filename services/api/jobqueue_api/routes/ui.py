"""The jobs web page at ``/ui/``: overview, jobs, job detail, submit form, data; and ``GET /queue``.

Pages are Flask templates (autoescaped) plus one script file, ``static/ui.js`` (with
``static/pngtext.js``, which /docs shares, to read a plot's description out of its PNG), that polls the
API's own JSON routes and writes text only through ``textContent``. Every link is relative
(:func:`jobqueue_api.pages.root`), so the page works behind ``kubectl port-forward`` and under an
Ingress path prefix, with or without ``SCRIPT_NAME``.

With ``API_TOKEN`` set, a page request without the token cookie gets the login form and nothing
else; the form posts the token as JSON to ``/ui/login``, which sets an HttpOnly, SameSite=Strict
cookie. Pages carry the CSRF value (``auth.csrf_token``) that state-changing calls must echo.
"""

from __future__ import annotations

import re
import time

from flask import Blueprint, jsonify, make_response, redirect, render_template, request
from werkzeug.exceptions import MethodNotAllowed, NotFound

from atx_analysis.registry import UnknownOperation
from jobqueue.jobs import JobStatus

from ..auth import (
    COOKIE,
    check_csrf,
    csrf_token,
    given_token,
    identify,
    named_tokens,
    owner,
    pasted_line_hint,
    protect,
    token_matches,
    tokens_required,
)
from ..errors import ApiError, http_error
from ..guesses import REFUSED
from ..overview import queue_overview
from ..pages import root, secure_page
from ..params import job_id_or_400
from ..state import current
from ..submission import DuplicateKey, NotUtf8, duplicate_key, loads, read_body

bp = Blueprint("ui", __name__)
bp.after_request(secure_page)

api = Blueprint("queue", __name__)
protect(api)

# \Z, not $: "$" also matches before a final newline, and "/\n" became the cookie path "/%0A",
# which no page is under (the login said yes, and the page asked for the token again)
COOKIE_PATH_RE = re.compile(r"^/[A-Za-z0-9._~/-]{0,200}\Z")
STATUSES = [s.value for s in JobStatus]


@api.get("/queue")
def queue():
    """Queue depth, in progress, delayed retries, oldest waiting age, workers, recent outcomes.

    With named tokens a user sees the id of a job a worker runs only when it is theirs: another
    user's shows as ``job_id: null`` beside ``busy: true`` (one user never learns another's job
    ids; they were listed here for every worker, the web page's overview linking to them)."""
    state = current()
    doc = queue_overview(state)
    me = owner()
    if me is not None:
        running = [w["job_id"] for w in doc["workers"] if w["job_id"]]
        mine = {job.id for job in state.store.get_many(running) if job.owner == me}
        for w in doc["workers"]:
            if w["job_id"] not in mine:
                w["job_id"] = None
    return jsonify(doc)


# --- login ------------------------------------------------------------------------------------


def _logged_in() -> bool:
    if not tokens_required():
        return True
    given, _ = given_token()
    return token_matches(given)


def _page(template: str, **context):
    """Render a page, or only the login form (401) when a token is required and not presented;
    the form with the 429's message when the client's wrong-token budget is spent (guesses.py)."""
    try:
        logged_in = _logged_in()
    except ApiError as exc:
        if exc.code != REFUSED:
            raise
        page = render_template("ui/login.html", root=root(), page="login", csrf="", refused=exc.message)
        response = make_response(page, 429)
        response.headers.update(exc.headers)
        return response
    if not logged_in:
        return make_response(render_template("ui/login.html", root=root(), page="login", csrf=""), 401)
    required = tokens_required()
    given = given_token()[0] or ""
    csrf = csrf_token(given) if required else ""
    # with named tokens each page says who it acts as, and the job lists say whose each job is
    named = bool(current().settings.api_tokens)
    user = (identify(given)[1] or "admin (every job)") if named else None
    return render_template(
        template, root=root(), csrf=csrf, token_required=required, named_tokens=named, user=user, **context
    )


@bp.post("/ui/login")
def login():
    """``{"token": ..., "path": <the API's root as the browser sees it>}`` -> the cookie."""
    try:
        body = loads(read_body(request, 4096) or b"{}")
    except DuplicateKey as exc:
        raise duplicate_key(exc) from None
    except NotUtf8 as exc:
        raise ApiError(400, "invalid_json", str(exc), param="token") from None
    except (ValueError, RecursionError):  # not JSON, or nested deeper than json reads (as parse_body)
        body = None
    if not isinstance(body, dict) or not isinstance(body.get("token"), str):
        raise ApiError(400, "invalid_body", 'send {"token": "..."} as JSON', param="token")
    if not tokens_required():
        return jsonify({"logged_in": True, "token_required": False})
    token = body["token"].strip()  # as pasted: a space or a line's end around it, as the API's header drops it
    if not token_matches(token):
        time.sleep(0.5)  # a guess costs time
        hint = pasted_line_hint(token)
        message = "that is not your token" + hint if hint else "that token is not one this API knows"
        raise ApiError(401, "unauthorized", message, param="token")
    path = body.get("path")
    if not (isinstance(path, str) and COOKIE_PATH_RE.match(path)):
        path = request.script_root + "/"
    response = jsonify({"logged_in": True, "token_required": True})
    response.set_cookie(COOKIE, token, path=path, httponly=True, samesite="Strict", secure=request.is_secure)
    return response


@bp.post("/ui/logout")
def logout():
    given, via_cookie = given_token()
    if via_cookie and given is not None and token_matches(given):
        check_csrf(given)
    path = request.args.get("path", "")
    response = jsonify({"logged_in": False})
    response.delete_cookie(
        COOKIE,
        path=path if COOKIE_PATH_RE.match(path) else request.script_root + "/",
        httponly=True,
        samesite="Strict",
        secure=request.is_secure,
    )
    return response


# --- pages ------------------------------------------------------------------------------------


@bp.get("/ui")
def ui_no_slash():
    return redirect("ui/")


@bp.get("/ui/")
def overview():
    return _page("ui/overview.html", page="overview")


@bp.app_errorhandler(NotFound)
def not_found(exc: NotFound):
    """A browser's 404 under ``/ui/`` (a mistyped or stale page address, ``/ui/job/<id>``): the
    page's own HTML page, with links back, where it got the API's JSON. Anything else (an API
    client's, one that prefers JSON or accepts anything, as curl does): the JSON 404."""
    if not _browser_page(request):
        return http_error(exc)
    page = render_template("ui/not_found.html", root=root(), page="not_found", csrf="", path=request.path)
    return secure_page(make_response(page, 404))


@bp.app_errorhandler(MethodNotAllowed)
def method_not_allowed(exc: MethodNotAllowed):
    """The same for a 405 (``/ui/login`` opened in the address bar: it takes only the login form's
    POST): an HTML page saying what the address takes, with links back, and the ``Allow`` header;
    JSON for everyone else, as before."""
    if not _browser_page(request):
        return http_error(exc)
    allowed = ", ".join(sorted(exc.valid_methods or ()))
    # the page names what its forms and buttons send: OPTIONS (and HEAD, GET's) stay in Allow only
    sent = " or ".join(m for m in sorted(exc.valid_methods or ()) if m not in ("OPTIONS", "HEAD"))
    page = render_template(
        "ui/method_not_allowed.html", root=root(), page="not_found", csrf="", path=request.path, allowed=sent
    )
    response = make_response(page, 405)
    if allowed:
        response.headers["Allow"] = allowed
    return secure_page(response)


def _browser_page(req) -> bool:
    """A browser (Accept preferring HTML to JSON) asking for a page under ``/ui/`` (its static
    files aside): its errors are pages; everyone else's are the API's JSON."""
    path = req.path
    wants_html = req.accept_mimetypes.best_match(["application/json", "text/html"]) == "text/html"
    return path.startswith("/ui/") and not path.startswith("/ui/static/") and wants_html


@bp.get("/ui/jobs")
def jobs_page():
    state = current()
    status = request.args.get("status") or ""
    operation = request.args.get("operation") or ""
    # a filter that is not one (a hand-edited or stale address) is said, not dropped silently to
    # "any"; the value itself is not shown (test_filters_are_never_reflected: no text of a link's
    # making on the page)
    problems = []
    if status and status not in STATUSES:
        problems.append(f"The status in the address is not a job status; the statuses are {', '.join(STATUSES)}.")
        status = ""
    if operation and operation not in state.catalogue:
        names = ", ".join(state.catalogue.names())
        problems.append(f"The operation in the address is not an operation; the operations are {names}.")
        operation = ""
    # the admin (with named tokens) may pick one user's jobs; a student's own are all they see
    admin = bool(state.settings.api_tokens) and identify(given_token()[0]) == (True, None)
    users = sorted(set(named_tokens(state.settings.api_tokens).values())) if admin else []
    user = request.args.get("owner") or ""
    if users and user and user not in users:  # (a student's page has no owner filter to fall back from)
        problems.append(f"The user in the address is not a user of this API; the users are {', '.join(users)}.")
        user = ""
    page = _page(
        "ui/jobs.html",
        page="jobs",
        statuses=STATUSES,
        operations=state.catalogue.names(),
        status=status,
        operation=operation,
        users=users,
        owner=user if user in users else "",
        problems=problems,
    )
    return make_response(page, 400) if problems and isinstance(page, str) else page  # (the login form stays 401)


@bp.get("/ui/jobs/<job_id>")
def job_page(job_id: str):
    """The page, also for an id that is not one (a truncated paste): with a 400 status, its script
    says what a job id looks like instead of the browser showing the API's JSON error."""
    try:
        job_id_or_400(job_id)
    except ApiError:
        page = _page("ui/job.html", page="jobs", job_id=job_id)
        return make_response(page, 400) if isinstance(page, str) else page  # (the login form stays 401)
    return _page("ui/job.html", page="jobs", job_id=job_id)


@bp.get("/ui/submit")
def submit_page():
    state = current()
    ops = list(state.catalogue)
    chosen = request.args.get("operation") or ""
    problems = []
    if chosen and chosen not in state.catalogue:
        # said, with no form: the first operation's form under this address was one Submit away from
        # a job of another operation than the one asked for; the value itself is not shown
        close = UnknownOperation(chosen, state.catalogue.names()).suggestion
        hint = f" Did you mean {close}?" if close else ""
        problems.append(f"The operation in the address is not an operation.{hint} Pick one below.")
        chosen = close or ""
    elif not chosen:
        chosen = ops[0].name if ops else ""
    page = _page(
        "ui/submit.html",
        page="submit",
        operations=ops,
        chosen=chosen,
        op=state.catalogue.get(chosen) if chosen and not problems else None,
        problems=problems,
    )
    return make_response(page, 400) if problems and isinstance(page, str) else page  # (the login form stays 401)


@bp.get("/ui/data")
def data_page():
    slot = current().data.refresh()
    info = slot.dataset.info() if slot.loaded else None
    return _page("ui/data.html", page="data", info=info, error=slot.error, loaded_at=slot.loaded_at)
