"""Per-client submission rate limit (``SUBMIT_RATE_LIMIT`` per sliding
``SUBMIT_RATE_WINDOW_SECONDS``, a minute by default; 0 turns it off).

One client may not fill the queue for everyone: past its limit, ``POST /submit`` and ``POST /jobs``
answer ``429`` with ``Retry-After`` (the seconds until a submit is admitted again). A client is its
token's name when named tokens are in use, else its address as the API sees it (behind an Ingress
that is the controller's, so the limit is then shared; docs/security.md). The count lives in Redis
(one key per client and fixed window, ``keys.submit_rate``), so it holds across API processes and
pods.

The window slides: a submit is judged on its client's count in the current fixed window plus the
previous window's count weighted by the share of that window still inside the last
``window_seconds``. Fixed windows alone let a client send its limit just before a window's edge
and as many just after, twice the limit in a second. Two counters per client rather than one entry
per submit (the wrong-token budget's sorted set, ``guesses.py``): the previous count is read with an
``MGET`` in the same round trip, once per client and window in each API process (that window is
over; :class:`PreviousCounts`), not a member per submit to add and trim. The weighting assumes the
previous window's submits were spread evenly over it: a burst at a window's edge is refused, but
submits bunched at the end of one window and spread over the next can reach just under twice the
limit over one window's span (never within a second, as before).

The count is taken inside the group commit (``batching.py``): the call that stores a batch of
submits first counts them, one INCRBY per client of the batch (and, for a client's first batch
in a window, an MGET of its previous window's count), in one round trip (:func:`admit`), and stores only those within their client's
limit. Counting each submit on its own was a Redis round trip per
request on top of the batch's. The count is never sent twice (``jobqueue.wire``): after a lost
answer the batch is judged on the counts as they then are, so a client is never counted twice.
"""

from __future__ import annotations

import ipaddress
import math
import time
import weakref
from collections.abc import Sequence

import redis
from flask import g, request

from jobqueue import keys, wire

from .errors import ApiError


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


