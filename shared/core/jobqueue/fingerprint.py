"""The identity of a request, for the result cache: operation, validated params, dataset identity.

The worker calls :func:`request_fingerprint` before running a job, so a repeat of a finished
request is answered from the stored result. Params must be the *validated* ones
(``Operation.validate``: defaults filled in, types coerced), so ``{}`` and ``{"n": 10}`` for
``top_locations`` are the same request. Without a dataset identity there is no fingerprint: a result
is only reusable on the very data it was computed from.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any
from collections.abc import Mapping


def request_fingerprint(operation: str, params: Mapping[str, Any], dataset_identity: str | None) -> str | None:
    if not dataset_identity:
        return None
    canonical = json.dumps(
        {"op": operation, "params": dict(params), "data": dataset_identity},
        sort_keys=True,
        separators=(",", ":"),
        allow_nan=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()
