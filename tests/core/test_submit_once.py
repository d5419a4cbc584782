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
import os
import signal
import threading
import time

import pytest

from jobqueue import delivery as delivery_module
from jobqueue import keys, wire
from jobqueue.delivery import Delivery, Finish, Recorded, _new_job_fields
from jobqueue.jobs import Job, JobStatus
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
            *[f for job in jobs for f in _new_job_fields(job, job.to_json())],
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


def test_a_transaction_redis_reads_only_after_the_check_is_fenced_and_never_applies(through, caplog):
    """The whole first attempt, WATCH included, reaches Redis only after the check ran: bytes a
    stalled Redis had in its socket buffer when it resumed and served the check's connection
    first (it serves ready connections in epoll's order, not arrival's: docs/delivery.md), or that
    a proxy between the API and Redis had accepted and delivered late (here: the proxy, ``hold``).
    The WATCH cannot help then: it is read after the check's write. The check kills the first
    attempt's connection by its id before it stores, so those bytes are never run. Before, they
    were: the ids queued twice, and a job finished meanwhile written back to ``submitted``."""
    proxy, direct, jobs = _store_losing_an_answer(through, "hold", caplog)
    assert "had not applied, stored now" in caplog.text, caplog.text
    ids = [job.id for job in jobs]
    d = direct.delivery
    (claimed,) = d.claim("w1", 1)  # a worker finishes the first job before the late bytes arrive
    done = Job.from_json(claimed[1])
    done.status, done.result, done.finished_at = JobStatus.COMPLETE, {"ok": 1}, time.time()
    assert d.record("w1", Finish(done)) is Recorded.OK
    time.sleep(proxy.hold + 0.8)  # the held transaction has been written to Redis by then
    assert proxy.victims == 1
    queued = _queued(direct)
    assert sorted(queued) == sorted(ids[1:]), f"{len(queued)} ids queued for the 2 jobs left"
    assert direct.store.get(done.id).status is JobStatus.COMPLETE, "a finished job was written back"
    assert direct.jobs.zcard(keys.JOB_INDEX) == 3


@pytest.fixture
def acl_user(redis_server):
    """Make an ACL user of the session's Redis: ``acl_user(name, *rules)`` -> its password; each
    is deleted afterwards."""
    admin, made = redis_server.client(), []

    def make(name: str, *rules: str) -> str:
        admin.execute_command("ACL", "SETUSER", name, "reset", "on", ">pw", "~*", "&*", "+@all", *rules)
        made.append(name)
        return "pw"

    yield make
    for name in made:
        admin.execute_command("ACL", "DELUSER", name)


@pytest.mark.parametrize(
    "rules, why",
    [(["-client|kill"], "CLIENT KILL was refused"), (["-client|id", "-client|kill"], "id is unknown")],
)
def test_without_client_kill_the_check_waits_instead_and_says_so_once(
    through, acl_user, monkeypatch, caplog, rules, why
):
    """An ACL user without ``client|kill`` (or ``client|id`` too), as a managed Redis may give: the
    check cannot fence, so it waits for Redis to read what was waiting (a PING, then the settle
    time), then checks as before; one warning a process names the permission to add."""
    monkeypatch.setattr(delivery_module, "_unfenced_warned", False)
    user = f"nokill{len(rules)}"
    password = acl_user(user, *rules)
    for lost in range(2):
        proxy, _, direct = through("stall")
        via = Harness(f"redis://{user}:{password}@127.0.0.1:{proxy.port}?socket_timeout=0.5")
        via.delivery.waiting()
        jobs = _batch(via.delivery)
        proxy.arm()
        with caplog.at_level(logging.WARNING, logger="jobqueue.delivery"):
            started = time.monotonic()
            via.delivery.store(jobs)
            took = time.monotonic() - started
        assert proxy.victims == 1
        assert sorted(_queued(direct)).count(jobs[0].id) == 1
        print(f"lost answer {lost}: store took {took:.2f} s (socket timeout 0.5 s + settle)")
        direct.jobs.flushall()
    assert caplog.text.count("had applied, not sent again") == 2, caplog.text
    warnings = [r.getMessage() for r in caplog.records if "instead of fencing" in r.getMessage()]
    assert len(warnings) == 1 and why in warnings[0] and "+client|kill" in warnings[0], warnings


def test_a_connection_learns_its_client_id_as_it_connects_and_the_normal_path_sends_no_more(harness):
    """The id the fence needs is asked once a connection, as it connects, never per call."""
    d = harness.delivery
    d.waiting()
    pool = harness.jobs.connection_pool
    conn = pool.get_connection()
    try:
        conn.send_command("CLIENT", "ID")
        assert wire.client_id(conn) == conn.read_response()
    finally:
        pool.release(conn)
    harness.jobs.config_resetstat()
    for _ in range(3):
        d.store(_batch(d))
    calls = _commandstats(harness.jobs)
    assert "client|id" not in calls and calls["exec"] == 3, calls


def test_a_stalled_redis_that_serves_the_check_first_never_runs_the_first_attempt_after_it(fresh_redis, caplog):
    """The same through a stalled redis-server and nothing in between: Redis stops (SIGSTOP) with
    the connection the check will use on its ready list (a connection it served in its last turn
    stays there, epoll being level-triggered; here it has sent bytes that ask for no answer, which
    puts it there for sure), the transaction is sent on another and its answer lost (0.5 s socket
    timeout), the check is sent, then Redis resumes and serves the check's connection first. Before
    the fence the check stored the batch and then Redis read the WATCH, MULTI... EXEC and applied
    them: the ids queued twice (10 of 10 runs by hand). Which pooled connection the check takes is
    the test's doing (the live one, as when another request took the reconnecting one first)."""
    h = Harness(f"{fresh_redis.url}?socket_timeout=0.5")
    d = h.delivery
    d.waiting()  # the script loaded
    pool = h.jobs.connection_pool
    first, check = pool.get_connection(), pool.get_connection()
    pool.release(check)
    pool.release(first)  # on top: the transaction takes it
    get_connection, resume, calls = pool.get_connection, threading.Timer(0.2, _resume, (fresh_redis.proc.pid,)), []

    def the_live_one_for_the_check(*args, **kwargs):
        calls.append(args)
        if len(calls) == 2:  # the check's first command (the transaction's was the first)
            with pool._lock:
                pool._available_connections.remove(check)
                pool._available_connections.append(check)
            resume.start()  # Redis resumes once the check has been sent
        return get_connection(*args, **kwargs)

    pool.get_connection = the_live_one_for_the_check
    jobs = _batch(d)
    os.kill(fresh_redis.proc.pid, signal.SIGSTOP)
    try:
        time.sleep(0.05)
        check.send_command("CLIENT", "REPLY", "SKIP")  # no answer to this nor to the PING
        check.send_command("PING")
        with caplog.at_level(logging.WARNING, logger="jobqueue.delivery"):
            d.store(jobs)
    finally:
        if resume.is_alive():
            resume.join()
        _resume(fresh_redis.proc.pid)
    assert "had not applied, stored now" in caplog.text, caplog.text  # the check ran before the transaction
    time.sleep(0.3)
    ids = [job.id for job in jobs]
    queued = _queued(Harness(fresh_redis.url))
    assert sorted(queued) == sorted(ids), f"{len(queued)} ids queued for {len(ids)} jobs"


def _resume(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGCONT)
    except ProcessLookupError:
        pass
