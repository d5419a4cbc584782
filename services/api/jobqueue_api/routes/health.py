"""Probes: ``/healthz`` (the process answers) and ``/readyz`` (Redis reachable, data loaded).

``/healthz?detail=1`` adds the queue (waiting jobs, the oldest one's age, live workers, and whether
it is stalled) and stays 200: a stalled queue is not a reason to restart the API.
"""

from __future__ import annotations

import redis
from flask import Blueprint, jsonify, request

from jobqueue.backlog import read_backlog

from ..state import current

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    if request.args.get("detail") not in ("1", "true", "yes"):
        return jsonify({"status": "ok"})
    state = current()
    try:
        queue = read_backlog(state.settings, state.queue, state.jobs).to_dict()
    except redis.exceptions.RedisError:
        return jsonify({"status": "ok", "redis": False, "queue": None})
    return jsonify({"status": "ok", "redis": True, "queue": queue})


@bp.get("/readyz")
def readyz():
    state = current()
    problems = []
    try:
        state.jobs.ping()
        redis_ok = True
    except redis.exceptions.RedisError as exc:
        redis_ok = False
        problems.append(f"redis unreachable: {exc}")
    if not state.data.loaded:
        problems.append(f"dataset: {state.data.error}")
    body = {"redis": redis_ok, "data": state.data.loaded}
    if problems:
        return jsonify({"status": "not ready", "error": "not_ready", "message": "; ".join(problems), **body}), 503
    return jsonify({"status": "ready", **body})
