"""``jobqueue-worker`` as a real process: kill -9 mid-job, SIGTERM mid-job, Redis killed and
restarted, bad configuration, and the multi-process supervisor with its metrics."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request

from devstack.procs import free_port, stop, wait_until
from jobqueue import keys
from jobqueue.jobs import JobStatus, JobStore

from tests.support.harness import WORKER_EXE, Harness, proc_env


def start_worker(redis_url, log_path, **env):
    log = open(log_path, "ab")
    return subprocess.Popen([WORKER_EXE], env=proc_env(redis_url, **env), stdout=log, stderr=subprocess.STDOUT)


def status(h, job_id):
    job = h.store.get(job_id)
    return job.status if job else None


def test_kill_9_mid_job_completes_exactly_once_on_another_worker(harness, redis_url, tmp_path):
    pubsub = harness.jobs.pubsub()
    pubsub.subscribe(keys.JOB_DONE_CHANNEL)
    job_id = harness.submit("sleep", {"seconds": 1.0})
    harness.jobs.set(keys.waited(job_id), "1", ex=120)  # as a waiting request marks it: the run the
    # reaper takes back is not final, so the mark stays for the one final announcement
    first = start_worker(redis_url, tmp_path / "a.log", JOB_LEASE_SECONDS="1")
    try:
        wait_until(lambda: status(harness, job_id) == JobStatus.IN_PROGRESS, 60, "job start")
        first_worker = harness.store.get(job_id).worker
        os.kill(first.pid, signal.SIGKILL)
        first.wait(5)
    finally:
        if first.poll() is None:
            first.kill()
    second = start_worker(redis_url, tmp_path / "b.log", JOB_LEASE_SECONDS="1")
    try:
        wait_until(lambda: status(harness, job_id) == JobStatus.COMPLETE, 60, "completion after the lease")
        job = harness.store.get(job_id)
        assert job.worker != first_worker and job.attempts == 2 and job.result == {"slept": 1.0}
        time.sleep(0.5)
        finals = []
        while (msg := pubsub.get_message(timeout=0.2)) is not None:
            if msg["type"] == "message":
                finals.append(JobStore.done_message(msg["data"])[0])
        assert finals == [job_id]
        assert harness.queue_client.llen(keys.processing(first_worker)) == 0
        assert harness.queue_client.zscore(keys.WORKERS_HEARTBEAT, first_worker) is None
    finally:
        assert stop(second, 15) == 0


def test_sigterm_mid_job_finishes_it_takes_nothing_new_and_exits_0(harness, redis_url, tmp_path):
    running = harness.submit("sleep", {"seconds": 1.0})
    waiting = harness.submit("sleep", {"seconds": 0})
    proc = start_worker(redis_url, tmp_path / "w.log", SHUTDOWN_GRACE_SECONDS="10")
    try:
        wait_until(lambda: status(harness, running) == JobStatus.IN_PROGRESS, 60, "job start")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert status(harness, running) == JobStatus.COMPLETE
    assert status(harness, waiting) == JobStatus.SUBMITTED
    assert harness.queue_client.lrange(keys.queue(harness.settings.queue_name), 0, -1) == [waiting]
    assert harness.queue_client.zcard(keys.WORKERS_HEARTBEAT) == 0


def test_sigterm_past_the_grace_gives_the_job_back(harness, redis_url, tmp_path):
    job_id = harness.submit("sleep", {"seconds": 5})
    proc = start_worker(redis_url, tmp_path / "w.log", SHUTDOWN_GRACE_SECONDS="0.5")
    try:
        wait_until(lambda: status(harness, job_id) == JobStatus.IN_PROGRESS, 60, "job start")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    job = harness.store.get(job_id)
    assert job.status == JobStatus.SUBMITTED and job.attempts == 0
    assert harness.queue_client.lrange(keys.queue(harness.settings.queue_name), 0, -1) == [job_id]


def test_redis_killed_and_restarted_worker_reconnects_and_queued_jobs_survive(fresh_redis, tmp_path):
    h = Harness(fresh_redis.url)
    queued = [h.submit("sleep", {"seconds": 0}) for _ in range(5)]
    fresh_redis.wait_aof_written()  # everysec answers before writing while an fsync lags
    fresh_redis.kill()
    proc = start_worker(fresh_redis.url, tmp_path / "w.log")
    try:
        time.sleep(1.0)
        assert proc.poll() is None, "the worker died while Redis was down"
        fresh_redis.start()
        h = Harness(fresh_redis.url)
        wait_until(lambda: all(status(h, j) == JobStatus.COMPLETE for j in queued), 60, "queued jobs after restart")
        later = [h.submit("sleep", {"seconds": 0}) for _ in range(3)]
        wait_until(lambda: all(status(h, j) == JobStatus.COMPLETE for j in later), 60, "new jobs")
        # and once more while it is idle and connected
        fresh_redis.kill()
        time.sleep(0.5)
        fresh_redis.start()
        h = Harness(fresh_redis.url)
        again = h.submit("sleep", {"seconds": 0})
        wait_until(lambda: status(h, again) == JobStatus.COMPLETE, 60, "a job after the second restart")
    finally:
        assert stop(proc, 15) == 0
    log = (tmp_path / "w.log").read_text()
    assert "redis unavailable" in log


def test_bad_setting_stops_the_worker_with_a_message_naming_it(redis_url):
    out = subprocess.run(
        [WORKER_EXE], env=proc_env(redis_url, JOB_LEASE_SECONDS="soon"), capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 2
    assert "JOB_LEASE_SECONDS" in out.stderr


def test_version_and_help_answer_without_starting_a_worker():
    """`jobqueue-worker --version` was a usage error and --help named no variable, where
    `jobqueue-api` answers both; neither may connect to Redis or load data."""
    env = {**os.environ, "REDIS_URL": f"redis://127.0.0.1:{free_port()}", "DATA_PATH": "/nonexistent.csv"}
    version = subprocess.run([str(WORKER_EXE), "--version"], capture_output=True, text=True, env=env, timeout=120)
    assert (
        version.returncode == 0
        and version.stdout.startswith("jobqueue-worker ")
        and version.stdout.strip()[-1].isdigit()
    )
    helped = subprocess.run([str(WORKER_EXE), "--help"], capture_output=True, text=True, env=env, timeout=120)
    assert helped.returncode == 0 and "--burst" in helped.stdout, helped.stderr
    for name in ("REDIS_URL", "WORKER_CONCURRENCY", "WORKER_METRICS_PORT", "JOB_LEASE_SECONDS"):
        assert name in helped.stdout, name
    assert not (version.stderr + helped.stderr), version.stderr + helped.stderr  # no log line: nothing started


def test_supervisor_runs_several_processes_and_serves_their_metrics(harness, redis_url, tmp_path):
    port = free_port()
    ids = [harness.submit("sleep", {"seconds": 0.1}) for _ in range(8)]
    # a directory the user chose may hold other things: only stale metric files go (it was rmtree'd)
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "notes.txt").write_text("mine\n")
    (tmp_path / "metrics" / "counter_999999.db").write_bytes(b"stale from a previous run")
    proc = start_worker(
        redis_url,
        tmp_path / "w.log",
        WORKER_CONCURRENCY="2",
        WORKER_METRICS_PORT=str(port),
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
    )
    try:
        wait_until(lambda: all(status(harness, j) == JobStatus.COMPLETE for j in ids), 60, "jobs")
        assert len({harness.store.get(j).worker for j in ids}) == 2
        body = wait_until(lambda: _scrape(port), 60, "metrics")
        assert 'jobqueue_jobs_processed_total{operation="sleep",outcome="complete"} 8.0' in body
        assert "jobqueue_job_duration_seconds_bucket" in body and "jobqueue_worker_busy" in body
        assert (tmp_path / "metrics" / "notes.txt").read_text() == "mine\n"
        assert not (tmp_path / "metrics" / "counter_999999.db").exists()
    finally:
        assert stop(proc, 15) == 0
    lines = [json.loads(line) for line in (tmp_path / "w.log").read_text().splitlines() if line.startswith("{")]
    job_lines = [r for r in lines if r["msg"].startswith("job ")]
    assert job_lines and all("job_id" in r for r in job_lines)
    # jobqueue.heap: frozen once, in the supervisor, before the forks (each child inherits it)
    msgs = [r["msg"] for r in lines]
    assert msgs.count("start-up heap frozen") == 1, msgs
    assert msgs.index("start-up heap frozen") < msgs.index("worker process started"), msgs


def test_the_start_up_heap_is_frozen_before_the_first_job(harness, redis_url, tmp_path):
    """jobqueue.heap: what start-up built (imports, the catalogue, the dataset's objects, the
    metrics) is frozen before the worker takes a job, so no full collection scans it mid-job."""
    job = harness.submit("sleep", {"seconds": 0})
    proc = start_worker(redis_url, tmp_path / "w.log")
    try:
        wait_until(lambda: status(harness, job) == JobStatus.COMPLETE, 60, "the job")
    finally:
        assert stop(proc, 15) == 0
    lines = [json.loads(line) for line in (tmp_path / "w.log").read_text().splitlines() if line.startswith("{")]
    msgs = [r["msg"] for r in lines]
    frozen = [r for r in lines if r["msg"] == "start-up heap frozen"]
    assert len(frozen) == 1 and frozen[0]["frozen_objects"] > 10_000, frozen
    assert msgs.index("start-up heap frozen") < msgs.index("worker started"), msgs


def _scrape(port):
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return None


def test_every_operation_series_exists_at_zero_before_the_first_job(redis_url, tmp_path):
    """rate() cannot see a first increment made before a series' first scrape: export them at 0."""
    port = free_port()
    proc = start_worker(redis_url, tmp_path / "w.log", WORKER_METRICS_PORT=str(port))
    try:
        body = wait_until(lambda: _scrape(port), 60, "metrics")
        for outcome in ("complete", "failed", "retried"):
            assert f'jobqueue_jobs_processed_total{{operation="top_locations",outcome="{outcome}"}} 0.0' in body
        assert 'jobqueue_job_duration_seconds_count{operation="sleep"} 0.0' in body
        assert 'jobqueue_job_retries_total{operation="incidents_by_road"} 0.0' in body
    finally:
        assert stop(proc, 15) == 0


