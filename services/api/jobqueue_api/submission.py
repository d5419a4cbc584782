"""Accepting a job: parse and validate the body, then store and enqueue it in one round trip.

The job document (jobs db), its index entry and the queue entry (queue db) are written by one
Lua script, so Redis applies all three or none: a 202 always means "stored and queued", and a
crash between the writes cannot leave a job that no worker will ever see. Scripts may SELECT
another db; the selection ends with the script, so the caller's connection is untouched.
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis
from gunicorn.http.errors import NoMoreData, ParseException
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge

from atx_analysis.registry import Operation, ParamError, Registry, UnknownOperation
from jobqueue import keys
from jobqueue.jobs import Job, JobStatus, new_job_id
from jobqueue.settings import Settings

from .errors import ApiError
from .green import Deadline, deadline

_SUBMIT_LUA = """
redis.call('SELECT', ARGV[4])
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
redis.call('SELECT', ARGV[5])
return redis.call('RPUSH', KEYS[3], ARGV[3])
"""

# Cancel: take the id out of the queue (or the retry-backoff set) and, only if it was there, write
# the cancelled document and announce it, all at once, so neither a worker nor the sweeper (which
# re-queues "submitted" jobs found in no list) can act on the job in between.
_CANCEL_LUA = """
redis.call('SELECT', ARGV[4])
local removed = redis.call('LREM', KEYS[1], 1, ARGV[1]) + redis.call('ZREM', KEYS[2], ARGV[1])
if removed == 0 then return 0 end
redis.call('SELECT', ARGV[5])
redis.call('SET', KEYS[3], ARGV[2], 'EX', ARGV[3])
redis.call('PUBLISH', KEYS[4], ARGV[1])
return 1
"""

ALLOWED_FIELDS = ("operation", "params")


def read_body(request, max_bytes: int, timeout: float = 0.0) -> bytes:
    """The raw body, at most ``max_bytes`` (413 beyond), complete within ``timeout`` seconds (408
    beyond, under gevent). Werkzeug enforces the limit when there is a Content-Length; a chunked
    body (no length) it would silently read as empty under gunicorn, which does not set
    ``wsgi.input_terminated``, so read that one here, bounded, from the server's de-chunking
    stream. A body the server cannot de-chunk, or one cut short, is the client's fault: 400."""
    try:
        with deadline(timeout):
            if request.content_length is not None or "chunked" not in request.headers.get(
                    "Transfer-Encoding", "").lower():
                return request.get_data(cache=False)
            stream = request.environ.get("wsgi.input")
            if stream is None:
                return b""
            data = stream.read(max_bytes + 1)
    except Deadline:
        raise ApiError(408, "request_timeout", f"the request body did not arrive within {timeout:g} s") from None
    except (ParseException, NoMoreData, ClientDisconnected) as exc:
        raise ApiError(400, "invalid_body", f"the request body is malformed or incomplete: "
                       f"{type(exc).__name__}") from None
    if len(data) > max_bytes:
        raise RequestEntityTooLarge()
    return data


def parse_body(raw: bytes) -> dict[str, Any]:
    """The request body as a JSON object, or an ApiError saying exactly what is wrong with it."""
    if not raw.strip():
        raise ApiError(400, "empty_body", 'send a JSON object: {"operation": "...", "params": {...}}')
    try:
        body = json.loads(raw)
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_json", "the body is not UTF-8 text") from None
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {exc}"[:300]) from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_body", f"the body must be a JSON object, not {type(body).__name__}")
    return body


def validate_submission(body: dict[str, Any], catalogue: Registry) -> tuple[Operation, dict[str, Any]]:
    """Check the body against the catalogue; return the operation and its coerced parameters."""
    unknown = sorted(set(body) - set(ALLOWED_FIELDS))
    if unknown:
        raise ApiError(400, "unknown_field", f"unknown field '{unknown[0]}'; the body takes "
                       f"'operation' and 'params' (parameters go inside 'params')", field=unknown[0])
    if "operation" not in body or body["operation"] in (None, ""):
        raise ApiError(400, "missing_operation", "'operation' is required; GET /operations lists them",
                       operations=catalogue.names())
    try:
        op = catalogue.get(body["operation"])
    except UnknownOperation as exc:
        raise ApiError(400, "unknown_operation", str(exc), operations=exc.known) from None
    try:
        params = op.validate(body.get("params"))
    except ParamError as exc:
        extra = {"param": exc.param} if exc.param else {}
        raise ApiError(400, "invalid_params" if exc.param is None else "invalid_param", exc.message,
                       **extra) from None
    return op, params


class Submitter:
    def __init__(self, jobs: redis.Redis, settings: Settings):
        self.settings = settings
        self._script = jobs.register_script(_SUBMIT_LUA)
        self._cancel_script = jobs.register_script(_CANCEL_LUA)
        self._dbs = (settings.redis_jobs_db, settings.redis_queue_db)
        self._queue_key = keys.queue(settings.queue_name)

    def submit(self, operation: str, params: dict[str, Any]) -> Job:
        job = Job(id=new_job_id(), operation=operation, params=params, submitted_at=time.time())
        self._script(keys=[keys.job(job.id), keys.JOB_INDEX, self._queue_key],
                     args=[_document(job), repr(job.submitted_at), job.id, *self._dbs])
        return job


    def cancel(self, job: Job) -> bool:
        """Cancel a queued job atomically; False if it is no longer queued (a worker has it)."""
        job.status = JobStatus.CANCELLED
        job.finished_at = time.time()
        done = self._script_cancel(job)
        return bool(done)

    def _script_cancel(self, job: Job) -> int:
        return self._cancel_script(
            keys=[self._queue_key, keys.delayed(self.settings.queue_name), keys.job(job.id), keys.JOB_DONE_CHANNEL],
            args=[job.id, _document(job), self.settings.job_ttl_seconds, self._dbs[1], self._dbs[0]])


_JOB_FIELDS = tuple(Job.__dataclass_fields__)


def _document(job: Job) -> str:
    """``job.to_json()`` without ``dataclasses.asdict``'s deep copy (a tenth of a submit's CPU):
    the params dict was built for this request and nothing else holds it."""
    doc = {name: getattr(job, name) for name in _JOB_FIELDS}
    doc["status"] = job.status.value
    return json.dumps(doc, separators=(",", ":"), allow_nan=False)
