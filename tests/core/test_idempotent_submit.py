"""A submit sent with an Idempotency-Key stores one job whatever order its attempts run in.

``Delivery.store_keyed`` (its own script, ``lua/store_keyed.lua``) writes the job and the key's record
in one script call, so of two attempts carrying one key (a client's re-send after a 504 or a dropped
connection, each with a job id of its own) the one Redis runs second answers the first's job. The
status-poll resolution this replaces could not say that: a stalled Redis serves ready connections in
epoll's order, so a transaction still in its socket buffer could apply after a read that answered
404. Here both attempts wait in a stopped redis-server's buffers, in both orders, and the attempt
whose answer a proxy loses is sent again by redis-py (same job id: it finds its own record)."""

from __future__ import annotations

import os
import signal
import time

import pytest
import redis

from jobqueue import keys
from jobqueue.delivery import STORE_KEYED_LUA, Delivery, KeyedState
from jobqueue.jobs import Job

from tests.support.harness import Harness
from tests.support.lossy_proxy import LossyProxy

KEY = keys.idempotency("", "retry-me")
FINGERPRINT = "f" * 64


def _job(d: Delivery) -> Job:
    return d.new_job("sleep", {"seconds": 0})


def _call(d: Delivery, job: Job, key: str = KEY, fingerprint: str = FINGERPRINT) -> tuple:
    """The EVALSHA an API process sends for a keyed submit, as raw arguments."""
    call = d.keyed_call(job, key, fingerprint, 86400)
    return ("EVALSHA", d._keyed_script.sha, len(call["keys"]), *call["keys"], *call["args"])


def _loaded(d: Delivery) -> str:
    """Load the keyed submit's script (as its first call would), so the next call is the EVALSHA
    alone; its sha, which every call carries (the lossy proxy's trigger)."""
    return d.redis.script_load(STORE_KEYED_LUA)


def _queued(h: Harness) -> list[str]:
    return h.queue_client.lrange(h.queue.key, 0, -1)


def test_the_second_attempt_answers_the_first_ones_job_and_a_resend_its_own(harness):
    d = harness.delivery
    a, b = _job(d), _job(d)
    assert d.store_keyed(a, KEY, FINGERPRINT, 60).state is KeyedState.STORED
    again = d.store_keyed(a, KEY, FINGERPRINT, 60)  # the same call sent again (redis-py's retry)
    assert (again.state, again.job_id) == (KeyedState.STORED, a.id)
    replay = d.store_keyed(b, KEY, FINGERPRINT, 60)
    assert (replay.state, replay.job_id) == (KeyedState.REPLAYED, a.id)
    assert Job.from_json(replay.doc).id == a.id
    conflict = d.store_keyed(_job(d), KEY, "0" * 64, 60)
    assert (conflict.state, conflict.job_id) == (KeyedState.CONFLICT, a.id)
    assert _queued(harness) == [a.id] and harness.jobs.zcard(keys.JOB_INDEX) == 1
    assert harness.jobs.zcard(keys.ACTIVE_INDEX) == 1 and harness.jobs.zcard(keys.operation_index("sleep")) == 1
    assert 0 < harness.jobs.ttl(KEY) <= 60


def test_a_repeat_after_the_keys_job_was_deleted_stores_a_new_job_under_the_key(harness):
    """Answering the deleted job's id would announce a job that is not there (a client polling it gets
    404; an API fuzzer's stateful run found POST /jobs answering an id DELETE had removed)."""
    d = harness.delivery
    a, b = _job(d), _job(d)
    d.store_keyed(a, KEY, FINGERPRINT, 60)
    harness.jobs.delete(keys.job(a.id))
    again = d.store_keyed(b, KEY, FINGERPRINT, 60)
    assert (again.state, again.job_id) == (KeyedState.STORED, b.id)
    assert harness.jobs.exists(keys.job(b.id)) and _queued(harness) == [a.id, b.id]
    replay = d.store_keyed(_job(d), KEY, FINGERPRINT, 60)  # the key now names the new job
    assert (replay.state, replay.job_id) == (KeyedState.REPLAYED, b.id)
    conflict = d.store_keyed(_job(d), KEY, "0" * 64, 60)  # a different request is still refused
    assert conflict.state is KeyedState.CONFLICT


def test_a_waited_keyed_submit_marks_the_job_it_answers(harness):
    d = harness.delivery
    a = _job(d)
    d.store_keyed(a, KEY, FINGERPRINT, 60)
    d.store_keyed(_job(d), KEY, FINGERPRINT, 60, waited=True)
    assert harness.jobs.exists(keys.waited(a.id))  # the replayed job's end will be announced


def test_a_keyed_submit_runs_its_own_script_and_loads_it_again_after_redis_forgot_it(harness):
    """A keyed submit does not run the dispatcher (whose set-up cost Redis more than the submit's
    writes), and after Redis forgot its scripts (a restart, SCRIPT FLUSH) it loads its own again:
    the first attempt got NOSCRIPT, nothing ran, and the job is stored once."""
    d = harness.delivery
    a = _job(d)
    assert d.store_keyed(a, KEY, FINGERPRINT, 60).state is KeyedState.STORED
    harness.jobs.script_flush()
    b = _job(d)
    assert d.store_keyed(b, keys.idempotency("", "after-flush"), FINGERPRINT, 60).state is KeyedState.STORED
    assert harness.jobs.script_exists(d._keyed_script.sha, d._script.sha) == [True, False]
    assert _queued(harness) == [a.id, b.id] and harness.jobs.zcard(keys.JOB_INDEX) == 2


