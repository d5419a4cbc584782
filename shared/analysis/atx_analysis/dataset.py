"""Load a traffic incident file once, normalise it, and index it for fast queries.

``load_dataset(path)`` recognises the format (docs/data.md), builds the canonical columns
(:mod:`atx_analysis.normalize`, :mod:`atx_analysis.columns`) and the indexes
(:mod:`atx_analysis.index`). The parsed columns are cached as an Arrow IPC file keyed by the
file's content hash and the format version (:mod:`atx_analysis.cache`); the next process
memory-maps it and starts in a fraction of a second without importing pandas, sharing the pages
with every other process that maps it. An unwritable cache directory just means no cache; a
read-only one (DATA_CACHE_MODE=readonly, the chart's pods) is only read.
"""

from __future__ import annotations

import collections
import datetime as dt
import gc
import logging
import os
import tempfile
import time
from functools import cached_property
from pathlib import Path
from typing import Any

import pyarrow as pa

from . import cache as _cache
from .cache import CACHE_VERSION, QUIET_SECONDS, DataCache, content_hash, file_stamp
from .columns import Columns
from .errors import DataFormatError, MissingColumnError
from .index import Index

log = logging.getLogger(__name__)

__all__ = [
    "CACHE_VERSION",
    "Dataset",
    "content_hash",
    "load_dataset",
    "parse_file",
    "release_after_jobs",
    "release_freed_memory",
]


def release_freed_memory() -> None:
    """Hand memory freed by Python and numpy back to the kernel (glibc ``malloc_trim``).

    Building the indexes frees tens of MB of temporaries, but glibc keeps freed heap pages in the
    process, so each worker would carry them as private memory for good; the parsed columns
    themselves are shared (memory-mapped) between the workers of a node. A no-op off glibc."""
    global _trim
    if _trim is None:
        try:
            import ctypes

            _trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _trim = False
    if _trim:
        _trim(0)


_trim: Any = None


def release_after_jobs() -> None:
    """What a worker hands back every 10 s after jobs: garbage that only a full collection frees,
    then :func:`release_freed_memory`.

    A chart drawn fresh is garbage once its PNG is out, but a Figure's parts refer to each other, so
    it waits for Python's next full collection, and its pixel buffer (~3 MB) with it: a worker that
    had drawn charts kept several dead ones privately (8 MB of the 79 MB each extra worker process
    added at 4.3 M rows). The start-up heap is frozen (:mod:`jobqueue.heap`), so the collection walks
    only what was built since: 0.1 ms in a worker that never drew a chart; once it has, matplotlib's
    ~54,000 objects make it 13-22 ms at load 7 (a pause of the job in hand, at most once in 10 s)."""
    gc.collect()
    release_freed_memory()


