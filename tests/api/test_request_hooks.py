"""Every request's checks and bookkeeping run in one before- and one after-request hook
(``hooks.py``), and do what the separate hooks did: metrics port first, then the Host and
Content-Type guards, then the clock; counted, timed and given its headers after."""

from __future__ import annotations

import pytest

from .support import make_settings, metric_value


def _app(redis_url, **env):
    from jobqueue_api import create_app

    return create_app(make_settings(redis_url, **env), load_data=False)


@pytest.mark.parametrize(
    "env", [{}, {"API_METRICS_PORT": "9109"}, {"API_TOKEN": "s3cret"}], ids=["default", "metrics-port", "token"]
)
def test_one_app_hook_before_and_one_after_each_request(redis_url, env):
    app = _app(redis_url, **env)
    assert len(app.before_request_funcs.get(None, [])) == 1
    assert len(app.after_request_funcs.get(None, [])) == 1


def _scrape(client) -> str:
    return client.get("/metrics").get_data(as_text=True)


def _counts(text: str, route: str, status: str) -> tuple[float, float]:
    done = metric_value(text, "jobqueue_http_requests_total", {"route": route, "method": "POST", "status": status})
    timed = metric_value(text, "jobqueue_http_request_duration_seconds_count", {"route": route, "method": "POST"})
    return done or 0, timed or 0


def test_a_refused_host_is_counted_not_timed_and_an_accepted_submit_both(redis_url):
    client = _app(redis_url, ALLOWED_HOSTS="localhost").test_client()
    before = _scrape(client)
    refused = client.post("/submit", json={"operation": "sleep", "params": {}}, headers={"Host": "evil.example"})
    assert refused.status_code == 400 and refused.get_json()["error"] == "host_not_allowed"
    assert refused.headers["X-Content-Type-Options"] == "nosniff" and refused.headers["Cache-Control"] == "no-store"
    middle = _scrape(client)
    assert _counts(middle, "/submit", "400")[0] == _counts(before, "/submit", "400")[0] + 1
    assert _counts(middle, "/submit", "400")[1] == _counts(before, "/submit", "400")[1]  # never timed

    ok = client.post("/submit", json={"operation": "sleep", "params": {}})
    assert ok.status_code == 202
    assert ok.headers["X-Content-Type-Options"] == "nosniff" and ok.headers["Cache-Control"] == "no-store"
    after = _scrape(client)
    assert _counts(after, "/submit", "202")[0] == _counts(middle, "/submit", "202")[0] + 1
    assert _counts(after, "/submit", "202")[1] == _counts(middle, "/submit", "202")[1] + 1


def test_the_metrics_port_check_comes_before_the_host_check(redis_url):
    """On the application port /metrics is a 404 even with a Host the allow-list refuses: the
    listener check runs first, as the separate hook registered before the guard did."""
    client = _app(redis_url, API_METRICS_PORT="9109", ALLOWED_HOSTS="localhost").test_client()
    response = client.get("/metrics", headers={"Host": "evil.example"})
    assert response.status_code == 404
    assert client.get("/jobs", headers={"Host": "evil.example"}).status_code == 400


def test_a_write_that_is_not_json_is_refused_before_the_token_check(redis_url):
    client = _app(redis_url, API_TOKEN="s3cret").test_client()
    response = client.post("/submit", data="operation=sleep", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415
    response = client.post("/submit", json={"operation": "sleep", "params": {}})
    assert response.status_code == 401 and response.headers["X-Content-Type-Options"] == "nosniff"


def test_response_headers_keep_a_views_own_nosniff_and_replace_its_cache_control_on_job_paths(redis_url):
    """The headers are added to the list the server gets (``guards.with_headers``) with the after
    hook's old rules: nosniff only when the response has none, no-store replacing any Cache-Control
    on the paths that hold job data (as ``request.path`` reads them), the static assets' own kept."""
    from flask import Response

    app = _app(redis_url)
    app.add_url_rule(
        "/jobs-probe",
        "probe",
        lambda: Response("x", headers={"X-Content-Type-Options": "custom", "Cache-Control": "max-age=60"}),
    )
    app.add_url_rule("/other-probe", "other", lambda: Response("x", headers={"Cache-Control": "max-age=60"}))
    client = app.test_client()

    response = client.get("/jobs-probe")
    assert response.headers.getlist("X-Content-Type-Options") == ["custom"]
    assert response.headers.getlist("Cache-Control") == ["no-store"]
    response = client.get("/other-probe")
    assert response.headers.getlist("X-Content-Type-Options") == ["nosniff"]
    assert response.headers.getlist("Cache-Control") == ["max-age=60"]
    job_path = "//status/00000000-0000-4000-8000-000000000000"  # request.path reads /status/...
    response = client.get("/", environ_overrides={"PATH_INFO": job_path})
    assert response.status_code == 404 and response.headers.getlist("Cache-Control") == ["no-store"]
    response = client.get("/ui/static/ui.js")
    assert response.headers.getlist("Cache-Control") == ["no-cache"]
    assert response.headers.getlist("X-Content-Type-Options") == ["nosniff"]


def test_requests_share_one_null_session_that_refuses_changes(redis_url):
    """The API keeps no sessions: each request gets the same null session (not one built per
    request), and it still refuses to be written, so nothing can pass from one request to the next."""
    import pytest
    from flask import session
    from flask.sessions import NullSession

    app = _app(redis_url)
    seen = []
    for _ in range(2):
        with app.test_request_context("/submit", method="POST"):
            assert isinstance(session, NullSession) and not session
            seen.append(session._get_current_object())  # type: ignore[attr-defined]
            with pytest.raises(RuntimeError):
                session["user"] = "x"
    assert seen[0] is seen[1]


def test_the_token_check_runs_in_the_app_hook_after_the_clock_starts(redis_url):
    """No blueprint hooks: the token of a protected route is checked by the app's one hook, after
    the guards and after the clock starts, so a 401 is counted and timed as before."""
    app = _app(redis_url, API_TOKEN="s3cret")
    assert not any(app.before_request_funcs.get(name) for name in ("jobs", "analysis", "queue"))
    client = app.test_client()
    before = _scrape(client)
    refused = client.post("/submit", json={"operation": "sleep", "params": {}})
    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("Bearer")
    after = _scrape(client)
    assert _counts(after, "/submit", "401") == tuple(n + 1 for n in _counts(before, "/submit", "401"))
    accepted = client.post(
        "/submit", json={"operation": "sleep", "params": {}}, headers={"Authorization": "Bearer s3cret"}
    )
    assert accepted.status_code == 202
    assert client.get("/healthz").status_code == 200  # not a protected blueprint


def test_options_answers_204_with_allow_and_no_html(redis_url):
    """Flask answered OPTIONS with 200, an empty body and ``Content-Type: text/html``: the one
    answer of the JSON API labelled HTML (security review I3)."""
    response = _app(redis_url).test_client().options("/submit")
    assert response.status_code == 204 and response.data == b""
    assert "Content-Type" not in response.headers and set(response.headers["Allow"].split(", ")) >= {"POST", "OPTIONS"}
