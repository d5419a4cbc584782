"""Synchronous analysis on the API's own copy of the dataset, for quick checks from curl.

``GET /analysis/<operation>?key=value`` runs one registry operation in the request; the
tutorial's ``GET /incident_count_by_date?date=...`` is the same for its one operation. Heavy or
many requests belong in the queue (``POST /submit``); these routes are for direct testing.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from flask import Blueprint, Response, jsonify, request

from atx_analysis.registry import ParamError, UnknownOperation

from ..auth import protect
from ..errors import ApiError
from ..green import offload
from ..state import current

bp = Blueprint("analysis", __name__)
protect(bp)

PLOT_CACHE_ENTRIES = 64  # PNGs kept per API process, least recently used out first
PLOT_CACHE_BYTES = 32 * 1024 * 1024


class PlotGate:
    """Synchronous plots of one process: at most ``limit`` render at once (a render is ~0.5 s of
    CPU and ~100 MB of matplotlib memory; 32 at once took p50 24 s and +240 MB), and finished
    PNGs are kept by operation and normalised parameters, so a repeat costs no render."""

    def __init__(self, limit: int):
        self._slots = threading.BoundedSemaphore(max(limit, 1)) if limit > 0 else None
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple, bytes] = OrderedDict()
        self._bytes = 0

    def cached(self, key: tuple) -> bytes | None:
        with self._lock:
            png = self._cache.get(key)
            if png is not None:
                self._cache.move_to_end(key)
            return png

    def keep(self, key: tuple, png: bytes) -> None:
        with self._lock:
            if key in self._cache or len(png) > PLOT_CACHE_BYTES // 4:
                return
            self._cache[key] = png
            self._bytes += len(png)
            while len(self._cache) > PLOT_CACHE_ENTRIES or self._bytes > PLOT_CACHE_BYTES:
                _, old = self._cache.popitem(last=False)
                self._bytes -= len(old)

    def render(self, fn, *args) -> bytes:
        if self._slots is None or not self._slots.acquire(blocking=False):
            err = ApiError(
                503,
                "plots_busy",
                "this API process is drawing as many plots as it may "
                "(SYNC_PLOTS_PER_PROCESS); retry shortly, or POST /submit it as a job",
            )
            err.headers["Retry-After"] = "2"
            raise err
        try:
            return offload(fn, *args)
        finally:
            self._slots.release()


def _query_params() -> dict[str, str]:
    """The query string as one value per name; a repeated name is a 400, as on /jobs (a silent
    pick of the first or last would hide the client's bug)."""
    for name in request.args:
        if len(request.args.getlist(name)) > 1:
            raise ApiError(400, "invalid_param", f"'{name}' is given more than once; give it once", param=name)
    return request.args.to_dict(flat=True)


def _run(name: str):
    state = current()
    try:
        op = state.catalogue.get(name)
    except UnknownOperation as exc:
        raise ApiError(404, "unknown_operation", str(exc), **exc.details()) from None
    dataset = None
    if op.needs_dataset:
        if not state.data.refresh().loaded:
            raise ApiError(503, "data_not_loaded", f"the dataset is not loaded: {state.data.error}")
        dataset = state.data.dataset
    try:
        params = op.validate(_query_params())
        op.check_params(dataset, params)
        if op.produces_png:
            gate = state.plot_gate
            key = (op.name, tuple(sorted(params.items())), getattr(dataset, "identity", None))
            png = gate.cached(key)
            hit = png is not None
            if png is None:
                png = gate.render(op.run, dataset, params)
                gate.keep(key, png)
            return Response(png, mimetype="image/png", headers={"X-Plot-Cache": "hit" if hit else "miss"})
        # on a native thread: a pandas run must not stall the event loop's other requests
        result = offload(op.run, dataset, params)
    except ParamError as exc:
        raise ApiError(400, "invalid_param", exc.message, **({"param": exc.param} if exc.param else {})) from None
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
    if not state.data.refresh().loaded:
        raise ApiError(503, "data_not_loaded", f"the dataset is not loaded: {state.data.error}")
    return jsonify(state.data.dataset.info())