class Dataset:
    """The canonical columns of one data file plus their indexes. Treat it as read-only."""

    def __init__(
        self,
        columns: Columns,
        *,
        identity: str,
        format: str,
        path: str | None = None,
        counts: dict[str, int] | None = None,
        available: list[str] | None = None,
        from_cache: bool = False,
        reading: dict[str, Any] | None = None,
    ):
        self.columns = columns
        self.identity = identity
        self.format = format
        self.path = path
        self.counts = dict(counts or {})
        self.available = list(available if available is not None else columns.arrays)
        self.from_cache = from_cache
        self.reading = dict(reading or {})  # how the dates were read (normalize.normalize)
        self.cache_file: str | None = None  # the cache file mapped or written (load_dataset sets it)
        self.index = Index(columns)

    @property
    def rows(self) -> int:
        return self.columns.rows

    @cached_property
    def frame(self):
        """The data as a pandas DataFrame (built on first use; queries do not need it)."""
        return self.columns.to_frame()

    def require(self, column: str, operation: str | None = None) -> None:
        """Raise MissingColumnError if the source had no such column (e.g. a SODA $select subset)."""
        if column not in self.available:
            raise MissingColumnError(column, operation, self.format)

    def warm(self) -> Dataset:
        """Build the lazy indexes now (road search, top roads, radius) so no query pays for them."""
        self.index.warm()
        release_freed_memory()
        return self

    @cached_property
    def date_range(self) -> tuple[str | None, str | None]:
        idx = self.index
        if not idx.dated_rows:
            return None, None
        epoch = dt.date(1970, 1, 1)
        return (
            (epoch + dt.timedelta(days=idx.day0)).isoformat(),
            (epoch + dt.timedelta(days=idx.day0 + len(idx.day_counts) - 1)).isoformat(),
        )

    def date_warning(self) -> str | None:
        """What to log when at least 1% of the rows have no usable published date: those rows count
        in no date, hour or weekday figure, so a file whose dates are in a form the loader does not
        read (``06-Mar-2024 01:29``) would otherwise answer 0 for every date, silently."""
        missing, unreadable = self.counts.get("published_missing", 0), self.counts.get("published_unparseable", 0)
        if not self.rows:
            if skipped := self.counts.get("malformed_lines_skipped", 0):
                # it said "a header only?" for a file of 5,000 lines, all skipped (a header naming one
                # column more than the lines have)
                return (
                    f"none of the file's {skipped} data lines could be read: each has the wrong number of "
                    "fields for the header (counted in malformed_lines_skipped; docs/data.md): every answer "
                    "counts nothing"
                )
            return "the file has no incident rows (a header only?): every answer counts nothing"
        if (missing + unreadable) * 100 < self.rows:
            return None
        zones = self.reading.get("unread_zones") or {}
        named = (
            f"; zone names not read: {', '.join(f'{name} ({rows} values)' for name, rows in zones.items())}"
            if zones
            else ""
        )
        return (
            f"{missing + unreadable} of {self.rows} rows have no usable published date ({unreadable} in no "
            f"form the loader reads, {missing} empty): they count in no date, hour or weekday figure; "
            f"the forms read are listed in docs/data.md{named}"
        )

    def reading_warning(self) -> str | None:
        """What to log when DATA_DAY_FIRST=auto guessed the slashed dates month first (no day or
        month passes 12): ``/data`` and the web page said so, but the logs of a day-first file read
        as the wrong months said nothing."""
        if self.reading.get("decided_by") != "guess":
            return None
        return (
            f"slashed dates (05/02/2024) read {self.reading.get('slashed_dates')}: a guess, as no day or "
            "month in the file passes 12; set DATA_DAY_FIRST=true if the file is day first (false: "
            "month first, and no guess)"
        )

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
            "reading": self.reading,
            "from_cache": self.from_cache,
        }

    def __repr__(self) -> str:
        return f"Dataset({self.format}, {self.rows} rows, {self.identity[:12]})"


def parse_file(
    path: str | Path, max_bytes: int | None = None, day_first: bool | None = None
) -> tuple[Columns, str, dict[str, int], list[str], dict[str, Any]]:
    """Read and normalise a file, no cache: (columns, format name, bad-value counts, available columns,
    how the dates were read). ``day_first``: DATA_DAY_FIRST (None: told by the data, else a guess)."""
    from .formats import detect
    from .normalize import normalize
    from .readers import read_raw

    raw = read_raw(path, max_bytes)
    if raw.table.num_columns == 0:
        if raw.container.startswith("json"):
            # it said only "no columns" for the SODA API's answer to a query that matches nothing
            raise DataFormatError(
                f"{path}: no records (an empty list: the SODA API's answer when its query matches no "
                "incident, or an $offset past the last one)"
            )
        raise DataFormatError(f"{path}: no columns")
    # unnamed columns are extra columns, ignored: a spreadsheet saving the export writes ",," after each
    # line for cells once touched, and that file was refused for naming '' twice
    twice = [name for name, k in collections.Counter(raw.table.column_names).items() if k > 1 and name.strip()]
    if twice:
        raise DataFormatError(f"{path}: the header names {', '.join(map(repr, twice[:5]))} more than once")
    fmt, colmap = detect(raw.table.column_names)
    columns, counts, available, reading = normalize(raw.table, fmt, colmap, day_first)
    counts = {"malformed_lines_skipped": raw.skipped_lines, **counts}
    base, _, gz = raw.container.partition("+")
    name = f"soda-{base}" if fmt.name == "soda" else fmt.name if base == "csv" else f"{fmt.name}+{base}"
    if gz:
        name += "+gzip"
    return columns, name, counts, available, reading


