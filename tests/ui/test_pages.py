"""The web page's server side through the Flask test client: pages, headers, /queue, the token
cookie and CSRF. What the page's script does is tested in a real browser (test_browser.py)."""

from __future__ import annotations

import json
import re
import time

import pytest

from devstack.paths import SAMPLE
from jobqueue import keys
from jobqueue_api import create_app
from tests.api.support import finish, make_settings, submit

PAGES = ["/ui/", "/ui/jobs", "/ui/submit", "/ui/data", "/ui/submit?operation=top_locations"]
TOKEN = "s3cret-token-for-the-page"


def _strict(response):
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp and "unsafe" not in csp
    assert "frame-ancestors 'none'" in csp and "object-src 'none'" in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Cache-Control"] == "no-store"
    html = response.get_data(as_text=True)
    assert not re.search(r"<script(?![^>]*\bsrc=)", html), "inline script"
    assert not re.search(r"\sstyle=|<style", html), "inline style"
    assert not re.search(r"\son[a-z]+=", html), "inline event handler"
    return html


@pytest.mark.parametrize("path", PAGES)
def test_pages_render_with_a_strict_policy(data_app, path):
    response = data_app.test_client().get(path)
    assert response.status_code == 200 and response.mimetype == "text/html"
    html = _strict(response)
    assert 'src="../ui/static/ui.js"' in html or 'src="./ui/static/ui.js"' in html


def test_ui_without_slash_redirects_relatively(client):
    response = client.get("/ui")
    assert response.status_code in (301, 302, 308) and response.headers["Location"] == "ui/"


def test_job_page_links_are_relative_to_its_depth(client):
    job_id = submit(client)
    html = _strict(client.get(f"/ui/jobs/{job_id}"))
    assert 'data-root="../../"' in html and f'data-job-id="{job_id}"' in html
    # a malformed id (a truncated paste) gets the page, with a 400, not the API's JSON error
    bad = client.get("/ui/jobs/3f2b8c4e-1d2a")
    assert bad.status_code == 400 and bad.mimetype == "text/html", bad.get_data(as_text=True)[:200]
    assert 'data-job-id="3f2b8c4e-1d2a"' in bad.get_data(as_text=True)
    assert "&lt;b&gt;" in client.get("/ui/jobs/<b>x").get_data(as_text=True)  # escaped, as every value


@pytest.mark.parametrize("path", [f"/ui/jobs/{'0' * 8}%2Fresult", "/ui/jobs/x%2f", "/ui/jobs/..%2F..%2Fhelp"])
def test_an_escaped_slash_in_the_job_page_id_is_the_pages_400(client, path):
    """As ``/status/x%2Fy`` is 400 ``invalid_job_id`` (the escaped slash is the id's): the job page's
    400 for an id that is not one, where it was the HTML 404 "no such route" (its id split in two)."""
    bad = client.get(path, headers={"Accept": "text/html"})
    assert bad.status_code == 400 and bad.mimetype == "text/html", bad.get_data(as_text=True)[:300]
    assert "data-job-id=" in bad.get_data(as_text=True)


def test_filters_are_never_reflected(client):
    html = client.get('/ui/jobs?status=<script>alert(1)</script>&operation="><img src=x>').get_data(as_text=True)
    assert "<script>alert" not in html and "<img src=x" not in html and "&lt;script" not in html


def test_submit_form_is_generated_from_the_registry(data_app):
    catalogue = data_app.extensions["jobqueue"].catalogue
    client = data_app.test_client()
    for op in catalogue:
        html = client.get(f"/ui/submit?operation={op.name}").get_data(as_text=True)
        assert f'data-operation="{op.name}"' in html
        for p in op.params:
            field = re.search(rf'<(?:input|select)[^>]*id="p-{p.name}"[^>]*>', html, re.S)
            assert field, (op.name, p.name)
            tag = field[0]
            assert (" required" in tag) == p.required, (op.name, p.name)
            if p.minimum is not None and p.type in ("int", "number"):
                assert f'min="{p.minimum}"' in tag
            if p.maximum is not None and p.type in ("int", "number"):
                assert f'max="{p.maximum}"' in tag
            if not p.required and p.default is not None and p.type != "boolean" and not p.choices:
                assert f'value="{p.default}"' in tag
            assert f'id="p-{p.name}-error"' in html and p.description.split("(")[0].strip()[:20] in html
            help_text = re.search(rf'<p class="help" id="p-{p.name}-help">(.*?)</p>', html, re.S)
            assert help_text, (op.name, p.name)
            # "default the first day in the data. Default: none." said two things; a default of none is
            # the description's to explain
            assert "Default: none" not in help_text[1], (op.name, p.name, help_text[1])
            if not p.required and p.default is not None:
                assert "Default: " in help_text[1], (op.name, p.name, help_text[1])
            elif not p.required:
                assert "default" in p.description, (op.name, p.name)  # what leaving it empty means


