"""Issue 14 item 5: a per-client submission rate limit, 429 + Retry-After, counted in Redis so it
holds across API processes. Before: no limit (200 plot jobs from one client in 0.7 s delayed
another client's 2 ms job by 29.6 s)."""

from __future__ import annotations

from .support import make_settings


def _app(redis_url, **env):
    from jobqueue_api import create_app

    return create_app(make_settings(redis_url, **env), load_data=False)


def _post(client, addr):
    return client.post("/submit", json={"operation": "sleep"}, environ_base={"REMOTE_ADDR": addr})


def test_a_client_past_its_limit_gets_429_with_retry_after_across_processes(redis_url):
    one, two = _app(redis_url, SUBMIT_RATE_LIMIT="5").test_client(), _app(redis_url, SUBMIT_RATE_LIMIT="5").test_client()
    statuses = [_post(one if i % 2 else two, "10.0.0.1").status_code for i in range(8)]
    assert statuses == [202] * 5 + [429] * 3, statuses  # two "processes", one count
    refused = _post(one, "10.0.0.1")
    retry = int(refused.headers["Retry-After"])
    assert refused.status_code == 429 and refused.get_json()["error"] == "rate_limited"
    assert 1 <= retry <= 60 and refused.get_json()["retry_after"] == retry
    assert _post(two, "10.0.0.2").status_code == 202  # another client is not affected
    # invalid submissions are refused before they count
    assert one.post("/submit", json={"operation": "nope"}, environ_base={"REMOTE_ADDR": "10.0.0.3"}).status_code == 400
    print(f"\nSUBMIT_RATE_LIMIT=5: {statuses}; Retry-After {retry} s")


def test_zero_turns_the_limit_off(redis_url):
    client = _app(redis_url, SUBMIT_RATE_LIMIT="0").test_client()
    assert all(_post(client, "10.0.0.1").status_code == 202 for _ in range(50))
