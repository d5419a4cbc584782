"""The worker loop in this process (burst mode: drain, then return), on a real Redis."""

from __future__ import annotations

import threading
import time

import pytest

from jobqueue import keys
from jobqueue.jobs import Job, JobStatus, JobStore
from jobqueue_worker.worker import Worker

from tests.support.harness import SAMPLE, FakeData, Param, op, operations, run_burst, wait_blocked

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


def drain(harness, ops, data=None, **changes) -> Worker:
    settings = harness.settings.replace(**changes) if changes else harness.settings
    worker = Worker(settings, ops, data or FakeData())
    assert worker.work(burst=True, install_signals=False) == 0
    return worker


def test_noop_jobs_complete_with_their_result(harness):
    ids = [harness.submit("sleep", {"seconds": 0}) for _ in range(50)]
    drain(harness, operations())
    for job in harness.store.get_many(ids):
        assert job.status == JobStatus.COMPLETE
        assert job.result == {"slept": 0.0} and job.attempts == 1 and job.finished_at >= job.started_at
    assert harness.queue_client.keys(keys.PROCESSING_PREFIX + "*") == []


def test_bad_params_and_unknown_operation_fail_at_once(harness):
    bad = harness.submit("sleep", {"seconds": "soon"})
    unknown = harness.submit("no_such_op", {})
    drain(harness, operations())
    job = harness.store.get(bad)
    assert job.status == JobStatus.FAILED and job.attempts == 1 and "seconds" in job.error
    job = harness.store.get(unknown)
    assert job.status == JobStatus.FAILED and job.attempts == 1 and "no_such_op" in job.error


def test_transient_errors_retry_with_backoff_then_succeed(harness):
    calls = []

    def flaky():
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise ConnectionError("upstream hiccup")
        return {"ok": True}

    job_id = harness.submit("flaky")
    drain(harness, operations(op("flaky", flaky)), job_retry_backoff_seconds=0.1, job_max_attempts=3)
    job = harness.store.get(job_id)
    assert job.status == JobStatus.COMPLETE and job.attempts == 3 and job.result == {"ok": True}
    assert len(calls) == 3
    assert calls[1] - calls[0] >= 0.08 and calls[2] - calls[1] >= 0.16  # 0.1 s, then doubled (±20%)


def test_errors_fail_after_max_attempts_with_the_error(harness):
    def broken():
        raise RuntimeError("always broken")

    job_id = harness.submit("broken")
    drain(harness, operations(op("broken", broken)), job_retry_backoff_seconds=0.01, job_max_attempts=2)
    job = harness.store.get(job_id)
    assert job.status == JobStatus.FAILED and job.attempts == 2
    assert "RuntimeError: always broken" in job.error


def test_time_limit_stops_a_runaway_job(harness):
    def runaway():
        while True:  # pure Python: never returns by itself
            pass

    job_id = harness.submit("runaway")
    t0 = time.monotonic()
    drain(harness, operations(op("runaway", runaway)), job_timeout_seconds=1)
    assert time.monotonic() - t0 < 5
    job = harness.store.get(job_id)
    assert job.status == JobStatus.FAILED and "time limit" in job.error and job.attempts == 1


def test_result_cache_answers_a_repeat_without_running(harness):
    runs = []

    def count_rows(ds, n):
        runs.append(n)
        return {"rows": ds.rows, "n": n}

    ops = operations(op("count_rows", count_rows, needs_dataset=True, params=[Param("n", "int", "n", default=1)]))
    first = harness.submit("count_rows", {"n": 2})
    drain(harness, ops)
    second = harness.submit("count_rows", {"n": 2.0})  # same request once validated
    other = harness.submit("count_rows", {"n": 3})
    drain(harness, ops)
    assert runs == [2, 3]
    a, b, c = harness.store.get(first), harness.store.get(second), harness.store.get(other)
    assert a.cached_from is None and a.dataset == "sha256:test-data"
    assert b.status == JobStatus.COMPLETE and b.cached_from == first and b.result == a.result
    assert b.public()["cached"] is True and c.cached_from is None
    # another dataset is another request
    third = harness.submit("count_rows", {"n": 2})
    drain(harness, ops, data=FakeData("sha256:other"))
    assert harness.store.get(third).cached_from is None and runs == [2, 3, 2]


