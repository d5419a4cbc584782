"""The delivery scripts on a real Redis: claim, start, finish fencing, reaper, give back, sweeper."""

from __future__ import annotations

import json
import threading
import time

import pytest
import redis

from jobqueue import keys
from jobqueue.delivery import Delivery, Finish, Recorded, Retry, Start, Started
from jobqueue.jobs import Job, JobStatus

from tests.support.harness import wait_blocked


def _delivery(h):
    return Delivery(h.queue_client, h.settings)


def _doc(h, job_id, **changes):
    doc = json.loads(h.jobs.get(keys.job(job_id)))
    doc.update(changes)
    return json.dumps(doc)


def _job(h, job_id, **changes):
    return Job.from_json(_doc(h, job_id, **changes))


def test_claim_moves_ids_atomically_and_returns_documents(harness):
    ids = [harness.submit("sleep", {"seconds": 0}) for _ in range(5)]
    d = _delivery(harness)
    got = d.claim("w1", 3)
    assert [i for i, _ in got] == ids[:3]
    assert all(json.loads(doc)["id"] == i for i, doc in got)
    assert harness.queue_client.lrange(keys.processing("w1"), 0, -1) == ids[:3]
    assert harness.queue.depth() == 2
    assert harness.queue_client.zscore(keys.WORKERS_HEARTBEAT, "w1") is not None


def test_a_blocking_claim_takes_the_popped_id_and_a_batch_in_one_call(harness):
    ids = [harness.submit("sleep") for _ in range(3)]
    d = _delivery(harness)
    got = d.wait_and_claim("w1", 5, 1)
    assert [i for i, _ in got] == ids and all(json.loads(doc)["id"] == i for i, doc in got)
    assert harness.queue_client.lrange(keys.processing("w1"), 0, -1) == ids
    assert d.claim("w2", 5) == []


def test_a_blocking_claim_wakes_with_the_claim_already_run(harness, monkeypatch):
    """An idle worker's BLMOVE and the claim of what it moved go in one pipeline: when a job arrives,
    Redis runs the claim right after the BLMOVE returns, and the worker reads both answers at once:
    one send of commands, one BLMOVE, one script call (it used to send the claim after reading the
    BLMOVE's answer: a second round trip on the path from submit to run)."""
    d = _delivery(harness)
    d.claim("w0", 0)  # a connected client, the claim's script loaded
    sends: list[bytes] = []
    real = redis.connection.Connection.send_packed_command

    def counted(conn, command, *args, **kwargs):
        if threading.current_thread() is waiter:
            sends.append(command)
        return real(conn, command, *args, **kwargs)

    monkeypatch.setattr(redis.connection.Connection, "send_packed_command", counted)
    got: list = []
    waiter = threading.Thread(target=lambda: got.extend(d.wait_and_claim("w1", 4, 5)))
    harness.jobs.config_resetstat()
    waiter.start()
    wait_blocked(harness.jobs)
    job_id = harness.submit("sleep")
    waiter.join(timeout=10)
    assert [i for i, _ in got] == [job_id]
    assert len(sends) == 1, f"{len(sends)} sends of commands for one wake-up and its claim"
    stats = harness.jobs.info("commandstats")
    assert stats["cmdstat_blmove"]["calls"] == 1 and stats["cmdstat_evalsha"]["calls"] == 1, stats


def test_a_blocking_claim_that_times_out_claims_nothing_and_after_a_lost_answer_claims_what_it_holds(harness):
    """Timed out: nothing claimed. An id moved into the processing list by an attempt whose answer
    was lost (redis-py retries a call after a dropped connection) is claimed by the next wait, not
    left held with nobody running it (the worker's heartbeat would keep its lease forever)."""
    d = _delivery(harness)
    assert d.wait_and_claim("w1", 4, 0.1) == []
    lost = harness.submit("sleep")
    queue = keys.queue(harness.settings.queue_name)
    assert harness.queue_client.lmove(queue, keys.processing("w1"), "LEFT", "RIGHT") == lost
    fresh = harness.submit("sleep")
    assert [i for i, _ in d.wait_and_claim("w1", 4, 1)] == [lost, fresh]
    assert d.wait_and_claim("w2", 4, 0.1) == []