def test_submit_page_with_an_operation_that_is_not_one_says_so_and_offers_no_form(data_app):
    """/ui/submit?operation=<not one> (a typo, TOP_LOCATIONS, a stale bookmark) showed the first
    operation's form (incident_count_by_date) with 200 and no word, one Submit away from queueing a
    job of another operation than the address names; the Jobs page says so for such a filter."""
    client = data_app.test_client()
    for wrong, close in (("TOP_LOCATIONS", "top_locations"), ("top_locatons", "top_locations"), ("<b>x</b>", None)):
        response = client.get("/ui/submit", query_string={"operation": wrong})
        html = response.get_data(as_text=True)
        assert response.status_code == 400, wrong
        assert 'id="submit-form"' not in html, wrong  # no form of another operation
        assert "is not an operation" in html, wrong
        assert "<b>x" not in html and "&lt;b&gt;x" not in html  # the value itself is not echoed
        if close:
            assert f"did you mean {close}" in html.lower() and f'<option value="{close}" selected>' in html
    # no operation asked for: the first one's form, as before
    response = client.get("/ui/submit")
    assert response.status_code == 200 and 'id="submit-form"' in response.get_data(as_text=True)


def test_data_page_shows_the_loaded_dataset(data_app):
    info = data_app.extensions["jobqueue"].data.dataset.info()
    html = data_app.test_client().get("/ui/data").get_data(as_text=True)
    for text in (
        info["identity"],
        info["format"],
        f"{info['rows']:,}",
        info["date_range"]["first"],
        info["date_range"]["last"],
    ):
        assert text in html


def test_queue_reports_depth_workers_and_a_stalled_queue(client, queue, jobs, settings):
    first = submit(client)
    submit(client)
    doc = client.get("/queue").get_json()
    assert doc["depth"] == 2 and doc["in_progress"] == 0 and doc["workers_alive"] == 0
    assert doc["stalled"] is True and doc["oldest_waiting_seconds"] >= 0
    # a worker claims the first job and heartbeats: no longer stalled
    queue.lmove(keys.queue(settings.queue_name), keys.processing("w1"), "LEFT", "RIGHT")
    queue.zadd(keys.WORKERS_HEARTBEAT, {"w1": time.time(), "w-dead": time.time() - 3600})
    queue.hset(keys.WORKERS_BUSY, "w1", first)
    queue.zadd(keys.delayed(settings.queue_name), {"x": time.time() + 60})
    doc = client.get("/queue").get_json()
    assert doc["depth"] == 1 and doc["in_progress"] == 1 and doc["delayed_retries"] == 1
    assert doc["workers_alive"] == 1 and doc["stalled"] is False
    workers = {w["id"]: w for w in doc["workers"]}
    assert workers["w1"]["alive"] and workers["w1"]["job_id"] == first
    assert not workers["w-dead"]["alive"] and workers["w-dead"]["heartbeat_age_seconds"] >= 3599


def test_queue_shows_the_stall_of_live_workers_idle_on_another_queue(client, queue, jobs, settings):
    """Workers alive and idle while a job has waited a lease listen on another QUEUE_NAME: /help,
    /healthz?detail=1 and jobqueue_queue_stalled said so, but /queue (the web page's overview,
    ``jobqueue info``) counted only "no worker alive", and showed a live worker and no warning."""
    from jobqueue.cli_queue import info_text

    job_id = submit(client)
    queue.zadd(keys.WORKERS_HEARTBEAT, {"w-on-another-queue": time.time()})  # alive, running nothing
    doc = client.get("/queue").get_json()
    assert doc["stalled"] is False and doc["stalled_reason"] is None  # within the lease: about to be taken
    stored = json.loads(jobs.get(keys.job(job_id)))
    stored["submitted_at"] -= settings.job_lease_seconds + 1
    jobs.set(keys.job(job_id), json.dumps(stored))
    doc = client.get("/queue").get_json()
    assert doc["workers_alive"] == 1 and doc["stalled"] is True and "QUEUE_NAME" in doc["stalled_reason"]
    assert client.get("/healthz?detail=1").get_json()["queue"]["stalled_reason"] == doc["stalled_reason"]
    assert f"WARNING: the queue is stalled: {doc['stalled_reason']}" in info_text(doc)


