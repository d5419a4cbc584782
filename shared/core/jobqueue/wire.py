"""A MULTI/EXEC transaction (or a plain pipeline) of string commands, packed in one join and sent
through redis-py's connection API (``send_packed_command``, ``read_response``).

Why not ``client.pipeline(transaction=True)``: the API's group commit sends one MSET, a few ZADDs
and an RPUSH over a batch of jobs (about a hundred arguments), and redis-py's pipeline passes each
argument through its generic encoder and grows the request by repeated concatenation: 40% of the
call's client CPU. Everything else is redis-py's: the pool hands out the connection (and replaces a
dead one), replies are parsed by the connection's own parser (so errors arrive as the same
exception classes).

One thing differs from redis-py's pipeline on purpose: a connection failure once the commands may have
reached Redis (while sending it or waiting for its answer: a dropped connection, a socket timeout)
is not retried by sending it again, since Redis may have applied it and only its answer was lost;
a pipeline's retry would apply it twice. It raises :class:`Unsure` instead, and the caller, who
knows what the commands write, finds out (a transaction applies all or nothing) or gives up. A failure to
connect, before anything was sent, is retried as redis-py retries it. For that check to mean
anything the lost attempt must not arrive after it: its socket is closed with a reset, which drops
whatever its kernel had not sent yet (:func:`_abort_on_close`); and what had reached Redis is
fenced by the caller with ``CLIENT KILL ID`` of the connection that sent it (:attr:`Unsure.client_id`,
learnt when the connection was made: :func:`learn_client_id`).

One reply is a refusal that redis-py raises as a connection error: ``LOADING`` (Redis restarted and
is reading its dataset back; ``BusyLoadingError``), after which redis-py has closed the connection.
Where that reply alone settles what applied it is raised as it is, not as :class:`Unsure`: inside
MULTI Redis marks the transaction failed when it refuses a command it is queuing, so EXEC applies
nothing; a single command refused ran nothing. A plain pipeline of several stays unsure (the
commands behind the refused one may have been read after the loading ended).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Sequence
from typing import Any

import redis

Command = Sequence[str | bytes]


class Packed(bytes):
    """One command already in the protocol (:func:`packed`): :func:`pack` copies it as it is."""


def pack(commands: Sequence[Command | Packed], encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """The commands in the Redis protocol (RESP): ``*<argc>`` then ``$<len>``-prefixed arguments."""
    out: list[bytes] = []
    for args in commands:
        if isinstance(args, Packed):
            out.append(args)
            continue
        out.append(b"*%d\r\n" % len(args))
        out.append(pack_args(args, encoding, errors))
    return b"".join(out)


def pack_args(args: Command, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """Arguments in the protocol, without the command's ``*<argc>`` header: a part that many
    commands share (a script call's sha, keys and context) is packed once, then :func:`packed`."""
    out: list[bytes] = []
    for arg in args:
        # bytes (a PNG result) go as they are
        data = arg if isinstance(arg, bytes) else arg.encode(encoding, errors)
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def packed(head: bytes, head_count: int, args: Command, encoding: str = "utf-8", errors: str = "strict") -> Packed:
    """A command whose first ``head_count`` arguments were packed once (``head``, by
    :func:`pack_args`), followed by ``args``."""
    return Packed(b"*%d\r\n%s%s" % (head_count + len(args), head, pack_args(args, encoding, errors)))


class Unsure(redis.exceptions.ConnectionError):
    """The connection failed after the transaction was sent, or while sending it: Redis may have
    applied it (and only the answer was lost) or not. A ConnectionError, so whoever treats Redis
    as unreachable still does; the connection is closed (the pool replaces it). ``client_id``:
    Redis's id of the connection that sent it (None when unknown), so the caller can fence it."""

    client_id: int | None = None


class Unatomic(redis.exceptions.ResponseError):
    """MULTI itself was refused (an ACL user without ``multi``): Redis then ran each command of the
    transaction on its own, as a pipeline, and EXEC failed ("EXEC without MULTI"). ``refusal`` is
    MULTI's error; ``replies`` each command's own reply, an error reply as its exception: with none
    among them, every command applied (not atomically)."""

    def __init__(self, refusal: redis.exceptions.ResponseError, replies: list[Any]) -> None:
        super().__init__(str(refusal))
        self.refusal = refusal
        self.replies = replies


class SetupRefused(redis.exceptions.ConnectionError):
    """Redis refused a new connection's set-up (``SELECT`` of a db it does not have: ``databases 1``
    on many managed Redis; ``CLIENT SETNAME``; the credentials, ``AUTH``): no connection, so
    nothing was sent. A deployment error, not a passing state: before, a db refused reached the API
    as a 500 on every route that needs Redis, and a wrong password as "unreachable, retry shortly"
    (a keyed submit as 504, "may have been stored"). ``command`` is what was refused (``AUTH``
    for the credentials)."""

    def __init__(self, message: str, command: str) -> None:
        super().__init__(message)
        self.command = command


def _credentials_refused(exc: redis.exceptions.RedisError, conn: Any) -> SetupRefused:
    """A wrong password or user (``WRONGPASS``), none where Redis wants one (``NOAUTH``), or one
    where Redis has none: redis-py's AuthenticationError, a ConnectionError, as :class:`SetupRefused`.
    A password sent with quotes around it is said to have them (not shown): REDIS_PASSWORD="pw" in
    an env file for docker or compose keeps them, and only "invalid username-password pair" was said."""
    password = str(getattr(conn, "password", None) or "")
    quoted = len(password) >= 2 and password[0] == password[-1] and password[0] in "\"'"
    hint = (
        " (the password sent begins and ends with a quote, as an env file for docker or compose keeps "
        "them: write REDIS_PASSWORD without, unless they are part of the password)"
        if quoted
        else ""
    )
    return SetupRefused(f"Redis refused this service's credentials: {exc}{hint}", "AUTH")


def _set_up(conn: Any, handshake: Any, db: int | None = None) -> None:
    """redis-py's handshake (AUTH, HELLO, CLIENT SETNAME, SELECT), its refusals raised as
    :class:`SetupRefused` naming the db (``db``, else the connection's) or the credentials (an ACL
    refusal stays a NoPermissionError: it names the command)."""
    try:
        handshake()
    except redis.exceptions.AuthenticationError as exc:
        raise _credentials_refused(exc, conn) from exc
    except redis.exceptions.NoPermissionError:
        raise
    except redis.exceptions.ResponseError as exc:
        db = getattr(conn, "db", 0) if db is None else db
        command = f"SELECT {db}" if "DB index" in str(exc) or "invalid DB" in str(exc) else "the connection set-up"
        raise SetupRefused(f"Redis refused {command}: {exc}", command) from exc


def learn_client_id(conn: Any, also_select: Sequence[int] = ()) -> None:
    """A pool's ``redis_connect_func`` (``connections.py``): redis-py's handshake, then ``CLIENT ID``,
    kept with the socket, so the id of a connection whose answer is lost is known without asking
    the Redis that stopped answering. One command a connection, none a call. Refused (an ACL user
    without ``client|id``, a proxy that forbids CLIENT), the id stays unknown and the connection
    works as before.

    The handshake runs without redis-py's health check, as redis-py runs its own when it reconnects
    inside one: that check PINGs, and against a Redis that wants a password none was given for, the
    PING's ``NOAUTH`` made it reconnect into this handshake again, until Python's recursion limit
    (every API route a 500). Now the handshake's own refusal is raised as :class:`SetupRefused`:
    a db Redis does not have, or the credentials (``NOAUTH`` may come only at ``CLIENT ID``, the
    first command of a connection to db 0 that sends no password).

    ``also_select``: other dbs this connection's transactions and scripts SELECT (the API's jobs
    connection writes the queue db too), tried here, before anything is sent: a SELECT Redis
    refuses inside a MULTI/EXEC does not abort it, so on a Redis without the queue db (``databases
    1``) a submit stored its job, pushed its id into the jobs db's list and was answered 503, "not
    stored"; the client's second submit ran as a second job once the dbs were fixed."""
    handshake = getattr(conn, "on_connect_check_health", None)  # redis-py 6; 5 has on_connect only
    if handshake is None:  # pragma: no cover - the locked redis-py has it
        _set_up(conn, conn.on_connect)
    else:
        _set_up(conn, lambda: handshake(check_health=False))
    for db in also_select:
        _set_up(conn, lambda db=db: _select_and_back(conn, db), db)
    try:
        conn.send_command("CLIENT", "ID", check_health=False)
        conn._wire_client = (conn._sock, int(conn.read_response()))
    except redis.exceptions.AuthenticationError as exc:
        raise _credentials_refused(exc, conn) from exc
    except redis.exceptions.ResponseError:
        conn._wire_client = None


def _select_and_back(conn: Any, db: int) -> None:
    """SELECT ``db``, then the connection's own db again, in one write; the first refusal raised
    once both replies are read (``SetupRefused`` naming ``SELECT <db>``, through :func:`_set_up`)."""
    own = getattr(conn, "db", 0)
    conn.send_packed_command([pack([("SELECT", str(db)), ("SELECT", str(own))])], check_health=False)
    replies = []
    for _ in range(2):
        try:
            replies.append(conn.read_response())
        except redis.exceptions.ResponseError as exc:
            replies.append(exc)
    for reply in replies:
        if isinstance(reply, redis.exceptions.ResponseError):
            raise reply


def client_id(conn: Any) -> int | None:
    """The id :func:`learn_client_id` learnt for this connection's current socket, else None."""
    known = getattr(conn, "_wire_client", None)
    return known[1] if known is not None and known[0] is conn._sock and conn._sock is not None else None


def transaction(client: redis.Redis, commands: Sequence[Command], watch: str | None = None) -> list[Any]:
    """Run ``commands`` as one MULTI/EXEC; their replies in order. A command Redis refuses as it
    queues it (out of memory, read-only, a wrong argument count) aborts the whole transaction, and
    that first refusal is raised; an error reply inside EXEC (e.g. WRONGTYPE) is raised after the
    others were applied, as Redis applies them. A connection failure after the send started raises
    :class:`Unsure` (never sent twice). MULTI itself refused (ACL) raises :class:`Unatomic`: Redis
    ran the commands one by one, and it says which applied.

    With ``watch``, a WATCH of that key (in the connection's db) goes first, in the same write: if
    anything writes the key between Redis reading the WATCH and the EXEC, nothing applies
    (``redis.WatchError``). The caller's check after an :class:`Unsure` writes that key, so a
    first attempt that Redis had only begun to read then cannot apply after the check."""
    sent = [("MULTI",), *commands, ("EXEC",)]
    if watch is not None:
        sent.insert(0, ("WATCH", watch))
    return _call(client, sent, lambda conn: _exchange(conn, len(commands), watch is not None), refusal_settles=True)


def pipelined(client: redis.Redis, sent: Sequence[Command | Packed]) -> list[Any]:
    """Send ``sent`` in one write, as a pipeline without a transaction; their replies in order, or
    the first error reply raised once every reply is read. Never sent twice either (:class:`Unsure`):
    for commands that count (INCRBY), where a second send would count twice."""
    return _call(client, sent, lambda conn: _replies(conn, len(sent)), refusal_settles=len(sent) == 1)


def read(client: redis.Redis, command: Command) -> Any:
    """One read-only command (``MGET``): :func:`repeatable` of that command alone, its reply."""
    return repeatable(client, [command])[0]


def repeatable(client: redis.Redis, commands: Sequence[Command]) -> list[Any]:
    """Commands that may be sent twice (reads, a ``SET`` of a mark), packed here and sent in one
    write on a connection of ``client``'s pool; their replies in order, parsed by redis-py's own
    parser (decoding and error classes as ``client.execute_command``'s), or the first error reply
    raised once every reply is read. Without redis-py's per-command layers (argument encoding,
    retry closures, timing hooks), a one-key ``MGET`` costs the caller about 25 µs of CPU instead
    of 40-50. Being safe to repeat, they are retried as redis-py retries a command (the
    connection's ``retry``: a dropped pooled connection is reconnected and they are sent again);
    what must not be sent twice goes through :func:`transaction` or :func:`pipelined`."""
    pool = client.connection_pool
    encoder = pool.get_encoder()
    payload = [pack(commands, encoder.encoding, encoder.encoding_errors)]
    conn = pool.get_connection()

    def attempt() -> list[Any]:
        conn.send_packed_command(payload)  # with redis-py's health check of an idle connection
        return _replies(conn, len(commands))

    try:
        return conn.retry.call_with_retry(attempt, lambda error: conn.disconnect())
    finally:
        pool.release(conn)


def exchange(client: redis.Redis, sent: Sequence[Command | Packed], read: Any) -> list[Any]:
    """Send ``sent`` in one write and let ``read(conn)`` read every reply (with :func:`reply`), so
    a caller can act on the first replies before later ones arrive (a blocking command's).
    Never sent twice (:class:`Unsure`)."""
    return _call(client, sent, read)


def reply(conn: Any) -> Any:
    """The next reply on ``conn``; an error reply returned, not raised, so the replies after it are
    still read (the connection stays in step)."""
    try:
        return conn.read_response()
    except redis.ResponseError as exc:
        return exc


def _call(client: redis.Redis, sent: Sequence[Command | Packed], read: Any, refusal_settles: bool = False) -> list[Any]:
    """Send ``sent`` once and ``read`` its replies; a lost answer is :class:`Unsure`. With
    ``refusal_settles`` (a transaction, or one command) a ``LOADING`` reply is raised as it is:
    nothing was applied (the module's docstring)."""
    pool = client.connection_pool
    encoder = pool.get_encoder()
    payload = [pack(sent, encoder.encoding, encoder.encoding_errors)]
    conn = pool.get_connection()  # connected (the pool reconnects one Redis closed, with retries)
    try:
        conn.check_health()  # an idle connection's PING (and reconnect) comes before the unsure part
        _abort_on_close(conn)
        sender = client_id(conn)
        try:
            conn.send_packed_command(payload, check_health=False)
            return read(conn)
        except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
            conn.disconnect()  # redis-py did on most failures already; a half-read connection never returns
            if refusal_settles and isinstance(exc, redis.exceptions.BusyLoadingError):
                raise  # refused while Redis loads its data: nothing applied
            unsure = Unsure(f"the answer was lost ({exc}); the commands may or may not have been applied")
            unsure.client_id = sender
            raise unsure from exc
    finally:
        pool.release(conn)


_ABORT = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() resets, dropping what is unsent


def _abort_on_close(conn: Any) -> None:
    """Make closing this connection's socket a reset (once per socket). After a lost answer the
    caller moves on (it checks whether the commands applied, on another connection); a socket
    closed the ordinary way would still deliver what its kernel had not sent yet (the end of a
    transaction stuck behind a congested network, EXEC included), and Redis would apply it after
    that check. A reset discards it: what had not reached Redis then never does."""
    sock = getattr(conn, "_sock", None)
    if sock is None or getattr(conn, "_wire_aborts", None) is sock:
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _ABORT)
        conn._wire_aborts = sock
    except (OSError, AttributeError):
        pass


