"""The identity of a request, for the result cache: operation, validated params, dataset identity
and the loader's format version.

The worker calls :func:`request_fingerprint` before running a job, so a repeat of a finished
request is answered from the stored result. Params must be the *validated* ones
(``Operation.validate``: defaults filled in, types coerced), so ``{}`` and ``{"n": 10}`` for
``top_locations`` are the same request. Without a dataset identity there is no fingerprint: a result
is only reusable on the very data it was computed from, read by the same rules: the dataset identity
is the file's sha256, which a loader upgrade that reads the same bytes differently (a date form
newly understood) does not change, so the loader's format version (``atx_analysis.cache.CACHE_VERSION``)
is part of the request too, with the day-first reading DATA_DAY_FIRST forced, if any
(``atx_analysis.cache.loader_version``).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any
from collections.abc import Mapping


def request_fingerprint(
    operation: str, params: Mapping[str, Any], dataset_identity: str | None, loader_version: int | str
) -> str | None:
    if not dataset_identity:
        return None
    canonical = json.dumps(
        {"op": operation, "params": dict(params), "data": dataset_identity, "loader": loader_version},
        sort_keys=True,
        separators=(",", ":"),
        allow_nan=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()