def test_supervisor_waits_longer_before_each_restart_of_a_child_that_keeps_dying(redis_url, tmp_path):
    """Ecosystem review #9: a child that died at once was restarted every 0.5 s forever. Now the wait
    doubles per death in a row soon after start (0.5, 1, 2 s ... at most 30 s)."""
    log_path = tmp_path / "w.log"
    proc = start_worker(redis_url, log_path, WORKER_CONCURRENCY="2", WORKER_METRICS_PORT=str(free_port()))

    def records():
        text = log_path.read_text() if log_path.exists() else ""
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]

    def child_of_slot_0(not_in):
        pids = [r["pid"] for r in records() if r["msg"] == "worker process started" and r["slot"] == 0]
        return pids[-1] if pids and pids[-1] not in not_in else None

    try:
        killed: list[int] = []
        for _ in range(3):
            pid = wait_until(lambda: child_of_slot_0(killed), 60, "a child in slot 0")
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        wait_until(lambda: child_of_slot_0(killed), 60, "the third restart")
    finally:
        assert stop(proc, 15) == 0
    restarts = [r for r in records() if r["msg"] == "worker process exited; restarting it"]
    assert [r["restart_in_seconds"] for r in restarts] == [0.5, 1.0, 2.0], restarts
    assert [r["deaths_in_a_row"] for r in restarts] == [1, 2, 3], restarts