def test_a_loader_upgrade_is_another_request(harness, monkeypatch):
    """The dataset identity is the file's sha256: after an upgrade that reads the same file by new
    rules (a date form newly understood: format version 7 to 8), a repeat was answered from the
    result computed under the old reading (0 incidents) until the results expired."""
    from atx_analysis import cache as data_cache

    runs = []
    ops = operations(op("count", lambda ds: runs.append(1) or {"n": len(runs)}, needs_dataset=True))
    before = harness.submit("count")
    drain(harness, ops)
    monkeypatch.setattr(data_cache, "CACHE_VERSION", data_cache.CACHE_VERSION + 1)
    after = harness.submit("count")
    drain(harness, ops)
    again = harness.submit("count")
    drain(harness, ops)
    assert len(runs) == 2
    assert harness.store.get(after).cached_from is None and harness.store.get(after).result == {"n": 2}
    assert harness.store.get(again).cached_from == after and harness.store.get(before).result == {"n": 1}


def test_a_cached_answer_names_no_other_users_job(harness):
    """With named tokens, bob's request answered from alice's stored result said
    ``"cached_from": "<alice's job id>"``: a named user must not learn another user's job id. He
    still learns it was cached; his own repeat, and a job without an owner, name their source."""
    ops = operations(op("count_rows", lambda ds, n: {"n": n}, needs_dataset=True, params=[Param("n", "int", "n")]))
    d = harness.delivery
    alice = d.submit("count_rows", {"n": 2}, owner="alice").id
    drain(harness, ops)
    bob = d.submit("count_rows", {"n": 2}, owner="bob").id
    drain(harness, ops)
    bob_again = d.submit("count_rows", {"n": 2}, owner="bob").id
    admin = d.submit("count_rows", {"n": 2}).id  # the admin's token: no owner, sees every job anyway
    drain(harness, ops)
    seen = {name: harness.store.get(i).public() for name, i in [("bob", bob), ("again", bob_again), ("admin", admin)]}
    assert seen["bob"]["cached"] is True and seen["bob"]["cached_from"] is None, seen["bob"]
    assert alice not in harness.jobs.get(keys.job(bob))
    assert seen["again"]["cached"] is True and alice not in str(seen["again"])
    assert seen["admin"]["cached_from"] in (alice, bob)


def test_result_cache_can_be_switched_off(harness):
    runs = []
    ops = operations(op("one", lambda ds: runs.append(1) or {"x": 1}, needs_dataset=True))
    harness.submit("one")
    drain(harness, ops, result_cache=False)
    harness.submit("one")
    drain(harness, ops, result_cache=False)
    assert len(runs) == 2


def test_png_results_are_stored_apart_and_cache_hits_share_one_copy(harness, redis_url):
    from jobqueue.connections import jobs_redis
    from jobqueue.results import read_result

    ops = operations(op("plot", lambda ds: PNG, needs_dataset=True, produces_png=True))
    first = harness.submit("plot")
    drain(harness, ops)
    binary = jobs_redis(harness.settings, decode=False)
    stored = harness.store.get(first).result_ref
    binary.expire(stored, 100)  # as if the first job were days old
    second, third = harness.submit("plot"), harness.submit("plot")
    drain(harness, ops)
    for job_id in (first, second, third):
        job = harness.store.get(job_id)
        assert job.status == JobStatus.COMPLETE and job.result is None and job.result_type == "image/png"
        assert job.result_ref == stored and read_result(binary, job) == (PNG, "image/png")
    assert harness.store.get(second).cached_from == first and harness.store.get(third).cached_from == first
    assert binary.ttl(stored) > 100  # each hit extends the one stored copy
    assert [k for k in binary.scan_iter(match=b"result*") if not k.startswith(b"result-cache:")] == [stored.encode()]
    harness.store.delete(first)  # deleting one job leaves the others' result
    assert read_result(binary, harness.store.get(second)) == (PNG, "image/png")


