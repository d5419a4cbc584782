"""The start-up heap, frozen: what a long-lived process built before serving is never scanned again.

A process of the API or the worker builds its heap once (Flask and its routes, redis-py, pandas,
numpy, the catalogue, the dataset's Python objects: about 109,000 tracked objects in the API,
46,000 in the worker) and then serves from it for days. Left in the collector's oldest generation,
that heap is traversed by every full collection, and the first one a gunicorn process makes after
the fork also writes to the collector's header of every object, which copies the shared pages: on
the 2-core machine of docs/benchmarks-history.md (tenth session) a full collection over it took 180-380 ms in the API and
80-160 ms in the worker, all of it a pause for whatever request or job was in hand. ``gc.freeze()``
moves the survivors of one last collection to the permanent generation, which the collector skips;
the objects themselves are freed as usual when nothing refers to them (only a cycle among them would
stay). The thresholds are Python's own: what a request or a job allocates is young and cheap.
"""

from __future__ import annotations

import gc
import time


def freeze_startup_heap() -> dict[str, float]:
    """Collect once, then freeze every tracked object: call it when start-up is done, before a
    process forks its workers (they inherit the frozen heap) and before it serves. Returns what the
    start-up line logs: the objects frozen and the collection's seconds."""
    started = time.perf_counter()
    gc.collect()
    gc.freeze()
    return {"frozen_objects": gc.get_freeze_count(), "seconds": round(time.perf_counter() - started, 3)}