def test_a_plots_job_waiting_behind_the_plots_cap_is_no_stall(client, queue, jobs, settings):
    """Plots jobs held at once are capped at one less than the live workers (claim.lua), so with two
    workers, one drawing, the other idles on purpose while more plots wait: that is no stall. It was
    called one ("idle ... listen on another queue; make their QUEUE_NAME match") by /healthz?detail=1,
    /help and jobqueue_queue_stalled (the JobQueueStalled alert) once a plot had waited a lease."""
    plot = submit(client, "plot_incidents_by_hour")
    stored = json.loads(jobs.get(keys.job(plot)))
    assert stored["lane"] == "plots"
    stored["submitted_at"] -= settings.job_lease_seconds + 1
    jobs.set(keys.job(plot), json.dumps(stored))
    now = time.time()
    queue.zadd(keys.WORKERS_HEARTBEAT, {"w-drawing": now, "w-free-for-cheap-jobs": now})
    queue.hset(keys.WORKERS_BUSY, "w-drawing", "an-earlier-plot")
    queue.hset(keys.PLOTS_BUSY, "w-drawing", "an-earlier-plot")
    doc = client.get("/queue").get_json()
    assert doc["workers_alive"] == 2 and doc["stalled"] is False and doc["stalled_reason"] is None, doc
    detail = client.get("/healthz?detail=1").get_json()["queue"]
    assert detail["workers_idle"] == 1 and detail["stalled"] is False, detail
    # a third worker raises the cap to two plots at once: idle beside a waiting plot, they are a stall
    queue.zadd(keys.WORKERS_HEARTBEAT, {"w-third": time.time()})
    assert "QUEUE_NAME" in client.get("/healthz?detail=1").get_json()["queue"]["stalled_reason"]
    assert "QUEUE_NAME" in client.get("/queue").get_json()["stalled_reason"]
    queue.zrem(keys.WORKERS_HEARTBEAT, "w-third")
    assert client.get("/queue").get_json()["stalled"] is False
    # a cheap job waiting a lease beside an idle worker is one (that worker listens elsewhere)
    cheap = submit(client)
    stored = json.loads(jobs.get(keys.job(cheap)))
    stored["submitted_at"] -= settings.job_lease_seconds + 1
    jobs.set(keys.job(cheap), json.dumps(stored))
    assert "QUEUE_NAME" in client.get("/healthz?detail=1").get_json()["queue"]["stalled_reason"]
    assert "QUEUE_NAME" in client.get("/queue").get_json()["stalled_reason"]


def test_queue_counts_recent_outcomes_per_minute(client, jobs):
    from jobqueue_api import overview

    overview._cache.clear()
    done = [submit(client) for _ in range(3)]
    finish(jobs, done[0])
    finish(jobs, done[1])
    from jobqueue.jobs import JobStatus

    finish(jobs, done[2], status=JobStatus.FAILED, error="boom")
    recent = client.get("/queue").get_json()["recent"]
    assert sum(recent["complete"]) == 2 and sum(recent["failed"]) == 1
    assert recent["complete"][-1] == 2 and len(recent["complete"]) == 15


# --- with API_TOKEN --------------------------------------------------------------------------


@pytest.fixture
def token_app(redis_url):
    return create_app(make_settings(redis_url, API_TOKEN=TOKEN), load_data=False)


def test_without_the_token_only_a_login_form_is_shown(token_app):
    client = token_app.test_client()
    for path in [*PAGES, "/ui/jobs/3f2b8c4e-1d2a-4b5c-9e8f-0a1b2c3d4e5f"]:
        response = client.get(path)
        assert response.status_code == 401
        html = _strict(response)
        assert 'id="login-form"' in html and "Jobs</a>" not in html and "data-operation" not in html
    assert client.get("/queue").status_code == 401


