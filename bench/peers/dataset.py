"""A deterministic, tutorial-style traffic incident CSV for the peer benchmarks.

The peers load the same file the tutorial would (the City of Austin portal's CSV export columns),
so "data loaded once per worker process" costs them what it costs a student's deployment. The
file is generated once per row count (seeded, so every run and machine gets the same bytes) and
kept under ``.run/bench/data/``; nothing here is committed.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = REPO_ROOT / ".run" / "bench" / "data"
SEED = 332
FORMAT_VERSION = 1  # bump when the generated layout changes, so stale caches are not reused

ISSUES = [
    "Crash Urgent",
    "Traffic Hazard",
    "Crash Service",
    "COLLISION",
    "Stalled Vehicle",
    "TRFC HAZD/ DEBRIS",
    "zSTALLED VEHICLE",
    "COLLISION WITH INJURY",
    "LOOSE LIVESTOCK",
    "BLOCKED DRIV/ HWY",
    "VEHICLE FIRE",
    "COLLISN/ LVNG SCN",
    "Traffic Impediment",
    "ICY ROADWAY",
]
ROADS = [
    "N IH 35 SVRD",
    "S IH 35 SVRD",
    "N MOPAC EXPY",
    "S MOPAC EXPY",
    "W PARMER LN",
    "E RIVERSIDE DR",
    "N LAMAR BLVD",
    "S LAMAR BLVD",
    "E BEN WHITE BLVD",
    "W SLAUGHTER LN",
    "BURNET RD",
    "S CONGRESS AVE",
    "E 7TH ST",
    "RESEARCH BLVD",
    "N US 183",
    "SH 71",
    "W 38TH ST",
    "AIRPORT BLVD",
]
AGENCIES = ["AUSTIN PD", "TRAVIS COUNTY SHERIF", "AUSTIN FIRE DEPARTMENT"]
FIRST_DAY = "2018-01-01"
DAYS = 8 * 365


def dataset_path(rows: int, directory: Path | None = None) -> Path:
    return (directory or CACHE_DIR) / f"tutorial_incidents_{rows}_v{FORMAT_VERSION}.csv"


def ensure_dataset(rows: int = 432_000, directory: Path | None = None) -> Path:
    """Path of the generated CSV with ``rows`` rows, writing it first if it is not cached yet."""
    path = dataset_path(rows, directory)
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = generate_frame(rows)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    frame.to_csv(tmp, index=False)
    tmp.replace(path)  # atomic: a concurrent reader never sees half a file
    return path


def generate_frame(rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(SEED)
    seconds = np.sort(rng.integers(0, DAYS * 86400, rows))
    published = pd.Timestamp(FIRST_DAY, tz="UTC") + pd.to_timedelta(seconds, unit="s")
    status_dt = published + pd.to_timedelta(rng.integers(600, 6 * 3600, rows), unit="s")
    lat = np.round(30.27 + rng.normal(0, 0.08, rows), 6)
    lon = np.round(-97.74 + rng.normal(0, 0.08, rows), 6)
    numbers = rng.integers(100, 12000, rows)
    roads = np.array(ROADS, dtype=object)[rng.integers(0, len(ROADS), rows)]
    addresses = pd.Series(numbers).astype(str).str.cat(pd.Series(roads), sep=" ")
    fmt = "%m/%d/%Y %I:%M:%S %p +0000"  # the portal's CSV export spelling
    return pd.DataFrame(
        {
            "Traffic Report ID": [f"{h:016X}_{s}" for h, s in zip(rng.integers(0, 2**63, rows), seconds)],
            "Published Date": published.strftime(fmt),
            "Issue Reported": np.array(ISSUES, dtype=object)[rng.integers(0, len(ISSUES), rows)],
            "Location": [f"POINT ({x} {y})" for x, y in zip(lon, lat)],
            "Latitude": lat,
            "Longitude": lon,
            "Address": addresses,
            "Status": np.where(rng.random(rows) < 0.98, "ARCHIVED", "ACTIVE"),
            "Status Date": status_dt.strftime(fmt),
            "Agency": np.array(AGENCIES, dtype=object)[rng.integers(0, len(AGENCIES), rows)],
        }
    )


def job_dates(count: int, seed: int = 7) -> list[str]:
    """``count`` dates (YYYY-MM-DD) spread over the data's range, the same for every peer."""
    rng = np.random.default_rng(seed)
    offsets = rng.integers(0, DAYS, count)
    first = pd.Timestamp(FIRST_DAY)
    return [(first + pd.Timedelta(days=int(o))).strftime("%Y-%m-%d") for o in offsets]
