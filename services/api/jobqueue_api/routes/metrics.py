"""``GET /metrics``: the API's counters (merged across gunicorn workers) and the queue gauges."""

from __future__ import annotations

from flask import Blueprint, current_app

from ..metrics import exposition

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics():
    return exposition(current_app.extensions["jobqueue_queue_collector"])
