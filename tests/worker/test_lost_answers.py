"""The worker when Redis's answer to one of its calls is lost on the way back (a dropped connection,
or the ``socket_timeout`` given in REDIS_URL expiring while Redis stalls), on a real redis-server
behind a TCP proxy that loses it (tests/support/lossy_proxy.py).

A claim is the call that must not be sent again: the lost attempt moved ids into this worker's
processing list, where its heartbeat keeps them from the reaper, and a second send claims a second
batch. The worker must learn of the loss (and give back what it holds), not have it hidden by a
retry."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from jobqueue import keys
from jobqueue.delivery import Delivery, Start, Started
from jobqueue.jobs import JobStatus
from jobqueue_worker.worker import Worker

from tests.support.harness import FakeData, Harness, op, operations, run_burst, wait_blocked
from tests.support.lossy_proxy import LossyProxy


@pytest.mark.parametrize("mode", ["drop", "stall"])
@pytest.mark.parametrize("call", ["claim", "finish+claim"])
def test_a_claim_whose_answer_is_lost_strands_no_job(harness, redis_server, mode, call):
    """The lost call is the worker's first claim, or a later one that records outcomes and claims
    the next batch (a busy worker's usual call)."""
    ids = [harness.submit("sleep", {"seconds": 0}) for _ in range(20)]
    harness.delivery.waiting()  # the script loaded: the lost call is the claim itself, not a NOSCRIPT
    proxy = LossyProxy(redis_server.port, mode, trigger="claim", last="claim")
    try:
        via = Harness(f"{proxy.url}?socket_timeout=0.5")
        worker = Worker(via.settings, operations(), FakeData())
        proxy.arm(skip=0 if call == "claim" else 1)
        run_burst(worker)
    finally:
        proxy.close()
    assert proxy.victims == 1 and proxy.exec_sent, "the fault was never injected"
    assert (b"finish+" in proxy.victim_data) == (call != "claim"), proxy.victim_data[-200:]
    left = [job.id for job in harness.store.get_many(ids) if job.status != JobStatus.COMPLETE]
    assert not left, f"{len(left)} jobs not run by the burst worker (stranded, then given back as it left)"
    assert harness.queue_client.keys(keys.PROCESSING_PREFIX + "*") == []
    # the outcomes the lost call recorded are this worker's too: a re-sent finish that finds its own
    # final document answers ok, so none is dropped from its counts (and metrics) as 'lost'
    assert worker.counts.get("complete", 0) == len(ids), worker.counts


# --- the worker's other calls: each re-sent by redis-py's retry after its answer was lost ----------


def _through(proxy: LossyProxy) -> Delivery:
    """A Delivery on the queue-db client through the proxy, as the worker makes one."""
    via = Harness(f"{proxy.url}?socket_timeout=0.5")
    return Delivery(via.queue_client, via.settings)


def _claimed_by(harness, worker: str, n: int) -> list[str]:
    ids = [harness.submit("sleep", {"seconds": 0}) for _ in range(n)]
    assert [c[0] for c in harness.delivery.claim(worker, n)] == ids
    return ids


@pytest.mark.parametrize("mode", ["drop", "stall"])
def test_a_give_back_whose_answer_is_lost_counts_what_it_gave_back_once(harness, redis_server, mode, caplog):
    """A re-sent give back finds the ids gone from the processing list: it used to answer 0, and the
    worker logged that it gave back nothing. Each id is queued once either way, and the lost answer
    is logged, once."""
    ids = _claimed_by(harness, "w1", 3)
    proxy = LossyProxy(redis_server.port, mode, trigger="give_back", last="give_back")
    try:
        proxy.arm()
        with caplog.at_level(logging.WARNING, logger="jobqueue.delivery"):
            given = _through(proxy).give_back("w1", ids)
    finally:
        proxy.close()
    assert proxy.victims == 1 and proxy.exec_sent, "the fault was never injected"
    assert given == 3
    assert [r.getMessage().split(":")[0] for r in caplog.records] == ["give_back"]
    assert harness.queue_client.lrange(keys.queue(harness.settings.queue_name), 0, -1) == ids
    assert harness.queue_client.llen(keys.processing("w1")) == 0


@pytest.mark.parametrize("mode", ["drop", "stall"])
def test_a_reap_whose_answer_is_lost_counts_the_requeued_jobs(harness, redis_server, mode):
    """The re-sent reap finds the dead worker gone: it answered (0, 0), so the requeued jobs were
    missing from jobqueue_jobs_requeued and from the worker's warning."""
    ids = _claimed_by(harness, "ghost", 3)
    harness.queue_client.zadd(keys.WORKERS_HEARTBEAT, {"ghost": 1})  # silent since 1970
    proxy = LossyProxy(redis_server.port, mode, trigger="reap", last="reap")
    try:
        proxy.arm()
        answer = _through(proxy).reap(5.0, min_uptime=0)
    finally:
        proxy.close()
    assert proxy.victims == 1 and proxy.exec_sent, "the fault was never injected"
    assert answer == (3, 1)
    assert harness.queue_client.lrange(keys.queue(harness.settings.queue_name), 0, -1) == ids


@pytest.mark.parametrize("mode", ["drop", "stall"])
def test_a_sweep_whose_answer_is_lost_counts_the_job_it_queued(harness, redis_server, mode):
    job_id = harness.submit("sleep", {"seconds": 0})
    queue_key = keys.queue(harness.settings.queue_name)
    harness.queue_client.lrem(queue_key, 1, job_id)  # its producer died between its two writes
    proxy = LossyProxy(redis_server.port, mode, trigger="sweep_one", last="sweep_one")
    try:
        proxy.arm()
        swept = _through(proxy).sweep(harness.jobs, older_than=0)
    finally:
        proxy.close()
    assert proxy.victims == 1 and proxy.exec_sent, "the fault was never injected"
    assert swept == 1
    assert harness.queue_client.lrange(queue_key, 0, -1) == [job_id]


@pytest.mark.parametrize("mode", ["drop", "stall"])
def test_a_sweep_lock_whose_answer_is_lost_is_still_ours(harness, redis_server, mode):
    """The re-sent SET NX found our own lock and answered 'taken': nobody swept for the lock's time."""
    proxy = LossyProxy(redis_server.port, mode, trigger=keys.SWEEP_LOCK, last=keys.SWEEP_LOCK)
    try:
        proxy.arm()
        locked = _through(proxy).try_lock_sweep(30)
    finally:
        proxy.close()
    assert proxy.victims == 1 and proxy.exec_sent, "the fault was never injected"
    assert locked
    assert not Delivery(harness.queue_client, harness.settings).try_lock_sweep(30)  # a lock: the next one waits


@pytest.mark.parametrize("mode", ["drop", "stall"])
def test_a_start_whose_answer_is_lost_still_says_why_it_did_not_run(harness, redis_server, mode):
    """A start of a job whose document is final acks the id ('skip'); re-sent, it found the id gone
    and answered 'gone', and the worker logged a claim lost to the reaper that never happened."""
    job_id = _claimed_by(harness, "w1", 1)[0]
    job = harness.store.get(job_id)
    job.status = JobStatus.CANCELLED
    harness.jobs.set(keys.job(job_id), job.to_json(), ex=60)  # final documents have a TTL
    harness.delivery.waiting()
    proxy = LossyProxy(redis_server.port, mode, trigger="start", last="start")
    try:
        proxy.arm()
        answer = _through(proxy).start("w1", Start(job))
    finally:
        proxy.close()
    assert proxy.victims == 1 and proxy.exec_sent, "the fault was never injected"
    assert answer.state is Started.SKIP
    assert harness.queue_client.llen(keys.processing("w1")) == 0


def test_a_heartbeat_sent_again_never_moves_the_lease_back(harness, redis_server):
    """The heartbeat read Redis's TIME, then sent ZADD with it. When that answer is held past the
    socket timeout, redis-py sends the same ZADD again: with the old time, written over the newer
    beat of the worker's claims meanwhile. A lease moved back by the socket timeout: with a short
    lease, a live worker reaped and its jobs run twice."""
    harness.delivery.waiting()
    proxy = LossyProxy(redis_server.port, "stall", trigger=keys.WORKERS_HEARTBEAT, last=keys.WORKERS_HEARTBEAT)
    try:
        proxy.arm()
        beat = threading.Thread(target=_through(proxy).heartbeat, args=("w1",))
        beat.start()
        deadline = time.monotonic() + 60
        while not proxy.exec_sent and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)
        # meanwhile the worker's main thread claims, which beats too (Redis's time)
        sec, usec = harness.queue_client.time()
        claimed_at = sec + usec / 1e6
        harness.queue_client.zadd(keys.WORKERS_HEARTBEAT, {"w1": claimed_at})
        beat.join(timeout=10)
    finally:
        proxy.close()
    assert proxy.victims == 1 and proxy.exec_sent, "the fault was never injected"
    score = harness.queue_client.zscore(keys.WORKERS_HEARTBEAT, "w1")
    assert score >= claimed_at, f"the lease moved back {claimed_at - score:.3f} s"


