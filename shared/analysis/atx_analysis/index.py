"""Indexes built once per loaded dataset so that queries do not scan every row.

Cheap ones (per-day counts, address counts in top-locations order, issue/hour/weekday counts,
the average response time) are built at load; the rest (road search haystack, roads, the
latitude-sorted points for radius queries) on first use or by :meth:`Index.warm`.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np

from .columns import NO_DAY, Columns
from .fold import fold

EARTH_RADIUS_KM = 6371.0088
# bytes: the road parameter's 100 characters, each at most 4 bytes once folded as the search compares
# them (fold.py keeps one letter for one)
MAX_NEEDLE = 400


def _counts(codes: np.ndarray, size: int) -> np.ndarray:
    return np.bincount(codes[codes >= 0], minlength=size).astype(np.int64)


class Index:
    def __init__(self, columns: Columns):
        a = columns.arrays
        self.columns = columns
        day = a["local_day"]
        valid = day != NO_DAY
        self.dated_rows = int(valid.sum())
        if self.dated_rows:
            self.day0 = int(day[valid].min())
            self.day_counts = np.bincount(day[valid] - self.day0).astype(np.int64)
        else:
            self.day0, self.day_counts = 0, np.zeros(0, dtype=np.int64)
        # a date with no time of day (the tutorial's ``date``) has a day and a weekday, hour -1
        timed = a["hour"] >= 0
        self.timed_rows = int(timed.sum())
        self.hour_counts = np.bincount(a["hour"][timed], minlength=24)[:24]
        self.weekday_counts = np.bincount(a["weekday"][valid], minlength=7)[:7]

        self.addresses = columns.categories["address"]
        self.address_counts = _counts(a["address"], len(self.addresses))
        order = np.argsort(-self.address_counts, kind="stable")  # ties keep code (= address) order
        self.address_order = order[self.address_counts[order] > 0]

        issues = columns.categories["issue"]
        issue_counts = _counts(a["issue"], len(issues))
        order = np.argsort(-issue_counts, kind="stable")
        self.issue_counts = {issues[i]: int(issue_counts[i]) for i in order if issue_counts[i] > 0}

        resp = a["response_minutes"]
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
            out[lo - first : hi - first + 1] = self.day_counts[lo - self.day0 : hi - self.day0 + 1]
        return out

    def top_locations(self, n: int) -> dict[str, int]:
        return {self.addresses[i]: int(self.address_counts[i]) for i in self.address_order[:n]}

    # --- literal road search over the distinct addresses -------------------------------------
    @cached_property
    def _haystack(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All distinct addresses folded (fold.py) as UTF-8, one per line, as one uint8 array; where each
        address starts (plus the end); and how often each byte occurs (to start from the rarest)."""
        stored = self.columns.address_haystack  # mapped from the cache: shared, not rebuilt
        if stored is not None:
            hay, starts = stored
            return hay, starts, np.bincount(hay, minlength=256)
        data = ("\n".join(fold(a) for a in self.addresses) + "\n").encode()
        hay = np.frombuffer(data + b"\0" * (MAX_NEEDLE + 1), dtype=np.uint8)
        starts = np.zeros(len(self.addresses) + 1, dtype=np.int64)
        if self.addresses:
            starts[1:] = np.cumsum([len(fold(a).encode()) + 1 for a in self.addresses])
        return hay, starts, np.bincount(hay[: len(data)], minlength=256)

    def road_matches(self, road: str) -> np.ndarray:
        """Codes of the distinct addresses containing ``road`` (case-insensitive, literal).

        A vectorised literal search over one byte array of all addresses: positions of the
        needle's rarest byte, then each other byte checked at its offset. No regex, no
        backtracking; the cost is one pass over the addresses plus work proportional to the hits.
        UTF-8 is self-synchronising, so a byte match is a character match.
        """
        needle = fold(road).encode()
        if not needle or b"\n" in needle or len(needle) > MAX_NEEDLE or not self.addresses:
            return np.zeros(0, dtype=np.int64)
        hay, starts, freq = self._haystack
        q = np.frombuffer(needle, dtype=np.uint8)
        rare = int(np.argmin(freq[q]))
        pos = np.flatnonzero(hay == q[rare]) - rare
        # only matches wholly inside the addresses: the NUL padding past them must never match a
        # needle that contains NUL bytes
        pos = pos[(pos >= 0) & (pos + len(q) <= starts[-1])]
        for j in np.argsort(freq[q], kind="stable")[1:]:
            if not len(pos):
                break
            pos = pos[hay[pos + j] == q[j]]
        if not len(pos):
            return np.zeros(0, dtype=np.int64)
        codes = np.searchsorted(starts, pos, side="right") - 1
        keep = np.empty(len(codes), dtype=bool)
        keep[0] = True
        np.not_equal(codes[1:], codes[:-1], out=keep[1:])
        return codes[keep]

    def road_count(self, road: str) -> tuple[int, int]:
        """(incidents, distinct addresses with incidents) whose address contains ``road``."""
        codes = self.road_matches(road)
        counts = self.address_counts[codes]
        return int(counts.sum()), int((counts > 0).sum())

    # --- roads ------------------------------------------------------------------------------------
    @cached_property
    def road_counts(self) -> dict[str, int]:
        """Incidents per road, most first, ties by road name (road codes are in name order)."""
        roads = self.columns.categories["road"]
        of = self.columns.address_road
        assert of is not None  # Columns fills it when it is built
        used = of >= 0
        totals = np.bincount(of[used], weights=self.address_counts[used], minlength=len(roads)).astype(np.int64)
        order = np.argsort(-totals, kind="stable")
        return {roads[i]: int(totals[i]) for i in order if totals[i] > 0}

    # --- points sorted by latitude for radius queries ---------------------------------------------
    @cached_property
    def _points(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        a = self.columns.arrays
        order = a["lat_order"]  # rows by latitude, NaN last; coordinates in that order (computed at parse)
        lats = a["lat_sorted"] if "lat_sorted" in a else a["latitude"][order]
        lons = a["lon_sorted"] if "lon_sorted" in a else a["longitude"][order]
        valid = int(np.searchsorted(lats, np.inf, side="right"))  # NaN sort last: views, no copies
        return lats[:valid], lons[:valid], order[:valid]

    def within_radius(self, lat: float, lon: float, radius_km: float) -> np.ndarray:
        """Row positions within ``radius_km`` (great-circle) of (lat, lon)."""
        lats, lons, rows = self._points
        dlat = np.degrees(radius_km / EARTH_RADIUS_KM)
        lo = int(np.searchsorted(lats, lat - dlat, side="left"))
        hi = int(np.searchsorted(lats, lat + dlat, side="right"))
        cand_lat, cand_lon = lats[lo:hi], lons[lo:hi]
        p1, p2 = np.radians(lat), np.radians(cand_lat)
        a = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(np.radians(cand_lon - lon) / 2) ** 2
        dist = 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.minimum(a, 1.0)))
        return rows[lo:hi][dist <= radius_km]

    def warm(self) -> None:
        _ = self._haystack, self.road_counts, self._points  # computed (and cached) now, not on the first query
