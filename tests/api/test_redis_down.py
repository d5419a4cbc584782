"""Redis stopped: JSON 503s (never a 500 or a hang), liveness still up; Redis back: recovery, no restart."""

from __future__ import annotations

import signal
import time

from jobqueue.metrics_collector import SCRAPE_REDIS_SECONDS
from jobqueue_api import create_app

from .support import make_settings, metric_value


def test_503_while_redis_is_down_and_recovery(fresh_redis):
    client = create_app(make_settings(fresh_redis.url), load_data=False).test_client()
    job_id = client.post("/submit", json={"operation": "sleep"}).get_json()["job_id"]

    fresh_redis.stop()
    for method, route, kw in [
        ("post", "/submit", {"json": {"operation": "sleep"}}),
        ("post", "/jobs", {"json": {"operation": "sleep"}}),
        # with a key: a connection refused sent nothing (it said 504 "did not answer in time, the
        # job may have been stored", and the CLI, which always sends a key, printed that each retry)
        ("post", "/submit", {"json": {"operation": "sleep"}, "headers": {"Idempotency-Key": "k-down-1"}}),
        ("post", "/jobs", {"json": {"operation": "sleep"}, "headers": {"Idempotency-Key": "k-down-2"}}),
        ("post", "/submit?wait=1", {"json": {"operation": "sleep"}, "headers": {"Idempotency-Key": "k-down-3"}}),
        ("get", f"/status/{job_id}", {}),
        ("get", f"/status/{job_id}?wait=1", {}),
        ("get", "/jobs", {}),
        ("delete", f"/jobs/{job_id}", {}),
        ("get", f"/download/{job_id}", {}),
    ]:
        response = getattr(client, method)(route, **kw)
        assert response.status_code == 503, (route, response.get_data(as_text=True))
        assert response.get_json()["error"] == "redis_unavailable"
        assert response.headers["Retry-After"]
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.get_json()["redis"] is False
    assert str(fresh_redis.port) not in ready.get_data(as_text=True)  # no address to strangers
    assert client.get("/healthz").status_code == 200
    text = client.get("/metrics").get_data(as_text=True)
    assert metric_value(text, "jobqueue_redis_up") == 0
    assert client.get("/operations").status_code == 200  # needs no Redis

    fresh_redis.start()
    assert client.get(f"/status/{job_id}").get_json()["status"] == "submitted"  # AOF kept it
    assert client.post("/submit", json={"operation": "sleep"}).status_code == 202
    assert metric_value(client.get("/metrics").get_data(as_text=True), "jobqueue_redis_up") == 1


def test_a_hung_redis_is_scraped_as_down_within_a_scrape_timeout(fresh_redis):
    """A Redis that stops answering (stalled, its node partitioned) held each /metrics for two
    socket timeouts and a retry, 5 s at the default REDIS_TIMEOUT_SECONDS: past make observe's
    5 s scrape timeout, so Prometheus saw the API's target down instead of ``jobqueue_redis_up 0``
    and JobQueueRedisDown never fired (only JobQueueMetricsAbsent, ten minutes later). The scrape's
    own reads give up after SCRAPE_REDIS_SECONDS, once."""
    client = create_app(make_settings(fresh_redis.url), load_data=False).test_client()
    assert metric_value(client.get("/metrics").get_data(as_text=True), "jobqueue_redis_up") == 1
    assert fresh_redis.proc is not None
    fresh_redis.proc.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        text = client.get("/metrics").get_data(as_text=True)
        took = time.monotonic() - started
    finally:
        fresh_redis.proc.send_signal(signal.SIGCONT)
    assert metric_value(text, "jobqueue_redis_up") == 0
    assert took < 2 * SCRAPE_REDIS_SECONDS + 0.5, took
    assert metric_value(client.get("/metrics").get_data(as_text=True), "jobqueue_redis_up") == 1
