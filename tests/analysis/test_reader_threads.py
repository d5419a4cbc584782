"""A CSV of one block is parsed on the calling thread: a threaded pyarrow read sometimes aborted the
process at its exit (exit 134 after a refusal that should exit 2; atx_analysis.readers.CSV_BLOCK)."""

from __future__ import annotations

import subprocess
import sys

COUNT_THREADS = "import os; print(len(os.listdir('/proc/self/task')))"


def threads_after(code: str) -> int:
    """The threads a fresh interpreter has after running ``code`` (pyarrow's pools are started on
    first use and stay until exit)."""
    done = subprocess.run(
        [sys.executable, "-c", f"{code}\n{COUNT_THREADS}"], capture_output=True, text=True, check=True
    )
    return int(done.stdout.strip().splitlines()[-1])


def test_a_one_block_csv_starts_no_parsing_threads(tmp_path):
    small = tmp_path / "small.csv"
    small.write_text("Issue Reported,Address\nCrash Urgent,N LAMAR BLVD\n")
    ours = threads_after(f"from atx_analysis.readers import read_raw; read_raw({str(small)!r})")
    serial = threads_after(
        "import pyarrow.csv as c\n"
        f"with open({str(small)!r}, 'rb') as fh: c.read_csv(fh, read_options=c.ReadOptions(use_threads=False))"
    )
    assert ours == serial, f"reading a one-block CSV left {ours} threads, a serial pyarrow read {serial}"
