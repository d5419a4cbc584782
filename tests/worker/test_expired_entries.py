"""Index entries of expired jobs, on a real redis-server with a real worker: a job document expires
by its TTL, its listing entries did not. The listing pruned only the entries a page passed in the
index it read, so every job's, its status's, its operation's and its owner's entries stayed for
good (about 500 bytes of Redis per job, growing with every job ever run). The workers' sweeper now
drops them; a job older than the TTL whose document still lives keeps its entries."""

from __future__ import annotations

import threading
import time

from jobqueue import keys
from jobqueue.jobs import JobStatus
from jobqueue_worker import worker as worker_module
from jobqueue_worker.worker import Worker
from tests.support.harness import Harness, operations


def _indexes(h: Harness) -> dict[str, int]:
    found = [keys.ACTIVE_INDEX, *h.jobs.scan_iter(match=keys.indexes_pattern(), _type="zset")]
    return {index: h.jobs.zcard(index) for index in found if h.jobs.zcard(index)}


def test_the_sweeper_drops_every_entry_of_expired_jobs_and_keeps_live_ones(redis_url, monkeypatch):
    h = Harness(redis_url, JOB_LEASE_SECONDS="1")
    h.jobs.flushdb()
    delivery = h.delivery
    long_ago = time.time() - 2 * h.settings.job_ttl_seconds  # submitted before the TTL: may have expired
    jobs = []
    for i in range(30):
        job = delivery.new_job("sleep", {"seconds": 0}, owner="alice" if i % 2 else None)
        job.submitted_at = long_ago + i
        jobs.append(job)
    delivery.store(jobs)
    worker = Worker(h.settings, operations(), worker_id="w1")
    monkeypatch.setattr(worker_module, "SWEEP_INTERVAL_SECONDS", 0.3)
    thread = threading.Thread(target=worker.work, kwargs={"install_signals": False}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while any(j.status is not JobStatus.COMPLETE for j in h.store.get_many(x.id for x in jobs)):
            assert time.monotonic() < deadline, "the jobs ran"
            time.sleep(0.05)
        live = jobs[-1]  # finished now: its document lives a TTL more, whenever it was submitted
        for job in jobs[:-1]:
            assert h.jobs.ttl(keys.job(job.id)) > 0  # final documents carry the TTL
            h.jobs.pexpire(keys.job(job.id), 1)  # ...which now runs out
        time.sleep(0.05)
        # a user's listing passes them all, and prunes only the index it reads
        assert [j.id for j in h.store.page().jobs] == [live.id]
        deadline = time.monotonic() + 10
        while _indexes(h) != {
            keys.JOB_INDEX: 1,
            keys.status_index("complete"): 1,
            keys.operation_index("sleep"): 1,
            keys.owner_index("alice"): 1,
        }:
            assert time.monotonic() < deadline, f"entries of expired jobs left: {_indexes(h)}"
            time.sleep(0.1)
        assert h.jobs.zscore(keys.owner_index("alice"), live.id) is not None
    finally:
        worker.request_stop()
        thread.join(10)


def test_the_pattern_matches_every_index_that_can_hold_an_expired_job():
    import fnmatch

    for index in (keys.JOB_INDEX, keys.status_index("complete"), keys.operation_index("x"), keys.owner_index("a")):
        assert fnmatch.fnmatchcase(index, keys.indexes_pattern()), index