def test_a_blocking_claim_loads_the_script_when_redis_forgot_it(harness):
    d = _delivery(harness)
    job_id = harness.submit("sleep")
    harness.jobs.script_flush()
    assert [i for i, _ in d.wait_and_claim("w1", 4, 1)] == [job_id]
    assert harness.queue_client.lrange(keys.processing("w1"), 0, -1) == [job_id]


def test_finish_writes_once_and_only_while_owned(harness):
    job_id = harness.submit("sleep")
    d = _delivery(harness)
    d.claim("w1", 1)
    assert d.start("w1", Start(_job(harness, job_id, status="in-progress"))).state is Started.OK
    # the lease lapses: the id goes back to the queue and w2 takes it
    harness.queue_client.lrem(keys.processing("w1"), 1, job_id)
    harness.queue_client.rpush(keys.queue(harness.settings.queue_name), job_id)
    d.claim("w2", 1)
    d.start("w2", Start(_job(harness, job_id, status="in-progress", worker="w2")))
    # w1 comes back to life and finishes: fenced off
    late = d.record("w1", Finish(_job(harness, job_id, status="complete", worker="w1")))
    assert late is Recorded.LOST
    assert harness.store.get(job_id).status == JobStatus.IN_PROGRESS
    ok = d.record("w2", Finish(_job(harness, job_id, status="complete", worker="w2")))
    assert ok is Recorded.OK
    job = harness.store.get(job_id)
    assert job.status == JobStatus.COMPLETE and job.worker == "w2"
    assert harness.jobs.ttl(keys.job(job_id)) > 0
    assert harness.queue_client.llen(keys.processing("w2")) == 0


def test_finish_never_overwrites_a_final_document(harness):
    job_id = harness.submit("sleep")
    d = _delivery(harness)
    d.claim("w1", 1)
    # as every writer of a final document does, with the TTL (the fences read it)
    harness.jobs.set(keys.job(job_id), _doc(harness, job_id, status="cancelled"), ex=60)
    assert d.start("w1", Start(_job(harness, job_id, status="in-progress"))).state is Started.SKIP
    assert harness.queue_client.llen(keys.processing("w1")) == 0
    assert harness.store.get(job_id).status == JobStatus.CANCELLED


def test_reaper_requeues_only_silent_workers_and_is_safe_twice(harness):
    ids = [harness.submit("sleep") for _ in range(4)]
    d = _delivery(harness)
    d.claim("dead", 2)
    d.claim("alive", 2)
    harness.queue_client.zadd(keys.WORKERS_HEARTBEAT, {"dead": time.time() - 100})
    assert d.reap(30, min_uptime=0) == (2, 1)
    assert d.reap(30, min_uptime=0) == (0, 0)
    assert harness.queue_client.lrange(keys.queue(harness.settings.queue_name), 0, -1) == ids[:2]
    assert harness.queue_client.llen(keys.processing("alive")) == 2
    assert harness.queue_client.zscore(keys.WORKERS_HEARTBEAT, "dead") is None


def test_retry_goes_to_the_delayed_set_and_comes_back_when_due(harness):
    job_id = harness.submit("sleep")
    d = _delivery(harness)
    d.claim("w1", 1)
    res = d.record("w1", Retry(_job(harness, job_id, error="boom"), 0.2))
    assert res is Recorded.OK
    assert d.claim("w1", 1) == []
    assert harness.queue_client.zcard(keys.delayed(harness.settings.queue_name)) == 1
    time.sleep(0.3)
    assert [i for i, _ in d.claim("w1", 1)] == [job_id]