def test_children_stop_when_their_supervisor_is_killed_9(harness, redis_url, tmp_path):
    """A supervisor killed with -9 passes no SIGTERM on: its children kept running, reparented to
    init, taking jobs with no metrics port, beside the worker started again in its place. Now each
    child asks Linux for a SIGTERM when its parent dies (PR_SET_PDEATHSIG) and stops warm: the job in
    hand finishes, once."""
    log_path = tmp_path / "w.log"
    proc = start_worker(redis_url, log_path, WORKER_CONCURRENCY="2", WORKER_METRICS_PORT=str(free_port()))

    def children():
        text = log_path.read_text() if log_path.exists() else ""
        lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
        return [r["pid"] for r in lines if r["msg"] == "worker process started"]

    try:
        pids = wait_until(lambda: (found := children()) and len(found) == 2 and found, 60, "two children")
        job_id = harness.submit("sleep", {"seconds": 1.0})
        wait_until(lambda: status(harness, job_id) == JobStatus.IN_PROGRESS, 30, "the job started")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        wait_until(lambda: not any(_alive(pid) for pid in pids), 30, "the children gone")
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in children():
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    job = harness.store.get(job_id)
    assert job.status == JobStatus.COMPLETE and job.attempts == 1, job  # finished by its warm stop
    assert "stopping: finishing the job in hand" in log_path.read_text()


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead and not yet reaped by init, counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_waiting_for_an_odd_data_path_says_why_it_looks_odd(redis_url, tmp_path):
    """DATA_PATH="~/x.csv" or " /data/x.csv" (quoted, a YAML string): the API's error says the '~'
    or the space is part of the name, but the worker, which waits for a file on purpose (a volume
    mounted late), logged only "data file not found; waiting for it" with a path that looked right."""
    real = tmp_path / "traffic.csv"
    real.write_text("x\n")
    for i, (path, words) in enumerate(
        [
            (f" {real}", ["white space", "part of the name", repr(str(real))]),
            (f"{real}\n", ["white space", "part of the name"]),
            ("~/traffic.csv", ["'~' is expanded by a shell only where it is unquoted", f"{tmp_path}/traffic.csv"]),
        ]
    ):
        log = tmp_path / f"w{i}.log"
        proc = start_worker(redis_url, log, DATA_PATH=path, HOME=str(tmp_path))
        try:
            wait_until(lambda log=log: "waiting for it" in log.read_text(), 60, "the wait log")
        finally:
            stop(proc, 15)
        line = next(json.loads(x) for x in log.read_text().splitlines() if "waiting for it" in x)
        assert line["data_path"] == path
        for word in words:
            assert word in line.get("note", ""), line


