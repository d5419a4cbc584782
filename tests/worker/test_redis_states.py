"""A worker whose Redis, mid-job, answers every command with an error for a while (BUSY: a script
past busy-reply-threshold; MASTERDOWN: a replica without its primary) or refuses the worker's ACL
user a command its finish needs (NOPERM), on a real redis-server: it keeps the job's outcome and sends
it again until Redis takes it, so the job completes on its first attempt, none is lost or failed. The
worker used to drop the outcome on these errors (plain ResponseErrors, not "transient") and log a
traceback per retry; the job was run again."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import redis

from devstack.procs import free_port
from jobqueue import keys
from jobqueue.connections import acl_refusal, is_transient, unavailable_state
from jobqueue.jobs import JobStatus
from jobqueue_worker.worker import Worker
from tests.support.harness import Harness, operations


def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.02)


def _status(h: Harness, job_id: str) -> JobStatus | None:
    """The job's status, None while Redis still refuses (SCRIPT KILL answers before the script
    stops: at its next hook, so this test's own read could meet BUSY once more)."""
    try:
        return h.store.get(job_id).status
    except redis.exceptions.ResponseError as exc:
        if unavailable_state(exc) is None:
            raise
        return None


def run_through(h: Harness, worker_url: str, refuse: Callable[[], None], allow: Callable[[], None], caplog) -> None:
    """One job of 1 s; ``refuse`` once the worker has claimed it (its finish meets the refusal),
    ``allow`` 1.5 s later; the job completes, attempt 1."""
    job_id = h.submit("sleep", {"seconds": 1})
    worker = Worker(Harness(worker_url).settings, operations(), worker_id="w1")
    thread = threading.Thread(target=worker.work, kwargs={"install_signals": False}, daemon=True)
    thread.start()
    try:
        wait_until(lambda: h.queue_client.llen(keys.processing("w1")) == 1, 10, "the job claimed")
        refuse()
        time.sleep(1.5)  # the job's finish meets the refusal meanwhile
        allow()
        wait_until(lambda: _status(h, job_id) is JobStatus.COMPLETE, 20, "the job complete")
        assert h.store.get(job_id).attempts == 1
    finally:
        worker.request_stop()
        thread.join(10)
    assert not thread.is_alive()
    tracebacks = [r for r in caplog.records if r.name == "jobqueue.worker" and r.exc_info]
    assert not tracebacks, [r.getMessage() for r in tracebacks]


def test_busy_redis_mid_job(fresh_redis, caplog):
    caplog.set_level(logging.WARNING, logger="jobqueue.worker")
    h = Harness(fresh_redis.url)
    admin = fresh_redis.client()
    admin.config_set("busy-reply-threshold", 100)
    errors: list[Exception] = []

    def loop() -> None:
        try:
            fresh_redis.client().eval("local i = 0 while true do i = i + 1 end", 0)
        except redis.exceptions.ResponseError:
            pass

    def refuse() -> None:
        threading.Thread(target=loop, daemon=True).start()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not errors:
            try:
                admin.ping()
            except redis.exceptions.ResponseError as exc:
                errors.append(exc)

    try:
        run_through(h, fresh_redis.url, refuse, admin.script_kill, caplog)
    finally:
        try:
            admin.script_kill()
        except redis.exceptions.ResponseError:
            pass  # no script running: killed above
    assert errors and unavailable_state(errors[0]) == "BUSY" and is_transient(errors[0])


def test_replica_without_its_primary_mid_job(fresh_redis, caplog):
    caplog.set_level(logging.WARNING, logger="jobqueue.worker")
    h = Harness(fresh_redis.url)
    admin = fresh_redis.client()
    admin.config_set("replica-serve-stale-data", "no")

    def refuse() -> None:
        admin.replicaof("127.0.0.1", free_port())  # nothing listens there
        try:
            admin.ping()
        except redis.exceptions.RedisError as exc:
            assert unavailable_state(exc) == "MASTERDOWN" and is_transient(exc)
        else:
            raise AssertionError("a replica without its primary answered PING")

    try:
        run_through(h, fresh_redis.url, refuse, lambda: admin.replicaof("NO", "ONE"), caplog)
    finally:
        admin.replicaof("NO", "ONE")


def test_acl_refusal_mid_job_is_logged_and_costs_no_attempt(fresh_redis, caplog):
    caplog.set_level(logging.WARNING, logger="jobqueue.worker")
    h = Harness(fresh_redis.url)
    admin = fresh_redis.client()
    admin.acl_setuser("jq-worker", enabled=True, passwords=["+pw"], keys=["*"], channels=["*"], commands=["+@all"])
    url = f"redis://jq-worker:pw@127.0.0.1:{fresh_redis.port}"
    run_through(
        h,
        url,
        lambda: admin.execute_command("ACL", "SETUSER", "jq-worker", "-hget"),
        lambda: admin.execute_command("ACL", "SETUSER", "jq-worker", "+hget"),
        caplog,
    )
    named = [r for r in caplog.records if r.levelno == logging.ERROR and "NOPERM" in r.getMessage()]
    assert named and getattr(named[0], "refused", None), [r.getMessage() for r in caplog.records]
    assert acl_refusal(redis.exceptions.NoPermissionError("this user has no permissions to run the 'get' command"))
    assert not is_transient(redis.exceptions.NoPermissionError("this user has no permissions to run the 'get' command"))