def test_a_warm_shutdown_whose_give_back_answer_is_lost_loses_nothing(harness, redis_server, caplog):
    """SIGTERM mid-batch: the unstarted jobs go back to the front of the queue in one call whose
    answer is lost. Each is queued once, none is lost, and the log says how many went back."""
    ids = [harness.submit("sleep", {"seconds": 0}) for _ in range(40)]
    harness.delivery.waiting()
    proxy = LossyProxy(redis_server.port, "drop", trigger="give_back", last="give_back")
    try:
        via = Harness(f"{proxy.url}?socket_timeout=0.5")
        worker = Worker(via.settings, operations(), FakeData())
        worker.avg_job_seconds = 0.0001  # claim a full batch at once,
        worker.op_seconds["sleep"] = 0.01  # but start one job at a time
        original = worker._run

        def run_then_stop(item, answer):
            worker.request_stop()
            return original(item, answer)

        worker._run = run_then_stop
        proxy.arm()
        with caplog.at_level(logging.INFO, logger="jobqueue.worker"):
            run_burst(worker)
    finally:
        proxy.close()
    assert proxy.victims == 1 and proxy.exec_sent, "the fault was never injected"
    done = [j for j in harness.store.get_many(ids) if j.status == JobStatus.COMPLETE]
    queued = harness.queue_client.lrange(keys.queue(harness.settings.queue_name), 0, -1)
    assert len(done) == 1 and sorted(queued) == sorted(set(ids) - {done[0].id})
    assert harness.queue_client.llen(keys.processing(worker.id)) == 0
    counts = [r.count for r in caplog.records if r.getMessage() == "gave back unstarted jobs"]
    assert counts == [31], counts  # a batch of 32: the first ran