def _read_cache(file: Path, identity: str) -> tuple[Columns, dict[str, Any]] | None:
    try:
        import pyarrow.ipc as ipc

        table = ipc.open_file(pa.memory_map(str(file), "r")).read_all()
        columns, meta = Columns.from_arrow(table)
    except Exception as exc:  # a torn or foreign file: ignore it and parse the source
        log.warning("ignoring unreadable data cache %s: %s", file, exc)
        return None
    if meta.get("identity") != identity or meta.get("version") != _cache.CACHE_VERSION:
        log.warning(
            "ignoring data cache %s: made for another file or format",
            file,
            extra={"cache_identity": meta.get("identity"), "cache_version": meta.get("version")},
        )
        return None
    return columns, meta


def _write_cache(file: Path, columns: Columns, meta: dict[str, Any]) -> bool:
    import pyarrow.ipc as ipc

    tmp = None
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        table = columns.to_arrow(meta)
        fd, tmp = tempfile.mkstemp(dir=file.parent, prefix=".tmp-", suffix=".arrow")
        os.close(fd)
        with ipc.new_file(tmp, table.schema) as writer:
            writer.write_table(table)
        os.chmod(tmp, 0o644)
        os.replace(tmp, file)
        return True
    except OSError as exc:  # read-only data directory and the like: run without a cache
        # a warning, not a note: every process will parse the file again (seconds and hundreds of MB
        # each at full size); DATA_CACHE_DIR elsewhere, or a loader-built cache, avoids it
        log.warning(
            "not caching parsed data at %s: %s (every process parses the file; set DATA_CACHE_DIR to a "
            "writable directory)",
            file,
            exc,
        )
        return False
    finally:
        if tmp and os.path.exists(tmp):
            os.unlink(tmp)


def load_dataset(
    path: str | Path,
    *,
    cache: bool = True,
    cache_dir: str | None = None,
    max_bytes: int | None = None,
    cache_mode: str = "readwrite",
    name: str | None = None,
    day_first: bool | None = None,
) -> Dataset:
    """Load ``path`` in any recognised format; raise DataFormatError if it is none of them.

    ``cache_dir`` (DATA_CACHE_DIR) defaults to ``.cache/`` beside the file; ``cache_mode``
    (DATA_CACHE_MODE: readwrite, readonly or off; :mod:`atx_analysis.cache`) says whether this
    process may build it; ``max_bytes`` (DATA_MAX_BYTES, default 1 GiB) bounds the file,
    decompressed; ``day_first`` (DATA_DAY_FIRST: true, false, or auto = None) how slashed dates
    are read. Callers pass them from their Settings: this package reads no environment
    variable. ``name``: cache under this file name instead of the path's (the loader checks a
    download in a temporary file that then becomes the data file).
    """
    from .datapath import not_a_file, refuse_url

    refuse_url(path)
    path = Path(path)
    if not path.is_file():
        raise not_a_file(path)
    store = DataCache.of(path, cache_dir, cache_mode if cache else "off", day_first)
    name = name or path.name
    for _ in range(LOAD_ATTEMPTS):
        before = file_stamp(path)
        try:
            dataset = _load(path, store, name, max_bytes, day_first, before)
        except DataFormatError:
            if file_stamp(path) == before:
                raise
        else:
            if _held_still(path, before, dataset.counts):
                return dataset
        log.warning(
            "data file changed while it was read; reading it again once it holds still",
            extra={"data_path": str(path), "quiet_seconds": QUIET_SECONDS},
        )
        _wait_until_quiet(path)
    raise DataFormatError(
        f"{path}: the file kept changing while it was read ({LOAD_ATTEMPTS} tries): is it still being "
        "written? Copy it beside DATA_PATH and move it into place when complete"
    )


