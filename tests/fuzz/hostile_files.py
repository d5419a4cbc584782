"""Hostile data files, made cheaply: a sparse 1 GiB line, millions of columns, a gzip bomb.

The bomb repeats one gzip member many times (a valid multi-member gzip file): a few MB on disk,
gigabytes once decompressed, and seconds to write.
"""

from __future__ import annotations

import gzip
from pathlib import Path

GiB = 1 << 30
HEADER = (
    b"Traffic Report ID,Published Date,Issue Reported,Location,Latitude,Longitude,Address,Status,Status Date,Agency\n"
)
ROW = b"ABC123,03/06/2024 10:00:00 AM +0000,Crash Urgent,POINT (-97.7 30.2),30.2,-97.7,100 Main St,ACTIVE,03/06/2024 10:30:00 AM +0000,AUSTIN PD\n"


def one_huge_line(path: Path, size: int = GiB) -> Path:
    """No newline at all: a 1 GiB first 'line' of NUL bytes (a sparse file: instant, no disk use)."""
    with open(path, "wb") as fh:
        fh.truncate(size)
    return path


def header_then_huge_line(path: Path, size: int = GiB) -> Path:
    with open(path, "wb") as fh:
        fh.write(HEADER)
        fh.write(b"x" * 64)
        fh.truncate(size)
    return path


def million_columns(path: Path, columns: int = 2_000_000) -> Path:
    with open(path, "wb") as fh:
        fh.write(b",".join(b"c%d" % i for i in range(columns)) + b"\n")
        fh.write(b",".join(b"1" for _ in range(columns)) + b"\n")
    return path


def gzip_bomb(path: Path, decompressed: int = 2 * GiB, member_bytes: int = 64 << 20) -> Path:
    """Valid incident CSV rows, ``decompressed`` bytes of them, in a small multi-member gzip."""
    body = ROW * (member_bytes // len(ROW))
    first = gzip.compress(HEADER + body, compresslevel=9)
    member = gzip.compress(body, compresslevel=9)
    with open(path, "wb") as fh:
        fh.write(first)
        for _ in range(decompressed // len(body) - 1):
            fh.write(member)
    return path


def json_bomb(path: Path, depth: int = 100_000) -> Path:
    path.write_bytes(b"[" * depth + b"]" * depth)
    return path
