"""Whether a data path names a file, and when it does not, why in words: a URL, a folder, white
space or a quoted '~' in the name, a relative path looked for elsewhere.

Kept apart from :mod:`atx_analysis.readers` so that a worker mapping the columnar cache checks its
path without importing pyarrow's CSV, Parquet and compute modules (about 7 MB of each process's own
memory that the cache path never uses).
"""

from __future__ import annotations

import re
from pathlib import Path

from .errors import DataFormatError

URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def refuse_url(path: str | Path) -> None:
    """A data path that is a URL (the portal's address, ``file:///...``) is refused saying so: as a
    path its double slash folded, and the error read "https:/data...: no such file"."""
    if isinstance(path, str) and URL.match(path):
        raise DataFormatError(
            f"{path} is a URL, but the data file must be a file on this machine: download it first "
            "(jobqueue data fetch --output data/traffic_incidents.csv; docs/data.md) and give that file's path"
        )


def odd_path(path: str | Path) -> tuple[str, str] | None:
    """Why a path that is not there may not be the one meant, and the fix, when no shell shaped it
    as it would have: a white space around it (DATA_PATH=" /data/x.csv", a quoted value, a YAML
    string) or a '~' (quoted, or from a .env or compose file) is part of the name. Else None. The
    API's error (:func:`not_a_file`) and the worker's wait log both say it."""
    text = str(path)
    if text != text.strip():
        # it said "/data/x.csv: no such file" about a file that is there: the space was unseen
        return (
            "the path begins or ends with white space, which is part of the name here",
            f"write it without, e.g. {text.strip()!r}",
        )
    if text.startswith("~"):
        return (
            "'~' is expanded by a shell only where it is unquoted; here it is part of the name",
            f"write the full path, e.g. {Path(text).expanduser()}",
        )
    return None


def not_a_file(path: Path) -> DataFormatError:
    """The error for a path that is no file: a folder (a volume's mount point given instead of the
    file in it) is named as one, with what it holds."""
    if path.is_dir():
        inside = sorted(p.name for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        held = f"; it holds {', '.join(inside[:5])}{', ...' if len(inside) > 5 else ''}" if inside else " (empty)"
        return DataFormatError(f"{path} is a folder, not a file: give the data file's path{held}")
    odd = odd_path(path)
    if odd is not None:
        shown = repr(str(path)) if str(path) != str(path).strip() else str(path)
        return DataFormatError(f"{shown}: no such file ({odd[0]}): {odd[1]}")
    if not path.is_absolute():
        # `jobqueue-api` started outside the checkout read the default data/traffic_incidents_sample.csv
        # from where it ran, and said only "...: no such file", as if the file were gone
        return DataFormatError(
            f"{path}: no such file (a relative path, looked for in {Path.cwd()}: give an absolute path, "
            "or start from the folder it is relative to)"
        )
    return DataFormatError(f"{path}: no such file")