def test_the_sweeper_reads_the_jobs_not_final_yet_not_the_whole_history(harness):
    """One worker sweeps every minute for jobs left ``submitted`` in no list. It read the document of
    every job in jobs:by-submitted (JOB_TTL_SECONDS of history: a week's finished jobs, each
    minute, parsed in the worker beside the job it runs), where jobs:active holds exactly the
    jobs not final yet."""
    d = _delivery(harness)
    finished = Job(id="", operation="sleep", params={}, status=JobStatus.COMPLETE, submitted_at=time.time() - 60)
    pipe = harness.jobs.pipeline(transaction=False)
    for i in range(3000):
        job_id = f"{i:08d}-0000-4000-8000-000000000000"
        finished.id = job_id
        pipe.set(keys.job(job_id), finished.to_json(), ex=3600)
        pipe.zadd(keys.JOB_INDEX, {job_id: finished.submitted_at})
    pipe.execute()
    waiting = [harness.submit("sleep") for _ in range(1000)]  # a backlog: queued, plainly
    stranded = harness.store.create("sleep", {}).id  # the producer died before its put
    harness.jobs.config_resetstat()
    assert d.sweep(harness.jobs, older_than=-10) == 1
    assert harness.queue_client.lrange(keys.queue(harness.settings.queue_name), 0, -1) == [*waiting, stranded]
    stats = harness.jobs.info("stats")
    # not the 3,000 finished ones, nor the 1,000 queued ones' documents
    assert stats["keyspace_hits"] + stats["keyspace_misses"] < 50, stats


def test_give_back_and_leave_return_unstarted_ids_to_the_front(harness):
    ids = [harness.submit("sleep") for _ in range(4)]
    d = _delivery(harness)
    d.claim("w1", 3)
    assert d.give_back("w1", ids[1:3]) == 2
    assert harness.queue_client.lrange(keys.queue(harness.settings.queue_name), 0, -1) == [ids[1], ids[2], ids[3]]
    assert d.leave("w1") == 1
    assert harness.queue_client.lrange(keys.queue(harness.settings.queue_name), 0, -1)[0] == ids[0]
    assert harness.queue_client.zscore(keys.WORKERS_HEARTBEAT, "w1") is None


def test_return_unfound_puts_back_only_ids_the_jobs_db_never_knew_keeping_their_lanes(harness):
    """A worker whose jobs db lacks a claimed id's document, with no jobs db recorded by the API
    (jobqueue.jobsdb): an id neither a document nor an index of its db knows goes back to the front
    of the lane it came from; one deleted or expired here (its index entry left) stays claimed."""
    d = _delivery(harness)
    d.heartbeat("w2")  # two workers alive: a plots job may be claimed
    plots_id = _plots_job(d)
    foreign = ["20000000-0000-4000-8000-000000000000", "20000000-0000-4000-8000-000000000001"]
    harness.queue_client.rpush(keys.queue(harness.settings.queue_name), *foreign)
    expired = harness.submit("sleep")
    harness.jobs.delete(keys.job(expired), keys.job(plots_id))  # ... and the plots job's too
    harness.jobs.zrem(keys.JOB_INDEX, plots_id)
    harness.jobs.zrem(keys.ACTIVE_INDEX, plots_id)
    later = harness.submit("sleep")
    got = d.claim("w1", 5)
    assert [i for i, _ in got] == [*foreign, expired, later, plots_id]
    unfound = [i for i, doc in got if not doc]
    assert d.return_unfound("w1", unfound) == [*foreign, plots_id]
    assert harness.queue_client.lrange(keys.processing("w1"), 0, -1) == [expired, later]
    assert harness.queue_client.lrange(keys.queue(harness.settings.queue_name), 0, -1) == foreign
    plots_queue = keys.queue(keys.lane_queue_name(harness.settings.queue_name, "plots"))
    assert harness.queue_client.lrange(plots_queue, 0, -1) == [plots_id]
    assert harness.queue_client.hget(keys.PLOTS_BUSY, "w1") is None
    assert d.return_unfound("w1", []) == []


