"""Accepting a job, the HTTP side: read the body, parse it, validate it against the catalogue;
then count it against its client's rate limit and store it, with the submits that share its call.

Storing and queueing is one atomic transaction in core (``jobqueue.delivery.Delivery.store``), so a
202 always means "stored and queued". A failure answers either 503 (nothing was stored: submit
again) or, when the transaction may have reached Redis though no answer came back, 504 with the
job's id (:func:`store`): resending that would store the job twice.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from gunicorn.http.errors import NoMoreData, ParseException
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge

import redis

from atx_analysis.registry import NotWhole, Operation, ParamError, Registry, UnknownOperation, echo
from jobqueue import wire
from jobqueue.delivery import Delivery
from jobqueue.http import REFUSAL_HEADER
from jobqueue.jobs import Job

from . import holdings, metrics, ratelimit
from .batching import LeadLost, SubmitBatcher
from .bounds import RedisDeadline
from .errors import ApiError
from .green import Deadline, deadline

ALLOWED_FIELDS = ("operation", "params")


def read_body(request, max_bytes: int, timeout: float = 0.0) -> bytes:
    """The raw body, at most ``max_bytes`` (413 beyond), complete within ``timeout`` seconds (408
    beyond, under gevent). Werkzeug enforces the limit when there is a Content-Length; a chunked
    body (no length) it would silently read as empty under gunicorn, which does not set
    ``wsgi.input_terminated``, so read that one here, bounded, from the server's de-chunking
    stream. A body the server cannot de-chunk, or one cut short, is the client's fault: 400."""
    length = request.content_length
    if length is not None and length > max_bytes:
        raise RequestEntityTooLarge()
    stream = request.environ.get("wsgi.input")
    if length is not None and stream is not None:
        return read_length(stream, length, timeout)
    try:
        with deadline(timeout):
            if "chunked" not in request.headers.get("Transfer-Encoding", "").lower():
                return request.get_data(cache=False)
            if stream is None:
                return b""
            bound_chunks(stream, max_bytes)
            data = stream.read(max_bytes + 1)
    except Deadline:
        raise _late(timeout) from None
    except (ParseException, NoMoreData, ClientDisconnected) as exc:
        raise _malformed(exc) from None
    if len(data) > max_bytes:
        raise RequestEntityTooLarge()
    return data


def bound_chunks(stream: Any, max_bytes: int) -> None:
    """413 as soon as the chunk sizes announced so far add up to more than ``max_bytes``. A body
    whose first chunk says ``FFFFFFFF`` was refused only once ``max_bytes`` + 1 bytes of it had
    arrived, or was the 408 of a body that never would; the size line says it already. gunicorn's
    de-chunker (``ChunkedReader``) looks up its ``parse_chunk_size`` on itself for every chunk, so
    one wrapped on this request's reader sees each size before its data is waited for. Any other
    stream is read as it is (the count of bytes read still bounds it)."""
    reader: Any = getattr(stream, "reader", None)
    parse = getattr(reader, "parse_chunk_size", None)
    if parse is None or not hasattr(reader, "parser"):
        return
    announced = 0

    def parse_chunk_size(*args: Any, **kwargs: Any) -> Any:
        nonlocal announced
        size, rest = parse(*args, **kwargs)
        announced += size or 0
        if announced > max_bytes:
            raise RequestEntityTooLarge()
        return size, rest

    reader.parse_chunk_size = parse_chunk_size


def read_length(stream: Any, length: int, timeout: float) -> bytes:
    """A Content-Length body from the server's own stream (length-bounded: gunicorn stops at
    Content-Length; the same bytes as werkzeug's get_data, without its wrapper, a tenth of a
    submit's CPU). A body that came in with the headers is read without the timer: no read can
    block (a gevent Timeout made, started and closed was 4% of a submit's CPU); one still on its way
    (``requests`` and ``http.client`` send headers and body apart) within ``timeout`` seconds, else
    408. Cut short or unreadable: 400. Flask's submit view and ``fastpath.py`` both read through it,
    so both answer a late or broken body alike."""
    if not length:
        return b""
    try:
        if held(stream) >= length:
            data = stream.read(length)
        else:
            with deadline(timeout):
                data = stream.read(length)
        if len(data) < length:
            raise ClientDisconnected()
    except Deadline:
        raise _late(timeout) from None
    except (ParseException, NoMoreData, ClientDisconnected) as exc:
        raise _malformed(exc) from None
    return data


