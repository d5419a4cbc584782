"""Readiness while Redis refuses writes, on a real redis-server. Full at ``maxmemory`` (noeviction,
as the chart runs it), Redis still serves every read and delete, and every replica sees the same
Redis: ``/readyz`` answered 503, so the readiness probe took every API pod out of its Service at
once and reads and deletes met the Ingress's own HTML 503. Now ``/readyz`` stays 200 and says
``redis_writable: false``; a read-only replica (this replica's REDIS_URL naming one) stays 503."""

from __future__ import annotations

import logging

from jobqueue_api import create_app
from tests.support.redis_memory import fill_to_maxmemory

from .support import make_settings


def test_a_full_redis_keeps_the_api_ready_and_says_it_refuses_writes(fresh_redis, caplog):
    client = create_app(make_settings(fresh_redis.url)).test_client()
    admin = fresh_redis.client()
    job_id = client.post("/submit", json={"operation": "sleep"}).get_json()["job_id"]
    caplog.set_level(logging.INFO, logger="jobqueue.api")
    filler = fill_to_maxmemory(admin)
    try:
        submit = client.post("/submit", json={"operation": "sleep"})
        assert submit.status_code == 503 and submit.get_json()["error"] == "redis_out_of_memory"
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.get_data(as_text=True)
        assert ready.get_json() == {"status": "ready", "redis": True, "redis_writable": False, "data": True}
        assert client.get(f"/status/{job_id}").get_json()["status"] == "submitted"
        assert client.get("/jobs").status_code == 200
        said = [r for r in caplog.records if r.msg == "ready, but refusing submits"]
        assert said and "out of memory" in str(said[0].problems), [r.msg for r in caplog.records]
    finally:
        admin.delete(*filler)
        admin.config_set("maxmemory", 0)
    assert client.get("/readyz").get_json()["redis_writable"] is True


def test_a_read_only_replica_is_still_not_ready(fresh_redis):
    client = create_app(make_settings(fresh_redis.url)).test_client()
    admin = fresh_redis.client()
    admin.config_set("replica-serve-stale-data", "yes")
    admin.config_set("replica-read-only", "yes")
    admin.replicaof("127.0.0.1", 1)  # nothing listens there; stale reads are served, writes refused
    try:
        ready = client.get("/readyz")
        assert ready.status_code == 503, ready.get_data(as_text=True)
        assert ready.get_json() == {
            "status": "not ready",
            "error": "not_ready",
            "redis": True,
            "redis_writable": False,
            "data": True,
        }
    finally:
        admin.replicaof("NO", "ONE")
    assert client.get("/readyz").status_code == 200
