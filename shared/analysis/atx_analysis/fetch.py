"""Download the live dataset from the City of Austin portal (for users with internet access).

Two sources: the portal's CSV export (one request, the whole file) and the SODA API's JSON,
fetched in pages (``$limit``/``$offset`` ordered by ``:id``) and written as one JSON array. The
download goes to a temporary file beside the target and replaces it only when complete, then is
checked by loading it, so an interrupted or wrong download never leaves a half file behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Callable


PORTAL = "https://data.austintexas.gov"
EXPORT_PATH = "/api/views/dx9v-zd7x/rows.csv?accessType=DOWNLOAD"
SODA_PATH = "/resource/dx9v-zd7x.json"
SOURCES = ("export", "soda")

from .errors import FetchError

__all__ = ["FetchError", "fetch", "SOURCES"]


def _replace_atomically(target: Path, write: Callable[[object], int]) -> int:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as fh:
            n = write(fh)
        os.replace(tmp, target)
        return n
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def fetch(output: str | Path, *, source: str = "export", base_url: str = PORTAL, page_size: int = 50_000,
          timeout: float = 60.0, app_token: str | None = None,
          progress: Callable[[int], None] | None = None) -> Path:
    """Download the dataset to ``output``; return its path. Raises FetchError on failure.

    429 and 5xx answers are retried with backoff, honouring ``Retry-After`` (``jobqueue.http``);
    ``progress(n)`` is called with the bytes (export) or records (soda) written so far."""
    import requests

    from jobqueue.http import retrying_session   # installed with the jobqueue command that runs this

    if source not in SOURCES:
        raise FetchError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}")
    output = Path(output)
    headers = {"User-Agent": "atx-jobqueue-fetch"}
    if app_token:
        headers["X-App-Token"] = app_token
    base = base_url.rstrip("/")
    session = retrying_session(idempotent=True, statuses=(429, 500, 502, 503, 504))
    try:
        if source == "export":
            def write(fh) -> int:
                with session.get(base + EXPORT_PATH, headers=headers, stream=True, timeout=timeout) as resp:
                    resp.raise_for_status()
                    total = 0
                    for chunk in resp.iter_content(1 << 20):
                        fh.write(chunk)
                        total += len(chunk)
                        if progress:
                            progress(total)
                    return total
        else:
            def write(fh) -> int:
                fh.write(b"[")
                rows, offset = 0, 0
                while True:
                    params = {"$limit": page_size, "$offset": offset, "$order": ":id"}
                    resp = session.get(base + SODA_PATH, params=params, headers=headers, timeout=timeout)
                    resp.raise_for_status()
                    page = resp.json()
                    if not isinstance(page, list):
                        raise FetchError(f"SODA answered with {type(page).__name__}, not a list of records")
                    for rec in page:
                        fh.write((b",\n" if rows else b"\n") + json.dumps(rec).encode())
                        rows += 1
                    if progress:
                        progress(rows)
                    if len(page) < page_size:
                        break
                    offset += page_size
                fh.write(b"\n]\n")
                return rows

        _replace_atomically(output, write)
    except requests.RequestException as exc:
        raise FetchError(f"download from {base} failed: {exc}") from None
    return output
