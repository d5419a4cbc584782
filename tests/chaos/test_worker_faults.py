"""Workers killed again and again under load: no job is lost, each ends with exactly one result.

tests/worker covers one kill -9 and one SIGTERM of a single job; these are the repeated versions
under a 1,000-job load (scaled down under CI=true), with the re-runs counted and reported.
"""

from __future__ import annotations

import signal
import time

import pytest

from jobqueue import keys
from tests.chaos.checks import assert_all_complete_and_right, assert_one_final_announcement, operations, reruns
from tests.chaos.load import DoneCounter, job_mix, scaled, sleep_spec, submit_all

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

WORKERS = 4


def _busy_pids(stack) -> dict[int, str]:
    """pid -> job id for every worker running a job right now (worker ids are host:pid:random)."""
    busy = stack.queue_client().hgetall(keys.WORKERS_BUSY)
    return {int(worker.split(":")[-2]): job for worker, job in busy.items()}


@pytest.mark.timeout(600)
def test_kill_9_random_workers_again_and_again_during_load(stack, rng, figures):
    n_jobs = scaled(1000, 300)
    max_kills = scaled(40, 12)
    stack.start_api()
    stack.start_workers(WORKERS)
    done = DoneCounter(stack.jobs_client(), keys.JOB_DONE_CHANNEL)

    specs = job_mix(n_jobs, operations(), rng, sleep_share=0.4, max_sleep=0.3)
    tally = submit_all(stack.url, specs, clients=16)
    assert tally.statuses() == {202: n_jobs}, tally.statuses()
    acked = tally.acked()

    kills = mid_job = 0
    started = time.monotonic()
    while kills < max_kills and time.monotonic() - started < 300:
        time.sleep(rng.uniform(0.2, 0.8))
        docs = stack.job_docs(acked)
        if sum(d["status"] == "complete" for d in docs.values()) > 0.9 * n_jobs:
            break  # leave the tail alone so the test ends
        busy = _busy_pids(stack)
        live = stack.live_workers()
        candidates = [w for w in live if w.pid in busy] or live
        victim = rng.choice(candidates)
        mid_job += victim.pid in busy
        victim.kill9()
        kills += 1
        stack.start_worker()  # a Deployment would start a replacement too
    docs = stack.wait_all_final(acked, timeout=240)
    elapsed = time.monotonic() - started
    time.sleep(0.5)  # let the last announcements arrive
    done.close()

    assert kills >= min(max_kills, 5), f"only {kills} kills happened: the load finished too soon to mean much"
    assert_all_complete_and_right(docs, acked)
    assert_one_final_announcement(done.counts, acked)
    rr = reruns(docs)
    discarded = sum(w.log_text().count('"job outcome discarded"') for w in stack.workers)
    figures.update(
        jobs=n_jobs,
        workers=WORKERS,
        kills=kills,
        kills_mid_job=mid_job,
        **rr,
        outcomes_discarded_by_fencing=discarded,
        seconds=round(elapsed, 1),
        lease_seconds=float(stack.base_env()["JOB_LEASE_SECONDS"]),
    )
    assert rr["reruns"] <= kills * 32, "re-runs are bounded by what the killed workers held"


@pytest.mark.timeout(300)
def test_sigterm_to_busy_workers_under_load_finishes_their_jobs(stack, rng, figures):
    """SIGTERM mid-job, repeatedly: the job finishes on that worker, which exits 0 within the grace."""
    grace = 20.0
    rounds = scaled(6, 3)
    stack.start_api()
    stack.start_workers(3, SHUTDOWN_GRACE_SECONDS=str(grace))
    specs = [sleep_spec(rng.uniform(0.8, 1.5) + i * 1e-9) for i in range(scaled(60, 30))]
    tally = submit_all(stack.url, specs, clients=8)
    acked = tally.acked()
    assert len(acked) == len(specs)

    exits = []
    for _ in range(rounds):
        try:
            busy = _wait_busy(stack)
        except TimeoutError:
            break
        pid, job_id = next(iter(busy.items()))
        victim = stack.worker_by_pid(pid)
        assert victim is not None, f"busy worker pid {pid} is not one of ours"
        t0 = time.monotonic()
        victim.signal(signal.SIGTERM)
        code = victim.wait_exit(grace + 10)
        took = time.monotonic() - t0
        exits.append(round(took, 2))
        assert code == 0, f"worker exited {code} after SIGTERM:\n{victim.log_text()[-2000:]}"
        assert took <= grace + 5, f"worker took {took:.1f} s to stop (grace {grace} s)"
        doc = stack.job_docs([job_id])[job_id]
        assert doc["status"] == "complete", f"the job in hand was not finished: {doc['status']}"
        assert doc["worker"].split(":")[-2] == str(pid), "another worker finished it: it was re-run"
        stack.start_worker(SHUTDOWN_GRACE_SECONDS=str(grace))

    assert len(exits) >= min(rounds, 2), "too few SIGTERMs landed on a busy worker to mean anything"
    docs = stack.wait_all_final(acked, timeout=180)
    assert_all_complete_and_right(docs, acked)
    rr = reruns(docs)
    figures.update(sigterms=len(exits), exit_seconds=exits, **rr)
    assert rr["reruns"] == 0, "a graceful stop must never cost a re-run"


def _wait_busy(stack, timeout: float = 30.0) -> dict[int, str]:
    from devstack.procs import wait_until

    ours = {w.pid for w in stack.live_workers()}
    return wait_until(lambda: {p: j for p, j in _busy_pids(stack).items() if p in ours}, timeout, "a busy worker")