def test_an_idle_worker_with_a_short_socket_timeout_waits_without_errors(harness, caplog):
    """REDIS_URL's socket_timeout shorter than the idle worker's blocking wait (1 s): every wait
    timed out on the socket, was sent again, timed out again, and the worker logged Redis as
    unavailable about once a second while nothing was wrong."""
    via = Harness(f"{harness.env['REDIS_URL']}?socket_timeout=0.8")
    worker = Worker(via.settings, operations(), FakeData())
    loop = threading.Thread(target=worker.work, kwargs={"install_signals": False})
    with caplog.at_level(logging.WARNING, logger="jobqueue.worker"):
        loop.start()
        try:
            time.sleep(2.5)
            job_id = harness.submit("sleep", {"seconds": 0})
            deadline = time.monotonic() + 60
            while harness.store.get(job_id).status is not JobStatus.COMPLETE and time.monotonic() < deadline:
                time.sleep(0.02)
        finally:
            worker.request_stop()
            loop.join(timeout=10)
    assert harness.store.get(job_id).status is JobStatus.COMPLETE
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == []


@pytest.mark.parametrize("mode", ["drop", "stall"])
def test_a_start_whose_answer_is_lost_runs_each_job_once(harness, redis_server, mode):
    """A re-sent start writes the same in-progress document again and answers as the first did."""
    ran: list[str] = []
    probe = op("probe", lambda: ran.append("x") or {"ok": True})
    ids = [harness.submit("probe") for _ in range(5)]
    harness.delivery.waiting()
    proxy = LossyProxy(redis_server.port, mode, trigger="start", last="start")
    try:
        via = Harness(f"{proxy.url}?socket_timeout=0.5")
        worker = Worker(via.settings, operations(probe), FakeData())
        proxy.arm()
        run_burst(worker)
    finally:
        proxy.close()
    assert proxy.victims == 1 and proxy.exec_sent, "the fault was never injected"
    jobs = harness.store.get_many(ids)
    assert [j.status for j in jobs] == [JobStatus.COMPLETE] * 5 and [j.attempts for j in jobs] == [1] * 5
    assert len(ran) == 5 and worker.counts == {"complete": 5}


