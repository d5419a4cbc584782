"""Per-client submission rate limit (``SUBMIT_RATE_LIMIT`` per minute; 0 turns it off).

One client may not fill the queue for everyone: past its limit, ``POST /submit`` and ``POST /jobs``
answer ``429`` with ``Retry-After`` (the seconds left in the window). A client is its token's name
when named tokens are in use, else its address as the API sees it (behind an Ingress that is the
controller's, so the limit is then shared; docs/security.md). The count lives in Redis (one key
per client and 60 s window, ``keys.submit_rate``), so it holds across API processes and pods.
"""

from __future__ import annotations

import time

import redis
from flask import g, request

from jobqueue import keys

from .errors import ApiError

WINDOW_SECONDS = 60


def client_id() -> str:
    owner = g.get("jobqueue_owner")
    return f"token:{owner}" if owner else f"addr:{request.remote_addr or 'unknown'}"


def check(client: redis.Redis, limit: int) -> None:
    """Count one submission of the current client; raise a 429 beyond ``limit`` per window."""
    if limit <= 0:
        return
    now = time.time()
    window = int(now // WINDOW_SECONDS)
    key = keys.submit_rate(client_id(), window)
    pipe = client.pipeline(transaction=False)
    pipe.incr(key)
    pipe.expire(key, WINDOW_SECONDS + 5)
    count, _ = pipe.execute()
    if count > limit:
        retry = max(1, int((window + 1) * WINDOW_SECONDS - now + 0.999))
        err = ApiError(429, "rate_limited", f"more than {limit} submissions in a minute from this client; "
                       f"retry in {retry} s", retry_after=retry)
        err.headers["Retry-After"] = str(retry)
        raise err
