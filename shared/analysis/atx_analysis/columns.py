"""The canonical data as plain numpy columns, and its Arrow form for the on-disk cache.

Queries run on these arrays (and the indexes built from them) without pandas, so a worker that
finds a cache starts without even importing pandas; :meth:`Columns.to_frame` builds the pandas
view for people who want one.

Columns: ``published`` and ``status_date`` (int64 ns since epoch UTC, ``NAT`` when missing),
``latitude``/``longitude`` (float64, NaN when missing or invalid), ``response_minutes`` (float64,
NaN when not counted), ``local_day`` (int32 days since 1970-01-01 in Austin, ``NO_DAY``),
``hour``/``weekday`` (int8, -1), and ``issue``/``address``/``status``/``agency`` as int32 codes
into sorted ``categories`` (-1 when missing). ``report_id`` stays an Arrow string array.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from .fold import fold

NAT = np.iinfo(np.int64).min
NO_DAY = np.iinfo(np.int32).min
MAX_RESPONSE_MINUTES = 7 * 24 * 60  # longer durations are stale records, not responses
CATEGORICAL = ("issue", "address", "status", "agency")
# stored indexes, computed once at parse time: rows by latitude (NaN last), and the coordinates in
# that order, so radius queries need no per-process copy (every worker maps the same file pages)
INDEXES = ("lat_order", "lat_sorted", "lon_sorted")
NUMERIC = (
    "published",
    "status_date",
    "latitude",
    "longitude",
    "response_minutes",
    "local_day",
    "hour",
    "weekday",
    *INDEXES,
)
# the frame's columns
ORDER = (
    "report_id",
    "published",
    "issue",
    "address",
    "latitude",
    "longitude",
    "status",
    "status_date",
    "agency",
    "response_minutes",
    "local_day",
    "hour",
    "weekday",
)
META_KEY = b"atx_analysis"
# per-address arrays, stored as the first n entries of row-length columns (n distinct addresses <= rows,
# since each comes from a row), so that they too are mapped pages shared by every process instead of
# tens of thousands of Python strings in each: the names, the road search's folded haystack (each
# name + "\n", contiguous) and each address's road code
PER_ADDRESS = ("address_names", "address_folded", "address_road")


def _view(chunk: pa.Array) -> np.ndarray:
    """Zero-copy numpy view of a null-free primitive Arrow array (Array.to_numpy imports pandas)."""
    if chunk.null_count:
        raise ValueError(f"unexpected nulls in cached column of type {chunk.type}")
    dtype = np.dtype({"double": "float64"}.get(str(chunk.type), str(chunk.type)))
    return np.frombuffer(chunk.buffers()[1], dtype=dtype, count=len(chunk), offset=chunk.offset * dtype.itemsize)


def _string_parts(chunk: pa.Array) -> tuple[np.ndarray, pa.Buffer]:
    """Offsets (int32) and data buffer of a string array, zero-copy."""
    offsets = np.frombuffer(chunk.buffers()[1], dtype=np.int32, count=len(chunk) + 1, offset=chunk.offset * 4)
    return offsets, chunk.buffers()[2]


class StoredStrings(Sequence[str]):
    """The first ``n`` strings of an Arrow string array (in the mapped cache), decoded on access."""

    def __init__(self, chunk: pa.Array, n: int):
        self._offsets, data = _string_parts(chunk)
        self._data = memoryview(data) if data is not None else memoryview(b"")
        self._n = n

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self._n))]
        i = operator.index(i)
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError(i)
        return bytes(self._data[self._offsets[i] : self._offsets[i + 1]]).decode()

    def __iter__(self) -> Iterator[str]:
        return (self[i] for i in range(self._n))


def _padded_strings(values: list[str], rows: int) -> pa.Array:
    """A string array of ``rows`` entries: ``values`` first, then empty strings (built from buffers)."""
    blob = "".join(values).encode()
    offsets = np.full(rows + 1, len(blob), dtype=np.int32)  # the padding: empty strings at the end
    offsets[0] = 0
    offsets[1 : len(values) + 1] = np.cumsum([len(v.encode()) for v in values], dtype=np.int64)
    return pa.StringArray.from_buffers(rows, pa.py_buffer(offsets.tobytes()), pa.py_buffer(blob))


@dataclass
class Columns:
    arrays: dict[str, np.ndarray]
    categories: dict[str, Sequence[str]]  # also "road": road names, for address_road
    report_id: pa.Array
    address_road: np.ndarray | None = None  # road code of each address code
    # the road search's haystack when loaded from the cache: (upper-cased names, each + "\n", as
    # uint8; where each starts, plus the end)
    address_haystack: tuple[np.ndarray, np.ndarray] | None = None

    def derive(self) -> Columns:
        """Compute the stored indexes (INDEXES, roads) once, at parse time, so loads need not."""
        from .roads import roads_of

        if "lat_order" not in self.arrays:
            self.arrays["lat_order"] = np.argsort(self.arrays["latitude"], kind="stable").astype(np.int32)
        if "lat_sorted" not in self.arrays:
            order = self.arrays["lat_order"]
            self.arrays["lat_sorted"] = self.arrays["latitude"][order]
            self.arrays["lon_sorted"] = self.arrays["longitude"][order]
        if self.address_road is None:
            self.address_road, self.categories["road"] = roads_of(list(self.categories["address"]))
        return self

    @property
    def rows(self) -> int:
        return len(self.arrays["published"])

    def to_frame(self):
        """A pandas DataFrame (categoricals, tz-aware UTC timestamps) of the same data."""
        import pandas as pd

        data: dict[str, Any] = {}
        for name in ORDER:
            if name == "report_id":
                data[name] = pd.Series(self.report_id.to_pandas(types_mapper=pd.ArrowDtype)).astype("string[pyarrow]")
            elif name in CATEGORICAL:
                data[name] = pd.Categorical.from_codes(
                    self.arrays[name].astype(np.int64), categories=pd.Index(list(self.categories[name]), dtype="str")
                )
            elif name in ("published", "status_date"):
                data[name] = pd.DatetimeIndex(self.arrays[name].view("datetime64[ns]")).tz_localize("UTC")
            else:
                data[name] = self.arrays[name]
        return pd.DataFrame(data)

    def to_arrow(self, meta: dict[str, Any]) -> pa.Table:
        fields = {name: pa.array(self.arrays[name]) for name in NUMERIC + CATEGORICAL}
        fields["report_id"] = self.report_id
        assert self.address_road is not None  # derive() fills it
        addresses, rows = list(self.categories["address"]), self.rows
        categories = {k: list(v) for k, v in self.categories.items()}
        names = list(ORDER) + list(INDEXES)
        if len(addresses) <= rows:  # always, for parsed data
            fields["address_names"] = _padded_strings(addresses, rows)
            fields["address_folded"] = _padded_strings([fold(a) + "\n" for a in addresses], rows)
            road = np.full(rows, -1, dtype=np.int32)
            road[: len(addresses)] = self.address_road
            fields["address_road"] = pa.array(road)
            names += PER_ADDRESS
            del categories["address"]
            meta = {**meta, "addresses": len(addresses)}
        else:
            meta = {**meta, "address_road": self.address_road.tolist()}
        table = pa.table({name: fields[name] for name in names})
        return table.replace_schema_metadata({META_KEY: json.dumps({**meta, "categories": categories}).encode()})

    @classmethod
    def from_arrow(cls, table: pa.Table) -> tuple[Columns, dict[str, Any]]:
        meta = json.loads(table.schema.metadata[META_KEY])
        arrays = {}
        for name in NUMERIC + CATEGORICAL:
            col = table.column(name)
            chunk = col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()
            arrays[name] = _view(chunk)
        rid = table.column("report_id")
        report_id = rid.chunk(0) if rid.num_chunks == 1 else rid.combine_chunks()
        categories = meta.pop("categories")
        haystack = None
        if "addresses" in meta:  # the per-address arrays are stored columns: map them, decode nothing
            n = meta.pop("addresses")
            chunks = {
                name: (lambda c: c.chunk(0) if c.num_chunks == 1 else c.combine_chunks())(table.column(name))
                for name in PER_ADDRESS
            }
            categories["address"] = StoredStrings(chunks["address_names"], n)
            address_road = _view(chunks["address_road"])[:n]
            offsets, data = _string_parts(chunks["address_folded"])
            if offsets[0] == 0:  # as written; otherwise the index builds its own
                end = int(offsets[n])
                hay = np.frombuffer(data, dtype=np.uint8, count=end) if end else np.zeros(0, dtype=np.uint8)
                haystack = (hay, offsets[: n + 1])
        else:
            address_road = np.array(meta.pop("address_road"), dtype=np.int32)
        return cls(arrays, categories, report_id, address_road, haystack), meta