def test_large_json_results_are_stored_apart(harness):
    from jobqueue.connections import jobs_redis
    from jobqueue.results import read_result

    big = {"rows": ["x" * 100] * 5000}
    job_id = harness.submit("big")
    drain(harness, operations(op("big", lambda: big)))
    job = harness.store.get(job_id)
    assert job.result is None and job.result_ref == keys.result(job_id)
    assert read_result(jobs_redis(harness.settings, decode=False), job) == (big, "application/json")


def test_each_final_job_is_published_once(harness):
    """Each waited-for job (its mark set, as a waiting request sets it) is announced once, with its
    document, and the mark goes with it; a job nobody waits for is not announced at all."""
    pubsub = harness.jobs.pubsub()
    pubsub.subscribe(keys.JOB_DONE_CHANNEL)
    pubsub.get_message(timeout=1)
    ids = [harness.submit("sleep") for _ in range(5)] + [harness.submit("sleep", {"seconds": -1})]
    unwaited = [harness.submit("sleep") for _ in range(3)]
    for job_id in ids:
        harness.jobs.set(keys.waited(job_id), "1", ex=60)
    drain(harness, operations())
    seen = []
    deadline = time.monotonic() + 60
    while len(seen) < len(ids) and time.monotonic() < deadline:
        msg = pubsub.get_message(timeout=0.5)
        if msg and msg["type"] == "message":
            job_id, doc = JobStore.done_message(msg["data"])
            assert Job.from_json(doc).id == job_id and Job.from_json(doc).status.is_final  # the document rides along
            seen.append(job_id)
    assert sorted(seen) == sorted(ids)
    assert pubsub.get_message(timeout=0.5) is None, "a job nobody waited for was announced"
    assert all(harness.store.get(j).status.is_final for j in unwaited)
    assert harness.jobs.exists(*[keys.waited(j) for j in ids]) == 0


def test_with_announce_all_every_final_job_is_published(harness):
    """A monitor that wants every job (the chaos tests' duplicate count) sets ``keys.ANNOUNCE_ALL``."""
    pubsub = harness.jobs.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(keys.JOB_DONE_CHANNEL)
    pubsub.get_message(timeout=1)
    harness.jobs.set(keys.ANNOUNCE_ALL, "1")
    try:
        ids = [harness.submit("sleep") for _ in range(4)]
        drain(harness, operations())
        seen = []
        while (msg := pubsub.get_message(timeout=0.5)) is not None:
            seen.append(JobStore.done_message(msg["data"])[0])
        assert sorted(seen) == sorted(ids)
    finally:
        harness.jobs.delete(keys.ANNOUNCE_ALL)


def test_batches_shrink_to_one_for_slow_jobs(harness):
    worker = Worker(harness.settings, operations(), FakeData())
    assert worker.batch_size() == 1  # nothing measured yet: no hoarding
    worker._learn(0.0002)
    assert worker.batch_size() == 32
    worker._learn(0.3)
    assert worker.batch_size() == 1
    for _ in range(30):
        worker._learn(0.02)
    assert 1 < worker.batch_size() <= 5


