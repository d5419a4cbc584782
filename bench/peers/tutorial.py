"""The tutorial's analysis code, which is what the peers run (and what a user would deploy).

Load the CSV into a DataFrame once per process, derive a date column, and answer each
``incident_count_by_date`` call with a boolean mask over the whole frame: about 11 ms a call at
432k rows on the reference machine, the figure the targets in issue 6 were set against.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

_FRAME: pd.DataFrame | None = None


def load_frame(path: str) -> pd.DataFrame:
    df = pd.read_csv(path)
    df["Published Date"] = pd.to_datetime(df["Published Date"], format="%m/%d/%Y %I:%M:%S %p %z")
    df["date"] = df["Published Date"].dt.date
    return df


def frame() -> pd.DataFrame:
    """The process's frame, loaded on first use from ``BENCH_DATA`` (workers call it at start).

    The parsed frame is also pickled beside the CSV (a local file, never sent anywhere) and later
    worker starts read that: loading happens before the gate opens, so it is never timed, and
    this only keeps a full ``make bench`` (dozens of worker starts) within its time budget.
    """
    global _FRAME
    if _FRAME is None:
        path = Path(os.environ["BENCH_DATA"])
        cache = path.with_suffix(".frame.pkl")
        if cache.exists() and cache.stat().st_mtime >= path.stat().st_mtime:
            _FRAME = pd.read_pickle(cache)
        else:
            _FRAME = load_frame(str(path))
            tmp = cache.with_suffix(f".tmp{os.getpid()}")
            _FRAME.to_pickle(tmp)
            tmp.replace(cache)
    return _FRAME


def incident_count_by_date(date: str) -> dict[str, int]:
    df = frame()
    return {"incident_count": len(df[df["date"] == pd.to_datetime(date).date()])}


def incident_count_by_date_string_mask(df: pd.DataFrame, date: str) -> int:
    """A cheaper spelling some students use (string column, ``.sum()`` of the mask): the analysis
    benchmark's naive baseline. Only timed in-process here, to show how the ratios would rescale."""
    return int((df["date_str"] == date).sum())


def noop() -> dict[str, float]:
    return {"slept": 0.0}


def run(operation: str, params: dict) -> dict:
    if operation == "sleep":
        return noop()
    if operation == "incident_count_by_date":
        return incident_count_by_date(params["date"])
    raise ValueError(f"unknown operation {operation!r}")
