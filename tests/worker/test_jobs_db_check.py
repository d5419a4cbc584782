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

from devstack.procs import stop, wait_until
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
            assert worker.jobs_db.conflict == 4
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


def test_a_record_written_after_the_workers_last_check_loses_no_id(harness, caplog):
    """The API's first record can come after a worker's last check (both starting together; a check
    a heartbeat, up to 5 s, apart): the first id without a document makes the worker read the record
    again before anything is acked, so it gives every id back, in order, and takes none (it used to
    drop that first id)."""
    worker = Worker(harness.settings, operations(), FakeData())  # lease 30 s: no heartbeat check in this test
    thread = threading.Thread(target=worker.work, kwargs={"install_signals": False}, daemon=True)
    thread.start()
    try:
        wait_until(lambda: harness.queue_client.zcard(keys.WORKERS_HEARTBEAT) == 1, 10, "a heartbeat")
        assert worker.jobs_db.conflict is None
        _api_record(harness, 6)
        ids = [f"00000000-0000-4000-8000-00000000000{i}" for i in range(3)]
        # as this worker sees jobs an API stored in its db 6: ids queued, no document in ours
        harness.queue_client.rpush(keys.queue(harness.settings.queue_name), *ids)
        wait_until(lambda: worker.jobs_db.conflict == 6, 10, "the worker to notice")
        time.sleep(0.3)
        queued = harness.queue_client.lrange(keys.queue(harness.settings.queue_name), 0, -1)
        assert queued == ids, queued
        assert harness.queue_client.keys(keys.PROCESSING_PREFIX + "*") == []
    finally:
        worker.request_stop()
        thread.join(10)


def _unindexed(harness, n: int = 1) -> list[str]:
    """Ids queued as an API on another jobs db queues them, seen from ours: no document, no index entry."""
    ids = [f"10000000-0000-4000-8000-00000000000{i}" for i in range(n)]
    harness.queue_client.rpush(keys.queue(harness.settings.queue_name), *ids)
    return ids


def test_an_id_without_a_document_and_no_record_goes_back_and_the_worker_waits_for_one(harness, caplog):
    """No record at all (the API's first write not there yet, or a submit made without an API): an
    id neither our document nor our index knows is put back at the front of the queue and the worker
    takes nothing, naming REDIS_JOBS_DB, until a record decides: another db is the mismatch (nothing
    lost), ours means the job is gone here (acked)."""
    settings = harness.settings.replace(job_lease_seconds=0.3)  # a heartbeat (and check) every 0.1 s
    ids = _unindexed(harness, 2)
    worker = Worker(settings, operations(), FakeData())
    thread = threading.Thread(target=worker.work, kwargs={"install_signals": False}, daemon=True)
    with caplog.at_level("INFO", logger="jobqueue.worker"):
        thread.start()
        try:
            wait_until(lambda: worker.jobs_db.unrecorded_since is not None, 10, "the worker to stall")
            time.sleep(0.3)
            assert worker.jobs_db.stalled()
            assert harness.queue_client.lrange(keys.queue(settings.queue_name), 0, -1) == ids
            assert harness.queue_client.keys(keys.PROCESSING_PREFIX + "*") == []
            _api_record(harness, 3)  # the API's record: another db
            wait_until(lambda: worker.jobs_db.conflict == 3, 10, "the record to be read")
            assert worker.jobs_db.unrecorded_since is None and worker.jobs_db.stalled()
            assert harness.queue_client.lrange(keys.queue(settings.queue_name), 0, -1) == ids
            _api_record(harness, settings.redis_jobs_db)  # ours after all: the ids are gone here
            wait_until(lambda: harness.queue_client.llen(keys.queue(settings.queue_name)) == 0, 10, "the acks")
        finally:
            worker.request_stop()
            thread.join(10)
    (stall,) = [r for r in caplog.records if r.getMessage().startswith("no job document in REDIS_JOBS_DB")]
    assert stall.levelname == "ERROR" and stall.returned[0] == ids[0]
    assert "REDIS_JOBS_DB=0" in stall.hint
    dropped = [r.job_id for r in caplog.records if r.getMessage() == "job not run: no job document"]
    assert sorted(dropped) == ids


def test_a_deleted_document_the_index_knows_is_dropped_without_a_stall(harness, caplog):
    """A job deleted or expired while queued, in our own db: its index entry says our db held it, so
    there is nothing to wait for (no record needed): the id is acked and the next job runs."""
    gone = harness.submit("sleep")
    harness.jobs.delete(keys.job(gone))  # its TTL ran out, say: jobs:by-submitted still has it
    fine = harness.submit("sleep")
    worker = Worker(harness.settings, operations(), FakeData())
    with caplog.at_level("INFO", logger="jobqueue.worker"):
        assert worker.work(burst=True, install_signals=False) == 0
    assert harness.store.get(fine).status == JobStatus.COMPLETE
    assert worker.jobs_db.unrecorded_since is None
    assert [r.job_id for r in caplog.records if r.getMessage() == "job not run: no job document"] == [gone]
    assert harness.queue_client.llen(keys.queue(harness.settings.queue_name)) == 0