def test_slow_jobs_spread_over_workers(harness):
    for _ in range(6):
        harness.submit("sleep", {"seconds": 0.2})
    workers = [Worker(harness.settings, operations(), FakeData()) for _ in range(2)]
    threads = [threading.Thread(target=w.work, kwargs={"burst": True, "install_signals": False}) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    jobs = harness.store.page(limit=10).jobs
    by_worker = {}
    for job in jobs:
        assert job.status == JobStatus.COMPLETE
        by_worker[job.worker] = by_worker.get(job.worker, 0) + 1
    assert sorted(by_worker.values()) == [3, 3]


def test_stop_gives_back_claimed_but_unstarted_jobs(harness):
    ids = [harness.submit("sleep", {"seconds": 0}) for _ in range(40)]
    worker = Worker(harness.settings, operations(), FakeData())
    worker.avg_job_seconds = 0.0001  # claim a full batch at once
    original = worker._run

    def run_then_stop(item, answer):
        worker.request_stop()
        return original(item, answer)

    worker._run = run_then_stop
    worker.work(burst=True, install_signals=False)
    done = [j for j in harness.store.get_many(ids) if j.status == JobStatus.COMPLETE]
    assert len(done) == 1
    assert harness.queue.depth() == 39
    assert harness.queue_client.llen(keys.processing(worker.id)) == 0


@pytest.mark.parametrize("attempts", [4])
def test_a_job_that_keeps_killing_workers_fails_eventually(harness, attempts):
    job_id = harness.submit("sleep")
    doc = harness.store.get(job_id)
    doc.attempts = attempts - 1 + 1  # three lost attempts already (max 3)
    harness.store.save(doc)
    drain(harness, operations(), job_max_attempts=3)
    job = harness.store.get(job_id)
    assert job.status == JobStatus.FAILED and "gave up" in job.error


def test_real_catalogue_and_dataset_with_the_cache(harness, tmp_path):
    """The deployed path: jobqueue.catalogue + atx_analysis dataset, the file appearing late."""
    import shutil

    from jobqueue_worker.data import DataSource
    from jobqueue_worker.main import load_catalogue

    late = tmp_path / "incidents.csv"
    data = DataSource(str(late))
    timer = threading.Timer(0.6, lambda: shutil.copy(SAMPLE, late))
    timer.start()
    first = harness.submit("incident_count_by_date", {"date": "2024-03-06"})
    second = harness.submit("incident_count_by_date", {"date": "2024-03-06"})
    worker = Worker(harness.settings, load_catalogue(harness.settings), data)
    worker.work(burst=True, install_signals=False)
    timer.join()
    a, b = harness.store.get(first), harness.store.get(second)
    assert a.status == JobStatus.COMPLETE and isinstance(a.result["incident_count"], int)
    assert a.dataset == data.identity and a.dataset
    assert b.cached_from == first and b.result == a.result


def test_waiting_for_a_relative_data_path_logs_where_it_looks(tmp_path, monkeypatch, caplog):
    """A worker started outside the checkout waits for the default data/traffic_incidents_sample.csv
    forever (a pod waits for its volume this way); its log named only the relative path, so nothing
    said it was looked for in the wrong folder."""
    from jobqueue_worker.data import DataSource

    monkeypatch.chdir(tmp_path)
    polls = iter([False, True])
    data = DataSource("data/incidents.csv", should_stop=lambda: next(polls))
    with caplog.at_level("WARNING", logger="jobqueue.worker.data"), pytest.raises(RuntimeError):
        data.get()
    (record,) = [r for r in caplog.records if r.getMessage() == "data file not found; waiting for it"]
    assert record.data_path == "data/incidents.csv"
    assert record.looked_for == str(tmp_path / "data" / "incidents.csv")


@pytest.mark.parametrize("url", ["file:///srv/data/x.csv", "https://data.austintexas.gov/api/views/dx9v-zd7x/rows.csv"])
def test_a_data_path_that_is_a_url_is_refused_not_waited_for(tmp_path, monkeypatch, url):
    """DATA_PATH=file:///... : the API said at once "is a URL", the worker logged "data file not
    found; waiting for it" (looked for in <cwd>/file:/srv/...) for ever, and every job waited."""
    from atx_analysis.readers import DataFormatError
    from jobqueue_worker.data import DataSource

    monkeypatch.chdir(tmp_path)
    data = DataSource(url, should_stop=lambda: pytest.fail("waited for a URL to appear"))
    with pytest.raises(DataFormatError, match="is a URL, but the data file must be a file on this machine"):
        data.get()


def test_a_claimed_id_without_its_document_warns_naming_the_jobs_db(harness, caplog):
    """An API started with REDIS_JOBS_DB=2 (README: to keep apart from tutorial data) and a worker
    without it: the worker claimed each id, found no document in its db 0 and dropped the id with an
    info line, "job not run ... final or deleted"; the job said "submitted" for ever, nothing warned."""
    gone = harness.submit("sleep")
    harness.jobs.delete(keys.job(gone))  # as the worker sees a job the API wrote to another db
    fine = harness.submit("sleep")
    with caplog.at_level("INFO", logger="jobqueue.worker"):
        drain(harness, operations())
    assert harness.store.get(fine).status == JobStatus.COMPLETE
    (record,) = [r for r in caplog.records if getattr(r, "job_id", None) == gone]
    assert record.levelname == "WARNING", record.levelname
    assert record.getMessage() == "job not run: no job document", record.getMessage()
    assert record.jobs_db == harness.settings.redis_jobs_db
    assert "REDIS_JOBS_DB" in record.hint and "deleted" in record.hint


def test_an_unreadable_document_fails_the_job_without_stopping_the_worker(harness):
    broken = harness.submit("sleep")
    harness.jobs.set(keys.job(broken), "{not json")
    fine = harness.submit("sleep")
    drain(harness, operations())
    assert harness.store.get(fine).status == JobStatus.COMPLETE
    job = harness.store.get(broken)
    assert job.status == JobStatus.FAILED and "unreadable" in job.error


def test_a_stop_mid_batch_puts_the_started_but_unrun_jobs_back_in_order(harness):
    """A batch is started in one call; on SIGTERM the jobs not yet run go back to the front of the
    queue as submitted, their attempt not counted, and every finished one is recorded."""
    holder = {}
    stopper = op("stopper", lambda: holder["worker"].request_stop() or {"stopped": True})
    first = harness.submit("sleep")
    stop_id = harness.submit("stopper")
    rest = [harness.submit("sleep") for _ in range(3)]
    worker = holder["worker"] = Worker(harness.settings, operations(stopper), FakeData())
    worker._learn(0.0001)  # a fast worker: the five come as one batch
    assert worker.work(burst=True, install_signals=False) == 0
    assert harness.store.get(first).status is JobStatus.COMPLETE
    assert harness.store.get(stop_id).result == {"stopped": True}
    for job in harness.store.get_many(rest):
        assert job.status is JobStatus.SUBMITTED and job.attempts == 0 and job.worker is None
    assert harness.queue_client.lrange(keys.queue(harness.settings.queue_name), 0, -1) == rest
    assert harness.queue_client.llen(keys.processing(worker.id)) == 0


def test_a_claim_whose_answer_was_lost_is_given_back_not_stranded(harness):
    """Recording outcomes also claims the next batch. When Redis applies that call but its answer is
    lost (the connection drops, as in a clean Redis restart under load), the retry only records, so
    the ids the lost answer named sit in this worker's processing list while its own heartbeat keeps
    their lease: nobody would ever run them. The worker must give them back and run them."""
    import redis

    ids = [harness.submit("sleep", {"seconds": 0}) for _ in range(30)]
    worker = Worker(harness.settings, operations(), FakeData())
    real = worker.delivery.record_many
    lost = []

    def answer_lost_once(worker_id, records, claim=0, call_id=None):
        answer = real(worker_id, records, claim=claim, call_id=call_id)
        if claim and not lost and answer[1]:
            lost.append([job_id for job_id, _ in answer[1]])
            raise redis.exceptions.ConnectionError("Connection closed by server.")
        return answer

    worker.delivery.record_many = answer_lost_once
    run_burst(worker)
    assert lost, "the fault was never injected (no claim rode on a record)"
    stranded = [job.id for job in harness.store.get_many(ids) if job.status != JobStatus.COMPLETE]
    assert not stranded, (
        f"{len(stranded)} jobs not run, of which {len(set(stranded) & set(lost[0]))} were in the lost claim"
    )


def test_quick_jobs_are_not_started_and_their_final_document_says_what_ran(harness):
    """Jobs of an operation this worker has seen finish within FLUSH_SECONDS skip the start call:
    their document is written once (the final one), with the attempt, the worker and the start time."""
    ids = [harness.submit("sleep", {"seconds": 0}) for _ in range(20)]
    worker = Worker(harness.settings, operations(), FakeData())
    worker._learn(0.0001, "sleep")
    harness.jobs.config_resetstat()
    assert worker.work(burst=True, install_signals=False) == 0
    stats = harness.jobs.info("commandstats")
    jobs = harness.store.get_many(ids)
    assert {j.status for j in jobs} == {JobStatus.COMPLETE} and {j.attempts for j in jobs} == {1}
    assert all(j.worker == worker.id and j.finished_at >= j.started_at > j.submitted_at for j in jobs)
    # one document write a job (the sweeper's lock may add one); started, it was two
    assert stats["cmdstat_set"]["calls"] <= 21, stats["cmdstat_set"]
    assert "cmdstat_lpos" not in stats  # no start ran


def test_a_quick_job_taken_from_a_dead_worker_is_started_before_it_runs(harness):
    """A quick job's attempt is written only with its result. When its worker dies running it, the
    reaper marks the id, and the next worker marks it in-progress (attempt counted) before running
    it, so a quick job that kills every worker still fails after JOB_MAX_ATTEMPTS."""
    seen = {}
    probe = op("probe", lambda: seen.setdefault("statuses", []).append(harness.store.get(seen["id"]).status) or {})

    def quick_worker() -> Worker:
        worker = Worker(harness.settings, operations(probe), FakeData())
        worker._learn(0.0001, "probe")
        return worker

    seen["id"] = harness.submit("probe")
    assert quick_worker().work(burst=True, install_signals=False) == 0
    assert seen["statuses"] == [JobStatus.SUBMITTED]  # fresh and quick: never started
    seen["id"] = job_id = harness.submit("probe")
    d = harness.delivery
    assert [i for i, _ in d.claim("dead", 1)] == [job_id]  # ran it quick, wrote nothing, died
    harness.queue_client.zadd(keys.WORKERS_HEARTBEAT, {"dead": time.time() - 100})
    assert d.reap(30, min_uptime=0) == (1, 1)
    assert quick_worker().work(burst=True, install_signals=False) == 0
    assert seen["statuses"][-1] == JobStatus.IN_PROGRESS
    assert harness.store.get(job_id).attempts == 1 and harness.queue_client.scard(keys.REAPED) == 0


def test_a_batch_is_started_a_flush_window_at_a_time(harness):
    """Jobs are marked in-progress shortly before they run, not a whole batch ahead: a worker killed
    -9 mid-batch has started (attempt counted) only the jobs it was about to reach."""
    seen = []
    probe = op(
        "probe",
        lambda: (
            seen.append(sum(j.status is JobStatus.IN_PROGRESS for j in harness.store.get_many(ids)))
            or time.sleep(0.008)
            or {}
        ),
    )
    ids = [harness.submit("probe") for _ in range(12)]
    worker = Worker(harness.settings.replace(result_cache=False), operations(probe), FakeData())
    worker._learn(0.008)  # the 12 come as one batch; 8 ms a job is not quick
    assert worker.work(burst=True, install_signals=False) == 0
    assert {j.status for j in harness.store.get_many(ids)} == {JobStatus.COMPLETE}
    assert max(seen) <= 2, seen  # started ahead: about FLUSH_SECONDS of work, not the batch


def test_a_quick_job_that_runs_long_is_started_while_it_runs(harness):
    """The estimate can be wrong (a sleep of 0.6 s after sleeps of 0 s): the job then shows
    in-progress, its attempt counted, well before it ends, and still ends with one result."""
    quick = [harness.submit("sleep", {"seconds": 0}) for _ in range(3)]
    slow = harness.submit("sleep", {"seconds": 0.6})
    worker = Worker(harness.settings, operations(), FakeData())
    worker._learn(0.0001, "sleep")
    thread = threading.Thread(target=worker.work, kwargs={"burst": True, "install_signals": False})
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while (job := harness.store.get(slow)).status is not JobStatus.IN_PROGRESS:
            assert job.status is not JobStatus.COMPLETE, "never shown in-progress while it ran"
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert job.attempts == 1 and job.worker == worker.id
    finally:
        thread.join(15)
    jobs = harness.store.get_many(quick + [slow])
    assert {j.status for j in jobs} == {JobStatus.COMPLETE} and {j.attempts for j in jobs} == {1}


def test_jobs_started_ahead_are_charged_an_attempt_only_when_they_run(harness):
    """A start call covers the next job and those the worker expects to reach within
    FLUSH_SECONDS: those ahead show in-progress but keep their attempt count until they run, so a
    worker killed -9 charges an attempt only to the job it had begun (the chaos kill -9 test re-ran
    353 attempts of 1,000 jobs when a whole batch was charged up front)."""
    seen = []
    probe = op("probe", lambda: seen.append([(j.status, j.attempts) for j in harness.store.get_many(ids)]) or {})
    ids = [harness.submit("probe") for _ in range(3)]
    worker = Worker(harness.settings.replace(result_cache=False), operations(probe), FakeData())
    worker._learn(0.0001)  # one batch, all three reached within the window
    assert worker.work(burst=True, install_signals=False) == 0
    assert seen[0] == [(JobStatus.IN_PROGRESS, 1), (JobStatus.IN_PROGRESS, 0), (JobStatus.IN_PROGRESS, 0)]
    assert {(j.status, j.attempts) for j in harness.store.get_many(ids)} == {(JobStatus.COMPLETE, 1)}


def test_an_idle_worker_runs_a_new_job_without_another_round_trip(harness, monkeypatch):
    """An idle worker's blocking pop carries the claim of what it pops (one pipeline): when a job
    arrives, the worker's next send of commands is the job's outcome, not a claim (before, the
    claim was a second round trip between the pop and the run, on the path of every job that
    finds its worker idle)."""
    import redis

    sends: list[bytes] = []
    real = redis.connection.Connection.send_packed_command
    loop: list[threading.Thread] = []

    def counted(conn, command, *args, **kwargs):
        if loop and threading.current_thread() is loop[0]:
            sends.append(command)
        return real(conn, command, *args, **kwargs)

    ran = []
    probe = op("probe", lambda: ran.append(len(sends)) or {})
    worker = Worker(harness.settings, operations(probe), FakeData())
    worker._learn(0.0001, "probe")  # quick: no start call either, so the run follows the claim directly
    monkeypatch.setattr(redis.connection.Connection, "send_packed_command", counted)
    loop.append(threading.Thread(target=worker.work, kwargs={"install_signals": False}))
    loop[0].start()
    try:
        wait_blocked(harness.jobs)
        before = len(sends)
        job_id = harness.submit("probe")
        deadline = time.monotonic() + 60
        while harness.store.get(job_id).status is not JobStatus.COMPLETE and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        worker.request_stop()
        loop[0].join(timeout=10)
    assert harness.store.get(job_id).status is JobStatus.COMPLETE
    assert ran == [before], f"{ran[0] - before} sends of commands between the job's arrival and its run"


def _serve(worker):
    """``worker.work()`` (not burst: it waits when idle) on a thread; stop it with ``worker.request_stop``."""
    thread = threading.Thread(target=worker.work, kwargs={"install_signals": False})
    thread.start()
    return thread


def _until_final(harness, job_id, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not harness.store.get(job_id).status.is_final and time.monotonic() < deadline:
        time.sleep(0.002)
    return harness.store.get(job_id)


def test_a_worker_kept_busy_one_job_at_a_time_records_and_waits_in_one_write(harness):
    """The tutorial's loop (submit, wait for the result, submit the next): each claim finds the lanes
    empty, so the worker records each outcome in the same write as its next wait instead of a call
    that records, claims nothing, then waits. Every job still ends complete, counted once."""
    worker = Worker(harness.settings, operations(op("probe", dict)), FakeData())
    worker._learn(0.0001, "probe")
    calls = {"finish_then_wait": 0, "claims_on_record": 0}
    real_wait, real_record = worker.delivery.finish_then_wait, worker.delivery.record_many

    def finish_then_wait(*args, **kwargs):
        calls["finish_then_wait"] += 1
        return real_wait(*args, **kwargs)

    def record_many(worker_id, records, claim=0, call_id=None):
        calls["claims_on_record"] += bool(claim)
        return real_record(worker_id, records, claim=claim, call_id=call_id)

    worker.delivery.finish_then_wait, worker.delivery.record_many = finish_then_wait, record_many
    before = worker.metrics.processed.labels("probe", "complete")._value.get()
    thread = _serve(worker)
    try:
        wait_blocked(harness.jobs)
        jobs = []
        for _ in range(8):
            jobs.append(harness.submit("probe"))
            assert _until_final(harness, jobs[-1]).status is JobStatus.COMPLETE
    finally:
        worker.request_stop()
        thread.join(timeout=10)
    assert calls["finish_then_wait"] >= 4, calls  # the 5 ms rule may send a slow turn the other way
    assert calls["finish_then_wait"] + calls["claims_on_record"] >= 8, calls
    assert worker.metrics.processed.labels("probe", "complete")._value.get() - before == 8
    assert {(j.status, j.attempts) for j in harness.store.get_many(jobs)} == {(JobStatus.COMPLETE, 1)}


def test_a_worker_that_holds_a_plots_job_claims_again_instead_of_waiting_on_the_default_lane(harness):
    """An idle worker's wait watches the default lane only; a worker whose batch held a plots job
    may find more plots queued, so it records and claims in one call rather than going back to
    waiting (which would leave the next plots job queued until the wait times out)."""
    worker = Worker(harness.settings, operations(op("draw", dict)), FakeData())
    worker._learn(0.0001, "draw")
    plots_queue = keys.queue(keys.lane_queue_name(harness.settings.queue_name, "plots"))
    waited_with_plots: list[int] = []
    real_wait = worker.delivery.finish_then_wait

    def finish_then_wait(*args, **kwargs):
        waited_with_plots.append(harness.queue_client.llen(plots_queue))
        return real_wait(*args, **kwargs)

    worker.delivery.finish_then_wait = finish_then_wait
    thread = _serve(worker)
    try:
        wait_blocked(harness.jobs)
        plots = [harness.delivery.submit("draw", {}, lane="plots").id for _ in range(3)]
        harness.submit("draw")  # wakes the worker (its wait watches the default lane)
        for job_id in plots:
            assert _until_final(harness, job_id).status is JobStatus.COMPLETE
    finally:
        worker.request_stop()
        thread.join(timeout=10)
    assert not any(waited_with_plots), f"went back to waiting with plots jobs queued: {waited_with_plots}"


def test_a_finish_sent_with_the_wait_whose_answer_was_lost_is_recorded_once_and_strands_nothing(harness):
    """The finish and the wait went in one write, Redis applied the finish and the wait claimed the
    next job, and the answer was lost: the worker records the outcome again (it answers "ok", the
    job counted once) and gives back what the wait may have claimed, which then runs."""
    from jobqueue import wire

    worker = Worker(harness.settings, operations(op("probe", dict)), FakeData())
    worker._learn(0.0001, "probe")
    queue = keys.queue(harness.settings.queue_name)
    lost: list[str] = []
    real_wait = worker.delivery.finish_then_wait

    def answer_lost_once(worker_id, finishes, n, timeout, recorded):
        if lost:
            return real_wait(worker_id, finishes, n, timeout, recorded)
        worker.delivery.record_many(worker_id, finishes)  # applied in Redis
        while not harness.queue_client.llen(queue):
            time.sleep(0.002)
        lost.append(harness.queue_client.lmove(queue, keys.processing(worker_id), "LEFT", "RIGHT"))
        raise wire.Unsure("the answer was lost")

    worker.delivery.finish_then_wait = answer_lost_once
    before = worker.metrics.processed.labels("probe", "complete")._value.get()
    thread = _serve(worker)
    try:
        wait_blocked(harness.jobs)
        first = harness.submit("probe")
        assert _until_final(harness, first).status is JobStatus.COMPLETE
        second = harness.submit("probe")
        assert _until_final(harness, second).status is JobStatus.COMPLETE
    finally:
        worker.request_stop()
        thread.join(timeout=10)
    assert lost == [second], "the fault was never injected"
    assert worker.metrics.processed.labels("probe", "complete")._value.get() - before == 2
    assert harness.queue_client.llen(keys.processing(worker.id)) == 0
    assert [j.attempts for j in harness.store.get_many([first, second])] == [1, 1]
