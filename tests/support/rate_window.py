"""SUBMIT_RATE_LIMIT counted in fixed 60 s windows (jobqueue_api.ratelimit): a test that submits
past the limit and expects a 429 failed when the minute turned between its submits, since the new
window started counting from zero (seen once in a full run: five 202s where the fifth was to be a
429). The window slides now, the previous window's count weighted by what of it is still inside;
a test that counts exactly still starts well inside a window, so that weighting decides nothing.
Such a test calls this just before it counts."""

from __future__ import annotations

import time

from jobqueue.settings import SPEC

WINDOW_SECONDS = int(SPEC["SUBMIT_RATE_WINDOW_SECONDS"][0])  # the default window


def start_counting_with(seconds: float = 5.0) -> None:
    """Return once at least ``seconds`` of the current rate-limit window are left."""
    left = WINDOW_SECONDS - time.time() % WINDOW_SECONDS
    if left < seconds:
        time.sleep(left + 0.05)