def admit(
    client: redis.Redis, limit: int, clients: Sequence[str | None], window_seconds: int = 60
) -> list[ApiError | None]:
    """Count one submission for each entry of ``clients`` (in order; None: not counted), in one
    round trip; for each, None if within ``limit`` per sliding window, else the 429 to answer it
    with. A client's n submits in one batch take numbers count-n+1..count of its current window;
    one is admitted while the previous window's count, weighted by the share of it still inside
    the sliding window and rounded, plus its number is at most ``limit``. Those refused are given back (one
    more round trip, only when some are refused), so a client that keeps sending past its limit
    still gets its limit per window, and ``Retry-After`` says when the next one will be admitted."""
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
    window = int(now // window_seconds)
    weight = 1 - (now - window * window_seconds) / window_seconds  # of the previous window, still inside
    counters = [keys.submit_rate(who, window) for who in batch]
    previous = PREVIOUS.setdefault(client, PreviousCounts())
    unknown = [who for who in batch if previous.get(window, who) is None]
    ttl = str(2 * window_seconds + 5)  # counted in this window, read as the previous one in the next
    sent: list[tuple[str, ...]] = [
        c for key, n in zip(counters, batch.values()) for c in (("INCRBY", key, str(n)), ("EXPIRE", key, ttl))
    ]
    if unknown:
        sent.append(("MGET", *[keys.submit_rate(who, window - 1) for who in unknown]))
    settled = True
    try:
        replies = wire.pipelined(client, sent)
        counts = replies[0 : 2 * len(batch) : 2]
        read = dict(zip(unknown, [int(c or 0) for c in replies[-1]] if unknown else []))
        for who, count in read.items():
            previous.keep(window, who, count)
        before = [read[who] if who in read else previous.get(window, who) for who in batch]
    except wire.Unsure:
        # the answer was lost: the INCRBYs may have counted or not, and sending them again would
        # count these clients twice; judge them on the counts as they are (a read, safe to retry):
        # if the INCRBYs had not applied, this batch goes uncounted, never counted twice; and
        # nothing is given back, since what was counted is not known
        read = client.mget(counters + [keys.submit_rate(who, window - 1) for who in batch])
        counts, before = read[: len(counters)], read[len(counters) :]
        settled = False
    # the previous window's count, weighted, to the nearest whole submit: a few submits early in
    # the last window weigh nothing near its end (a fraction of one cost a whole submit), and a
    # limit of 1 lets the next submit in half a window into the next, not a whole one
    carried = {who: math.floor(int(prior or 0) * weight + 0.5) for who, prior in zip(batch, before)}
    next_number = {who: int(count or 0) - n + 1 for (who, n), count in zip(batch.items(), counts)}
    refused: dict[str, list[int]] = {}
    for i, who in enumerate(clients):
        if who is None:
            continue
        number = next_number[who]
        next_number[who] = number + 1
        if carried[who] + number > limit:
            refused.setdefault(who, []).append(i)
    given_back: list[tuple[str, ...]] = []
    for who, key, count, prior in zip(batch, counters, counts, before):
        if who not in refused:
            continue
        kept = int(count or 0) - (len(refused[who]) if settled else 0)
        retry = max(1, math.ceil(next_room(limit, int(prior or 0), kept, now, window, window_seconds) - now))
        for i in refused[who]:
            refusals[i] = refusal(limit, window_seconds, retry)
        if settled:
            given_back.append(("DECRBY", key, str(len(refused[who]))))
    if given_back:
        try:
            wire.pipelined(client, given_back)
        except (redis.exceptions.RedisError, wire.Unsure):
            pass  # left counted: the client waits a little longer, never gets more than its limit
    return refusals


class PreviousCounts:
    """This process's copy of its clients' counts in the previous window. That window is over, so
    its count no longer grows (a refused submit given back late only lowers it: the copy is then
    stricter), and only a client's first batch in a window reads it: after that a batch sends
    what it sent with fixed windows, an INCRBY and an EXPIRE per client. Bounded: past
    :data:`MAX_CLIENTS` a client's count is read again each time, never guessed."""

    def __init__(self) -> None:
        self.window = -1
        self.counts: dict[str, int] = {}

    def get(self, window: int, who: str) -> int | None:
        return self.counts.get(who) if window == self.window else None

    def keep(self, window: int, who: str, count: int) -> None:
        if window != self.window:
            self.window, self.counts = window, {}
        if len(self.counts) < MAX_CLIENTS:
            self.counts[who] = count


MAX_CLIENTS = 10_000  # per process: clients whose previous window's count it keeps
# per Redis client (an app's connection to its Redis): two apps in one process on two Redis servers
# (tests) do not share copies
PREVIOUS: weakref.WeakKeyDictionary[redis.Redis, PreviousCounts] = weakref.WeakKeyDictionary()


def next_room(limit: int, prior: int, kept: int, now: float, window: int, seconds: int) -> float:
    """When a client with ``prior`` submits in the previous window and ``kept`` in the current
    one (``window``, of ``seconds``) may submit again: the first moment the weighted count leaves
    room for one more, in this window or (``kept`` fills it) the next."""
    start = window * seconds
    room = limit - kept - 1 + 0.5  # the weighted count is rounded: below room + 0.5 it is room
    if room > 0:
        if prior < room:
            return now
        return start + seconds * (1 - room / prior)
    start += seconds  # the next window: ``kept`` is then the previous one's count
    if kept < limit - 0.5:
        return start
    return start + seconds * (1 - (limit - 0.5) / kept)


def refusal(limit: int, window_seconds: int, retry: int) -> ApiError:
    err = ApiError(
        429,
        "rate_limited",
        f"more than {limit} submissions within {window_seconds} s from this client; retry in {retry} s",
        retry_after=retry,
    )
    err.headers["Retry-After"] = str(retry)
    return err
