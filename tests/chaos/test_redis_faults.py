"""Redis stopped (cleanly, or SIGKILLed) and restarted with its AOF while clients keep submitting.

While Redis is away the API answers 503 with a JSON body (a submit whose transaction was sent when
Redis went away: 504 naming its job, which may be stored; never another 5xx); once it is back the
API recovers by itself and the workers reconnect; every job acknowledged with 202 completes.
"""

from __future__ import annotations

import itertools
import time

import pytest
import requests

from tests.chaos.checks import assert_all_complete_and_right
from tests.chaos.load import BackgroundLoad, sleep_spec
from devstack.procs import wait_until

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

DOWN_SECONDS = 3.0


def _probe(url: str) -> int | None:
    try:
        return requests.get(url + "/readyz", timeout=2).status_code
    except requests.RequestException:
        return None


@pytest.mark.timeout(300)
@pytest.mark.parametrize("how", ["clean-stop", "kill-9"])
def test_redis_restart_during_load(stack, figures, how):
    if how == "kill-9":
        # everysec answers before its write while an fsync lags (a busy disk), and a SIGKILL then
        # loses acknowledged writes: Redis's durability, not the service's: out of the question here
        stack.redis.client().config_set("appendfsync", "always")
    stack.start_api()
    stack.start_workers(2)
    stack.wait_api(path="/readyz")
    counter = itertools.count()
    make_spec = lambda: sleep_spec(next(counter) * 1e-9)  # noqa: E731  (distinct, instant jobs)

    with BackgroundLoad(stack.url, make_spec, clients=8) as load:
        wait_until(lambda: load.count() > 200, 30, "some load before the fault")
        went_down = time.monotonic()
        if how == "clean-stop":
            stack.redis.stop()
        else:
            stack.redis.kill()
        seen_down = wait_until(lambda: load.first_after(went_down, 503), 60, "a 503 while Redis is down")
        readyz_down = _probe(stack.url)
        time.sleep(DOWN_SECONDS)
        came_back = time.monotonic()
        stack.redis.start()
        first_ok = wait_until(lambda: load.first_after(came_back, 202), 30, "a 202 after Redis came back")
        wait_until(lambda: _probe(stack.url) == 200, 30, "/readyz 200 after Redis came back")
        ready_again = time.monotonic()
        time.sleep(1.0)  # some load after the recovery too
    tally = load.tally

    statuses = tally.statuses()
    assert readyz_down == 503, f"/readyz answered {readyz_down} while Redis was down"
    # 504: a submit sent as Redis went (its answer lost, the check refused): it may be stored
    assert not tally.server_errors({503, 504}), f"5xx other than 503/504: {tally.server_errors({503, 504})[:3]}"
    assert not tally.connection_errors(), f"the API itself went away: {tally.connection_errors()[:3]}"
    assert statuses[503] > 0 and statuses[202] > 0
    assert all(p.alive() for p in stack.workers), "a worker died instead of reconnecting"
    assert stack.api.alive(), "the API died"

    acked = tally.acked()
    docs = stack.wait_all_final(acked, timeout=120)  # the workers reconnected and drained it
    lost = [j for j in acked if j not in docs]
    figures.update(
        acked=len(acked),
        answered_503=statuses[503],
        lost_acked=len(lost),
        first_503_after_s=round(seen_down.at - went_down, 2),
        first_202_after_restart_s=round(first_ok.at - came_back, 2),
        readyz_200_after_restart_s=round(ready_again - came_back, 2),
    )
    # A process kill (even SIGKILL) loses nothing: with appendfsync always Redis writes the AOF
    # before it replies, and the page cache outlives the process.
    assert_all_complete_and_right(docs, acked)
