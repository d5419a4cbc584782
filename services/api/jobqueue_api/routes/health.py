"""Probes: ``/healthz`` (the process answers) and ``/readyz`` (Redis reachable and accepting writes,
data loaded)."""

from __future__ import annotations

import redis
from flask import Blueprint, jsonify

from jobqueue.connections import WRITE_REFUSALS

from ..state import current

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
    state = current()
    problems = []
    writable = False
    try:
        state.jobs.ping()
        redis_ok = True
        refused = state.store.write_refused()
        writable = refused is None
        if refused:
            problems.append(f"redis refuses writes: {WRITE_REFUSALS[refused]}")
    except redis.exceptions.RedisError as exc:
        redis_ok = False
        problems.append(f"redis unreachable: {exc}")
    if not state.data.loaded:
        problems.append(f"dataset: {state.data.error}")
    body = {"redis": redis_ok, "redis_writable": writable, "data": state.data.loaded}
    if problems:
        return jsonify({"status": "not ready", "error": "not_ready", "message": "; ".join(problems), **body}), 503
    return jsonify({"status": "ready", **body})
