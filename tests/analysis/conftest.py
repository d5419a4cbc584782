"""Hand-written fixtures: the same eight incidents in every input format (tests/analysis/fixtures).

Expected values below are computed by hand from those eight rows:
row  published (UTC)        Austin local day / hour   status    response   address
1    2024-03-06 01:29:39    03-05 (Tue) 19h           ARCHIVED  60 min     S CONGRESS AVE / E OLTORF ST
2    2024-03-06 06:00:00    03-06 (Wed) 00h           ARCHIVED  30 min     1000-1099 S CONGRESS AVE
3    2024-03-06 05:59:59    03-05 (Tue) 23h           ACTIVE    (not used) S CONGRESS AVE / E OLTORF ST
4    2024-03-06 15:00:00    03-06 (Wed) 09h           ARCHIVED  1970: out  N LAMAR BLVD
5    2024-03-07 16:00:00    03-07 (Thu) 10h           ARCHIVED  8 days:out N LAMAR BLVD          (0,0) invalid
6    not a date             -                          archived  no date    S CONGRESS (SB) RAMP   no coordinates
7    2024-03-10 08:30:00    03-10 (Sun) 03h (CDT)     ARCHIVED  120 min    N LAMAR BLVD          outside Austin
8    2024-03-06 23:00:00    03-06 (Wed) 17h           ARCHIVED  0 min      E 7TH ST (padded)     lat 'abc' -> Location
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

FIXTURES = Path(__file__).parent / "fixtures"
REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLE = REPO_ROOT / "data" / "traffic_incidents_sample.csv"

EXPECTED_DAYS = {"2024-03-05": 2, "2024-03-06": 3, "2024-03-07": 1, "2024-03-08": 0, "2024-03-10": 1}
EXPECTED_AVG = (60 + 30 + 120 + 0) / 4
EXPECTED_ISSUES = 5  # Crash Urgent, crash urgent, Traffic Hazard, COLLISION, Stalled Vehicle
EXPECTED_TOP = {"N LAMAR BLVD": 3, "S CONGRESS AVE / E OLTORF ST": 2, "1000-1099 S CONGRESS AVE": 1,
                "E 7TH ST": 1, "S CONGRESS (SB) RAMP": 1}
EXPECTED_HOURS = {19: 1, 0: 1, 23: 1, 9: 1, 10: 1, 3: 1, 17: 1}
EXPECTED_WEEKDAYS = {"Tuesday": 2, "Wednesday": 3, "Thursday": 1, "Sunday": 1}


def _gzip(src: Path, dst: Path) -> Path:
    with open(src, "rb") as fin, gzip.open(dst, "wb") as fout:
        shutil.copyfileobj(fin, fout)
    return dst


def _parquet_strings(src: Path, dst: Path) -> Path:
    header = src.read_text().splitlines()[0].split(",")
    table = pacsv.read_csv(src, convert_options=pacsv.ConvertOptions(
        column_types={h: pa.string() for h in header}, strings_can_be_null=True))
    pq.write_table(table, dst)
    return dst


def _parquet_typed(src: Path, dst: Path) -> Path:
    """SODA columns with real Parquet types: timestamps (naive = UTC) and doubles."""
    import pandas as pd

    df = pd.read_csv(src, dtype=str, keep_default_na=False)
    for col in ("published_date", "traffic_report_status_date_time"):
        df[col] = pd.to_datetime(df[col], errors="coerce", format="ISO8601")
    for col in ("latitude", "longitude"):
        df[col] = pd.to_numeric(df[col], errors="coerce")
    df = df.replace({"": None})
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), dst)
    return dst


EIGHT_ROW_FORMATS = {
    "portal10": ("portal-csv", lambda tmp: FIXTURES / "portal10.csv"),
    "portal9": ("portal-csv-9", lambda tmp: FIXTURES / "portal9.csv"),
    "portal10-gzip": ("portal-csv+gzip", lambda tmp: _gzip(FIXTURES / "portal10.csv", tmp / "p.csv.gz")),
    "portal-parquet": ("portal-csv+parquet", lambda tmp: _parquet_strings(FIXTURES / "portal10.csv", tmp / "p.parquet")),
    "soda-json": ("soda-json", lambda tmp: FIXTURES / "soda.json"),
    "soda-json-gzip": ("soda-json+gzip", lambda tmp: _gzip(FIXTURES / "soda.json", tmp / "s.json.gz")),
    "soda-csv": ("soda-csv", lambda tmp: FIXTURES / "soda_full.csv"),
    "soda-parquet-typed": ("soda-parquet", lambda tmp: _parquet_typed(FIXTURES / "soda_full.csv", tmp / "s.parquet")),
}


@pytest.fixture(params=sorted(EIGHT_ROW_FORMATS))
def eight_rows(request, tmp_path):
    """(expected format name, path) of the eight incidents in one of the input formats."""
    fmt, make = EIGHT_ROW_FORMATS[request.param]
    return fmt, make(tmp_path)


@pytest.fixture
def load(tmp_path):
    """load_dataset with the cache in this test's temp dir (never beside the fixtures)."""
    from atx_analysis.dataset import load_dataset

    def _load(path, **kw):
        kw.setdefault("cache_dir", str(tmp_path / "cache"))
        return load_dataset(path, **kw)

    return _load