def test_sweeper_requeues_a_submitted_job_that_is_in_no_list(harness):
    stranded = harness.store.create("sleep", {}).id  # the API died before the put
    queued = harness.submit("sleep")
    held = harness.submit("sleep")
    d = _delivery(harness)
    d.claim("w1", 2)  # takes queued + held
    harness.queue_client.lrem(keys.processing("w1"), 1, queued)  # ...and pretend `queued` is finished
    harness.jobs.set(keys.job(queued), _doc(harness, queued, status="complete"))
    assert d.sweep(harness.jobs, older_than=-10) == 1
    assert harness.queue_client.lrange(keys.queue(harness.settings.queue_name), 0, -1) == [stranded]
    assert d.sweep(harness.jobs, older_than=-10) == 0
    assert d.sweep(harness.jobs, older_than=3600) == 0
    assert held in harness.queue_client.lrange(keys.processing("w1"), 0, -1)


def test_record_and_start_finishes_one_job_and_starts_the_next_in_one_call(harness):
    first, second = harness.submit("sleep"), harness.submit("sleep")
    d = _delivery(harness)
    d.claim("w1", 2)
    d.start("w1", Start(_job(harness, first, status="in-progress")))
    recorded, started = d.record_and_start(
        "w1",
        Finish(_job(harness, first, status="complete", result=1)),
        Start(_job(harness, second, status="in-progress")),
    )
    assert (recorded, started.state) == (Recorded.OK, Started.OK)
    assert harness.store.get(first).result == 1
    assert harness.store.get(second).status is JobStatus.IN_PROGRESS
    assert harness.queue_client.hget(keys.WORKERS_BUSY, "w1") == second


def test_a_recorded_outcome_stops_workers_busy_naming_its_job(harness):
    """/queue and the web page read workers:busy: a worker whose job is recorded is not shown
    running it (it was until its next claim, up to a second later when idle)."""
    first, second = harness.submit("sleep"), harness.submit("sleep")
    d = _delivery(harness)
    d.claim("w1", 1)
    d.start("w1", Start(_job(harness, first, status="in-progress")))
    assert harness.queue_client.hget(keys.WORKERS_BUSY, "w1") == first
    assert d.record("w1", Finish(_job(harness, first, status="complete", result=1))) is Recorded.OK
    assert harness.queue_client.hget(keys.WORKERS_BUSY, "w1") is None
    d.claim("w1", 1)
    d.start("w1", Start(_job(harness, second, status="in-progress")))
    harness.queue_client.hset(keys.WORKERS_BUSY, "w2", second)  # another worker's entry is not touched
    assert d.record("w1", Retry(_job(harness, second, status="submitted"), 0.0)) is Recorded.OK
    assert harness.queue_client.hget(keys.WORKERS_BUSY, "w1") is None
    assert harness.queue_client.hget(keys.WORKERS_BUSY, "w2") == second


def test_submit_stores_and_queues_and_cancel_takes_a_queued_job_back(harness):
    d = _delivery(harness)
    job = d.submit("sleep", {"seconds": 0})
    assert harness.store.get(job.id).status is JobStatus.SUBMITTED
    assert harness.queue_client.lrange(keys.queue(harness.settings.queue_name), 0, -1) == [job.id]
    assert harness.jobs.zscore(keys.JOB_INDEX, job.id) == job.submitted_at
    assert d.cancel(harness.store.get(job.id)) is True
    assert harness.store.get(job.id).status is JobStatus.CANCELLED
    assert harness.queue_client.llen(keys.queue(harness.settings.queue_name)) == 0
    claimed = d.submit("sleep", {})
    d.claim("w1", 1)
    assert d.cancel(harness.store.get(claimed.id)) is False
    assert harness.store.get(claimed.id).status is JobStatus.SUBMITTED


