"""The worker when Redis's answer to one of its calls is lost on the way back (a dropped connection,
or the ``socket_timeout`` given in REDIS_URL expiring while Redis stalls), on a real redis-server
behind a TCP proxy that loses it (tests/support/lossy_proxy.py).

A claim is the call that must not be sent again: the lost attempt moved ids into this worker's
processing list, where its heartbeat keeps them from the reaper, and a second send claims a second
batch. The worker must learn of the loss (and give back what it holds), not have it hidden by a
retry."""

from __future__ import annotations


import pytest

from jobqueue import keys
from jobqueue.jobs import JobStatus
from jobqueue_worker.worker import Worker

from tests.support.harness import FakeData, Harness, operations, run_burst
from tests.support.lossy_proxy import LossyProxy


@pytest.mark.parametrize("mode", ["drop", "stall"])
@pytest.mark.parametrize("call", ["claim", "finish+claim"])
def test_a_claim_whose_answer_is_lost_strands_no_job(harness, redis_server, mode, call):
    """The lost call is the worker's first claim, or a later one that records outcomes and claims
    the next batch (a busy worker's usual call)."""
    ids = [harness.submit("sleep", {"seconds": 0}) for _ in range(20)]
    harness.delivery.waiting()   # the script loaded: the lost call is the claim itself, not a NOSCRIPT
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