def test_login_sets_an_httponly_strict_cookie_and_csrf_guards_changes(token_app):
    client = token_app.test_client()
    assert client.post("/ui/login", json={"token": "wrong"}).status_code == 401
    assert (
        client.post(
            "/ui/login",
            data="token=" + TOKEN,  # a form post: JSON only (415)
            content_type="application/x-www-form-urlencoded",
        ).status_code
        == 415
    )
    response = client.post("/ui/login", json={"token": TOKEN, "path": "/class/jobqueue/"})
    assert response.status_code == 200
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/class/jobqueue/" in cookie
    assert TOKEN not in response.get_data(as_text=True)

    client = token_app.test_client()
    client.post("/ui/login", json={"token": TOKEN})  # default path: the API root
    page = client.get("/ui/jobs")
    assert page.status_code == 200
    csrf = re.search(r'name="csrf-token" content="([0-9a-f]{64})"', page.get_data(as_text=True))[1]
    # reads work with the cookie alone (an <img> of a PNG result cannot send a header)
    job_id = client.post(
        "/submit", json={"operation": "sleep", "params": {}}, headers={"X-CSRF-Token": csrf}
    ).get_json()["job_id"]
    assert client.get(f"/jobs/{job_id}").status_code == 200
    # a change with the cookie but without the page's CSRF value is refused
    for headers in ({}, {"X-CSRF-Token": "0" * 64}):
        assert client.post("/submit", json={"operation": "sleep"}, headers=headers).status_code == 403
        assert client.delete(f"/jobs/{job_id}", headers=headers).status_code == 403
    assert client.delete(f"/jobs/{job_id}", headers={"X-CSRF-Token": csrf}).get_json()["cancelled"] is True
    # a bearer header needs no CSRF value (no browser adds one by itself)
    bearer = token_app.test_client()
    assert (
        bearer.post("/submit", json={"operation": "sleep"}, headers={"Authorization": f"Bearer {TOKEN}"}).status_code
        == 202
    )
    # logging out clears the cookie
    response = client.post("/ui/logout", headers={"X-CSRF-Token": csrf})
    assert response.status_code == 200 and "jobqueue_token=;" in response.headers["Set-Cookie"]
    assert client.get("/ui/jobs").status_code == 401


def test_a_cookie_path_ending_in_a_newline_falls_back_to_the_api_root(token_app):
    """The login's ``path`` (and logout's ``?path=``) is checked against a pattern whose ``$`` also
    matched before a final newline: ``"/\\n"`` set the cookie on the path ``/%0A``, under which no
    page is, so the login said yes and every page asked for the token again. It is now refused like
    any other malformed path: the cookie goes on the API's root."""
    client = token_app.test_client()
    for path in ("/\n", "/class/jq/\n"):
        response = client.post("/ui/login", json={"token": TOKEN, "path": path})
        assert response.status_code == 200
        assert "Path=/;" in response.headers["Set-Cookie"], response.headers["Set-Cookie"]
    response = token_app.test_client().post("/ui/logout?path=/class/jq/%0A")  # no cookie: no CSRF needed
    assert "Path=/;" in response.headers["Set-Cookie"], response.headers["Set-Cookie"]


