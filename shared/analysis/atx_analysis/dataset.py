"""Load a traffic incident file once, normalise it, and index it for fast queries.

``load_dataset(path)`` recognises the format (docs/data.md), builds the canonical frame
(:mod:`atx_analysis.normalize`) and the indexes (:mod:`atx_analysis.index`). The parsed frame is
cached as Parquet keyed by the file's content hash, so the next process starts in well under a
second; a read-only data directory just means no cache (or set ``cache_dir`` / DATA_CACHE_DIR).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import tempfile
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import DataFormatError, MissingColumnError
from .formats import detect
from .index import Index
from .normalize import CATEGORY_COLUMNS, NO_DAY, normalize, sort_categories
from .readers import read_raw

log = logging.getLogger(__name__)

CACHE_VERSION = 1  # bump when the canonical frame or its derivation changes
CACHE_META_KEY = b"atx_analysis"


def content_hash(path: str | Path) -> str:
    """sha256 of the file's bytes: the dataset's identity (same bytes, same results)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


class Dataset:
    """The canonical frame of one data file plus its indexes. Treat it as read-only."""

    def __init__(self, frame: pd.DataFrame, *, identity: str, format: str, path: str | None = None,
                 counts: dict[str, int] | None = None, available: list[str] | None = None,
                 source_rows: int | None = None, from_cache: bool = False):
        self.frame = frame
        self.identity = identity
        self.format = format
        self.path = path
        self.counts = dict(counts or {})
        self.available = list(available if available is not None else frame.columns)
        self.source_rows = len(frame) if source_rows is None else source_rows
        self.from_cache = from_cache
        self.index = Index(frame)

    @property
    def rows(self) -> int:
        return len(self.frame)

    def require(self, column: str, operation: str | None = None) -> None:
        """Raise MissingColumnError if the source had no such column (e.g. a SODA $select subset)."""
        if column not in self.available:
            raise MissingColumnError(column, operation)

    def warm(self) -> "Dataset":
        """Build the lazy indexes now (road search, top roads, radius) so no query pays for them."""
        self.index.warm()
        return self

    @cached_property
    def date_range(self) -> tuple[str | None, str | None]:
        days = self.frame["local_day"].to_numpy()
        days = days[days != NO_DAY]
        if not len(days):
            return None, None
        epoch = dt.date(1970, 1, 1)
        return ((epoch + dt.timedelta(days=int(days.min()))).isoformat(),
                (epoch + dt.timedelta(days=int(days.max()))).isoformat())

    def info(self) -> dict[str, Any]:
        first, last = self.date_range
        return {
            "identity": self.identity,
            "format": self.format,
            "rows": self.rows,
            "date_range": {"first": first, "last": last, "timezone": "America/Chicago"},
            "path": self.path,
            "columns": self.available,
            "bad_values": self.counts,
            "from_cache": self.from_cache,
        }

    def __repr__(self) -> str:
        return f"Dataset({self.format}, {self.rows} rows, {self.identity[:12]})"


def from_frame(frame: pd.DataFrame, **kwargs: Any) -> Dataset:
    return Dataset(frame, **kwargs)


def parse_file(path: str | Path) -> tuple[pd.DataFrame, str, dict[str, int], list[str]]:
    """Read and normalise a file (no cache): (frame, format name, counts, available columns)."""
    raw = read_raw(path)
    if raw.table.num_columns == 0:
        raise DataFormatError(f"{path}: no columns")
    fmt, colmap = detect(raw.table.column_names)
    frame, counts, available = normalize(raw.table, fmt, colmap)
    counts = {"malformed_lines_skipped": raw.skipped_lines, **counts}
    base, _, gz = raw.container.partition("+")
    name = f"soda-{base}" if fmt.name == "soda" else fmt.name if base == "csv" else f"{fmt.name}+{base}"
    if gz:
        name += "+gzip"
    return frame, name, counts, available


def _cache_candidates(path: Path, identity: str, cache_dir: str | None) -> list[Path]:
    name = f"{path.name}.{identity[:20]}.v{CACHE_VERSION}.parquet"
    dirs = [Path(cache_dir)] if cache_dir else [path.parent / ".cache"]
    return [d / name for d in dirs]


def _read_cache(file: Path) -> tuple[pd.DataFrame, dict[str, Any]] | None:
    try:
        table = pq.read_table(file)
        meta = json.loads(table.schema.metadata[CACHE_META_KEY])
        frame = table.to_pandas()
    except Exception as exc:  # a torn or foreign file: ignore it and parse the source
        log.warning("ignoring unreadable data cache %s: %s", file, exc)
        return None
    for col in CATEGORY_COLUMNS:
        frame[col] = sort_categories(frame[col].array)
    return frame, meta


def _write_cache(file: Path, frame: pd.DataFrame, meta: dict[str, Any]) -> bool:
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pandas(frame, preserve_index=False)
        table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                               CACHE_META_KEY: json.dumps(meta).encode()})
        fd, tmp = tempfile.mkstemp(dir=file.parent, prefix=".tmp-", suffix=".parquet")
        os.close(fd)
        try:
            pq.write_table(table, tmp, compression="zstd")
            os.replace(tmp, file)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return True
    except OSError as exc:  # read-only data directory and the like: run without a cache
        log.info("not caching parsed data at %s: %s", file, exc)
        return False


def load_dataset(path: str | Path, *, cache: bool = True, cache_dir: str | None = None) -> Dataset:
    """Load ``path`` in any recognised format; raise DataFormatError if it is none of them.

    ``cache_dir`` defaults to DATA_CACHE_DIR, else ``.cache/`` beside the file.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"{path}: no such file")
    identity = content_hash(path)
    if cache_dir is None:
        cache_dir = os.environ.get("DATA_CACHE_DIR") or None
    files = _cache_candidates(path, identity, cache_dir) if cache else []
    for file in files:
        if file.is_file():
            hit = _read_cache(file)
            if hit is not None:
                frame, meta = hit
                return Dataset(frame, identity=identity, format=meta["format"], path=str(path),
                               counts=meta["counts"], available=meta["available"], from_cache=True)
    frame, fmt, counts, available = parse_file(path)
    if files:
        _write_cache(files[0], frame, {"format": fmt, "counts": counts, "available": available,
                                       "identity": identity, "version": CACHE_VERSION})
    return Dataset(frame, identity=identity, format=fmt, path=str(path), counts=counts, available=available)