def _run_until_complete(harness, redis_url, tmp_path, job_id, **env):
    """A worker started with ``env`` runs ``job_id`` to complete and stops cleanly; its log file."""
    log = tmp_path / "w.log"
    proc = start_worker(redis_url, log, **env)
    try:
        wait_until(lambda: status(harness, job_id) == JobStatus.COMPLETE, 60, f"the job\n{log.read_text()[-2000:]}")
    finally:
        assert stop(proc, 15) == 0
    return log


def test_a_worker_with_log_level_warn_runs_jobs(harness, redis_url, tmp_path):
    """LOG_LEVEL=warn (or CRITICAL): a level name Python's logging knows used to stop the worker at
    start (exit 2); it now runs jobs, and writes nothing below the level."""
    job_id = harness.submit("sleep", {"seconds": 0.01})
    log = _run_until_complete(harness, redis_url, tmp_path, job_id, LOG_LEVEL="warn")
    lines = [json.loads(x) for x in log.read_text().splitlines() if x.startswith("{")]
    assert not [r for r in lines if r["level"] in ("info", "debug")], lines[:5]


def test_a_worker_takes_data_cache_mode_in_any_case(harness, redis_url, tmp_path):
    """DATA_CACHE_MODE=OFF (or ReadOnly) stopped the worker at start, exit 2, where LOG_LEVEL=info
    was taken in any case; it now runs jobs on the dataset."""
    job_id = harness.submit("top_locations", {"n": 2})
    _run_until_complete(harness, redis_url, tmp_path, job_id, DATA_CACHE_MODE="OFF")
    assert len(harness.store.get(job_id).result["top_locations"]) == 2
