"""Deleting a finished job while Redis is at ``maxmemory`` (noeviction, as the chart runs it), on a
real redis-server: the delete frees memory, so Redis allows it, and the API answers 200. It was a
503 redis_out_of_memory: the delete was a MULTI transaction, and Redis refuses every command queued
in one while over maxmemory, so neither a user nor an operator could free room through the API."""

from __future__ import annotations

import time

from jobqueue import keys
from jobqueue.jobs import Job, JobStatus, JobStore, new_job_id
from jobqueue_api import create_app
from tests.support.redis_memory import fill_to_maxmemory

from .support import make_settings


def test_a_finished_job_is_deleted_at_maxmemory_while_submits_are_refused(fresh_redis):
    settings = make_settings(fresh_redis.url)
    client = create_app(settings, load_data=False).test_client()
    admin = fresh_redis.client()
    store = JobStore(admin, settings.job_ttl_seconds)
    done = Job(id=new_job_id(), operation="sleep", params={}, status=JobStatus.COMPLETE, finished_at=time.time())
    admin.zadd(keys.JOB_INDEX, {done.id: done.submitted_at})
    admin.zadd(keys.operation_index("sleep"), {done.id: done.submitted_at})
    store.save(done)
    admin.set(keys.result(done.id), b"x" * 200_000)
    filler = fill_to_maxmemory(admin)
    try:
        refused = client.post("/submit", json={"operation": "sleep"})
        assert refused.status_code == 503 and refused.get_json()["error"] == "redis_out_of_memory"
        deleted = client.delete(f"/jobs/{done.id}")
        assert deleted.status_code == 200, deleted.get_data(as_text=True)
        assert deleted.get_json() == {"job_id": done.id, "status": "complete", "deleted": True}
        assert client.get(f"/status/{done.id}").status_code == 404
        assert not admin.exists(keys.job(done.id), keys.result(done.id))
        for index in (keys.JOB_INDEX, keys.status_index("complete"), keys.operation_index("sleep")):
            assert admin.zscore(index, done.id) is None, index
    finally:
        admin.delete(*filler)
        admin.config_set("maxmemory", 0)
