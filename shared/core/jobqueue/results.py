"""Where a finished job's result goes: inline in the job document, or stored under ``result:<id>``.

PNG results (``Operation.produces_png``) and JSON results larger than :data:`INLINE_LIMIT_BYTES`
are stored as a separate value (read with the binary client, ``jobs_redis(settings, decode=False)``)
and the document carries ``result_ref`` (the key) and ``result_type``. Small JSON stays inline so
``GET /status/<id>`` shows it, as the tutorial's clients expect.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import redis

from .jobs import Job

INLINE_LIMIT_BYTES = 256 * 1024
PNG = "image/png"
JSON = "application/json"


@dataclass
class PlacedResult:
    inline: Any  # what goes in the document's ``result`` (None when stored apart)
    blob: bytes  # what goes under result:<id> (b"" when inline)
    result_type: str


def place(result: Any, produces_png: bool) -> PlacedResult:
    if produces_png:
        if not isinstance(result, (bytes, bytearray)):
            raise TypeError(f"a PNG operation returned {type(result).__name__}, not bytes")
        return PlacedResult(None, bytes(result), PNG)
    text = json.dumps(result, separators=(",", ":"), allow_nan=False)
    if len(text) > INLINE_LIMIT_BYTES:
        return PlacedResult(None, text.encode(), JSON)
    return PlacedResult(result, b"", JSON)


def read_result(binary_jobs: redis.Redis, job: Job) -> tuple[bytes | Any, str] | None:
    """The result of a finished job: (JSON value or PNG bytes, content type); None if it expired."""
    if not job.result_ref:
        return job.result, job.result_type
    body = binary_jobs.get(job.result_ref)
    if body is None:
        return None
    if job.result_type == PNG:
        return body, PNG
    return json.loads(body), JSON
