"""Scale-in never cuts a job: the real worker, run with the rendered chart's env, receives the
kubelet's SIGTERM in the middle of a job and is SIGKILLed `terminationGracePeriodSeconds` later, as
the kubelet does (https://kubernetes.io/docs/concepts/workloads/pods/pod-lifecycle/#pod-termination).

Review 3.8: SHUTDOWN_GRACE_SECONDS (60) was below JOB_TIMEOUT_SECONDS (300), so a job running longer
than the grace was handed back on every scale-in, its attempt not counted, and could be cut again at
the next one. The chart now renders a grace of at least the job timeout. Times are scaled down
(a 10 s job limit); the control run gives the worker the old 1:5 grace-to-timeout ratio (2 s) and
shows a job of the same kind being cut. Job lengths leave seconds of slack for a loaded machine: the
SIGTERM may come late after the job starts, and each assertion still holds.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest

from devstack.redis_server import find_redis_server
from jobqueue import keys
from jobqueue.jobs import JobStatus
from tests.deploy.local import ChartRedis, LocalPod
from tests.deploy.manifests import one, pod_spec, render_objects, resolved_env
from tests.support.harness import Harness

pytestmark = [pytest.mark.slow, pytest.mark.skipif(find_redis_server() is None, reason="no redis-server")]

JOB_TIMEOUT = 10
OLD_GRACE = JOB_TIMEOUT * 60 / 300  # the grace the chart rendered before, at the same ratio
VALUES = {
    "config": {"jobTimeoutSeconds": JOB_TIMEOUT, "diagnosticOperations": True},
    "data": {"persistence": {"enabled": False}},
}


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.fixture
def rendered(tmp_path):
    objs = render_objects(VALUES)
    worker = one(objs, "Deployment", "worker")
    (main,) = [c for c in pod_spec(worker)["containers"] if c["name"] == "worker"]
    env = resolved_env(main, objs)
    conf = one(objs, "ConfigMap", "redis")["data"]["redis.conf"]
    from devstack.procs import free_port

    server = ChartRedis(conf, tmp_path / "redis" / "data", free_port(), env["REDIS_PASSWORD"]).start()
    try:
        yield objs, worker, env, server
    finally:
        server.stop()


def _scale_in(objs, worker, env, server, tmp_path, seconds: float, extra_env: dict[str, str] | None = None):
    """Submit a sleep job, start the pod's worker, SIGTERM it mid-job, SIGKILL it at the pod's grace.
    Returns (exit code or None if killed, the job, done notifications for it)."""
    url = f"redis://127.0.0.1:{server.port}"
    harness = Harness(
        url,
        REDIS_PASSWORD=env["REDIS_PASSWORD"],
        QUEUE_NAME=env["QUEUE_NAME"],
        REDIS_JOBS_DB=env["REDIS_JOBS_DB"],
        REDIS_QUEUE_DB=env["REDIS_QUEUE_DB"],
    )
    done = harness.jobs.pubsub()
    done.subscribe(keys.JOB_DONE_CHANNEL)
    job_id = harness.submit("sleep", {"seconds": seconds})
    harness.jobs.set(keys.waited(job_id), "1", ex=600)  # as a waiting request marks it: announced when final
    pod = LocalPod(worker, objs, tmp_path / f"pod-{seconds}", url)
    log = tmp_path / f"worker-{seconds}.log"
    proc = pod.start("worker", log, {"WORKER_METRICS_HOST": "127.0.0.1", **(extra_env or {})})
    killed = False
    try:
        _wait(
            lambda: (j := harness.store.get(job_id)) is not None and j.status == JobStatus.IN_PROGRESS,
            120,
            "the job to start",
        )
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)  # the kubelet, on scale-in
        try:
            code = proc.wait(pod_spec(worker)["terminationGracePeriodSeconds"])
        except subprocess.TimeoutExpired:
            proc.kill()  # the kubelet, at the end of the grace period
            proc.wait(10)
            killed = True
        notices = []
        while (m := done.get_message(timeout=0.2)) is not None:
            if m["type"] == "message" and job_id in str(m["data"]):
                notices.append(m["data"])
        return (None if killed else code), harness.store.get(job_id), notices, harness
    except Exception:
        print(log.read_text())
        raise
    finally:
        if proc.poll() is None:
            proc.kill()
        done.close()


def test_a_job_longer_than_the_old_grace_completes_on_scale_in(rendered, tmp_path):
    objs, worker, env, server = rendered
    assert float(env["SHUTDOWN_GRACE_SECONDS"]) >= float(env["JOB_TIMEOUT_SECONDS"]) == JOB_TIMEOUT
    code, job, notices, harness = _scale_in(objs, worker, env, server, tmp_path, seconds=OLD_GRACE + 2)
    assert code == 0, "the worker did not exit by itself within terminationGracePeriodSeconds"
    assert job.status == JobStatus.COMPLETE and job.attempts == 1, (job.status, job.attempts, job.error)
    assert len(notices) == 1, notices
    assert harness.queue.depth() == 0


def test_a_job_past_its_limit_fails_once_before_the_kubelet_kills(rendered, tmp_path):
    """The grace ends no later than the job's own limit, so the worker still exits before SIGKILL."""
    objs, worker, env, server = rendered
    code, job, notices, harness = _scale_in(objs, worker, env, server, tmp_path, seconds=JOB_TIMEOUT * 2)
    assert code == 0, "SIGKILLed: terminationGracePeriodSeconds does not cover SHUTDOWN_GRACE_SECONDS"
    assert job.status == JobStatus.FAILED and "time limit" in (job.error or ""), (job.status, job.error)
    assert len(notices) == 1 and harness.queue.depth() == 0


def test_control_the_old_grace_ratio_cuts_the_same_job(rendered, tmp_path):
    """With the grace the chart used to render (60 s against a 300 s limit, scaled), the same job is
    handed back unfinished: what the two tests above rule out."""
    objs, worker, env, server = rendered
    # cut as long as the SIGTERM comes within JOB_TIMEOUT - 2 - OLD_GRACE (6 s) of the job's start
    code, job, notices, harness = _scale_in(
        objs,
        worker,
        env,
        server,
        tmp_path,
        seconds=JOB_TIMEOUT - 2,
        extra_env={"SHUTDOWN_GRACE_SECONDS": json.dumps(OLD_GRACE)},
    )
    assert code == 0
    assert job.status == JobStatus.SUBMITTED and job.attempts == 0
    assert notices == [] and harness.queue.depth() == 1
