"""10,000 jobs from 32 concurrent clients: every one acknowledged, completed once, with its own result.

A correctness test under load, not a benchmark: the figures it reports (throughput) are for
orientation; benchmarks/ measures performance properly.
"""

from __future__ import annotations

import time

import pytest

from jobqueue import keys
from tests.chaos.checks import assert_all_complete_and_right, assert_one_final_announcement, operations, reruns
from tests.chaos.load import DoneCounter, job_mix, scaled, submit_all

pytestmark = [pytest.mark.chaos, pytest.mark.slow]


@pytest.mark.timeout(600)
def test_ten_thousand_jobs_from_32_clients(stack, rng, figures):
    n_jobs = scaled(10_000, 10_000)
    stack.start_api(web_concurrency=4)
    stack.start_workers(4)
    done = DoneCounter(stack.jobs_client(), keys.JOB_DONE_CHANNEL)

    # mostly no-op sleeps (distinct durations up to 2 ms, so each result names its job) and analyses
    specs = job_mix(n_jobs, operations(), rng, sleep_share=0.7, max_sleep=0.002)
    t0 = time.monotonic()
    tally = submit_all(stack.url, specs, clients=32)
    submitted = time.monotonic()
    assert tally.statuses() == {202: n_jobs}, tally.statuses()
    acked = tally.acked()
    assert len(acked) == n_jobs, "the API handed out a job id twice"

    docs = stack.wait_all_final(acked, timeout=400)
    finished = time.monotonic()
    time.sleep(0.5)
    done.close()
    assert_all_complete_and_right(docs, acked)
    assert_one_final_announcement(done.counts, acked)
    assert len(stack.jobs_client().zrange(keys.JOB_INDEX, 0, -1)) == n_jobs, "job index holds strays or gaps"
    figures.update(
        jobs=n_jobs,
        clients=32,
        api_processes=4,
        workers=4,
        submit_per_s=round(n_jobs / (submitted - t0)),
        end_to_end_s=round(finished - t0, 1),
        cached=sum(1 for d in docs.values() if d.get("cached_from")),
        **reruns(docs),
    )
