"""Where the parsed columns of a data file are kept for other processes (DATA_CACHE_DIR).

A cache directory holds, per data file name:

- ``<name>.<sha256[:20]>.v<CACHE_VERSION>.arrow``: the canonical columns and stored indexes as an
  Arrow IPC file. Readers memory-map it, so the processes and pods of one node share its pages.
- ``<name>.identity.json``: the data file's size, mtime and inode with its sha256, so a reader of
  an unchanged file knows the hash without reading the whole file.

A cache file is found only by the same content and the same format version: a replaced data file
(a reload) never meets the old file's cache, and during a rolling upgrade the new pods (another
CACHE_VERSION) and the old ones each find their own file, side by side.

Modes (DATA_CACHE_MODE): ``readwrite`` builds the cache when it is missing and reuses it (make up,
the chart's loader); ``readonly`` only reads what the loader built and never writes (pods that
mount the data volume read-only): a missing or stale cache means parsing in memory, with a warning
saying so; ``off`` neither reads nor writes.

Standard library only: the worker's wait-for-data init container uses it within 64 MiB.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("atx_analysis.dataset")

CACHE_VERSION = 11  # bump when the canonical columns or their derivation change
# (once per release: the loader prunes versions before the previous one, so a second bump in the
# same release would delete the running release's cache under the old pods of a rolling upgrade)
MODES = ("readwrite", "readonly", "off")
STALE_TEMP_SECONDS = 3600  # a write interrupted this long ago (a killed loader) left its temp file


# the reading DATA_DAY_FIRST forced on slashed dates, in the cache's name and the result cache's key:
# the same bytes read day first and month first are two datasets (auto: no mark)
TAGS = ("", ".dmy", ".mdy")


def reading_tag(day_first: bool | None) -> str:
    return "" if day_first is None else ".dmy" if day_first else ".mdy"


def loader_version(day_first: bool | None = None) -> int | str:
    """What the result cache keys a request's reading on (jobqueue.fingerprint): the format
    version, with the forced day-first reading if any."""
    tag = reading_tag(day_first)
    return f"{CACHE_VERSION}{tag}" if tag else CACHE_VERSION


def content_hash(path: str | Path) -> str:
    """sha256 of the file's bytes: the dataset's identity (same bytes, same results)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def file_stamp(path: str | Path) -> tuple[int, int, int, int] | None:
    """The file's identity and state (device, inode, size, mtime): what the API and the workers
    compare to see that a data file they could not load has changed. None: no such file."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


# how long a changed data file must have gone unmodified before a process that could not load it
# tries again: a file still being copied or written has an mtime of now, and would be read half-way
QUIET_SECONDS = 2.0


def worth_retrying(path: str | Path, failed_on: tuple[int, int, int, int] | None) -> bool:
    """Has the file a load failed on (its :func:`file_stamp` then) changed, and then held still for
    :data:`QUIET_SECONDS`? One stat."""
    stamp = file_stamp(path)
    return stamp is not None and stamp != failed_on and time.time() - stamp[3] / 1e9 >= QUIET_SECONDS


def _stamp(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino}


@dataclass(frozen=True)
class DataCache:
    """The cache directory of one data file, and what this process may do with it."""

    directory: Path
    mode: str = "readwrite"
    day_first: bool | None = None  # DATA_DAY_FIRST (None: auto), part of the file's name (reading_tag)

    @classmethod
    def of(
        cls, path: str | Path, cache_dir: str | None = None, mode: str = "readwrite", day_first: bool | None = None
    ) -> DataCache:
        if mode not in MODES:
            raise ValueError(f"cache mode {mode!r}: choose one of {', '.join(MODES)}")
        return cls(Path(cache_dir) if cache_dir else Path(path).parent / ".cache", mode, day_first)

    @property
    def reads(self) -> bool:
        return self.mode != "off"

    @property
    def writes(self) -> bool:
        return self.mode == "readwrite"

    def file(self, name: str, identity: str, version: int | None = None, tag: str | None = None) -> Path:
        version = CACHE_VERSION if version is None else version
        tag = reading_tag(self.day_first) if tag is None else tag
        return self.directory / f"{name}.{identity[:20]}.v{version}{tag}.arrow"

    def memo(self, name: str) -> Path:
        return self.directory / f"{name}.identity.json"

    def _memo_of(self, path: Path) -> dict | None:
        """The memo of this exact file (same size, nanosecond mtime and inode), if any."""
        try:
            known = json.loads(self.memo(path.name).read_text())
            stamp = _stamp(path)
        except (OSError, ValueError):
            return None
        if (
            isinstance(known, dict)
            and {k: known.get(k) for k in stamp} == stamp
            and isinstance(known.get("sha256"), str)
        ):
            return known
        return None

    def remembered(self, path: Path) -> str | None:
        """The hash remembered for this exact file, if any."""
        known = self._memo_of(path)
        return known["sha256"] if known else None

    def loader_done(self, path: Path) -> bool:
        """Has a loader of this cache version (or a later one) finished with this exact file?"""
        known = self._memo_of(path)
        version = known.get("loader_version") if known else None
        return isinstance(version, int) and version >= CACHE_VERSION

    def identity(self, path: Path, remember: bool = True) -> str:
        """The content hash of ``path``: remembered, or computed (and remembered when this process writes).

        Hashing 100 MB costs a tenth of a second or more at every start; an unchanged file (same
        size, nanosecond mtime and inode, as make and git assume) reuses the remembered hash."""
        if self.reads:
            known = self.remembered(path)
            if known:
                return known
        before = _stamp(path)
        identity = content_hash(path)
        # a file written to while it was hashed is not remembered: the memo would pair the stamp of
        # the finished file with the hash of part of it, and every later start would trust it
        if remember and self.writes and _stamp(path) == before:
            self.remember(path, identity)
        elif self.mode == "readonly":
            log.info(
                "data cache: no identity remembered for this %s; hashed it (the loader remembers it)",
                path.name,
                extra={"data_path": str(path), "cache_dir": str(self.directory)},
            )
        return identity

    def remember(self, path: Path, identity: str, *, loaded: bool = False) -> bool:
        """Write the memo of ``path`` (its current stat) atomically; False when the directory is not writable.

        ``loaded``: the loader is done with this file for this cache version (the cache is built,
        or could not be), so a reader waiting for the cache (:func:`wait_until_ready`) stops waiting."""
        doc: dict[str, object] = {**_stamp(path), "sha256": identity}
        if loaded:
            doc["loader_version"] = CACHE_VERSION
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            memo = self.memo(path.name)
            tmp = memo.with_name(f".{memo.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(doc))
            os.chmod(tmp, 0o644)
            os.replace(tmp, memo)
            return True
        except OSError:
            return False

    def ready(self, path: Path) -> Path | None:
        """The cache file a reader of ``path`` would map, if the loader has built it (no hashing)."""
        identity = self.remembered(path)
        if identity is None:
            return None
        file = self.file(path.name, identity)
        return file if file.is_file() else None

    def prune(self, name: str, identity: str) -> list[Path]:
        """Remove the caches of ``name`` that no reader can want any more: other contents (a replaced
        dataset), versions before the previous one, and temp files of interrupted writes. This
        version's and the previous version's files of the current content stay, so the old pods of
        a rolling upgrade still find theirs. Returns what was removed."""
        removed: list[Path] = []
        keep = {self.file(name, identity, v, tag).name for v in (CACHE_VERSION, CACHE_VERSION - 1) for tag in TAGS}
        ours = re.compile(rf"{re.escape(name)}\.[0-9a-f]{{20}}\.v\d+(?:\.dmy|\.mdy)?\.arrow")
        try:
            entries = list(self.directory.iterdir())
        except OSError:
            return removed
        for entry in entries:
            old_cache = ours.fullmatch(entry.name) is not None and entry.name not in keep
            try:
                stale_temp = entry.name.startswith(".tmp-") and time.time() - entry.stat().st_mtime > STALE_TEMP_SECONDS
                if old_cache or stale_temp:
                    entry.unlink()
                    removed.append(entry)
            except OSError:
                pass
        return removed


def wait_until_ready(
    path: str | Path,
    cache_dir: str | None,
    timeout: float,
    *,
    poll: float = 2.0,
    say=print,
    day_first: bool | None = None,
) -> Path | None:
    """Wait for the data file, then up to ``timeout`` seconds for its cache of this version.

    The worker pods' init container: during an upgrade that changes CACHE_VERSION the data is
    already there but its new cache is being built by the new API pod's loader; a worker that
    waits maps it instead of parsing the file itself. Returns the cache file, or None after the
    timeout (the worker then parses in memory, and says so)."""
    path = Path(path)
    while not (path.is_file() and path.stat().st_size > 0):
        say(f"waiting for {path}")
        time.sleep(poll)
    say(f"found {path}")
    cache = DataCache.of(path, cache_dir, "readonly", day_first)
    deadline = time.monotonic() + timeout
    while True:
        file = cache.ready(path)
        if file is not None:
            say(f"found its parsed cache {file}")
            return file
        if cache.loader_done(path):
            say(
                f"the loader is done with {path.name} but left no parsed cache (format v{CACHE_VERSION}) in "
                f"{cache.directory}: the worker will parse the file in memory"
            )
            return None
        if time.monotonic() >= deadline:
            if timeout > 0:
                say(
                    f"no parsed cache of {path.name} (format v{CACHE_VERSION}) in {cache.directory} after "
                    f"{timeout:g} s: the worker will parse the file in memory"
                )
            return None
        say(f"waiting for the parsed cache of {path.name} (format v{CACHE_VERSION}) in {cache.directory}")
        time.sleep(min(poll, max(0.0, deadline - time.monotonic())))