def test_page_assets_are_cached_and_revalidated_pages_are_not(client):
    """Swagger UI's 1.8 MB bundle must not be fetched again on every visit; pages hold job data."""
    for path in ("/ui/static/ui.js", "/ui/static/vendor/swagger-ui/swagger-ui-bundle.js"):
        response = client.get(path)
        assert response.status_code == 200 and "no-store" not in response.headers.get("Cache-Control", "")
        etag = response.headers["ETag"]
        again = client.get(path, headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.data == b""
    assert client.get("/ui/").headers["Cache-Control"] == "no-store"
    assert client.get("/queue").headers["Cache-Control"] == "no-store"


def test_the_login_form_never_puts_the_token_in_the_address(token_app):
    """Without JavaScript a form falls back to its method: POST (refused as non-JSON), never GET."""
    html = token_app.test_client().get("/ui/").get_data(as_text=True)
    form = re.search(r"<form[^>]*id=\"login-form\"[^>]*>", html)[0]
    assert 'method="post"' in form


def test_a_filter_that_is_not_one_is_a_400_page_saying_so(client):
    """``/ui/jobs?status=bogus`` showed every job under "any" without a word."""
    response = client.get("/ui/jobs?status=bogus")
    html = _strict(response)
    assert response.status_code == 400 and response.mimetype == "text/html"
    assert "The status in the address is not a job status; the statuses are submitted, in-progress, complete" in html
    assert client.get("/ui/jobs?operation=bogus").status_code == 400
    for good in ("/ui/jobs?status=failed", "/ui/jobs?status=", "/ui/jobs?operation=sleep"):
        response = client.get(good)
        assert response.status_code == 200 and 'role="alert"' not in response.get_data(as_text=True), good
    assert '<option value="failed" selected>' in client.get("/ui/jobs?status=failed").get_data(as_text=True)


@pytest.mark.parametrize("path", ["/ui/job/x", "/ui/nonsense", "/ui/jobs/x/y"])
def test_a_browser_asking_for_an_unknown_page_gets_the_pages_404_with_links_back(client, path):
    """A browser got the API's JSON 404 for a mistyped page address; API clients keep the JSON."""
    browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    response = client.get(path, headers={"Accept": browser})
    html = _strict(response)
    assert response.status_code == 404 and response.mimetype == "text/html"
    root = "../" * (path.count("/") - 1)
    assert f'href="{root}ui/"' in html and "No such page" in html
    for accept in ("*/*", "application/json", None):
        answer = client.get(path, headers={"Accept": accept} if accept else {})
        assert answer.status_code == 404 and answer.get_json()["error"] == "not_found", accept
    assert client.get("/nonsense", headers={"Accept": browser}).get_json()["error"] == "not_found"
    assert client.get("/ui/static/nope.js", headers={"Accept": browser}).get_json()["error"] == "not_found"


def test_a_static_file_answers_at_its_own_name_only(client):
    """``/ui/static/ui.css/`` (and ``//``, ``./ui.css``) served the stylesheet: werkzeug normalises a
    static name, while every route refuses a trailing slash."""
    assert client.get("/ui/static/ui.css").status_code == 200
    for path in ("/ui/static/ui.css/", "/ui/static/ui.css//", "/ui/static/./ui.css", "/ui/static/vendor//README.md"):
        answer = client.get(path)
        assert answer.status_code == 404 and answer.get_json()["error"] == "not_found", path


def test_a_browser_opening_an_address_that_is_not_a_page_gets_the_pages_405(client):
    """``/ui/login`` typed in the address bar (it takes the login form's POST only) showed a browser
    the API's JSON 405; it gets an HTML page with links back, and ``Allow``; API clients keep the JSON."""
    browser = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    response = client.get("/ui/login", headers={"Accept": browser})
    html = _strict(response)
    assert response.status_code == 405 and response.mimetype == "text/html"
    assert response.headers["Allow"] == "OPTIONS, POST" and "takes only POST requests" in html
    assert "OPTIONS" not in html  # no form or button sends it; it stays in Allow
    assert 'href="../ui/"' in html and "Not a page to open" in html
    for accept in ("*/*", "application/json", None):
        answer = client.get("/ui/login", headers={"Accept": accept} if accept else {})
        assert answer.status_code == 405 and answer.get_json()["error"] == "method_not_allowed", accept
        assert answer.headers["Allow"] == "OPTIONS, POST"
    assert client.post("/submit/x", headers={"Accept": browser}).status_code == 404
    assert client.get("/submit", headers={"Accept": browser}).get_json()["error"] == "method_not_allowed"


def test_data_page_says_when_the_slashed_dates_were_a_guess(settings, tmp_path):
    """Day-first dates with no day past 12 are read month first by a guess: the data page said
    nothing of it, so a user of a UK spreadsheet's file saw June where March was meant."""
    from atx_analysis.dataset import load_dataset

    lines = SAMPLE.read_text(encoding="utf-8").splitlines()
    cells = lines[1].split(",")
    cells[1], cells[8] = "06/03/2024 13:29", "06/03/2024 14:00"
    path = tmp_path / "uk.csv"
    path.write_text(lines[0] + "\n" + ",".join(cells) + "\n")
    app = create_app(settings, dataset=load_dataset(path, cache=False))
    html = app.test_client().get("/ui/data").get_data(as_text=True)
    assert "month first: a guess, as no day or month passes 12" in html and "DATA_DAY_FIRST=true" in html
    app = create_app(settings, dataset=load_dataset(path, cache=False, day_first=True))
    assert "day first, as <code>DATA_DAY_FIRST</code> says" in app.test_client().get("/ui/data").get_data(as_text=True)