def _late(timeout: float) -> ApiError:
    return ApiError(408, "request_timeout", f"the request body did not arrive within {timeout:g} s")


# what gunicorn's errors while reading a body mean to the client that sent it (the message named the
# class, "LimitRequestHeaders" for a chunked body whose trailer was too large)
_BODY_FAULTS = {
    "LimitRequestHeaders": "its chunked trailer is too large or has too many fields",
    "InvalidHeader": "a field of its chunked trailer is malformed",
    "InvalidHeaderName": "a field name in its chunked trailer is malformed",
    "ObsoleteFolding": "its chunked trailer folds a field over lines",
    "InvalidChunkSize": "a chunk size is not a hexadecimal number",
    "InvalidChunkExtension": "a chunk extension is malformed",
    "ChunkMissingTerminator": "a chunk does not end with CRLF",
    "NoMoreData": "the connection ended before the body did",
    "ClientDisconnected": "the connection ended before the body did",
}


def _malformed(exc: Exception) -> ApiError:
    name = type(exc).__name__
    why = _BODY_FAULTS.get(name, name)
    return ApiError(400, "invalid_body", f"the request body is malformed or incomplete: {why}")


def held(stream: Any) -> int:
    """Bytes of the body gunicorn already holds (read with the headers), which reading touches no
    socket for; 0 for any other stream (its read is timed)."""
    try:
        return len(stream.buf.getvalue()) + len(stream.reader.unreader.buf.getvalue())
    except AttributeError:
        return 0


def accepted_body(job: Job) -> bytes:
    """The tutorial's 202 body: what ``jsonify({"job_id": ..., "status": "submitted"})`` writes, byte
    for byte (a uuid needs no escaping), without the JSON provider's round. Written by the submit
    view and by ``fastpath.py`` alike. Always ``submitted``: a repeat of a keyed submit answers as its
    first attempt was answered, whatever became of the job since (idempotency.py)."""
    return f'{{"job_id":"{job.id}","status":"submitted"}}\n'.encode()


def json_kind(value: Any) -> str:
    """What a parsed JSON value is, in JSON's words (a curl user never wrote "list" or "NoneType")."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


class DuplicateKey(Exception):
    """A JSON object of a body names one key twice (:func:`loads`)."""

    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook``: the object as ``json`` builds it, or DuplicateKey for a key given twice,
    which ``json`` would take last-wins without a word."""
    obj = dict(pairs)
    if len(obj) < len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKey(key)
            seen.add(key)
    return obj


_INT_DIGITS_MAX = 4000  # under Python's int/str conversion limit (sys.get_int_max_str_digits(), 4300)
_HUGE = 10**_INT_DIGITS_MAX  # built by arithmetic: no text conversion, so no limit


def _parse_int(text: str) -> int:
    """``parse_int``: a JSON integer, as ``json`` reads it, but one of thousands of digits (valid JSON)
    is a number too large for any parameter, so its parameter's own check refuses it by name. ``int()``
    refused it with "Exceeds the limit (4300 digits) for integer string conversion ... use
    sys.set_int_max_str_digits()", answered as `invalid_json`: valid JSON called invalid, with advice
    for the server's code."""
    if len(text) <= _INT_DIGITS_MAX:
        return int(text)
    return -_HUGE if text.startswith("-") else _HUGE


def _parse_float(text: str) -> float:
    """``parse_float``: a JSON number with a fraction or an exponent, as ``json`` reads it, but one
    whose float is whole while the number written is not (``0.99999999999999999``) is a NotWhole,
    which an integer parameter refuses: it was taken as n=1. (Decimal only for whole floats.)"""
    value = float(text)
    if value.is_integer():
        exact = Decimal(text)
        if exact != exact.to_integral_value():
            return NotWhole(value)
    return value


# made once: json.loads(..., hook) builds one a call
_DECODER = json.JSONDecoder(object_pairs_hook=_unique, parse_int=_parse_int, parse_float=_parse_float)
_BOM = b"\xef\xbb\xbf"


class NotUtf8(ValueError):
    """A body whose bytes are not UTF-8 text (:func:`loads`); the message says what they look like."""


