"""A submit is applied at most once and never lost, even when its transaction's answer is lost.

A real redis-server behind a TCP proxy (tests/support/lossy_proxy.py) that forwards the submit's
MULTI/EXEC and then loses the answer: the connection dropped after the EXEC, or held silent until
the client's ``socket_timeout`` (set in REDIS_URL, as a user would) expires, or dropped before the
EXEC reached Redis. redis-py's retry used to send the transaction again, so the ids were queued
twice and the documents written twice. Also: the normal path is still one MULTI/EXEC and nothing
else.
"""

from __future__ import annotations

import logging
import time

import pytest

from jobqueue import keys
from jobqueue.delivery import Delivery
from jobqueue.jobs import JobStatus
from jobqueue.lanes import PLOTS

from tests.support.harness import Harness
from tests.support.lossy_proxy import LossyProxy


@pytest.fixture
def through(redis_server, redis_url):
    """(proxy, Delivery on the API's jobs-db client reaching Redis through the proxy with a 0.5 s
    socket timeout, Harness reading Redis directly)."""
    proxies = []

    def make(mode: str, **watch: str) -> tuple[LossyProxy, Delivery, Harness]:
        proxy = LossyProxy(redis_server.port, mode, **watch)
        proxies.append(proxy)
        via = Harness(f"{proxy.url}?socket_timeout=0.5")
        return proxy, via.delivery, Harness(redis_url)

    yield make
    for proxy in proxies:
        proxy.close()


def _batch(delivery: Delivery) -> list:
    return [
        delivery.new_job("sleep", {"seconds": 0}),
        delivery.new_job("sleep", {"seconds": 1}),
        delivery.new_job("plot_top_locations", {"n": 5}, lane=PLOTS),
    ]


def _store_losing_an_answer(through, mode: str, caplog, jobs_of=_batch) -> tuple[LossyProxy, Harness, list]:
    """Store a batch through a proxy armed to lose ``mode``'s answer (connected, and the script
    loaded, before the fault); the proxy, a direct Harness and the jobs."""
    proxy, delivery, direct = through(mode)
    delivery.waiting()
    jobs = jobs_of(delivery)
    proxy.arm()
    with caplog.at_level(logging.WARNING, logger="jobqueue.delivery"):
        delivery.store(jobs)
    return proxy, direct, jobs


def _queued(h: Harness) -> list[str]:
    plots = keys.queue(keys.lane_queue_name(h.settings.queue_name, PLOTS))
    return h.queue_client.lrange(h.queue.key, 0, -1) + h.queue_client.lrange(plots, 0, -1)


@pytest.mark.parametrize("mode", ["drop", "stall"])
def test_a_transaction_whose_answer_is_lost_is_not_applied_twice(through, mode, caplog):
    proxy, direct, jobs = _store_losing_an_answer(through, mode, caplog)  # returns: the jobs are stored, once
    assert proxy.victims == 1 and proxy.exec_sent, "the fault was never injected"
    ids = [job.id for job in jobs]
    assert sorted(_queued(direct)) == sorted(ids), "an id queued twice (or not at all)"
    assert direct.jobs.zcard(keys.JOB_INDEX) == 3 and direct.jobs.zcard(keys.ACTIVE_INDEX) == 3
    assert [direct.store.get(i).status for i in ids] == [JobStatus.SUBMITTED] * 3
    assert "it had applied" in caplog.text, caplog.text


def test_a_transaction_dropped_before_redis_saw_it_is_stored_once_not_lost(through, caplog):
    proxy, direct, jobs = _store_losing_an_answer(through, "before", caplog)
    assert proxy.victims == 1 and not proxy.exec_sent
    ids = [job.id for job in jobs]
    assert sorted(_queued(direct)) == sorted(ids)
    assert direct.jobs.zcard(keys.JOB_INDEX) == 3 and direct.jobs.zcard(keys.ACTIVE_INDEX) == 3
    assert direct.jobs.zcard(keys.operation_index("sleep")) == 2
    docs = {job.id: job.to_json() for job in jobs}
    assert {i: direct.jobs.get(keys.job(i)) for i in ids} == docs  # the same documents as the transaction's
    assert "had not applied, stored now" in caplog.text, caplog.text


def test_a_finished_job_is_not_sent_back_to_submitted_by_a_late_retry(harness):
    """What the re-sent transaction used to do to a job a worker had already finished; the store
    command that a retry sends leaves a stored batch alone, whatever became of its jobs."""
    d = harness.delivery
    jobs = _batch(d)
    d.store(jobs)
    claimed = d.claim("w1", 1)
    assert claimed
    assert (
        d._run(
            "store",
            *[f for job in jobs for f in (job.id, job.to_json(), repr(job.submitted_at), job.operation, job.lane)],
        )
        == 0
    )
    assert sorted(_queued(harness)) == sorted(job.id for job in jobs[1:])


