"""Download the live dataset from the City of Austin portal (for users with internet access).

Two sources: the portal's CSV export (one request, the whole file; ``url`` names another address
for it, such as a mirror) and the SODA API's JSON, fetched in pages (``$limit``/``$offset``
ordered by ``:id``) and written as one JSON array. :func:`copy` puts a local file in place the
same way. The data goes to a temporary file beside the target, is checked there (``check``,
e.g. by loading it), and replaces the target only then, so an interrupted or wrong download never
leaves a half or unusable file where the workers read.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from .errors import FetchError

PORTAL = "https://data.austintexas.gov"
EXPORT_PATH = "/api/views/dx9v-zd7x/rows.csv?accessType=DOWNLOAD"
SODA_PATH = "/resource/dx9v-zd7x.json"
SOURCES = ("export", "soda")

__all__ = ["SOURCES", "FetchError", "fetch"]


def _replace_atomically(
    target: Path, write: Callable[[object], int], check: Callable[[Path], object] | None = None
) -> int:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as fh:
            n = write(fh)
        if check is not None:
            check(Path(tmp))  # raises: the target stays as it was
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the file from pods running as another user
        os.replace(tmp, target)
        return n
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def copy(source: str | Path, output: str | Path, *, check: Callable[[Path], object] | None = None) -> Path:
    """Put a copy of the local file ``source`` at ``output`` as :func:`fetch` puts a download there."""
    source, output = Path(source), Path(output)
    if not source.is_file():
        raise FetchError(f"{source}: no such file")

    def write(fh) -> int:
        with open(source, "rb") as src:
            shutil.copyfileobj(src, fh, 1 << 20)
        return source.stat().st_size

    _replace_atomically(output, write, check)
    return output


def fetch(
    output: str | Path,
    *,
    source: str = "export",
    base_url: str = PORTAL,
    page_size: int = 50_000,
    timeout: float = 60.0,
    app_token: str | None = None,
    progress: Callable[[int], None] | None = None,
    url: str | None = None,
    check: Callable[[Path], object] | None = None,
) -> Path:
    """Download the dataset to ``output``; return its path. Raises FetchError on failure.

    ``url``: download this address as is (the export source only). ``check`` gets the complete
    download before it replaces ``output``; an exception from it keeps ``output`` as it was.
    429 and 5xx answers are retried with backoff, honouring ``Retry-After`` (``jobqueue.http``);
    ``progress(n)`` is called with the bytes (export) or records (soda) written so far."""
    import requests

    from jobqueue.http import retrying_session  # installed with the jobqueue command that runs this

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
                with session.get(url or base + EXPORT_PATH, headers=headers, stream=True, timeout=timeout) as resp:
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
                    params: dict[str, str | int] = {"$limit": page_size, "$offset": offset, "$order": ":id"}
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

        _replace_atomically(output, write, check)
    except requests.RequestException as exc:
        raise FetchError(f"download from {base} failed: {exc}") from None
    return output