def test_an_idle_wait_whose_answer_is_lost_strands_no_job(harness, redis_server):
    """The idle worker's blocking pop moved a new job and claimed it, and that answer was held past
    the socket timeout: redis-py sends the pop and claim again, and the claim answers everything the
    processing list holds, so the job runs, once (by design; checked here)."""
    harness.delivery.waiting()
    proxy = LossyProxy(redis_server.port, "stall", trigger="claim_held", last="claim_held")
    via = Harness(f"{proxy.url}?socket_timeout=2")
    worker = Worker(via.settings, operations(), FakeData())
    loop = threading.Thread(target=worker.work, kwargs={"install_signals": False})
    loop.start()
    try:
        wait_blocked(harness.jobs)
        proxy.arm()
        deadline = time.monotonic() + 60
        while not proxy.exec_sent and time.monotonic() < deadline:  # the victim: the next wait
            time.sleep(0.01)
        time.sleep(0.05)
        job_id = harness.submit("sleep", {"seconds": 0})
        while harness.store.get(job_id).status is not JobStatus.COMPLETE and time.monotonic() < deadline + 10:
            time.sleep(0.02)
    finally:
        worker.request_stop()
        loop.join(timeout=10)
        proxy.close()
    assert proxy.victims == 1, "the fault was never injected"
    job = harness.store.get(job_id)
    assert job.status is JobStatus.COMPLETE and job.attempts == 1 and worker.counts == {"complete": 1}
    assert harness.queue_client.keys(keys.PROCESSING_PREFIX + "*") == []


def test_a_retry_whose_answer_is_lost_counts_once_when_another_worker_took_the_job(harness, redis_server):
    """A retry puts the job back in the queue; when its answer is lost and another worker starts
    the job before the call is sent again, the second send found the id gone and the document
    changed, answered 'lost', and the retry was dropped from the first worker's counts (and
    metrics). The job runs once more, on the other worker, and completes."""
    calls: list[int] = []

    def flaky():
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("upstream hiccup")  # transient: retried
        return {"ok": True}

    ops = operations(op("flaky", flaky))
    job_id = harness.submit("flaky")
    harness.delivery.waiting()
    proxy = LossyProxy(redis_server.port, "stall", trigger=("retry", "retry+claim"), last=("retry", "retry+claim"))
    # due again within 0.24 s: not taken back by the claim in the first worker's call, but by the
    # other worker's first claim well before the first worker's socket timeout ends
    settings = {"job_retry_backoff_seconds": 0.2}
    first = Worker(Harness(f"{proxy.url}?socket_timeout=2").settings.replace(**settings), ops, FakeData())
    other = Worker(harness.settings.replace(**settings), ops, FakeData())
    other_loop = threading.Thread(target=other.work, kwargs={"install_signals": False})
    try:
        proxy.arm()
        first_loop = threading.Thread(target=run_burst, args=(first,))
        first_loop.start()
        deadline = time.monotonic() + 60
        while not proxy.exec_sent and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)
        other_loop.start()  # takes the job while the first worker waits for its answer
        first_loop.join(timeout=30)
        while harness.store.get(job_id).status is not JobStatus.COMPLETE and time.monotonic() < deadline + 10:
            time.sleep(0.02)
    finally:
        other.request_stop()
        if other_loop.is_alive():
            other_loop.join(timeout=10)
        proxy.close()
    assert proxy.victims == 1 and proxy.exec_sent, "the fault was never injected"
    job = harness.store.get(job_id)
    assert job.status is JobStatus.COMPLETE and job.attempts == 2 and len(calls) == 2
    assert other.counts == {"complete": 1}
    assert first.counts == {"retried": 1}, first.counts
