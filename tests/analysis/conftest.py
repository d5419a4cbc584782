"""Fixtures of the analysis tests: the hand-written incidents of tests/analysis/fixtures in every
input format (the expected values are in :mod:`tests.analysis.expected`)."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from tests.analysis.expected import FIXTURES


def _gzip(src: Path, dst: Path) -> Path:
    with open(src, "rb") as fin, gzip.open(dst, "wb") as fout:
        shutil.copyfileobj(fin, fout)
    return dst


def _parquet_strings(src: Path, dst: Path) -> Path:
    header = src.read_text().splitlines()[0].split(",")
    table = pacsv.read_csv(
        src,
        convert_options=pacsv.ConvertOptions(column_types={h: pa.string() for h in header}, strings_can_be_null=True),
    )
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


def _rows_export(src: Path, dst: Path) -> Path:
    """The SODA records as the portal's Export -> JSON (rows.json) lays them out: Socrata's own
    columns first, then one column per field (``fieldName``), each row an array; the point column
    as WKT text, the way the export writes a point."""
    import json

    records = json.loads(src.read_text())
    fields = list(dict.fromkeys(k for rec in records for k in rec))
    own = [":sid", ":id", ":position", ":created_at", ":created_meta", ":updated_at", ":updated_meta", ":meta"]
    columns = [{"id": -1, "name": n[1:], "dataTypeName": "meta_data", "fieldName": n} for n in own]
    columns += [{"id": 1000 + i, "name": f, "dataTypeName": "text", "fieldName": f} for i, f in enumerate(fields)]

    def value(rec, f):
        v = rec.get(f)
        if isinstance(v, dict) and "coordinates" in v:
            return f"POINT ({v['coordinates'][0]} {v['coordinates'][1]})"
        return v

    data = [
        [f"row-{i}", f"00000000-{i}", 0, 1709688579, None, 1709688579, None, "{ }", *(value(r, f) for f in fields)]
        for i, r in enumerate(records)
    ]
    dst.write_text(json.dumps({"meta": {"view": {"id": "dx9v-zd7x", "columns": columns}}, "data": data}))
    return dst


EIGHT_ROW_FORMATS = {
    "portal10": ("portal-csv", lambda tmp: FIXTURES / "portal10.csv"),
    "portal9": ("portal-csv-9", lambda tmp: FIXTURES / "portal9.csv"),
    "portal10-gzip": ("portal-csv+gzip", lambda tmp: _gzip(FIXTURES / "portal10.csv", tmp / "p.csv.gz")),
    "portal-parquet": (
        "portal-csv+parquet",
        lambda tmp: _parquet_strings(FIXTURES / "portal10.csv", tmp / "p.parquet"),
    ),
    "soda-json": ("soda-json", lambda tmp: FIXTURES / "soda.json"),
    "portal-json-export": ("soda-json", lambda tmp: _rows_export(FIXTURES / "soda.json", tmp / "rows.json")),
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


@pytest.fixture
def inproc(tmp_path, monkeypatch, capsys):
    """Run `jobqueue ...` in this process (same parser and code, without a Python start each time)."""
    from jobqueue.cli import main

    monkeypatch.setenv("DATA_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("DATA_PATH", raising=False)

    def run(*args):
        code = main([str(a) for a in args])
        out = capsys.readouterr()
        return code, out.out, out.err

    return run
