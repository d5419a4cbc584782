"""Redis refusing writes (out of memory) while a worker holds claimed jobs: it gives them back and
every job finishes once memory returns (issue: a claimed id stayed in a live worker's processing
list for 18 minutes, kept there by its own heartbeat)."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable

import pytest

import redis

from jobqueue import keys
from jobqueue.connections import is_transient, write_refusal
from jobqueue.jobs import JobStatus
from jobqueue_worker.worker import Worker
from tests.support.redis_memory import fill_to_maxmemory

from tests.support.harness import Harness, operations


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)


def assert_refuses_a_write(client: redis.Redis) -> None:
    try:
        client.set(keys.result("one-more"), b"x" * 100)
    except redis.exceptions.OutOfMemoryError:
        return
    raise AssertionError("a write went through while the filler was still there")


def test_refusals_are_recognised_as_transient(fresh_redis):
    client = fresh_redis.client()
    client.config_set("maxmemory-policy", "noeviction")
    fill_to_maxmemory(client)
    try:
        client.set("x", "y")
    except redis.exceptions.RedisError as exc:
        assert write_refusal(exc) == "OOM" and is_transient(exc)
    assert (
        write_refusal(redis.exceptions.ResponseError("MISCONF Redis is configured to save RDB snapshots")) == "MISCONF"
    )
    in_transaction = "Command # 2 (SET job:x {}) of pipeline caused error: MISCONF Redis is configured to save"
    assert write_refusal(redis.exceptions.ResponseError(in_transaction)) == "MISCONF"
    assert not is_transient(redis.exceptions.ResponseError("WRONGTYPE Operation against a key"))


def test_a_filled_redis_still_refuses_writes_once_clients_leave_and_buffers_shrink(fresh_redis):
    """The tests below need Redis to keep refusing while the filler is there, however its clients
    come and go: a connection closing and idle query buffers being trimmed (after about 2 s) free
    memory too. With maxmemory only 128 KiB under what was used, that alone let writes through."""
    client = fresh_redis.client()
    client.config_set("maxmemory-policy", "noeviction")
    others = [fresh_redis.client() for _ in range(2)]
    for other in others:
        other.ping()
    filler = fill_to_maxmemory(client)
    for other in others:
        other.close()
    time.sleep(3)  # Redis trims query buffers idle for 2 s; there is nothing to watch for it
    assert_refuses_a_write(client)
    client.delete(*filler)
    client.set(keys.result("one-more"), b"x" * 100)  # and room again once it is gone


def test_a_filled_redis_still_refuses_writes_after_a_busy_writer_took_the_headroom_and_left(fresh_redis):
    """CI, 2026-12-03: a worker storing plots while the test filled Redis took most of the headroom,
    so the filler was a few keys and half of it was a smaller margin than the worker's connection
    held (the query buffer a big value leaves behind); once that was trimmed, every submit was
    accepted at "maxmemory"."""
    client = fresh_redis.client()
    client.config_set("maxmemory-policy", "noeviction")
    writer, stop = fresh_redis.client(), threading.Event()

    def store_plots():
        for i in range(100_000):
            if stop.is_set():
                return
            try:
                writer.set(keys.result(f"plot-{i}"), b"p" * 300_000)
            except redis.exceptions.OutOfMemoryError:
                time.sleep(0.001)

    thread = threading.Thread(target=store_plots, daemon=True)
    thread.start()
    filler = fill_to_maxmemory(client)
    stop.set()
    thread.join(timeout=10)
    writer.close()
    time.sleep(3)  # Redis trims query buffers idle for 2 s
    assert_refuses_a_write(client)
    client.delete(*filler)
    client.set(keys.result("one-more"), b"x" * 100)


def test_a_refused_submit_applies_nothing_and_says_why(fresh_redis):
    """Submit is one transaction: at maxmemory Redis refuses all of it, and the error names OOM
    (the API's 503 reads it)."""
    h = Harness(fresh_redis.url)
    h.submit("sleep", {"seconds": 0})
    client = fresh_redis.client(db=h.settings.redis_jobs_db)
    client.config_set("maxmemory-policy", "noeviction")
    filler = fill_to_maxmemory(client)
    jobs_before = client.dbsize()
    try:
        h.delivery.submit("sleep", {"seconds": 0})
    except redis.exceptions.RedisError as exc:
        assert write_refusal(exc) == "OOM" and is_transient(exc)
    else:
        raise AssertionError("a submit at maxmemory went through")
    assert client.dbsize() == jobs_before and h.queue_client.llen(keys.queue(h.settings.queue_name)) == 1
    client.delete(*filler)


def test_a_refused_keyed_submit_applies_nothing_and_says_why(fresh_redis):
    """A submit with an Idempotency-Key is a script of its own: at maxmemory Redis refuses its first
    write (the key's record), so neither the record nor the job is stored, and the error names OOM."""
    h = Harness(fresh_redis.url)
    d = h.delivery
    first = d.new_job("sleep", {"seconds": 0})
    d.store_keyed(first, keys.idempotency("", "before"), "f" * 64, 60)  # stored, and its script loaded
    client = fresh_redis.client(db=h.settings.redis_jobs_db)
    client.config_set("maxmemory-policy", "noeviction")
    filler = fill_to_maxmemory(client)
    jobs_before = client.dbsize()
    try:
        d.store_keyed(d.new_job("sleep", {"seconds": 0}), keys.idempotency("", "refused"), "f" * 64, 60)
    except redis.exceptions.RedisError as exc:
        assert write_refusal(exc) == "OOM" and is_transient(exc), exc
    else:
        raise AssertionError("a keyed submit at maxmemory went through")
    assert client.dbsize() == jobs_before and h.queue_client.llen(keys.queue(h.settings.queue_name)) == 1
    client.delete(*filler)


def test_a_worker_gives_back_what_it_claimed_when_redis_refuses_writes(fresh_redis):
    h = Harness(fresh_redis.url, JOB_LEASE_SECONDS="30")
    ids = [h.submit("sleep", {"seconds": 0}) for _ in range(3)]
    raw = fresh_redis.client(db=h.settings.redis_jobs_db)
    raw.config_set("maxmemory-policy", "noeviction")
    worker = Worker(h.settings, operations(), worker_id="w1")
    real_claim, filler = worker.delivery.claim, []

    def claim_then_fill(*args, **kwargs):
        """Another client's writes take the last of maxmemory between this claim and its start."""
        got = real_claim(*args, **kwargs)
        if got and not filler:
            filler.extend(fill_to_maxmemory(raw))
        return got

    worker.delivery.claim = claim_then_fill  # type: ignore[method-assign]
    thread = threading.Thread(target=worker.work, kwargs={"install_signals": False}, daemon=True)
    thread.start()
    try:
        queue = h.queue_client
        wait_until(
            lambda: (
                filler and queue.llen(keys.processing("w1")) == 0 and queue.llen(keys.queue(h.settings.queue_name)) == 3
            ),
            10,
            "the claimed id back in the queue",
        )
        time.sleep(1.0)  # memory still full: nothing is run, nothing is lost
        assert {h.store.get(i).status for i in ids} == {JobStatus.SUBMITTED}
        raw.delete(*filler)
        wait_until(
            lambda: all(h.store.get(i).status is JobStatus.COMPLETE for i in ids),
            15,
            "every job complete once memory is back",
        )
    finally:
        worker.request_stop()
        thread.join(10)


def refuse_writes(client: redis.Redis, cause: str) -> Callable[[], None]:
    """Make a real Redis refuse writes for ``cause`` (OOM: filled to maxmemory; MISCONF: an RDB save
    that failed, its file's name taken by a directory); returns what makes it accept them again."""
    if cause == "OOM":
        client.config_set("maxmemory-policy", "noeviction")
        filler = fill_to_maxmemory(client)

        def free() -> None:
            client.delete(*filler)

        return free
    where = os.path.join(client.config_get("dir")["dir"], client.config_get("dbfilename")["dbfilename"])
    client.config_set("save", "3600 1")  # MISCONF needs save points, which the test Redis has none of

    def save_until(status: str) -> None:
        client.bgsave(schedule=True)  # scheduled, not refused, while an AOF rewrite runs
        deadline = time.monotonic() + 60
        while True:
            persistence = client.info("persistence")
            if persistence["rdb_last_bgsave_status"] == status and not persistence["rdb_bgsave_in_progress"]:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"an RDB save ending {status}")
            time.sleep(0.05)

    def save_again() -> None:
        shutil.rmtree(where)
        save_until("ok")

    os.makedirs(os.path.join(where, "taken"))  # the save's rename onto it fails
    save_until("err")
    return save_again