@pytest.mark.parametrize("order", ["first-then-second", "second-then-first", "ready-second-first"])
def test_attempts_waiting_in_a_stopped_redis_store_one_job_in_any_order(fresh_redis, order):
    """Two attempts, each with its own job id, sit unread in a stopped Redis's buffers; Redis then
    runs them in the order it serves their connections (sent order, reversed, or the later one's
    connection already on epoll's ready list, as the status-poll resolution's 404 could be). Each
    time: one job stored, and the other attempt answers its id."""
    h = Harness(fresh_redis.url)
    d = h.delivery
    _loaded(d)
    pool = h.jobs.connection_pool
    winners: list[bool] = []  # per trial: the attempt sent second (in sent order, jobs[1]) ran first
    for trial in range(5):
        key = keys.idempotency("", f"order-{order}-{trial}")
        one, two = pool.get_connection(), pool.get_connection()
        jobs = [_job(d), _job(d)]
        os.kill(fresh_redis.proc.pid, signal.SIGSTOP)
        try:
            time.sleep(0.02)
            if order == "ready-second-first":
                two.send_command("CLIENT", "REPLY", "SKIP")  # on the ready list before the first's bytes
                two.send_command("PING")
            sends = [(one, jobs[0]), (two, jobs[1])]
            for conn, job in sends if order != "second-then-first" else sends[::-1]:
                conn.send_command(*_call(d, job, key))
                time.sleep(0.01)
        finally:
            os.kill(fresh_redis.proc.pid, signal.SIGCONT)
        answers = [conn.read_response() for conn in (one, two)]
        pool.release(one)
        pool.release(two)
        states = sorted(a[0] for a in answers)
        assert states == ["replayed", "stored"], answers
        stored = next(a[1] for a in answers if a[0] == "stored")
        assert all(a[1] == stored for a in answers)  # both attempts answer the one job
        assert h.jobs.get(key).split()[0] == stored
        winners.append(stored == jobs[1].id)
    ids = _queued(h)
    assert len(ids) == len(set(ids)) == 5 and h.jobs.zcard(keys.JOB_INDEX) == 5  # one job per key
    print(f"{order}: the second attempt ran first in {sum(winners)} of {len(winners)} trials")
    if order == "ready-second-first":  # Redis did run the later attempt first (5 of 5 by hand)
        assert any(winners), "the reordering was never exercised"


@pytest.mark.parametrize("mode", ["drop", "stall"])
def test_a_keyed_store_whose_answer_is_lost_is_sent_again_and_stores_once(redis_server, redis_url, mode):
    """redis-py re-sends the script after the proxy lost its answer: the same job id finds its own
    record and answers 'stored'; one job, queued once."""
    sha = _loaded(Harness(redis_url).delivery)
    proxy = LossyProxy(redis_server.port, mode, trigger=sha, last=sha)
    try:
        via = Harness(f"{proxy.url}?socket_timeout=0.5")
        d = via.delivery
        job = _job(d)
        proxy.arm()
        answer = d.store_keyed(job, KEY, FINGERPRINT, 60)
        assert proxy.victims == 1, "the fault was never injected"
        assert (answer.state, answer.job_id) == (KeyedState.STORED, job.id)
        direct = Harness(redis_url)
        assert _queued(direct) == [job.id] and direct.jobs.zcard(keys.JOB_INDEX) == 1
    finally:
        proxy.close()


def test_an_attempt_a_middlebox_delivers_after_the_resend_answers_the_resends_job(redis_server, redis_url):
    """The first attempt is held by the proxy (a congested network) and delivered only after the
    client gave up and sent the request again under the same key, with a new job id: the re-send
    stores, the late first attempt finds its record. One job."""
    sha = _loaded(Harness(redis_url).delivery)
    proxy = LossyProxy(redis_server.port, "hold", trigger=sha, last=sha)
    try:
        via = Harness(f"{proxy.url}?socket_timeout=0.5")
        d = via.delivery
        first, second = _job(d), _job(d)
        proxy.arm()
        conn = via.jobs.connection_pool.get_connection()
        conn.send_command(*_call(d, first))
        with pytest.raises(redis.exceptions.TimeoutError):
            conn.read_response()  # the answer never comes: the proxy holds the attempt
        conn.disconnect()
        answer = Harness(redis_url).delivery.store_keyed(second, KEY, FINGERPRINT, 60)
        assert answer.state is KeyedState.STORED
        deadline = time.monotonic() + 60
        while not proxy.delivered_late and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proxy.delivered_late, "the held attempt was never delivered"
        time.sleep(0.2)
        direct = Harness(redis_url)
        assert _queued(direct) == [second.id] and direct.jobs.zcard(keys.JOB_INDEX) == 1
        assert direct.jobs.get(KEY).split()[0] == second.id
    finally:
        proxy.close()