def test_without_a_record_for_the_whole_wait_ids_without_a_document_are_dropped_as_before(harness, monkeypatch, caplog):
    """An API from before the record never writes one: the worker waits UNRECORDED_WAIT_SECONDS,
    then takes ids again, and one without a document anywhere is dropped as it always was."""
    from jobqueue_worker import jobsdbgate

    monkeypatch.setattr(jobsdbgate, "UNRECORDED_WAIT_SECONDS", 0.5)
    (unknown,) = _unindexed(harness)
    fine = harness.submit("sleep")
    worker = Worker(harness.settings.replace(job_lease_seconds=0.3), operations(), FakeData())
    thread = threading.Thread(target=worker.work, kwargs={"install_signals": False}, daemon=True)
    with caplog.at_level("INFO", logger="jobqueue.worker"):
        thread.start()
        try:
            wait_until(lambda: worker.jobs_db.unrecorded_since is not None, 10, "the worker to stall")
            wait_until(lambda: harness.store.get(fine).status == JobStatus.COMPLETE, 10, "the wait to end")
            wait_until(lambda: harness.queue_client.llen(keys.queue(harness.settings.queue_name)) == 0, 10, "the drop")
        finally:
            worker.request_stop()
            thread.join(10)
    assert harness.queue_client.keys(keys.PROCESSING_PREFIX + "*") == []
    assert [r.job_id for r in caplog.records if r.getMessage() == "job not run: no job document"] == [unknown]


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


def test_a_worker_on_another_db_started_before_any_record_loses_no_id(harness, redis_url, tmp_path):
    """``jobqueue-worker`` with REDIS_JOBS_DB=3 while jobs are stored in db 0 (the project's own
    submit) and no API has recorded a db: the id it takes goes back to the queue, it stalls naming
    REDIS_JOBS_DB, and a worker on db 0 then runs the job. It used to ack the id and the job stayed
    ``submitted`` for ever."""
    env = proc_env(redis_url, REDIS_JOBS_DB="3", LOG_LEVEL="INFO", JOB_LEASE_SECONDS="2")
    with open(tmp_path / "wrong.log", "ab") as log:
        wrong = subprocess.Popen([WORKER_EXE], env=env, stdout=log, stderr=subprocess.STDOUT)
    right = None
    try:
        wait_until(lambda: harness.queue_client.zcard(keys.WORKERS_HEARTBEAT) == 1, 120, "the worker's heartbeat")
        job_id = harness.submit("sleep")
        said = lambda: (tmp_path / "wrong.log").read_text()  # noqa: E731
        wait_until(lambda: "no job document in REDIS_JOBS_DB" in said(), 30, "the stall")
        assert harness.queue_client.lrange(keys.queue(harness.settings.queue_name), 0, -1) == [job_id]
        assert harness.store.get(job_id).status == JobStatus.SUBMITTED
        assert "job not run: no job document" not in said()
        with open(tmp_path / "right.log", "ab") as log:
            right = subprocess.Popen([WORKER_EXE], env=proc_env(redis_url), stdout=log, stderr=subprocess.STDOUT)
        wait_until(lambda: harness.store.get(job_id).status == JobStatus.COMPLETE, 120, "the job on db 0")
        assert wrong.poll() is None
    finally:
        for proc in (wrong, right):
            if proc is not None:
                assert stop(proc, 15) == 0


@pytest.mark.parametrize("value", ["²", "٣", "-1", "db0", b"\xff\xfe"])
def test_a_record_that_is_no_db_number_counts_as_none_and_the_api_rewrites_it(harness, value):
    """Anything but ASCII digits in the record (a hand-made SET, a restored dump, another tool) is no
    record: ``str.isdigit`` let a superscript "²" reach ``int`` (ValueError: the worker's housekeeping
    failed every beat, skipping reap and sweep, and the API's recorder thread died, never writing the
    record again) and read an Arabic-Indic "٣" as db 3 (the worker then took nothing)."""
    key = keys.jobs_db(harness.settings.queue_name)
    harness.queue_client.set(key, value)
    assert jobsdb.recorded(harness.queue_client, harness.settings) is None
    job_id = harness.submit("sleep")
    worker = Worker(harness.settings, operations(), FakeData())
    worker.jobs_db.check()  # the heartbeat's check: no exception, no conflict
    assert worker.jobs_db.conflict is None
    assert worker.work(burst=True, install_signals=False) == 0
    assert harness.store.get(job_id).status == JobStatus.COMPLETE
    harness.queue_client.set(key, value)
    assert jobsdb.Recorder(harness.queue_client, harness.settings).once()  # the API's refresh
    assert harness.queue_client.get(key) == str(harness.settings.redis_jobs_db)
