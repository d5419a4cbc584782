"""A MULTI/EXEC transaction of plain string commands, packed in one join and sent through
redis-py's connection API (``send_packed_command``, ``read_response``).

Why not ``client.pipeline(transaction=True)``: the API's group commit sends one MSET, a few ZADDs
and an RPUSH over a batch of jobs (about a hundred arguments), and redis-py's pipeline passes each
argument through its generic encoder and grows the request by repeated concatenation: 40% of the
call's client CPU. Everything else is redis-py's: the pool hands out the connection (and replaces a
dead one), replies are parsed by the connection's own parser (so errors arrive as the same
exception classes), and a connection failure is retried as a pipeline would be (the connection's
``Retry``, disconnecting before each new attempt).
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


def transaction(client: redis.Redis, commands: Sequence[Command]) -> list[Any]:
    """Run ``commands`` as one MULTI/EXEC; their replies in order. A command Redis refuses as it
    queues it (out of memory, read-only, a wrong argument count) aborts the whole transaction, and
    that first refusal is raised; an error reply inside EXEC (e.g. WRONGTYPE) is raised after the
    others were applied, as Redis applies them."""
    pool = client.connection_pool
    encoder = pool.get_encoder()
    payload = [pack([("MULTI",), *commands, ("EXEC",)], encoder.encoding, encoder.encoding_errors)]
    conn = pool.get_connection()
    try:
        return conn.retry.call_with_retry(lambda: _exchange(conn, payload, len(commands)),
                                          lambda error: conn.disconnect())
    finally:
        pool.release(conn)


def _exchange(conn: Any, payload: list[bytes], queued: int) -> list[Any]:
    """Send, then read every reply even after a refusal, so the connection stays in step (redis-py
    disconnects it itself when a send or a read fails part-way)."""
    conn.send_packed_command(payload)
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
