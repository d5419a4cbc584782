"""``jobqueue-worker`` told to stop (SIGTERM) just after its Redis went away. An idle worker used to
take 5 s to exit when Redis was shut down (its give back on exit retried for 5 s) and about 20 s
when Redis hung (each call waited out its socket timeout, twice, and the exit waited for the
heartbeat thread's call too); with nothing in hand it now exits within about a second
(EXIT_SECONDS), and a job in hand keeps the documented grace and is not lost: its id stays claimed,
and the reaper requeues it once Redis is back. Real processes, a redis-server of the test's own."""

from __future__ import annotations

import os
import signal
import subprocess
import time

from devstack.procs import stop, wait_until
from jobqueue import keys
from jobqueue.jobs import JobStatus

from tests.support.harness import WORKER_EXE, Harness, proc_env


def _worker(redis_url: str, log_path, **env: str) -> subprocess.Popen:
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [WORKER_EXE], env=proc_env(redis_url, LOG_LEVEL="INFO", **env), stdout=log, stderr=subprocess.STDOUT
        )


def _seconds_to_exit(proc: subprocess.Popen) -> tuple[int, float]:
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(60)  # a hang bound, not the assertion
    return code, time.monotonic() - t0


def _idle_worker(fresh_redis, tmp_path) -> subprocess.Popen:
    h = Harness(fresh_redis.url)
    proc = _worker(fresh_redis.url, tmp_path / "w.log")
    wait_until(lambda: h.queue_client.zcard(keys.WORKERS_HEARTBEAT) == 1, 120, "the worker's heartbeat")
    time.sleep(0.5)  # idle in its wait for jobs
    return proc


def test_an_idle_worker_exits_at_once_after_redis_was_shut_down(fresh_redis, tmp_path):
    proc = _idle_worker(fresh_redis, tmp_path)
    try:
        fresh_redis.stop()
        time.sleep(0.5)  # the worker has met the closed connection and retries
        code, seconds = _seconds_to_exit(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    log = (tmp_path / "w.log").read_text()
    assert code == 0, log[-2000:]
    assert seconds < 4, f"{seconds:.1f} s to exit\n{log[-2000:]}"  # 5.1 s before, every time
    assert "could not give back claimed jobs; the reaper will after the lease" in log


def test_an_idle_worker_exits_at_once_while_redis_hangs(fresh_redis, tmp_path):
    """A Redis that accepts connections and answers nothing (its process stopped, a node cut off):
    the SIGTERM ends the call the worker waits in."""
    proc = _idle_worker(fresh_redis, tmp_path)
    assert fresh_redis.proc is not None
    redis_pid = fresh_redis.proc.pid
    os.kill(redis_pid, signal.SIGSTOP)
    try:
        time.sleep(1.5)  # the worker's wait is cut off by nothing: it sits in a read
        code, seconds = _seconds_to_exit(proc)
    finally:
        os.kill(redis_pid, signal.SIGCONT)
        if proc.poll() is None:
            proc.kill()
    log = (tmp_path / "w.log").read_text()
    assert code == 0, log[-2000:]
    assert seconds < 5, f"{seconds:.1f} s to exit\n{log[-2000:]}"  # about 20 s before


def test_a_job_in_hand_when_redis_goes_keeps_its_grace_and_is_not_lost(fresh_redis, tmp_path):
    """The job finishes, its outcome cannot be written: the worker retries that until the grace ends
    (SHUTDOWN_GRACE_SECONDS), then exits 0 with the id still in its processing list; once Redis is
    back another worker's reaper requeues it and it completes (at-least-once)."""
    h = Harness(fresh_redis.url)
    job_id = h.submit("sleep", {"seconds": 1.0})
    proc = _worker(fresh_redis.url, tmp_path / "a.log", SHUTDOWN_GRACE_SECONDS="3", JOB_LEASE_SECONDS="1")
    try:
        wait_until(lambda: h.store.get(job_id).status == JobStatus.IN_PROGRESS, 120, "the job's start")
        first_worker = h.store.get(job_id).worker
        fresh_redis.stop()  # a clean shutdown: its AOF holds the claim
        code, seconds = _seconds_to_exit(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    log = (tmp_path / "a.log").read_text()
    assert code == 0, log[-2000:]
    assert 2.5 < seconds < 3 + 4, f"{seconds:.1f} s to exit with a job in hand\n{log[-2000:]}"
    fresh_redis.start()
    h = Harness(fresh_redis.url)
    assert h.queue_client.lrange(keys.processing(first_worker), 0, -1) == [job_id]
    second = _worker(fresh_redis.url, tmp_path / "b.log", JOB_LEASE_SECONDS="1")
    try:
        wait_until(lambda: h.store.get(job_id).status == JobStatus.COMPLETE, 120, "the job, run again")
        job = h.store.get(job_id)
        assert job.worker != first_worker and job.result == {"slept": 1.0}
    finally:
        assert stop(second, 15) == 0
