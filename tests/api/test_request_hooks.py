"""Every request's checks and bookkeeping run in one before- and one after-request hook
(``hooks.py``), and do what the separate hooks did: metrics port first, then the Host and
Content-Type guards, then the clock; counted, timed and given its headers after."""

from __future__ import annotations

import pytest

from .support import make_settings, metric_value


def _app(redis_url, **env):
    from jobqueue_api import create_app

    return create_app(make_settings(redis_url, **env), load_data=False)


@pytest.mark.parametrize("env", [{}, {"API_METRICS_PORT": "9109"}, {"API_TOKEN": "s3cret"}],
                         ids=["default", "metrics-port", "token"])
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
    assert _counts(middle, "/submit", "400")[1] == _counts(before, "/submit", "400")[1]   # never timed

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
