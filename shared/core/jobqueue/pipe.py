"""Standard output cut short by its reader (``... | head``, quitting ``less``): a quiet stop with
status 141, as a Unix tool killed by SIGPIPE, instead of a BrokenPipeError traceback (status 1)
or Python's "Exception ignored" at exit (status 120). One place for every command in the tree."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable

SIGPIPE_STATUS = 128 + 13  # what a shell reports for a command its pipe's reader stopped (as `cat`)


def reader_gone() -> int:
    """For an ``except BrokenPipeError``: the rest of the output (and the exit's own flush) goes to
    /dev/null, so nothing more is raised; returns the status to exit with."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return SIGPIPE_STATUS


def run(main: Callable[[], int | None]) -> int:
    """``sys.exit(run(main))`` in a command's ``__main__`` block: its status, or 141 if the reader
    went away. The final flush happens here, so lines still buffered cannot fail at exit."""
    try:
        status = main()
        sys.stdout.flush()
    except BrokenPipeError:
        return reader_gone()
    return status or 0
