"""Job routes: submit, status (with long poll), list, cancel/delete, result download."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import redis
from flask import Blueprint, Response, jsonify, request, url_for

from jobqueue.jobs import Job, JobStatus, Page
from jobqueue.lanes import lane_of
from jobqueue.results import PNG

from .. import idempotency, ratelimit
from ..auth import owner, protect
from ..bounds import within
from ..errors import ApiError
from ..idempotency import with_key_headers
from ..params import int_arg, job_id_or_400, prefer_wait, single_arg, wait_seconds
from ..state import ApiState, current
from ..submission import accepted_body, parse_body, read_body, store, refuse_without_data, validate_submission
from ..waiting import CLOSING_READ_SECONDS

log = logging.getLogger("jobqueue.api")

bp = Blueprint("jobs", __name__)
protect(bp)

MAX_PAGE_SIZE = 100
# A waiting submit whose job is stored answers 202 with its id at most this long after its wait,
# whatever Redis does: the read of its current state gets no longer (the stored document stands)
STORED_READ_SECONDS = 1.0
DEFAULT_PAGE_SIZE = 20
MAX_OFFSET = 10**9


def _accept(before_store: Callable[[Job], None] | None = None) -> tuple[Job, idempotency.Keyed | None]:
    """Read, validate and store the submitted job: (the job to answer with, the request's
    ``Idempotency-Key`` if it had one; with one, the job may be an earlier one the key named)."""
    state = current()
    sent_key = request.environ.get(idempotency.ENVIRON)
    if sent_key is not None:
        idempotency.parse(sent_key)  # judged first: a 400 whatever the body (idempotency.py)
    raw = read_body(request, state.settings.max_body_bytes, state.settings.client_timeout_seconds)
    op, params = validate_submission(parse_body(raw), state.catalogue, state.data.refresh().dataset)
    refuse_without_data(state.data)  # a job now would wait for workers that cannot start
    # valid ones only are counted against the rate limit and the jobs cap (a typo costs nothing),
    # in the same call that stores them (submission.store_admitted): a 429 here stored nothing
    limited = state.settings.submit_rate_limit > 0 or state.settings.max_jobs_per_client > 0
    client = ratelimit.client_id() if limited else None
    job = state.delivery.new_job(op.name, params, lane_of(op), owner())
    key = None if sent_key is None else idempotency.keyed(sent_key, owner(), job)
    if before_store is not None:
        before_store(job)  # ?wait= registers for the job's done message before it can finish
    if key is not None:  # one script call: stored with the key's record, or the job the key names
        return idempotency.store(state, job, client, key, request.script_root, before_store), key
    # returns once the job is stored, queued and counted; a waited job is marked in that transaction
    # a failure after which the job may be stored is a 504 with its id (submission.store)
    store(state.submits, (job, client, before_store is not None), request.script_root)
    return job, None


@bp.post("/submit")
def submit():
    # a plain submit (no query but ?wait=N, no Prefer, no tokens) is answered by fastpath.py below
    # Flask: a request this view treats differently must be left to it there too
    # (tests/api/test_fast_submit.py compares both paths' answers)
    environ = request.environ
    if environ.get("QUERY_STRING") or "HTTP_PREFER" in environ:
        wait = _submit_wait()
        if wait is not None:
            return _submit_and_wait(*wait)
    job, key = _accept()
    return with_key_headers(Response(accepted_body(job), 202, mimetype="application/json"), key)


def _submit_wait() -> tuple[float, bool] | None:
    """(seconds, from the Prefer header) when the client asked to wait for the result: ``?wait=``
    (parsed and capped as for a long poll; a bad value is a 400 before anything is stored), else
    RFC 7240's ``Prefer: wait=N``; None for the tutorial's submit."""
    cap = current().settings.max_wait_seconds
    if "wait" in request.args:
        return wait_seconds(cap), False
    preferred = prefer_wait(request.headers.get("Prefer"))
    return None if preferred is None else (min(float(preferred), cap), True)


def _submit_and_wait(wait: float, preferred: bool):
    """Submit, and answer as :func:`waited_submit` says (a 200 or 202 with ``Location``)."""
    keyed: list[idempotency.Keyed | None] = [None]

    def accept(register: Callable[[Job], None]) -> Job:
        job, keyed[0] = _accept(before_store=register)
        return job

    status, body, location = waited_submit(
        current(), accept, wait, request.script_root, request.environ.get("gunicorn.socket")
    )
    headers = {"Location": location}
    if preferred:
        headers["Preference-Applied"] = f"wait={wait:g}"
    return with_key_headers(Response(body, mimetype=JSON), keyed[0]), status, headers


def waited_submit(
    state: ApiState,
    accept: Callable[[Callable[[Job], None]], Job],
    wait: float,
    script_root: str,
    client: object = None,
) -> tuple[int, bytes, str]:
    """A waiting submit's answer: (status, body, Location). ``accept(register)`` validates and
    stores the job, calling ``register(job)`` before its store; the answer is the job once final
    (200, the document ``GET /status/<id>`` shows) if that happens within ``wait`` seconds, else its
    current document (202); both with ``Location: /status/<id>``. Once the job is stored the answer
    always carries its id: a Redis failure after the store answers the 202 with the document as
    stored (the job is queued; the client polls ``Location``), never a 503 that a client would take
    for "submit again". The submit view and the one below Flask (fastpath.py) both answer with it.
    ``client`` (gunicorn's socket of the request) ends the wait when its client leaves (waiting.py)."""
    failed = False
    with state.waiter.expect(client) as expected:
        job = accept(expected.register)
        try:
            # the answer is due at the wait's end whatever Redis does (bounds.py): a read the wait
            # makes gets what is left of it, and a second at most
            with within(wait + STORED_READ_SECONDS):
                doc = expected.final_document(wait, state.reads.call)
        except redis.exceptions.RedisError as exc:
            log.warning("redis failed during a submit's wait", extra={"job_id": job.id, "error": str(exc)})
            doc, failed = None, True
    status = 200
    if doc is not None:
        job = Job.from_json(doc)
    else:
        status = 202
        if not failed:  # after a failure Redis gets no second wait: the stored document stands
            try:
                with within(STORED_READ_SECONDS):
                    raw = state.reads.call(job.id)
            except redis.exceptions.RedisError as exc:
                log.warning("redis failed reading a submitted job", extra={"job_id": job.id, "error": str(exc)})
            else:
                if raw is None:
                    raise not_found(job.id)  # deleted (or flushed) in the meantime
                job = Job.from_json(raw)
                if job.status.is_final:  # it ended just as the wait ran out
                    status = 200
    return status, status_body(job, script_root), f"{script_root}/status/{job.id}"


@bp.post("/jobs")
def create_job():
    # ?wait= (or Prefer: wait=N) as on POST /submit: it was ignored here, a bad value too, so a
    # client told "same as POST /submit" got a 202 at once where it asked to wait for the result
    environ = request.environ
    if environ.get("QUERY_STRING") or "HTTP_PREFER" in environ:
        wait = _submit_wait()
        if wait is not None:
            response, status, headers = _submit_and_wait(*wait)
            headers["Location"] = url_for("jobs.get_job", job_id=headers["Location"].rsplit("/", 1)[1])
            return response, status, headers
    job, key = _accept()
    location = url_for("jobs.get_job", job_id=job.id)
    status = JobStatus.SUBMITTED.value  # a replay answers as the first attempt was answered
    body = jsonify({"job_id": job.id, "status": status, "status_url": location})
    return with_key_headers(body, key), 202, {"Location": location}


def load_job(job_id: str, wait: float = 0.0) -> Job:
    """The job, after waiting up to ``wait`` seconds for it to reach a final status; 404 if unknown."""
    job_id_or_400(job_id)
    me = owner()
    job = read_job(current(), job_id, wait, me, request.environ.get("gunicorn.socket"))
    if job is None:
        raise not_found(job_id)
    return job


def read_job(
    state: ApiState, job_id: str, wait: float = 0.0, me: str | None = None, client: object = None
) -> Job | None:
    """The job (None if unknown, or another token's when ``me`` names one) after waiting up to
    ``wait`` seconds for a final status. Needs no request context: the status read answered below
    Flask (fastpath.py) calls it too, with ``me`` None (no tokens).

    A long poll reads first and waits only for a job not final yet: in the tutorial's round trip
    the job has usually ended before its poll arrives, and such a poll then costs one plain read,
    no waiter and no mark in Redis. One that must wait reads again, marking the job waited in the
    same round trip (``DoneWaiter.wait_final``), so a finish between the two reads is seen. The
    wait ends early when ``client`` (gunicorn's socket of the request) shows its client has left.

    In a process told to stop (SIGTERM) the read gets the half second its parked polls' last look
    gets (``waiting.CLOSING_READ_SECONDS``), not REDIS_TIMEOUT_SECONDS: on a hung Redis, a read that
    reached it then answered its 503 after 5 s and held the process's exit as long."""
    waiter = state.waiter
    if waiter is not None and waiter.closing:
        with within(CLOSING_READ_SECONDS):  # a wait does not wait there (DoneWaiter.register)
            return _read_job(state, job_id, wait, me, client)
    return _read_job(state, job_id, wait, me, client)


def _read_job(state: ApiState, job_id: str, wait: float, me: str | None, client: object) -> Job | None:
    raw = state.reads.call(job_id)  # concurrent reads of this process share one MGET
    job = None if raw is None else Job.from_json(raw)
    if job is not None and me is not None and job.owner != me:
        return None  # another token's job: as if it did not exist (and not waited on)
    if wait > 0 and job is not None and not job.status.is_final:
        job = state.waiter.wait_final(job_id, wait, state.waited_reads.call, client, state.reads.call)
    return job


def not_found(job_id: str) -> ApiError:
    return ApiError(404, "job_not_found", f"no job {job_id} (unknown, deleted or expired)", job_id=job_id)


JSON = "application/json"
# url_for("jobs.job_result", job_id=...) of a valid id, after the app's root: built here so that an
# answer can be written without a request context (tests/api/test_fast_status.py checks it is url_for's)
RESULT_PATH = "/jobs/{}/result"
_encode = json.JSONEncoder(separators=(",", ":")).encode  # what jsonify writes outside debug mode


def public(job: Job, script_root: str) -> dict:
    """What GET /status/<id> shows of a job (``script_root``: the app's mount point, SCRIPT_NAME)."""
    doc = job.public()
    if job.status is JobStatus.COMPLETE:
        doc["result_url"] = script_root + RESULT_PATH.format(job.id)
    return doc


def status_body(job: Job, script_root: str) -> bytes:
    """The one rendering of a status answer: ``GET /status/<id>`` on Flask's path and below it
    (fastpath.py), and a waiting submit's document; jsonify's bytes (compact, ASCII, a newline)."""
    return (_encode(public(job, script_root)) + "\n").encode()


@bp.get("/status/<job_id>")
@bp.get("/jobs/<job_id>")
def get_job(job_id: str):
    # a plain read (no query but ?wait=N, no tokens) of either route is answered by fastpath.py below
    # Flask: a request this view treats differently must be left to it there too
    # (tests/api/test_fast_status.py compares both paths' answers)
    job = load_job(job_id, wait_seconds(current().settings.max_wait_seconds))
    return Response(status_body(job, request.script_root), mimetype=JSON)


@bp.get("/jobs")
def list_jobs():
    state = current()
    status = single_arg("status")
    if status is not None and status not in {s.value for s in JobStatus}:
        raise ApiError(
            400, "invalid_status", f"'status' must be one of {', '.join(s.value for s in JobStatus)}", param="status"
        )
    operation = single_arg("operation")
    if operation is not None and operation not in state.catalogue:  # a typo listed nothing, silently
        known = state.catalogue.names()
        raise ApiError(
            400,
            "invalid_operation",
            f"'operation' must be one of {', '.join(known)} (GET /operations lists them)",
            param="operation",
            operations=known,
        )
    limit = int_arg("limit", DEFAULT_PAGE_SIZE, 1, MAX_PAGE_SIZE)
    cursor = single_arg("cursor")
    offset = int_arg("offset", 0, 0, MAX_OFFSET)
    # ?owner=<name>: the admin's view of one student's jobs. A named token lists only its own, so
    # there another name gives nothing; an unknown name gives nothing too (its index is empty, and
    # names are not listed). Both read that user's own index (keys.owner_index)
    wanted = single_arg("owner")
    me = owner()
    try:
        if me is not None and wanted not in (None, me):  # a student asking for another's jobs
            page = Page([], None, None)
        else:
            page = state.store.page(
                status=status,
                operation=operation,
                cursor=cursor,
                limit=limit,
                offset=None if cursor else offset,
                owner=me or wanted,
            )
    except ValueError:
        raise ApiError(
            400, "invalid_cursor", "'cursor' must be the next_cursor of a previous page", param="cursor"
        ) from None
    body = {
        "jobs": [public(job, request.script_root) for job in page.jobs],
        "count": len(page.jobs),
        "limit": limit,
        "next_cursor": page.next_cursor,
    }
    if not cursor:
        body.update(offset=offset, next_offset=page.next_offset)
    return jsonify(body)


@bp.delete("/jobs/<job_id>")
def delete_job(job_id: str):
    """Cancel a queued job (its id leaves the queue atomically), or delete a finished one."""
    state = current()
    job = load_job(job_id)
    if job.status is JobStatus.SUBMITTED:
        if not state.delivery.cancel(job):
            raise ApiError(
                409,
                "job_in_progress",
                "a worker has already claimed this job; it cannot be cancelled",
                job_id=job.id,
                status=JobStatus.IN_PROGRESS.value,
            )
        return jsonify({"job_id": job.id, "status": job.status.value, "cancelled": True})
    if job.status is JobStatus.IN_PROGRESS:
        raise ApiError(
            409,
            "job_in_progress",
            "the job is running; it can be deleted once it finishes",
            job_id=job.id,
            status=job.status.value,
        )
    # its place under MAX_JOBS_PER_CLIENT is freed at once, in the same pipeline: its submitter's,
    # when that is its token's name or this address (else a submit at the cap finds it gone)
    held_by = ratelimit.client_of(job.owner, request.remote_addr) if state.settings.max_jobs_per_client > 0 else None
    state.store.delete(job.id, held_by)
    return jsonify({"job_id": job.id, "status": job.status.value, "deleted": True})


@bp.get("/results/<job_id>")  # what many COE 332 final projects call it
@bp.get("/jobs/<job_id>/results")  # COE 332's name for it
@bp.get("/download/<job_id>")
@bp.get("/jobs/<job_id>/result")  # registered first: the one url_for builds (result_url)
def job_result(job_id: str):
    state = current()
    job = load_job(job_id, wait_seconds(state.settings.max_wait_seconds))
    if job.status is JobStatus.FAILED:
        raise ApiError(409, "job_failed", f"the job failed: {job.error}", job_id=job.id, status=job.status.value)
    if job.status is JobStatus.CANCELLED:
        raise ApiError(
            409, "job_cancelled", "the job was cancelled; it has no result", job_id=job.id, status=job.status.value
        )
    if job.status is not JobStatus.COMPLETE:
        raise ApiError(
            409,
            "job_not_finished",
            f"the job is {job.status.value}; add ?wait=30 to wait for it",
            job_id=job.id,
            status=job.status.value,
        )
    found = state.store.result(job)
    if found is None:
        raise ApiError(410, "result_expired", "the stored result has expired", job_id=job.id)
    body, content_type = found
    if content_type == PNG:
        return Response(body, mimetype=PNG, headers={"Content-Disposition": f'inline; filename="{job.id}.png"'})
    return jsonify(body)