def _replies(conn: Any, n: int) -> list[Any]:
    """Read ``n`` replies (all of them, so the connection stays in step), then raise the first error."""
    replies: list[Any] = []
    for _ in range(n):
        try:
            replies.append(conn.read_response())
        except redis.ResponseError as exc:
            replies.append(exc)
    for reply in replies:
        if isinstance(reply, redis.ResponseError):
            raise reply
    return replies


def _exchange(conn: Any, queued: int, watched: bool) -> list[Any]:
    """Read a transaction's replies, every one even after a refusal, so the connection stays in step
    (redis-py disconnects it itself when a send or a read fails part-way)."""
    if watched:
        try:
            conn.read_response()
        except redis.ResponseError:
            pass  # WATCH refused (an ACL without it): the transaction still runs, unwatched
    queuing: list[Any] = []
    for _ in range(queued + 1):  # MULTI's +OK, then +QUEUED (or a refusal) per command
        try:
            queuing.append(conn.read_response())
        except redis.ResponseError as exc:
            queuing.append(exc)
    try:
        replies = conn.read_response()
    except redis.ResponseError:  # EXECABORT; or "EXEC without MULTI" when MULTI itself was refused (ACL)
        if isinstance(queuing[0], redis.ResponseError):  # no MULTI: each command ran, and answered
            if any(isinstance(r, redis.ResponseError) for r in queuing[1:]):
                conn.disconnect()  # a SELECT among the refused: the pool must not get it back in another db
            raise Unatomic(queuing[0], queuing[1:]) from None
        refused = [r for r in queuing if isinstance(r, redis.ResponseError)]
        if refused:
            raise refused[0] from None
        raise
    if replies is None:
        raise redis.exceptions.WatchError("the watched key was written meanwhile: nothing was applied")
    for reply in replies:
        if isinstance(reply, redis.ResponseError):
            raise reply
    return replies
