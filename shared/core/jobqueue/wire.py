"""A MULTI/EXEC transaction of plain string commands, packed in one join and sent through
redis-py's connection API (``send_packed_command``, ``read_response``).

Why not ``client.pipeline(transaction=True)``: the API's group commit sends one MSET, a few ZADDs
and an RPUSH over a batch of jobs (about a hundred arguments), and redis-py's pipeline passes each
argument through its generic encoder and grows the request by repeated concatenation: 40% of the
call's client CPU. Everything else is redis-py's: the pool hands out the connection (and replaces a
dead one), replies are parsed by the connection's own parser (so errors arrive as the same
exception classes).

One thing differs from the pipeline on purpose: a connection failure once the transaction may have
reached Redis (while sending it or waiting for its answer: a dropped connection, a socket timeout)
is not retried by sending it again, since Redis may have applied it and only its answer was lost;
a pipeline's retry would apply it twice. It raises :class:`Unsure` instead, and the caller, who
knows what the commands write, finds out (a transaction applies all or nothing). A failure to
connect, before anything was sent, is retried as redis-py retries it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis

Command = Sequence[str]


def pack(commands: Sequence[Command], encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """The commands in the Redis protocol (RESP): ``*<argc>`` then ``$<len>``-prefixed arguments."""
    out: list[bytes] = []
    for args in commands:
        out.append(b"*%d\r\n" % len(args))
        for arg in args:
            data = arg.encode(encoding, errors)
            out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class Unsure(redis.exceptions.ConnectionError):
    """The connection failed after the transaction was sent, or while sending it: Redis may have
    applied it (and only the answer was lost) or not. A ConnectionError, so whoever treats Redis
    as unreachable still does; the connection is closed (the pool replaces it)."""


def transaction(client: redis.Redis, commands: Sequence[Command]) -> list[Any]:
    """Run ``commands`` as one MULTI/EXEC; their replies in order. A command Redis refuses as it
    queues it (out of memory, read-only, a wrong argument count) aborts the whole transaction, and
    that first refusal is raised; an error reply inside EXEC (e.g. WRONGTYPE) is raised after the
    others were applied, as Redis applies them. A connection failure after the send started raises
    :class:`Unsure` (never sent twice)."""
    pool = client.connection_pool
    encoder = pool.get_encoder()
    payload = [pack([("MULTI",), *commands, ("EXEC",)], encoder.encoding, encoder.encoding_errors)]
    conn = pool.get_connection()   # connected (the pool reconnects one Redis closed, with retries)
    try:
        conn.check_health()   # an idle connection's PING (and reconnect) comes before the unsure part
        try:
            return _exchange(conn, payload, len(commands))
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            conn.disconnect()   # redis-py did on most failures already; a half-read connection never returns
            raise Unsure(f"the transaction's answer was lost ({exc}); it may or may not have been applied") from exc
    finally:
        pool.release(conn)


def _exchange(conn: Any, payload: list[bytes], queued: int) -> list[Any]:
    """Send, then read every reply even after a refusal, so the connection stays in step (redis-py
    disconnects it itself when a send or a read fails part-way)."""
    conn.send_packed_command(payload, check_health=False)
    refused: list[redis.ResponseError] = []
    for _ in range(queued + 1):   # MULTI's +OK, then +QUEUED (or a refusal) per command
        try:
            conn.read_response()
        except redis.ResponseError as exc:
            refused.append(exc)
    try:
        replies = conn.read_response()
    except redis.exceptions.ExecAbortError:
        if refused:
            raise refused[0] from None
        raise
    for reply in replies:
        if isinstance(reply, redis.ResponseError):
            raise reply
    return replies
