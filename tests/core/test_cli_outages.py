"""``jobqueue`` while the service has an outage, or is interrupted, as a class's users meet it
(found by running the CLI against a real stack and stopping its Redis):

- ``submit --wait`` gave up after about 10 s of Redis restart (the transport's five Retry-Afters),
  whatever ``--timeout``, with "try again later" and no job id: the student submitted again and had
  two jobs. The job is stored, so the wait now rides the outage out within ``--timeout``, and when
  it gives up it names the job that stays queued.
- ``status --wait 1e10`` was an OverflowError traceback (the socket's timeout), exit 1.
- Ctrl-C was a KeyboardInterrupt traceback; now one line naming the job, exit 130.

A real API, worker and redis-server (with its append-only file, so a restart keeps the jobs)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
import requests

from devstack.paths import BIN
from devstack.procs import free_port, wait_until
from devstack.stack import running_stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("cli-outages")) as stack:
        stack.start_api(web_concurrency=1)  # no worker until a test starts one: jobs stay queued
        yield stack


@pytest.fixture
def started():
    """The CLI processes a test starts: killed and their pipes closed whatever the test's outcome
    (one left waiting, its pipe unclosed, failed a later test's check for unclosed resources)."""
    procs: list[subprocess.Popen] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def _submit_waiting(stack, tmp_path, started, *extra: str) -> tuple[subprocess.Popen, str, object]:
    """``jobqueue submit top_locations n=2 --wait`` in the background; the process, the job id it
    printed, and its stderr file."""
    err_path = tmp_path / "stderr"
    with open(err_path, "w") as err:  # the child has its own copy; an unclosed one is a ResourceWarning later
        proc = subprocess.Popen(
            [str(BIN / "jobqueue"), "submit", "top_locations", "n=2", "--wait", "--url", stack.url, *extra],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            # Ctrl-C as a terminal sends it: a run started in the background (CI's) ignores SIGINT,
            # and a child inherits that, so the signal never reached it
            preexec_fn=_default_sigint,
        )
    started.append(proc)

    def submitted() -> str | None:
        for line in err_path.read_text().splitlines():
            if line.startswith("submitted "):
                return line.split()[1]
        return None

    job_id = wait_until(submitted, 30, "the job submitted")
    return proc, job_id, err_path


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_while_waiting_is_one_line_naming_the_job(stack, tmp_path, started):
    proc, job_id, err_path = _submit_waiting(stack, tmp_path, started)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=20)
    assert proc.returncode == 130, err_path.read_text()
    text = err_path.read_text()
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text
    assert f"interrupted; job {job_id} is stored" in text and f"jobqueue status {job_id}" in text, text
    assert stack.status(job_id)["status"] == "submitted"  # still queued


def test_an_outage_past_the_timeout_names_the_job_that_stays_queued(stack, tmp_path, started):
    proc, job_id, err_path = _submit_waiting(stack, tmp_path, started, "--timeout", "6")
    stack.redis.stop()
    try:
        proc.communicate(timeout=30)
        assert proc.returncode == 3, err_path.read_text()
    finally:
        stack.redis.start()
    text = err_path.read_text()
    assert "Traceback" not in text and "do not submit it again" in text and f"jobqueue status {job_id}" in text
    assert stack.status(job_id)["status"] == "submitted"


