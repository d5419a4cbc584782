"""Probes: ``/healthz`` (the process answers) and ``/readyz`` (Redis reachable, data loaded).

Readiness says whether this replica can serve, which is what Kubernetes routes by: a Redis that
refuses writes (full at maxmemory, MISCONF) still serves every read and delete, so ``/readyz`` stays
200 and reports ``redis_writable: false`` (also ``jobqueue_redis_writable 0`` and its alert). When
it was 503, the probe took every replica out of the Service at once, and reads and deletes, the way
to free room, met the Ingress's HTML 503 instead of the API's answers. A read-only replica
(``READONLY``) is still not ready: that is this replica's ``REDIS_URL`` naming a replica, and a
rollout with it must halt before the old replicas go, not serve reads alone.

``/healthz?detail=1`` adds the queue (waiting jobs, the oldest one's age, live workers, and whether
it is stalled) and stays 200: a stalled queue is not a reason to restart the API. Its reads have
/readyz's bound (1 s): a hung Redis shows as ``redis: false`` at once.
"""

from __future__ import annotations

import logging

import redis
from flask import Blueprint, jsonify, request

from jobqueue.backlog import read_backlog

from jobqueue.connections import WRITE_REFUSALS
from jobqueue.wire import SetupRefused

from ..bounds import DIAGNOSTIC_SECONDS, diagnostic
from ..state import current

bp = Blueprint("health", __name__)
log = logging.getLogger("jobqueue.api")

# /readyz's own bound on Redis (REDIS_TIMEOUT_SECONDS when that is less), shared with the other
# diagnostics: a probe must fail before the kubelet's own timeout (1 s by default, 3 s in the chart and
# k8s/) so that a hung Redis takes the pod out of its Service instead of piling up probes
READY_REDIS_SECONDS = DIAGNOSTIC_SECONDS


@bp.get("/healthz")
def healthz():
    if request.args.get("detail") not in ("1", "true", "yes"):
        return jsonify({"status": "ok"})
    return jsonify({"status": "ok", **read_queue()})


ACL_REFUSED = (
    "Redis answers, but its ACL refuses this service's user a command the queue's figures need "
    "(NOPERM); the API's log names it"
)
_last_refusal: list[str] = []  # log an ACL refusal of the queue reads when it changes, not on every call


def read_queue() -> dict:
    """The queue's figures for ``/healthz?detail=1`` and ``/help``: ``redis`` and ``queue`` (None when
    they could not be read), and ``queue_error`` when Redis answered but its ACL refused a read: that
    is no unreachable Redis (both said "unreachable" while ``/readyz`` was 200). The command is named
    in the log only: these routes are open to anyone."""
    state = current()
    try:
        with diagnostic(state.settings.redis_timeout_seconds):
            queue = read_backlog(state.settings, state.queue, state.jobs, state.delivery).to_dict()
    except redis.exceptions.NoPermissionError as exc:
        if _last_refusal != [str(exc)]:
            _last_refusal[:] = [str(exc)]
            log.error("redis ACL refuses the queue's figures", extra={"error": str(exc)})
        return {"redis": True, "queue": None, "queue_error": ACL_REFUSED}
    except redis.exceptions.RedisError:
        return {"redis": False, "queue": None}
    _last_refusal.clear()
    return {"redis": True, "queue": queue}


# a Redis that refuses writes for a while, shared by every replica: reported, not a reason to leave the Service
PASSING = frozenset({"OOM", "MISCONF"})
_last_problems: list[str] = []  # log a readiness problem when it changes, not on every probe


@bp.get("/readyz")
def readyz():
    """Booleans only: the probe is open to anyone, and Redis's address, its auth failures and the
    data path are nobody else's business. The reasons go to the log (``not ready``; ``ready, but
    refusing submits`` while Redis refuses writes)."""
    state = current()
    problems = []
    writable, refused = False, None
    try:
        with diagnostic(state.settings.redis_timeout_seconds):
            state.jobs.ping()
            state.queue.ping()  # its own connection set-up: a Redis with one db refuses SELECT of the queue db
            redis_ok = True
            refused = state.store.write_refused()
        writable = refused is None
        if refused == "READONLY":
            problems.append(f"redis refuses writes: {WRITE_REFUSALS[refused]}")
    except redis.exceptions.RedisError as exc:
        redis_ok = False
        problems.append(f"redis {'refuses this service' if isinstance(exc, SetupRefused) else 'unreachable'}: {exc}")
    if not state.data.refresh().loaded:
        problems.append(f"dataset: {state.data.error}")
    refusal = [f"redis refuses writes: {WRITE_REFUSALS[refused]}"] if redis_ok and refused in PASSING else []
    if problems + refusal != _last_problems:
        _last_problems[:] = problems + refusal
        if problems:
            log.warning("not ready", extra={"problems": problems + refusal})
        elif refusal:  # ready: reads and deletes are served; submits answer 503 naming the cause
            log.warning("ready, but refusing submits", extra={"problems": refusal})
        else:
            log.info("ready")
    body = {"redis": redis_ok, "redis_writable": writable, "data": state.data.loaded}
    if problems:
        return jsonify({"status": "not ready", "error": "not_ready", **body}), 503
    return jsonify({"status": "ready", **body})
