"""Per-client submission rate limit (``SUBMIT_RATE_LIMIT`` per minute; 0 turns it off).

One client may not fill the queue for everyone: past its limit, ``POST /submit`` and ``POST /jobs``
answer ``429`` with ``Retry-After`` (the seconds left in the window). A client is its token's name
when named tokens are in use, else its address as the API sees it (behind an Ingress that is the
controller's, so the limit is then shared; docs/security.md). The count lives in Redis (one key
per client and 60 s window, ``keys.submit_rate``), so it holds across API processes and pods.

The count is taken inside the group commit (``batching.py``): the call that stores a batch of
submits first counts them, one INCRBY per client of the batch (:func:`admit`), and stores only
those within their client's limit. Counting each submit on its own was a Redis round trip per
request on top of the batch's. The count is never sent twice (``jobqueue.wire``): after a lost
answer the batch is judged on the counts as they then are, so a client is never counted twice.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Sequence

import redis
from flask import g, request

from jobqueue import keys, wire

from .errors import ApiError

WINDOW_SECONDS = 60


def client_id() -> str:
    return client_of(g.get("jobqueue_owner"), request.remote_addr)


def client_of(owner: str | None, remote_addr: str | None) -> str:
    """The client a submit (or a wrong token, ``guesses.py``) is counted against: its token's
    name, else its address (:func:`address_group`)."""
    return f"token:{owner}" if owner else f"addr:{address_group(remote_addr)}"


def address_group(remote_addr: str | None) -> str:
    """The address a client is counted by: an IPv4 address as it is, an IPv6 one as its /64. A
    host or a home network is handed a whole /64 and picks its addresses in it at will (RFC 4941's
    temporary addresses), so counting each address let one client take a new budget per request.
    An IPv4 address seen through a dual-stack socket (``::ffff:a.b.c.d``) is that IPv4 address."""
    if not remote_addr:
        return "unknown"
    if ":" not in remote_addr:  # IPv4 (or a unix socket's name): no parsing on the common path
        return remote_addr
    try:
        ip = ipaddress.IPv6Address(remote_addr.split("%", 1)[0])  # without a zone (fe80::1%eth0)
    except ValueError:
        return remote_addr
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))


def admit(client: redis.Redis, limit: int, clients: Sequence[str | None]) -> list[ApiError | None]:
    """Count one submission for each entry of ``clients`` (in order; None: not counted), in one
    round trip; for each, None if within ``limit`` per window, else the 429 to answer it with.
    The same counts as one INCR per submission: a client's n submits in one batch take numbers
    count-n+1..count, and those past ``limit`` are refused (and still counted, as before)."""
    refusals: list[ApiError | None] = [None] * len(clients)
    if limit <= 0:
        return refusals
    batch: dict[str, int] = {}
    for who in clients:
        if who is not None:
            batch[who] = batch.get(who, 0) + 1
    if not batch:
        return refusals
    now = time.time()
    window = int(now // WINDOW_SECONDS)
    counters = [keys.submit_rate(who, window) for who in batch]
    sent = [
        c
        for key, n in zip(counters, batch.values())
        for c in (("INCRBY", key, str(n)), ("EXPIRE", key, str(WINDOW_SECONDS + 5)))
    ]
    try:
        counts = wire.pipelined(client, sent)[0::2]
    except wire.Unsure:
        # the answer was lost: the INCRBYs may have counted or not, and sending them again would
        # count these clients twice; judge them on the counts as they are (a read, safe to retry):
        # if the INCRBYs had not applied, this batch goes uncounted, never counted twice
        counts = [int(c or 0) for c in client.mget(counters)]
    next_number = {who: int(count) - n + 1 for (who, n), count in zip(batch.items(), counts)}
    retry = max(1, int((window + 1) * WINDOW_SECONDS - now + 0.999))
    for i, who in enumerate(clients):
        if who is None:
            continue
        number = next_number[who]
        next_number[who] = number + 1
        if number > limit:
            refusals[i] = refusal(limit, retry)
    return refusals


def refusal(limit: int, retry: int) -> ApiError:
    err = ApiError(
        429,
        "rate_limited",
        f"more than {limit} submissions in a minute from this client; retry in {retry} s",
        retry_after=retry,
    )
    err.headers["Retry-After"] = str(retry)
    return err