def test_a_wait_rides_out_a_redis_restart_longer_than_the_retries(stack, tmp_path, started):
    proc, job_id, err_path = _submit_waiting(stack, tmp_path, started, "--timeout", "90")
    watch = subprocess.Popen(
        [str(BIN / "jobqueue"), "watch", job_id, "--timeout", "90", "--json", "--url", stack.url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    started.append(watch)
    stack.redis.stop()
    time.sleep(15)  # the transport's five Retry-Afters of 2 s are spent by now: they gave up here
    assert proc.poll() is None, err_path.read_text()
    assert watch.poll() is None, watch.communicate()
    stack.redis.start()
    stack.start_worker()
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, err_path.read_text()
    assert len(json.loads(out)["top_locations"]) == 2
    watched, watch_err = watch.communicate(timeout=60)
    assert watch.returncode == 0 and json.loads(watched)["status"] == "complete", watch_err
    assert stack.status(job_id)["status"] == "complete"


def test_status_with_a_wait_past_any_socket_timeout_answers(stack):
    job_id = stack.submit("top_locations", {"n": 1})
    if not stack.live_workers():
        stack.start_worker()
    stack.wait_all_final([job_id], 60)
    r = subprocess.run(
        [str(BIN / "jobqueue"), "status", job_id, "--wait", "1e10", "--url", stack.url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert json.loads(r.stdout)["status"] == "complete"


def test_watch_of_a_job_never_seen_does_not_call_it_stored(stack):
    """`jobqueue watch <id>` while Redis was down from the start ended with "job <id> is stored and
    carries on: ... do not submit it again", though no answer had named the job (a mistyped id too)."""
    job_id = "3f2b8c4e-1d2a-4b5c-9e8f-0a1b2c3d4e5f"  # no such job
    stack.redis.stop()
    try:
        r = subprocess.run(
            [str(BIN / "jobqueue"), "watch", job_id, "--timeout", "1", "--url", stack.url],
            capture_output=True,
            text=True,
            timeout=90,
        )
    finally:
        stack.redis.start()
    assert r.returncode == 3, r.stderr
    assert "redis_unavailable" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert "is stored" not in r.stderr and "do not submit it again" not in r.stderr, r.stderr


@pytest.mark.parametrize("wait", [[], ["--wait"]], ids=["submit", "submit-wait"])
def test_timeout_bounds_the_retries_of_503s(stack, wait):
    """With Redis stopped the API answers 503 with Retry-After 2: `submit --timeout 4` retried five
    times, about 11 s, before giving up, and said nothing of the timeout."""
    stack.redis.stop()
    try:
        start = time.monotonic()
        r = subprocess.run(
            [str(BIN / "jobqueue"), "submit", "top_locations", "n=2", *wait, "--timeout", "4", "--url", stack.url],
            capture_output=True,
            text=True,
            timeout=60,
        )
        took = time.monotonic() - start
    finally:
        stack.redis.start()
    assert r.returncode == 3, r.stderr
    assert took < 6.5, (took, r.stderr)
    assert "redis_unavailable" in r.stderr and "gave up at --timeout 4s" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and r.stdout == "", r.stderr


SLOW_IMPORT = """import importlib.abc, sys, time
class Slow(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "requests":
            sys.meta_path.remove(self)
            time.sleep({seconds})
sys.meta_path.insert(0, Slow())
"""


def test_timeout_counts_the_time_the_command_took_to_load(tmp_path):
    """On a loaded machine the client's modules took seconds to load (3.5 s measured beside four
    busy processes), and ``--timeout 4`` counted only from after them: the command gave up 7.9 s
    after it was started. The timeout is the user's, from the command's start."""
    (tmp_path / "sitecustomize.py").write_text(SLOW_IMPORT.format(seconds=3))  # requests loads in 3 s
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens: the connection is refused, and retried
    start = time.monotonic()
    r = subprocess.run(
        [str(BIN / "jobqueue"), "submit", "top_locations", "n=2", "--timeout", "3.5", "--url", url],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
    )
    took = time.monotonic() - start
    assert r.returncode == 3 and "connection refused" in r.stderr, r.stderr
    assert 3 <= took < 3 + 3.5, (took, r.stderr)  # before: the 3 s loading, then 3.5 s of retries


# the client's modules load in LOADING s (sitecustomize delays the requests import), and the job
# waited for never ends (no worker): the command must end at TIMEOUT, not LOADING + TIMEOUT
LOADING, TIMEOUT = 6, 9
# past TIMEOUT for the interpreter's own start (outside the count) and its exit, on a loaded
# machine; still under LOADING + TIMEOUT, which every run took before
MARGIN = 5.0


@pytest.fixture(scope="module")
def idle(tmp_path_factory):
    """An API and no worker for the whole module: a job submitted stays queued."""
    with running_stack(tmp_path_factory.mktemp("cli-idle")) as stack:
        stack.start_api(web_concurrency=1)
        yield stack


def _slowly_loaded(tmp_path, *command: str) -> tuple[subprocess.CompletedProcess, float]:
    """``jobqueue *command`` with its modules loading in LOADING s: its result and how long it took."""
    (tmp_path / "sitecustomize.py").write_text(SLOW_IMPORT.format(seconds=LOADING))
    start = time.monotonic()
    r = subprocess.run(
        [str(BIN / "jobqueue"), *command],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
    )
    return r, time.monotonic() - start


def test_submit_wait_ends_at_the_timeout_counted_from_the_start_of_the_command(idle, tmp_path):
    """``submit --wait --timeout N`` counted its wait for the job from after its modules loaded
    and the operations were read: with no worker it gave up LOADING + N s after it was started."""
    r, took = _slowly_loaded(
        tmp_path, "submit", "top_locations", "n=2", "--wait", "--timeout", str(TIMEOUT), "--url", idle.url
    )
    assert r.returncode == 4 and f"still submitted after {TIMEOUT}s" in r.stderr, r.stderr
    assert TIMEOUT <= took < TIMEOUT + MARGIN, (took, r.stderr)


def test_watch_ends_at_the_timeout_counted_from_the_start_of_the_command(idle, tmp_path):
    """``watch --timeout N`` likewise counted from after its modules loaded."""
    answer = requests.post(f"{idle.url}/submit", json={"operation": "top_locations", "params": {"n": 2}}, timeout=30)
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["job_id"]
    r, took = _slowly_loaded(tmp_path, "watch", job_id, "--timeout", str(TIMEOUT), "--url", idle.url)
    assert r.returncode == 4 and f"still submitted after {TIMEOUT}s" in r.stderr, r.stderr
    assert TIMEOUT <= took < TIMEOUT + MARGIN, (took, r.stderr)
