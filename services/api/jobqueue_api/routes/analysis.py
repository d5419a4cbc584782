"""Synchronous analysis on the API's own copy of the dataset, for quick checks from curl.

``GET /analysis/<operation>?key=value`` runs one registry operation in the request; the
tutorial's ``GET /incident_count_by_date?date=...`` is the same for its one operation. Heavy or
many requests belong in the queue (``POST /submit``); these routes are for direct testing.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from atx_analysis.registry import ParamError, UnknownOperation

from ..auth import protect
from ..errors import ApiError
from ..green import offload
from ..state import current

bp = Blueprint("analysis", __name__)
protect(bp)


def _run(name: str):
    state = current()
    try:
        op = state.catalogue.get(name)
    except UnknownOperation as exc:
        raise ApiError(404, "unknown_operation", str(exc), operations=exc.known) from None
    dataset = None
    if op.needs_dataset:
        if not state.data.loaded:
            raise ApiError(503, "data_not_loaded", f"the dataset is not loaded: {state.data.error}")
        dataset = state.data.dataset
    try:
        # validate() checks each parameter; run() may still refuse a combination (end before start)
        # on a native thread: a pandas/matplotlib run must not stall the event loop's other requests
        result = offload(op.run, dataset, op.validate(request.args.to_dict(flat=True)))
    except ParamError as exc:
        raise ApiError(400, "invalid_param", exc.message, **({"param": exc.param} if exc.param else {})) from None
    if op.produces_png:
        return Response(result, mimetype="image/png")
    return jsonify(result)


@bp.get("/analysis/<operation>")
def analysis(operation: str):
    return _run(operation)


@bp.get("/incident_count_by_date")
def incident_count_by_date():
    return _run("incident_count_by_date")


@bp.get("/data")
def data():
    state = current()
    if not state.data.loaded:
        raise ApiError(503, "data_not_loaded", f"the dataset is not loaded: {state.data.error}")
    return jsonify(state.data.dataset.info())