def loads(raw: bytes) -> Any:
    """The body's bytes, strict UTF-8, as JSON, refusing a key given twice in one object
    (DuplicateKey): ``{"operation": "a", "operation": "b"}`` was taken as "b" silently, where the
    query string's repeated parameter is a 400. Every JSON body the API reads goes through it.

    Not UTF-8 is NotUtf8 (a ValueError): ``json.loads`` on bytes guesses the encoding
    (``json.detect_encoding``) and so took a UTF-8 byte order mark, UTF-16 and UTF-32, where the
    API documents UTF-8 only (RFC 8259 section 8.1: JSON between systems is UTF-8, with no byte
    order mark), and its "surrogatepass" read a surrogate's UTF-8-like bytes (ED A0 80) as text. The
    encoding is guessed only for a body that failed, to say what it looks like: a valid body's
    parse is 2-3 µs cheaper than with the guess (timeit, alternating pairs). The hook costs a submit's parse 1-2 µs (timeit,
    alternating pairs), under half a percent of its CPU."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise NotUtf8(_not_utf8(raw, exc.start)) from None
    try:
        return _DECODER.decode(text)
    except json.JSONDecodeError:
        if raw.startswith(_BOM) or json.detect_encoding(raw) != "utf-8":
            raise NotUtf8(_not_utf8(raw, None)) from None
        raise


def _not_utf8(raw: bytes, start: int | None) -> str:
    """What a body that is not UTF-8 looks like, in a 400's words."""
    if raw.startswith(_BOM):
        why = "it starts with a UTF-8 byte order mark (EF BB BF); send the same text without it"
    elif (guess := json.detect_encoding(raw)) != "utf-8":
        why = f"it looks like {guess.upper()}; send it as UTF-8"
    else:
        why = f"byte {start} is not part of a UTF-8 character; send UTF-8"
    return f"the body is not UTF-8 text: {why}"


def duplicate_key(exc: DuplicateKey) -> ApiError:
    key = echo(exc.key)  # cut: a 60,000-character key would come back twice over
    return ApiError(
        400,
        "duplicate_key",
        f"the key '{key}' is given more than once in one JSON object of the body; give it once",
        key=key,
    )


def parse_body(raw: bytes) -> dict[str, Any]:
    """The request body as a JSON object, or an ApiError saying exactly what is wrong with it."""
    if not raw.strip():
        raise ApiError(400, "empty_body", 'send a JSON object: {"operation": "...", "params": {...}}')
    try:
        body = loads(raw)
    except DuplicateKey as exc:
        raise duplicate_key(exc) from None
    except NotUtf8 as exc:
        raise ApiError(400, "invalid_json", str(exc)) from None
    except RecursionError:  # its words were Python's ("maximum recursion depth exceeded while decoding")
        raise ApiError(400, "invalid_json", "the body is nested too deeply to read; send a flat JSON object") from None
    except ValueError as exc:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {exc}"[:300]) from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_body", f"the body must be a JSON object {{...}}, not {json_kind(body)}")
    return body


DATA_REFUSED_RETRY_SECONDS = 60
# while a changed file is being loaded: the answer is likely different in seconds
DATA_RELOADING_RETRY_SECONDS = 5
_FIX = (
    "fix DATA_PATH's file (in a form docs/data.md lists): "
    "the API and the workers load it again within seconds of the change"
)


def refuse_without_data(slot: Any) -> None:
    """A valid submit's 503 ``data_unavailable`` while the data file is refused: the workers exit on
    the file the API refused (the workers wait for it to change), so such a job was accepted (202)
    and waited with nobody to run it until an operator replaced the file. A missing file is not refused (the workers wait for it). The answer carries
    :data:`jobqueue.http.REFUSAL_HEADER`, so the ``jobqueue`` client shows it at once instead of
    retrying what no retry can change. The message says which state the file is in: being loaded
    again (it said "fix the file" to someone who just had), or a replacement refused too."""
    if slot.dataset is None and slot.refused:
        retry = DATA_REFUSED_RETRY_SECONDS
        if slot.reloading:
            retry = DATA_RELOADING_RETRY_SECONDS
            message = (
                "no job can run yet: DATA_PATH's file changed since it was refused and is being loaded "
                f"now; submit again in {retry} s"
            )
        elif slot.refusals > 1:
            message = (
                f"no job can run: the file that replaced the refused data file is refused too ({slot.error}); {_FIX}"
            )
        else:
            message = f"no job can run: the data file is refused ({slot.error}); {_FIX}"
        err = ApiError(503, "data_unavailable", message)
        err.headers.update({"Retry-After": str(retry), REFUSAL_HEADER: "data_unavailable"})
        raise err


