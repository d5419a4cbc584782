"""A worker whose REDIS_JOBS_DB is not the API's claims nothing (jobqueue.jobsdb): the ids stay
queued for a worker that can run them, instead of being taken, finding no document and being
dropped (every job then stayed ``submitted`` for ever). The worker loop in this process, real Redis."""

from __future__ import annotations

import subprocess
import threading
import time

import pytest

from jobqueue import jobsdb, keys
from jobqueue.jobs import JobStatus
from jobqueue_worker.worker import Worker

from devstack.procs import wait_until
from tests.support.harness import WORKER_EXE, FakeData, operations, proc_env


def _api_record(harness, jobs_db: int) -> int | None:
    """What an API process with this REDIS_JOBS_DB writes (its Recorder's one call)."""
    return jobsdb.record(harness.queue_client, harness.settings.replace(redis_jobs_db=jobs_db))


def test_without_a_record_the_worker_claims_as_before(harness):
    """The upgrade path: an API from before the record writes none, and the worker does not check."""
    job_id = harness.submit("sleep")
    assert harness.queue_client.get(keys.jobs_db(harness.settings.queue_name)) is None
    assert Worker(harness.settings, operations(), FakeData()).work(burst=True, install_signals=False) == 0
    assert harness.store.get(job_id).status == JobStatus.COMPLETE


def test_the_same_db_recorded_claims_as_before(harness):
    _api_record(harness, harness.settings.redis_jobs_db)
    job_id = harness.submit("sleep")
    assert Worker(harness.settings, operations(), FakeData()).work(burst=True, install_signals=False) == 0
    assert harness.store.get(job_id).status == JobStatus.COMPLETE


def test_another_db_recorded_leaves_the_ids_queued_and_says_so(harness, caplog):
    job_id = harness.submit("sleep")
    _api_record(harness, 5)
    worker = Worker(harness.settings, operations(), FakeData())
    with caplog.at_level("ERROR", logger="jobqueue.worker"):
        assert worker.work(burst=True, install_signals=False) == 2  # a drain that can take nothing
    assert harness.queue_client.lrange(keys.queue(harness.settings.queue_name), 0, -1) == [job_id]
    assert harness.store.get(job_id).status == JobStatus.SUBMITTED
    (record,) = [r for r in caplog.records if r.getMessage() == "REDIS_JOBS_DB differs from the API's: taking no jobs"]
    assert (record.jobs_db, record.api_jobs_db) == (0, 5)
    assert "REDIS_JOBS_DB=5" in record.hint
    assert harness.queue_client.keys(keys.PROCESSING_PREFIX + "*") == []


def test_the_worker_takes_jobs_again_once_the_record_agrees(harness, caplog):
    """No restart needed when the other side is the one fixed (an API rolled out with the workers'
    db): the heartbeat reads the record again and the worker claims."""
    settings = harness.settings.replace(job_lease_seconds=0.3)  # a heartbeat (and check) every 0.1 s
    _api_record(harness, 4)
    job_id = harness.submit("sleep")
    worker = Worker(settings, operations(), FakeData())
    thread = threading.Thread(target=worker.work, kwargs={"install_signals": False}, daemon=True)
    with caplog.at_level("INFO", logger="jobqueue.worker"):
        thread.start()
        try:
            wait_until(lambda: harness.queue_client.zcard(keys.WORKERS_HEARTBEAT) == 1, 10, "a heartbeat")
            assert worker.jobs_db_conflict == 4
            assert harness.queue_client.lrange(keys.queue(settings.queue_name), 0, -1) == [job_id]
            _api_record(harness, settings.redis_jobs_db)
            wait_until(lambda: harness.store.get(job_id).status == JobStatus.COMPLETE, 10, "the job to run")
        finally:
            worker.request_stop()
            thread.join(10)
    said = [r.getMessage() for r in caplog.records]
    assert "REDIS_JOBS_DB agrees with the API's again: taking jobs" in said, said


def test_an_api_recording_over_another_apis_db_learns_it(harness):
    """Two API replicas of one queue with different REDIS_JOBS_DB: the second is told (and warns)."""
    assert _api_record(harness, 2) is None
    assert _api_record(harness, 2) is None  # replicas that agree: nothing to say
    assert _api_record(harness, 3) == 2
    key = keys.jobs_db(harness.settings.queue_name)
    assert harness.queue_client.get(key) == "3"
    assert 0 < harness.queue_client.ttl(key) <= jobsdb.RECORD_TTL_SECONDS
    assert harness.jobs.get(key) is None  # in the queue db, where the workers look


def test_a_record_written_after_the_workers_last_check_stops_it_at_the_first_missing_document(harness, caplog):
    """The API's first record can come after a worker's last check (both starting together; a check
    a heartbeat, up to 5 s, apart): the first id without a document makes the worker look again, so
    it drops that one (the old symptom) and leaves the rest queued."""
    worker = Worker(harness.settings, operations(), FakeData())  # lease 30 s: no heartbeat check in this test
    thread = threading.Thread(target=worker.work, kwargs={"install_signals": False}, daemon=True)
    thread.start()
    try:
        wait_until(lambda: harness.queue_client.zcard(keys.WORKERS_HEARTBEAT) == 1, 10, "a heartbeat")
        assert worker.jobs_db_conflict is None
        _api_record(harness, 6)
        ids = [f"00000000-0000-4000-8000-00000000000{i}" for i in range(3)]
        # as this worker sees jobs an API stored in its db 6: ids queued, no document in ours
        harness.queue_client.rpush(keys.queue(harness.settings.queue_name), *ids)
        wait_until(lambda: worker.jobs_db_conflict == 6, 10, "the worker to notice")
        time.sleep(0.3)
        queued = harness.queue_client.lrange(keys.queue(harness.settings.queue_name), 0, -1)
        assert queued == ids[1:], queued
    finally:
        worker.request_stop()
        thread.join(10)


@pytest.mark.parametrize("processes", ["1", "2"])
def test_a_burst_run_on_another_db_exits_2_leaving_the_queue(harness, redis_url, processes):
    """``jobqueue-worker --burst`` (one process, or a supervisor's children): a drain that can take
    nothing exits 2 rather than waiting for ever, and is not restarted by its supervisor."""
    job_id = harness.submit("sleep")
    _api_record(harness, 7)
    env = proc_env(redis_url, WORKER_CONCURRENCY=processes, LOG_LEVEL="INFO")
    done = subprocess.run([WORKER_EXE, "--burst"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    assert "REDIS_JOBS_DB differs from the API's" in done.stdout
    assert harness.queue_client.lrange(keys.queue(harness.settings.queue_name), 0, -1) == [job_id]
