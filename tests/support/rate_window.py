"""SUBMIT_RATE_LIMIT counts in fixed 60 s windows (jobqueue_api.ratelimit): a test that submits
past the limit and expects a 429 fails when the minute turns between its submits, since the new
window starts counting from zero (seen once in a full run: five 202s where the fifth was to be a
429). Such a test calls this just before it counts."""

from __future__ import annotations

import time

from jobqueue_api.ratelimit import WINDOW_SECONDS


def start_counting_with(seconds: float = 5.0) -> None:
    """Return once at least ``seconds`` of the current rate-limit window are left."""
    left = WINDOW_SECONDS - time.time() % WINDOW_SECONDS
    if left < seconds:
        time.sleep(left + 0.05)
