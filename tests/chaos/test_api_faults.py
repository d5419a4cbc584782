"""gunicorn worker processes of the API SIGKILLed under load: gunicorn replaces them, clients see no 5xx.

A request in flight on the killed process, or a keep-alive connection it held, loses its TCP
connection (the client sees a reset, not an HTTP status); such a request may or may not have
created its job, and the client was never told its id, so nothing it was promised is lost. Every
202-acknowledged job completes.
"""

from __future__ import annotations

import itertools
import os
import signal
import time

import pytest

from tests.chaos.checks import assert_all_complete_and_right
from tests.chaos.load import BackgroundLoad, scaled, sleep_spec
from devstack.procs import alive, wait_until

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

API_PROCESSES = 3
CLIENTS = 12


@pytest.mark.timeout(300)
def test_gunicorn_replaces_killed_api_processes_under_load(stack, rng, figures):
    kills = scaled(8, 4)
    stack.start_api(web_concurrency=API_PROCESSES)
    stack.start_workers(2)
    wait_until(lambda: len(stack.api_worker_pids()) == API_PROCESSES, 30, "all gunicorn workers up")
    counter = itertools.count()
    make_spec = lambda: sleep_spec(next(counter) * 1e-9)  # noqa: E731

    replaced_in = []
    with BackgroundLoad(stack.url, make_spec, clients=CLIENTS) as load:
        wait_until(lambda: load.count() > 100, 30, "some load before the first kill")
        for _ in range(kills):
            before = stack.api_worker_pids()
            victim = rng.choice(before)
            t0 = time.monotonic()
            os.kill(victim, signal.SIGKILL)
            wait_until(lambda victim=victim: not alive(victim), 60, f"gunicorn worker {victim} to die")
            wait_until(
                lambda victim=victim: (
                    len(stack.api_worker_pids()) == API_PROCESSES and victim not in stack.api_worker_pids()
                ),
                30,
                "gunicorn to replace the killed worker",
            )
            replaced_in.append(round(time.monotonic() - t0, 2))
            time.sleep(rng.uniform(0.3, 1.0))
        time.sleep(1.0)
    tally = load.tally

    assert stack.api.alive(), "the gunicorn master died"
    assert not tally.server_errors(allowed=set()), f"5xx seen: {tally.server_errors(allowed=set())[:3]}"
    acked = tally.acked()
    docs = stack.wait_all_final(acked, timeout=120)
    assert_all_complete_and_right(docs, acked)
    resets = len(tally.connection_errors())
    figures.update(
        kills=kills, requests=len(tally.outcomes), acked=len(acked), connection_resets=resets, replaced_in_s=replaced_in
    )
    # gthread workers keep several clients' connections (keep-alive): a kill drops at most those
    assert resets <= kills * CLIENTS, "more dropped connections than the killed processes could hold"
