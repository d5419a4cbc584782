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
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

NAT = np.iinfo(np.int64).min
NO_DAY = np.iinfo(np.int32).min
MAX_RESPONSE_MINUTES = 7 * 24 * 60  # longer durations are stale records, not responses
CATEGORICAL = ("issue", "address", "status", "agency")
# stored indexes, computed once at parse time: rows by latitude (NaN last), and the coordinates in
# that order, so radius queries need no per-process copy (every worker maps the same file pages)
INDEXES = ("lat_order", "lat_sorted", "lon_sorted")
NUMERIC = ("published", "status_date", "latitude", "longitude", "response_minutes", "local_day", "hour", "weekday",
           *INDEXES)
# the frame's columns
ORDER = ("report_id", "published", "issue", "address", "latitude", "longitude", "status", "status_date",
         "agency", "response_minutes", "local_day", "hour", "weekday")
META_KEY = b"atx_analysis"


def _view(chunk: pa.Array) -> np.ndarray:
    """Zero-copy numpy view of a null-free primitive Arrow array (Array.to_numpy imports pandas)."""
    if chunk.null_count:
        raise ValueError(f"unexpected nulls in cached column of type {chunk.type}")
    dtype = np.dtype({"double": "float64"}.get(str(chunk.type), str(chunk.type)))
    return np.frombuffer(chunk.buffers()[1], dtype=dtype, count=len(chunk), offset=chunk.offset * dtype.itemsize)


@dataclass
class Columns:
    arrays: dict[str, np.ndarray]
    categories: dict[str, list[str]]  # also "road": road names, for address_road
    report_id: pa.Array
    address_road: np.ndarray | None = None  # road code of each address code

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
            self.address_road, self.categories["road"] = roads_of(self.categories["address"])
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
                data[name] = pd.Categorical.from_codes(self.arrays[name].astype(np.int64),
                                                       categories=pd.Index(self.categories[name], dtype="str"))
            elif name in ("published", "status_date"):
                data[name] = pd.DatetimeIndex(self.arrays[name].view("datetime64[ns]")).tz_localize("UTC")
            else:
                data[name] = self.arrays[name]
        return pd.DataFrame(data)

    def to_arrow(self, meta: dict[str, Any]) -> pa.Table:
        fields = {name: pa.array(self.arrays[name]) for name in NUMERIC + CATEGORICAL}
        fields["report_id"] = self.report_id
        table = pa.table({name: fields[name] for name in (*ORDER, *INDEXES)})
        assert self.address_road is not None  # __post_init__ fills it
        meta = {**meta, "categories": self.categories, "address_road": self.address_road.tolist()}
        return table.replace_schema_metadata({META_KEY: json.dumps(meta).encode()})

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
        address_road = np.array(meta.pop("address_road"), dtype=np.int32)
        return cls(arrays, meta.pop("categories"), report_id, address_road), meta