@pytest.mark.parametrize("cause", ["OOM", "MISCONF"])
def test_a_worker_renewing_again_once_redis_accepts_writes_is_not_reaped(fresh_redis, cause):
    """Redis refusing writes for longer than a lease refuses every worker's heartbeat alike, so once
    it accepts writes again each live worker's lease looks lapsed until its next beat, up to lease/3
    later. The reaper used to reap right after its own first beat that went through (its reap was
    due all along, and Redis's uptime was long), requeueing the job of a worker that was still
    running it, and the job ran twice (6 of 12 runs of two workers beating in random order).

    ``alive`` stands for a live worker holding a job: it beats at lease/3 throughout, refusals
    included, and after the refusal beats first after the reaper's second beat that went through
    (the latest a live worker's beat can come; the order that lost the race). The reaper is a real
    worker. A dead worker is still reaped once writes are back: the bound is one lease more."""
    lease = 3.0  # beats every 1 s: alive beats ~1 s after the reaper's first beat, ~2 s before it may reap
    h = Harness(fresh_redis.url, JOB_LEASE_SECONDS=str(lease))
    job_id = h.submit("sleep", {"seconds": 0})
    d, queue = h.delivery, h.queue_client
    assert [c[0] for c in d.claim("alive", 1)] == [job_id]
    raw = fresh_redis.client(db=h.settings.redis_jobs_db)

    beating, stop_beating, refused = threading.Event(), threading.Event(), []
    beating.set()

    def keep_alive():
        while not stop_beating.is_set():
            if beating.is_set():
                try:
                    d.heartbeat("alive")
                except redis.exceptions.RedisError as exc:
                    refused.append(write_refusal(exc))
            stop_beating.wait(lease / 3)

    def score(worker: str) -> float:
        return float(queue.zscore(keys.WORKERS_HEARTBEAT, worker) or 0.0)

    def redis_now() -> float:
        sec, usec = queue.time()
        return sec + usec / 1e6

    def held() -> list[str]:
        return list(queue.lrange(keys.processing("alive"), 0, -1))

    beater = threading.Thread(target=keep_alive, daemon=True)
    beater.start()
    reaper = Worker(h.settings, operations(), worker_id="reaper")
    thread = threading.Thread(target=reaper.work, kwargs={"install_signals": False}, daemon=True)
    thread.start()
    try:
        wait_until(lambda: score("reaper") > 0, 30, "the reaper's first beat")
        accept_writes = refuse_writes(raw, cause)
        # both leases lapse while Redis refuses writes; alive's beats are refused meanwhile
        wait_until(
            lambda: redis_now() - max(score("alive"), score("reaper")) > lease + 0.5, 30, "a lease without beats"
        )
        assert cause in refused and held() == [job_id]
        beating.clear()
        accept_writes()
        refusing = score("reaper")
        wait_until(lambda: score("reaper") > refusing, 30, "the reaper's first beat once writes are back")
        back = score("reaper")
        wait_until(lambda: score("reaper") > back, 30, "the reaper's second beat once writes are back")
        d.heartbeat("alive")  # at once, not at the beater's next turn (up to lease/3 later)
        beating.set()
        # the reaper has had more than a lease since its first beat to reap, were it to
        wait_until(lambda: score("reaper") > back + lease + 1.0, 60, "a lease of the reaper's beats")
        assert held() == [job_id], "a live worker's job was requeued: it runs twice"
        assert not queue.sismember(keys.REAPED, job_id)
        # alive dies: its job is still requeued and run, once writes are back
        stop_beating.set()
        beater.join(10)
        wait_until(lambda: h.store.get(job_id).status is JobStatus.COMPLETE, 60, "the dead worker's job run")
    finally:
        stop_beating.set()
        reaper.request_stop()
        thread.join(10)