# A file that changes while it is read (still being copied onto DATA_PATH when the API starts) is
# read again once it held still, this many times in all: a partial read loaded fine, with the rows
# so far, and the API kept it while the workers, starting later, read the whole file.
LOAD_ATTEMPTS = 3
QUIET_WAIT_LIMIT = 60.0  # seconds _wait_until_quiet waits at most for a file that keeps changing


def _held_still(path: Path, before: Any, counts: dict[str, Any]) -> bool:
    """Did the read see the file whole? Its stamp unchanged is not enough: a read can fall between
    two writes of a copy (a small file is parsed in milliseconds, holding the GIL), so a file
    modified in the last QUIET_SECONDS that ends in a cut line (skipped as malformed, no newline
    after it) is taken as still being written."""
    if file_stamp(path) != before:
        return False
    if before is None or not counts.get("malformed_lines_skipped"):
        return True
    if time.time() - before[3] / 1e9 >= QUIET_SECONDS:
        return True
    try:
        with path.open("rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) in (b"\n", b"\r")
    except OSError:
        return True


def _wait_until_quiet(path: Path) -> None:
    """Until the file has gone QUIET_SECONDS unmodified (or is gone), at most QUIET_WAIT_LIMIT."""
    deadline = time.monotonic() + QUIET_WAIT_LIMIT
    while time.monotonic() < deadline:
        stamp = file_stamp(path)
        if stamp is None or time.time() - stamp[3] / 1e9 >= QUIET_SECONDS:
            return
        time.sleep(0.2)


def _load(
    path: Path, store: DataCache, name: str, max_bytes: int | None, day_first: bool | None, before: Any
) -> Dataset:
    """One read of ``path``: the cache of its identity, else a parse (cached only when the file did
    not change since ``before``, its stamp, so no cache holds the columns of other bytes)."""
    identity = store.identity(path, remember=name == path.name)
    file = store.file(name, identity) if store.reads else None
    if file is not None and file.is_file():
        hit = _read_cache(file, identity)
        if hit is not None:
            columns, meta = hit
            dataset = Dataset(
                columns,
                identity=identity,
                format=meta["format"],
                path=str(path),
                counts=meta["counts"],
                available=meta["available"],
                from_cache=True,
                reading=meta.get("reading"),
            )
            dataset.cache_file = str(file)
            release_freed_memory()  # the index build's temporaries
            return dataset
    if store.mode == "readonly":
        log.warning(
            "data cache: no parsed cache of %s for this format (v%d) in %s: parsing it in memory in this "
            "process (the loader, jobqueue data fetch, builds the cache)",
            path.name,
            _cache.CACHE_VERSION,
            store.directory,
            extra={"data_path": str(path), "cache_file": str(file)},
        )
    columns, fmt, counts, available, reading = parse_file(path, max_bytes, day_first)
    written = False
    if store.writes and file is not None and _held_still(path, before, counts):
        written = _write_cache(
            file,
            columns,
            {
                "format": fmt,
                "counts": counts,
                "available": available,
                "reading": reading,
                "identity": identity,
                "version": _cache.CACHE_VERSION,
            },
        )
        if written and name == path.name:  # (a download checked under its final name: the loader prunes)
            # an edited data file left the cache of each earlier content (68 MB for the full file)
            # beside it for good; a process still mapping one keeps its pages
            removed = store.prune(name, identity)
            if removed:
                log.info(
                    "data cache: removed the caches of earlier contents", extra={"removed": [p.name for p in removed]}
                )
    dataset = Dataset(
        columns, identity=identity, format=fmt, path=str(path), counts=counts, available=available, reading=reading
    )
    dataset.cache_file = str(file) if written else None
    release_freed_memory()  # the parse's temporaries
    return dataset
