"""/metrics in-process (flask test client): request counters, submissions and the Redis gauges."""

from __future__ import annotations

import json
import time

from jobqueue import keys

from .support import metric_value, submit


def _scrape(client) -> str:
    response = client.get("/metrics")
    assert response.status_code == 200 and response.mimetype == "text/plain"
    return response.get_data(as_text=True)


def test_requests_and_submissions_are_counted(client):
    before = _scrape(client)
    labels = {"route": "/submit", "method": "POST", "status": "202"}
    base = metric_value(before, "jobqueue_http_requests_total", labels) or 0
    base_sub = metric_value(before, "jobqueue_jobs_submitted_total", {"operation": "sleep"}) or 0
    for _ in range(3):
        submit(client)
    client.post("/submit", data="nope", content_type="application/json")
    client.get("/not/a/route")
    text = _scrape(client)
    assert metric_value(text, "jobqueue_http_requests_total", labels) == base + 3
    assert metric_value(text, "jobqueue_jobs_submitted_total", {"operation": "sleep"}) == base_sub + 3
    assert metric_value(text, "jobqueue_http_requests_total", {"route": "/submit", "status": "400"}) >= 1
    assert metric_value(text, "jobqueue_http_requests_total", {"route": "<unmatched>", "status": "404"}) >= 1
    assert (
        metric_value(text, "jobqueue_http_request_duration_seconds_count", {"route": "/submit", "method": "POST"})
        >= base + 3
    )


def test_queue_gauges_are_read_from_redis(client, jobs, queue):
    text = _scrape(client)
    assert metric_value(text, "jobqueue_redis_up") == 1
    assert metric_value(text, "jobqueue_queue_depth", {"queue": "jobs"}) == 0
    assert metric_value(text, "jobqueue_oldest_job_age_seconds", {"queue": "jobs"}) == 0
    ids = [submit(client) for _ in range(4)]
    # backdate the oldest job by a minute
    doc = json.loads(jobs.get(keys.job(ids[0])))
    doc["submitted_at"] -= 60
    jobs.set(keys.job(ids[0]), json.dumps(doc))
    # two workers claimed one job each; one heartbeat is fresh, one long stale
    queue.lmove(keys.queue("jobs"), keys.processing("w1"), "RIGHT", "RIGHT")
    queue.lmove(keys.queue("jobs"), keys.processing("w2"), "RIGHT", "RIGHT")
    queue.zadd(keys.WORKERS_HEARTBEAT, {"w1": time.time(), "w2": time.time() - 3600})
    text = _scrape(client)
    assert metric_value(text, "jobqueue_queue_depth", {"queue": "jobs"}) == 2
    assert metric_value(text, "jobqueue_jobs_in_progress", {"queue": "jobs"}) == 2
    assert 59 <= metric_value(text, "jobqueue_oldest_job_age_seconds", {"queue": "jobs"}) < 120
    assert metric_value(text, "jobqueue_workers_alive") == 1


def test_redis_refusing_writes_is_a_gauge_of_its_own(fresh_redis):
    """Redis at maxmemory (noeviction) still answers reads, so jobqueue_redis_up stayed 1 and no
    series said that every submit was refused (the exporter sidecar is optional)."""
    from jobqueue_api import create_app
    from tests.support.redis_memory import fill_to_maxmemory

    from .support import make_settings

    client = create_app(make_settings(fresh_redis.url), load_data=False).test_client()
    admin = fresh_redis.client()
    assert metric_value(_scrape(client), "jobqueue_redis_writable") == 1
    filler = fill_to_maxmemory(admin)
    try:
        assert client.post("/submit", json={"operation": "sleep"}).status_code == 503
        text = _scrape(client)
        assert metric_value(text, "jobqueue_redis_up") == 1
        assert metric_value(text, "jobqueue_redis_writable") == 0
    finally:
        admin.delete(*filler)
        admin.config_set("maxmemory", 0)
    assert metric_value(_scrape(client), "jobqueue_redis_writable") == 1