def validate_submission(
    body: dict[str, Any], catalogue: Registry, dataset: Any = None
) -> tuple[Operation, dict[str, Any]]:
    """Check the body against the catalogue, and the parameters against the operation's own rules
    (with the API's copy of the data when loaded, so defaults count as the worker will see them):
    whatever the worker would refuse is a 400 here. Return the operation and its parameters."""
    unknown = sorted(set(body) - set(ALLOWED_FIELDS))
    if unknown:
        name = echo(unknown[0])
        raise ApiError(
            400,
            "unknown_field",
            f"unknown field '{name}'; the body takes 'operation' and 'params' (parameters go inside 'params')",
            field=name,
        )
    if "operation" not in body or body["operation"] in (None, ""):
        raise ApiError(
            400,
            "missing_operation",
            "'operation' is required; GET /operations lists them",
            operations=catalogue.names(),
        )
    try:
        op = catalogue.get(body["operation"])
    except UnknownOperation as exc:
        raise ApiError(400, "unknown_operation", str(exc), **exc.details()) from None
    try:
        params = op.validate(body.get("params"))
        for name, value in params.items():
            if isinstance(value, str) and not _is_text(value):
                raise ParamError(
                    name, f"'{name}' contains a lone surrogate (a \\ud800-\\udfff escape), which is not text"
                )
        op.check_params(dataset, params)
    except ParamError as exc:
        extra = {"param": exc.param} if exc.param else {}
        raise ApiError(400, "invalid_params" if exc.param is None else "invalid_param", exc.message, **extra) from None
    return op, params


def _is_text(value: str) -> bool:
    """False for strings JSON can carry but UTF-8 cannot (lone surrogates such as "\\ud800")."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# Failures after which a submit's transaction may have been applied: the bound fired while the call
# was under way (Redis hung after reading it), the call's lead was stopped midway, or the answer was
# lost and so was the answer of the check that would have told (``Delivery.store``). Submits queued
# behind a failed call get ``batching.NotSent`` instead, a 503 like a refused connection.
UNSURE = (RedisDeadline, LeadLost, wire.Unsure)


def store(submits: SubmitBatcher, item: tuple, root: str) -> None:
    """``submits.submit(item)`` (item[0] is the job); a failure that may have stored the job is
    answered 504 with its id and ``Location`` (``root``: the app's script root), never the 503
    that tells a client nothing was stored and to submit again."""
    try:
        submits.submit(item)
    except UNSURE as exc:
        job_id = item[0].id
        err = ApiError(
            504,
            "redis_timeout",
            f"the job store (Redis) did not answer in time ({exc}); the job "
            f"may have been stored: check GET /status/{job_id} before submitting again "
            "(404: it was not stored)",
            job_id=job_id,
        )
        err.headers["Location"] = f"{root.rstrip('/')}/status/{job_id}"
        raise err from exc


def store_admitted(
    delivery: Delivery,
    counts: redis.Redis,
    limit: int,
    batch: list[tuple[Job, str | None] | tuple[Job, str | None, bool]],
    window_seconds: int = 60,
    max_jobs: int = 0,
) -> list[ApiError | None]:
    """One group-commit call (``batching.SubmitBatcher``): count each (job, client[, waited]) of the
    batch against ``limit`` per sliding ``window_seconds`` (one round trip, only when the limit is on),
    then hold those within it against their client's ``max_jobs`` (``holdings.py``; one more round
    trip, only when that cap is on), store the jobs within both
    (one transaction; a waited job, ``POST /submit?wait=``, is marked so its end is announced),
    count them in ``jobqueue_jobs_submitted_total``, and return each item's refusal (a 429) or None."""
    clients = [item[1] for item in batch]
    refusals = ratelimit.admit(counts, limit, clients, window_seconds)
    held: list[str | None] = []
    if max_jobs > 0:
        held = [who if refused is None else None for who, refused in zip(clients, refusals)]
        over = holdings.hold(counts, max_jobs, [item[0] for item in batch], held)
        refusals = [refused or late for refused, late in zip(refusals, over)]
        held = [who if late is None else None for who, late in zip(held, over)]
    admitted = [job for (job, *_), refused in zip(batch, refusals) if refused is None]
    waited = [item[0].id for item, refused in zip(batch, refusals) if refused is None and item[2:] == (True,)]
    try:
        delivery.store(admitted, waited)
    except UNSURE:
        raise  # the jobs may be stored: they stay held until a check finds them gone
    except Exception:
        if held:  # nothing stored: their places are given back
            holdings.release(counts, [item[0] for item in batch], held)
        raise
    metrics.count_submitted([job.operation for job in admitted])  # once per operation, not per job
    return refusals