def _commandstats(client) -> dict[str, int]:
    return {name.removeprefix("cmdstat_"): stats["calls"] for name, stats in client.info("commandstats").items()}


def test_the_normal_path_is_one_transaction_and_nothing_else(harness):
    """One write, one MULTI/EXEC of one command of each kind, and the WATCH of its first document."""
    d = harness.delivery
    d.waiting()
    jobs = _batch(d)
    harness.jobs.config_resetstat()
    d.store(jobs)
    calls = _commandstats(harness.jobs)
    for bookkeeping in ("info", "config|resetstat", "select"):
        calls.pop(bookkeeping, None)
    assert calls.pop("multi") == 1 and calls.pop("exec") == 1
    assert calls.pop("watch") == 1  # the batch's first document, in the same write
    assert calls.pop("mset") == 1 and calls.pop("rpush") == 2  # two lanes
    assert calls.pop("zadd") == 2 + 2  # by-submitted, active, two operations
    assert calls == {}, f"more than the transaction was sent: {calls}"


def test_a_transaction_still_on_its_way_when_the_retry_checks_is_not_applied_after_it(through, caplog):
    """The narrowest case: the rest of the transaction (EXEC included) is still in the client's own
    kernel, unacknowledged, when the socket timeout expires and the retry's check finds nothing
    stored; a socket closed the ordinary way would still deliver it afterwards, and Redis would apply
    it a second time. Real kernel buffers: the proxy reads nothing for a while behind a small
    receive window (tests/support/lossy_proxy.py, "late")."""
    proxy, direct, jobs = _store_losing_an_answer(
        through, "late", caplog, lambda d: [d.new_job("sleep", {"seconds": 0, "pad": "x" * 200}) for _ in range(64)]
    )
    assert proxy.victims == 1
    time.sleep(proxy.hold + 0.5)  # whatever was still on its way has arrived (or never will)
    ids = [job.id for job in jobs]
    queued = _queued(direct)
    assert sorted(queued) == sorted(ids), f"{len(queued)} ids queued for {len(ids)} jobs"
    assert direct.jobs.zcard(keys.JOB_INDEX) == 64
    assert "had not applied, stored now" in caplog.text, caplog.text  # the retry stored it; the first never arrived


@pytest.mark.parametrize("mode", ["drop", "before"])
def test_a_producer_put_whose_answer_is_lost_is_not_pushed_twice_nor_lost(through, mode):
    """Tutorial-style producers (``JobStore.create`` then ``JobQueue.put``): a put whose answer is
    lost raises instead of pushing again; if it had not reached Redis, the sweeper queues the job."""
    from jobqueue import wire
    from jobqueue.queue import JobQueue

    proxy, _, direct = through(mode, trigger="RPUSH", last="RPUSH")
    via = Harness(f"{proxy.url}?socket_timeout=0.5")
    job = via.store.create("sleep", {"seconds": 0})
    queue = JobQueue(via.queue_client, via.settings.queue_name)
    queue.depth()  # connected before the fault
    proxy.arm()
    with pytest.raises(wire.Unsure):
        queue.put(job.id)
    assert proxy.victims == 1
    assert _queued(direct).count(job.id) == (1 if mode == "drop" else 0)
    Delivery(direct.queue_client, direct.settings).sweep(direct.jobs, older_than=0)  # what workers run
    assert _queued(direct) == [job.id]


def test_a_transaction_redis_had_only_partly_read_when_the_retry_ran_does_not_apply_after_it(through, caplog):
    """Bytes of the first attempt that reached Redis's host but that Redis had not read yet when the
    retry's check ran (after a stall, Redis reads a connection's waiting bytes 16 kB a turn): the
    EXEC arrives after the retry has stored the batch. The transaction WATCHes its first document,
    which the retry writes, so that late EXEC applies nothing."""
    proxy, direct, jobs = _store_losing_an_answer(through, "split", caplog)
    assert "had not applied, stored now" in caplog.text, caplog.text
    time.sleep(proxy.hold + 0.8)
    assert proxy.victims == 1 and proxy.exec_sent, "the late EXEC was never delivered"
    ids = [job.id for job in jobs]
    queued = _queued(direct)
    assert sorted(queued) == sorted(ids), f"{len(queued)} ids queued for {len(ids)} jobs"