def test_a_final_document_is_never_overwritten_by_a_late_start_or_finish(harness):
    """The fences see a final document by its TTL: a duplicate of a finished id held by another
    worker is neither started nor finished again."""
    job_id = harness.submit("sleep")
    d = _delivery(harness)
    d.claim("w1", 1)
    harness.queue_client.rpush(keys.processing("w2"), job_id)  # the same id delivered twice
    assert d.start("w1", Start(_job(harness, job_id, status="in-progress"))).state is Started.OK
    assert d.record("w1", Finish(_job(harness, job_id, status="complete", result=1))) is Recorded.OK
    assert d.start("w2", Start(_job(harness, job_id, status="in-progress"))).state is Started.SKIP
    harness.queue_client.rpush(keys.processing("w2"), job_id)
    assert d.record("w2", Finish(_job(harness, job_id, status="failed", error="x"))) is Recorded.FINAL
    assert harness.store.get(job_id).result == 1 and harness.store.get(job_id).status is JobStatus.COMPLETE
    late = _job(harness, job_id, status="failed", error="x")
    harness.queue_client.rpush(keys.processing("w2"), job_id)
    harness.jobs.delete(keys.job(job_id))
    assert d.record("w2", Finish(late)) is Recorded.DELETED


def test_the_dispatch_script_ships_in_the_core_wheel(tmp_path):
    """Images install core as a built wheel: the .lua files (scripts and their pieces) must be package
    data in it."""
    import shutil
    import subprocess
    import zipfile
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    uv = shutil.which("uv") or str(root / ".tools" / "bin" / "uv")
    subprocess.run(
        [uv, "build", "--wheel", "--package", "atx-jobqueue-core", "-o", str(tmp_path)],
        cwd=root,
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    pieces = sorted(p.name for p in (root / "shared" / "core" / "jobqueue" / "lua").glob("*.lua"))
    assert "dispatch.lua" in pieces and "common.lua" in pieces
    assert [p for p in pieces if f"jobqueue/lua/{p}" not in names] == []  # every script and piece


def test_a_batch_starts_in_one_call_and_records_in_one_call_that_claims_the_next(harness):
    ids = [harness.submit("sleep") for _ in range(5)]
    d = _delivery(harness)
    claimed = d.claim("w1", 3)
    answers = d.start_many("w1", [Start(_job(harness, i, status="in-progress")) for i, _ in claimed])
    assert [a.state for a in answers] == [Started.OK] * 3
    assert {harness.store.get(i).status for i in ids[:3]} == {JobStatus.IN_PROGRESS}
    assert harness.queue_client.hget(keys.WORKERS_BUSY, "w1") == ids[0]  # the one it runs first
    records = [
        Finish(_job(harness, ids[0], status="complete", result={"slept": 0})),
        Retry(_job(harness, ids[1], status="submitted"), 0.0),
        Finish(_job(harness, ids[2], status="failed", error="x")),
    ]
    recorded, nxt = d.record_many("w1", records, claim=5)
    assert recorded == [Recorded.OK] * 3
    assert [i for i, _ in nxt] == [ids[1], ids[3], ids[4]]  # the retried one went to the front
    assert [harness.store.get(i).status for i in ids[:3]] == [JobStatus.COMPLETE, JobStatus.SUBMITTED, JobStatus.FAILED]
    again, none = d.record_many("w1", records[:1])  # the same call again (its answer lost): done, not redone
    assert again == [Recorded.OK] and none == []
    other = Finish(_job(harness, ids[0], status="failed", error="late"))
    assert d.record_many("w1", [other])[0] == [Recorded.LOST]  # another outcome: fenced, not ours any more
    assert harness.store.get(ids[0]).status is JobStatus.COMPLETE
    assert d.record_many("w1", [], claim=2) == ([], [])  # nothing queued: an empty claim


def _plots_job(d: Delivery) -> str:
    return d.submit("plot", {}, lane="plots").id


def test_the_sweeper_passes_over_queued_plots_jobs_without_a_script_call(harness):
    """The sweeper's snapshot of the lists held the default lane only, so every plots job waiting a
    minute cost a script call each sweep (which then found it queued)."""
    d = _delivery(harness)
    for _ in range(5):
        _plots_job(d)
    harness.queue_client.config_resetstat()
    assert d.sweep(harness.jobs, older_than=-10) == 0
    calls = harness.queue_client.info("commandstats")
    assert "cmdstat_evalsha" not in calls and "cmdstat_eval" not in calls, calls
    assert harness.queue_client.llen(keys.queue(keys.lane_queue_name(harness.settings.queue_name, "plots"))) == 5


def test_claims_serve_the_default_lane_first_and_never_starve_plots(harness):
    d = _delivery(harness)
    plots = [_plots_job(d) for _ in range(3)]
    cheap = [harness.submit("sleep") for _ in range(20)]
    d.heartbeat("w2")  # two workers alive: one plots job at a time
    got = []
    for _ in range(9):
        got += [i for i, _ in d.claim("w1", 1)]
    assert got[:8] == cheap[:8] and got[8] == plots[0]  # passed over 8 times, then served first
    assert harness.queue_client.hget(keys.PLOTS_BUSY, "w1") == plots[0]
    assert [i for i, _ in d.claim("w2", 5)] == cheap[8:13]  # the cap: no second plots job at once
    job = Job.from_json(harness.jobs.get(keys.job(plots[0])))
    d.start("w1", Start(job))
    job.status = JobStatus.COMPLETE
    assert d.record("w1", Finish(job)) is Recorded.OK
    assert harness.queue_client.hlen(keys.PLOTS_BUSY) == 0


def test_plots_jobs_go_back_to_their_own_lane(harness):
    d = _delivery(harness)
    plot, cheap = _plots_job(d), harness.submit("sleep")
    plots_queue = keys.queue(keys.lane_queue_name(harness.settings.queue_name, "plots"))
    assert d.claim("w1", 5) and harness.queue_client.llen(plots_queue) == 0
    assert d.give_back_all("w1") == 2
    assert harness.queue_client.lrange(plots_queue, 0, -1) == [plot]
    assert harness.queue_client.lrange(keys.queue(harness.settings.queue_name), 0, -1) == [cheap]
    assert harness.queue_client.hlen(keys.PLOTS_BUSY) == 0
    waiting = d.waiting()
    assert waiting.by_lane == {"default": 1, "plots": 1} and waiting.oldest_id == plot


def test_a_call_that_keeps_its_answer_answers_the_same_when_sent_again(harness):
    """The same call sent twice (its first answer lost), carrying one call id: the second send
    answers what the first did, whatever its shape, and moves nothing more."""
    ids = [harness.submit("sleep") for _ in range(4)]
    d = _delivery(harness)
    d.claim("w1", 4)
    retry = [Retry(_job(harness, ids[0], status="submitted"), 0.0)]
    first = d.record_many("w1", retry, call_id="c1")
    assert first == ([Recorded.OK], [])
    d.claim("w2", 1)  # another worker takes the retried job and starts it
    assert d.start("w2", Start(_job(harness, ids[0], status="in-progress", worker="w2"))).state is Started.OK
    assert d.record_many("w1", retry) == ([Recorded.LOST], [])  # sent again without the id: 'lost'
    assert d.record_many("w1", retry, call_id="c1") == first  # with it: what the first did
    assert 0 < harness.queue_client.ttl(keys.kept_answer("c1")) <= 300
    before = set(harness.queue_client.keys(keys.KEPT_ANSWER_PREFIX + "*"))
    assert d.reap(30.0, min_uptime=0) == (0, 0)  # a call that moves nothing keeps nothing
    assert set(harness.queue_client.keys(keys.KEPT_ANSWER_PREFIX + "*")) == before
    mixed = (
        [
            Finish(_job(harness, ids[1], status="complete", result={"slept": 0})),
            Retry(_job(harness, ids[2], status="submitted"), 5.0),
        ],
        [Start(_job(harness, ids[3], status="in-progress"))],
    )
    first_mixed = d.record_and_start_many("w1", *mixed, call_id="c2")
    assert first_mixed[0] == [Recorded.OK, Recorded.OK] and [a.state for a in first_mixed[1]] == [Started.OK]
    assert d.record_and_start_many("w1", *mixed, call_id="c2") == first_mixed
    assert d.give_back("w1", [ids[3]]) == 1
    queued = harness.queue_client.lrange(d.queue_key, 0, -1)
    assert queued.count(ids[3]) == 1
    assert harness.queue_client.zcard(d.delayed_key) == 1  # the retry with a backoff, once
    with pytest.raises(ValueError):  # a call that claims is never sent twice, so it keeps no answer
        d.record_many("w1", retry, claim=1, call_id="c3")


def _finish_of(h, job_id, worker="w1"):
    job = _job(h, job_id, status="complete", result={"slept": 0}, worker=worker)
    return Finish(job)


def test_a_finish_then_wait_records_before_the_wait_and_claims_the_next_job_in_one_write(harness, monkeypatch):
    """A worker whose last claim found its lanes empty records its outcome and goes back to waiting
    in one write (the finish, the BLMOVE, the claim behind it): the outcome is written while the
    wait still blocks, handed to the caller when the wait ends; the job that ends it is claimed."""
    d = _delivery(harness)
    first = harness.submit("sleep")
    assert [i for i, _ in d.wait_and_claim("w1", 4, 1)] == [first]
    finish = _finish_of(harness, first)
    assert d.record("w0", finish) is Recorded.LOST  # not w0's: writes nothing, loads the finish's script
    sends: list[bytes] = []
    real = redis.connection.Connection.send_packed_command

    def counted(conn, command, *args, **kwargs):
        if threading.current_thread().name == "finish-then-wait":
            sends.append(command)
        return real(conn, command, *args, **kwargs)

    monkeypatch.setattr(redis.connection.Connection, "send_packed_command", counted)
    seen: list = []
    handed = threading.Event()

    def recorded(outcomes):
        seen.append(outcomes)
        handed.set()

    got: list = []
    waiter = threading.Thread(
        target=lambda: got.extend(d.finish_then_wait("w1", [finish], 4, 5, recorded)), name="finish-then-wait"
    )
    harness.jobs.config_resetstat()
    waiter.start()
    wait_blocked(harness.jobs)
    assert harness.store.get(first).status is JobStatus.COMPLETE  # written while the wait blocks
    assert not got and waiter.is_alive() and not handed.is_set()
    second = harness.submit("sleep")
    waiter.join(timeout=10)
    assert seen == [[Recorded.OK]]
    assert [i for i, _ in got] == [second]
    assert harness.queue_client.lrange(keys.processing("w1"), 0, -1) == [second]
    assert len(sends) == 1, f"{len(sends)} sends for a finish and the wait after it"
    stats = harness.jobs.info("commandstats")
    assert stats["cmdstat_evalsha"]["calls"] == 2 and stats["cmdstat_blmove"]["calls"] == 1, stats


def test_a_finish_then_wait_times_out_with_nothing_claimed(harness):
    d = _delivery(harness)
    job_id = harness.submit("sleep")
    d.claim("w1", 1)
    seen: list = []
    assert d.finish_then_wait("w1", [_finish_of(harness, job_id)], 4, 0.1, seen.append) == []
    assert seen == [[Recorded.OK]]
    assert harness.store.get(job_id).status is JobStatus.COMPLETE
    assert harness.queue_client.llen(keys.processing("w1")) == 0


def test_a_finish_then_wait_loads_the_script_when_redis_forgot_it(harness):
    """Redis restarted (the script gone): neither script call ran, but the BLMOVE did and may have
    moved an id; the finish is recorded once the script is loaded, and the claim takes that id."""
    d = _delivery(harness)
    done, nxt = harness.submit("sleep"), harness.submit("sleep")
    d.claim("w1", 1)
    harness.jobs.script_flush()
    seen: list = []
    got = d.finish_then_wait("w1", [_finish_of(harness, done)], 4, 1, seen.append)
    assert seen == [[Recorded.OK]] and [i for i, _ in got] == [nxt]
    assert harness.store.get(done).status is JobStatus.COMPLETE


def test_a_finish_then_wait_whose_wait_was_lost_sends_the_wait_again(harness):
    """The finish recorded, the connection blocked in the wait dies (a lost answer): the outcome is
    not recorded again, the wait is sent again, and its claim answers what the processing list holds."""
    d = _delivery(harness)
    job_id = harness.submit("sleep")
    d.claim("w1", 1)
    seen: list = []
    got: list = []
    waiter = threading.Thread(
        target=lambda: got.extend(d.finish_then_wait("w1", [_finish_of(harness, job_id)], 4, 5, seen.append))
    )
    waiter.start()
    wait_blocked(harness.jobs)
    blocked = [c for c in harness.jobs.client_list() if c.get("cmd") == "blmove"]
    harness.jobs.client_kill_filter(_id=blocked[0]["id"])
    wait_blocked(harness.jobs)  # blocked again, on a new connection
    nxt = harness.submit("sleep")
    waiter.join(timeout=10)
    assert seen == [[Recorded.OK]]
    assert [i for i, _ in got] == [nxt]
    assert harness.store.get(job_id).status is JobStatus.COMPLETE


def test_a_workers_hot_calls_never_run_the_dispatcher_and_load_their_script_after_redis_forgot_it(harness):
    """Claim, start, finish or retry and heartbeat, alone or joined in one call, run a script of
    their own (the dispatcher's set-up, some thirty functions created on every call, cost Redis
    about as much as their work), loaded when first used; after Redis forgot its scripts (a
    restart, SCRIPT FLUSH) each path loads it again: the first attempt got NOSCRIPT, nothing ran,
    and the call is made once."""
    d = _delivery(harness)
    for forgotten in (False, True):
        ids = [harness.submit("sleep", {"seconds": 0}) for _ in range(5)]

        def flushed(forgotten: bool = forgotten) -> None:
            if forgotten:
                harness.jobs.script_flush()

        flushed()
        assert [i for i, _ in d.claim("w1", 2)] == ids[:2]
        flushed()
        started = d.start_many("w1", [Start(_job(harness, i, status="in-progress")) for i in ids[:2]])
        assert [s.state for s in started] == [Started.OK, Started.OK]
        flushed()
        recorded, claimed = d.record_many("w1", [_finish_of(harness, ids[0])], claim=1)
        assert recorded == [Recorded.OK] and [i for i, _ in claimed] == [ids[2]]
        flushed()
        recorded, started = d.record_and_start_many(
            "w1",
            [Retry(_job(harness, ids[1], status="submitted"), 60)],
            [Start(_job(harness, ids[2], status="in-progress"))],
            call_id=f"retry-{forgotten}",
        )
        assert recorded == [Recorded.OK] and [s.state for s in started] == [Started.OK]
        flushed()
        d.heartbeat("w1")
        flushed()
        assert [i for i, _ in d.wait_and_claim("w1", 2, 1)] == [ids[2], ids[3]]  # held, then new
        flushed()
        start = Start(_job(harness, ids[3], status="in-progress"))
        assert d.record_and_start("w1", _finish_of(harness, ids[2]), start)[0] is Recorded.OK
        seen: list = []
        flushed()
        got = d.finish_then_wait("w1", [_finish_of(harness, ids[3])], 1, 1, seen.append)
        assert seen == [[Recorded.OK]] and [i for i, _ in got] == [ids[4]]
        flushed()
        assert d.record("w1", _finish_of(harness, ids[4])) is Recorded.OK
        statuses = [harness.store.get(i).status for i in ids]
        assert statuses == [JobStatus.COMPLETE, JobStatus.SUBMITTED] + [JobStatus.COMPLETE] * 3
        # no call above ran the dispatcher (each loaded a script of its own)
        assert harness.jobs.script_exists(d._script.sha) == [False]
        assert harness.queue_client.lrange(keys.processing("w1"), 0, -1) == []
