"""Indexes built once per loaded dataset so that queries do not scan every row.

Cheap ones (per-day counts, address counts in top-locations order, issue/hour/weekday counts,
the average response time) are built at load; the rest (road search haystack, roads, the
latitude-sorted points for radius queries) on first use or by :meth:`Index.warm`.
"""

from __future__ import annotations

import re
from functools import cached_property

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .normalize import NO_DAY

EARTH_RADIUS_KM = 6371.0088

# "1000-1099 W 5TH ST", "S CONGRESS AVE / E OLTORF ST", "N IH 35 SVRD SB at E 51ST ST"
_CROSS = re.compile(r"\s*(?:/|&|\bat\b|\band\b|\bto\b)\s*", re.I)
_BLOCK = re.compile(r"^\s*(?:\d+(?:-\d+)?\s*(?:BLK|BLOCK)?\s+|BLK\s+|BLOCK\s+)", re.I)
_SPACES = re.compile(r"\s+")


def road_of(address: str) -> str:
    """The road an address is on: the first street of an intersection, without a block number."""
    first = _CROSS.split(address, maxsplit=1)[0]
    first = _BLOCK.sub("", first)
    return _SPACES.sub(" ", first).strip().upper()


class Index:
    def __init__(self, frame: pd.DataFrame):
        self.frame = frame
        day = frame["local_day"].to_numpy()
        valid = day != NO_DAY
        self.dated_rows = int(valid.sum())
        if self.dated_rows:
            self.day0 = int(day[valid].min())
            self.day_counts = np.bincount(day[valid] - self.day0).astype(np.int64)
        else:
            self.day0, self.day_counts = 0, np.zeros(0, dtype=np.int64)
        self.hour_counts = np.bincount(frame["hour"].to_numpy()[valid], minlength=24)[:24]
        self.weekday_counts = np.bincount(frame["weekday"].to_numpy()[valid], minlength=7)[:7]

        addr = frame["address"].array
        self.addresses = addr.categories
        codes = addr.codes
        self.address_counts = np.bincount(codes[codes >= 0], minlength=len(self.addresses))
        order = np.argsort(-self.address_counts, kind="stable")  # ties keep code (= address) order
        self.address_order = order[self.address_counts[order] > 0]

        issue = frame["issue"].array
        issue_counts = np.bincount(issue.codes[issue.codes >= 0], minlength=len(issue.categories))
        order = np.argsort(-issue_counts, kind="stable")
        self.issue_counts = {str(issue.categories[i]): int(issue_counts[i]) for i in order if issue_counts[i] > 0}

        resp = frame["response_minutes"].to_numpy()
        used = ~np.isnan(resp)
        self.response_rows = int(used.sum())
        self.avg_response = float(resp[used].mean()) if self.response_rows else None

    def day_count(self, day: int) -> int:
        i = day - self.day0
        return int(self.day_counts[i]) if 0 <= i < len(self.day_counts) else 0

    def day_series(self, first: int, last: int) -> np.ndarray:
        """Counts for days first..last inclusive (zeros outside the data)."""
        out = np.zeros(last - first + 1, dtype=np.int64)
        lo, hi = max(first, self.day0), min(last, self.day0 + len(self.day_counts) - 1)
        if lo <= hi:
            out[lo - first:hi - first + 1] = self.day_counts[lo - self.day0:hi - self.day0 + 1]
        return out

    def top_locations(self, n: int) -> dict[str, int]:
        return {str(self.addresses[i]): int(self.address_counts[i]) for i in self.address_order[:n]}

    # --- literal road search over the distinct addresses -------------------------------------
    @cached_property
    def _upper_addresses(self) -> pa.Array:
        return pa.array([str(a).upper() for a in self.addresses], type=pa.string())

    def road_matches(self, road: str) -> np.ndarray:
        """Boolean mask over distinct addresses containing ``road`` (case-insensitive, literal)."""
        if not len(self.addresses):
            return np.zeros(0, dtype=bool)
        mask = pc.match_substring(self._upper_addresses, pattern=road.upper())
        return mask.to_numpy(zero_copy_only=False)

    def road_count(self, road: str) -> tuple[int, int]:
        """(incidents, distinct addresses) whose address contains ``road``."""
        mask = self.road_matches(road)
        return int(self.address_counts[mask].sum()), int((mask & (self.address_counts > 0)).sum())

    # --- roads ------------------------------------------------------------------------------------
    @cached_property
    def road_counts(self) -> dict[str, int]:
        roads = pd.Series([road_of(str(a)) for a in self.addresses], dtype=object)
        totals = pd.Series(self.address_counts, index=roads.to_numpy()).groupby(level=0, sort=True).sum()
        totals = totals[(totals > 0) & (totals.index != "")]
        order = np.argsort(-totals.to_numpy(), kind="stable")
        return {str(totals.index[i]): int(totals.iloc[i]) for i in order}

    # --- points sorted by latitude for radius queries ---------------------------------------------
    @cached_property
    def _points(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        lat = self.frame["latitude"].to_numpy()
        lon = self.frame["longitude"].to_numpy()
        ok = np.flatnonzero(~np.isnan(lat))
        order = ok[np.argsort(lat[ok], kind="stable")]
        return lat[order], lon[order], order

    def within_radius(self, lat: float, lon: float, radius_km: float) -> np.ndarray:
        """Row positions within ``radius_km`` (great-circle) of (lat, lon)."""
        lats, lons, rows = self._points
        dlat = np.degrees(radius_km / EARTH_RADIUS_KM)
        lo = int(np.searchsorted(lats, lat - dlat, side="left"))
        hi = int(np.searchsorted(lats, lat + dlat, side="right"))
        cand_lat, cand_lon = lats[lo:hi], lons[lo:hi]
        p1, p2 = np.radians(lat), np.radians(cand_lat)
        a = (np.sin((p2 - p1) / 2) ** 2
             + np.cos(p1) * np.cos(p2) * np.sin(np.radians(cand_lon - lon) / 2) ** 2)
        dist = 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.minimum(a, 1.0)))
        return rows[lo:hi][dist <= radius_km]

    def warm(self) -> None:
        self._upper_addresses
        self.road_counts
        self._points
