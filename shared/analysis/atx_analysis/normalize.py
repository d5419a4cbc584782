"""Turn a raw table in any recognised format into the one canonical frame the operations use.

The rules for bad values (docs/data.md documents them; every one is counted in ``counts``):

* Timestamps are UTC instants: the portal's ``03/06/2024 01:29:39 AM +0000`` or
  ``2024 Mar 06 01:29:39 AM`` (each also with or without the offset, none taken as UTC), ISO 8601 with or without an offset (none means UTC),
  ISO order on a 12-hour clock (``2024-03-06 1:29:39 AM``, ``2024-03-06T1:29 PM``; the ``T`` of
  either ISO form also small, ``2024-03-06t1:29 pm``), RFC 1123 (``Wed, 06 Mar 2024 01:29:39 GMT``), any of these with a zone name
  (UTC, GMT, Z, CST, CDT; another name is unparseable and named in the reading), or epoch seconds
  in Parquet. A value with no time of day (``2024-03-06``) is that calendar day in Austin, i.e. its
  local midnight, with no hour: it counts in date and weekday figures, not in hour ones. A missing or unparseable published date leaves the row in (it still counts for
  locations and issues) but with no date: it is left out of every date, hour and weekday figure.
* Coordinates come from Latitude/Longitude (a decimal comma, ``30,27``, read as a point), else
  from Location (``POINT (lon lat)`` or ``(lat,lon)``). Unparseable, out-of-range (|lat| > 90, |lon| > 180) or (0, 0) pairs become
  missing; the row stays. Valid points outside the Austin area are kept and counted.
* Text is stripped of surrounding spaces; empty means missing. Issue Reported keeps its spelling.
  Status is upper-cased.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .columns import MAX_RESPONSE_MINUTES, NAT, NO_DAY, Columns
from .formats import Format

AUSTIN_TZ = "America/Chicago"
# A generous box around the Austin area (Travis and neighbouring counties).
AUSTIN_BOX = {"lat_min": 29.9, "lat_max": 30.75, "lon_min": -98.2, "lon_max": -97.3}


# the portal's forms (its CSV export has written both ``03/06/2024 01:29:39 AM +0000`` and
# ``2024 Mar 06 01:29:39 AM``, the month's name read in any case; each with or without the offset),
# then what a spreadsheet program writes back after opening the export (its short date with a
# two-digit year, which "%Y" would take as the year 24, so it comes first; 24-hour time without
# seconds; 12-hour without seconds; and in a European locale, the day first between dots:
# ``06.03.2024 01:29``, never confused with the month first, which is between slashes); ISO order
# on a 12-hour clock (``2024-03-06 1:29:39 AM``, which ISO 8601 itself never writes; also with ISO's
# ``T``, ``2024-03-06T1:29 PM``, which the ISO 8601 reader below refuses, or a small ``t``, which
# RFC 3339 allows: ``2024-03-06t1:29 pm``; %p reads AM/PM in any case, as %b a month); and the
# RFC 1123 / email date (``Wed, 06 Mar 2024 01:29:39 GMT``: its GMT is taken off as any zone name,
# a numeric offset is read as the portal's). The first form that reads a value wins.
PORTAL_FORMATS = (
    "%m/%d/%Y %I:%M:%S %p %z",
    "%m/%d/%Y %I:%M:%S %p",
    "%Y %b %d %I:%M:%S %p %z",
    "%Y %b %d %I:%M:%S %p",
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%y %H:%M",
    "%m/%d/%Y %H:%M",
    "%m/%d/%Y %I:%M %p",
    "%d.%m.%Y %H:%M:%S",
    "%d.%m.%Y %H:%M",
    "%Y-%m-%d %I:%M:%S %p",
    "%Y-%m-%d %I:%M %p",
    "%Y-%m-%dT%I:%M:%S %p",
    "%Y-%m-%dT%I:%M %p",
    "%Y-%m-%dt%I:%M:%S %p",
    "%Y-%m-%dt%I:%M %p",
    "%a, %d %b %Y %H:%M:%S %z",
    "%a, %d %b %Y %H:%M:%S",
    "%a, %d %b %Y %H:%M %z",
    "%a, %d %b %Y %H:%M",
)
_SLASHED = r"^\s*(?P<first>\d{1,2})/(?P<second>\d{1,2})/"


def day_first(*cols: pa.ChunkedArray | None) -> tuple[bool, str | None]:
    """Are the slashed dates day first, and what says so? The spreadsheet of a day-first locale (the
    UK, France) writes the export's dates back as ``13/03/2024 01:29``, which the month-first forms
    found unparseable, and ``06/03/2024``, which they read as June 3rd. Dates whose first number
    passes 12 while the second never does are day first ("data"); a second number past 12 says month
    first ("data"); when no number passes 12 nothing tells, and they are read month first as the
    portal writes them ("guess"; DATA_DAY_FIRST says it instead). None: no slashed date. Both date
    columns are read by what either shows."""
    highest = {"first": 0, "second": 0}
    for col in cols:
        if col is None or not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
            continue
        parts = pc.extract_regex(col, _SLASHED)
        for name in highest:
            top = pc.max(pc.cast(pc.struct_field(parts, name), pa.int32())).as_py()
            highest[name] = max(highest[name], top or 0)
    if not highest["first"]:
        return False, None
    if highest["first"] > 12 >= highest["second"]:
        return True, "data"
    return False, "data" if highest["second"] > 12 else "guess"


# a time of day followed by a zone name: ``2024-01-05 15:15:00 UTC``, ``01/05/2024 09:15 AM CST``,
# ``2024-01-05T15:15:00Z``; "AM"/"PM" alone is the 12-hour clock, not a zone
_ZONED = r"^(?P<when>.*?\d(?:\s+[AaPp][Mm])?)(?P<zone>\s+[A-Za-z][A-Za-z_]*(?:/[A-Za-z_]+)*|[Zz])$"
# the zone names read, as offsets from UTC in seconds: UTC and its spellings, and Austin's own
# (US central, standard and daylight time); any other name is unparseable and named in the report
ZONE_OFFSETS = {"UTC": 0, "GMT": 0, "Z": 0, "CST": -6 * 3600, "CDT": -5 * 3600}
_CLOCK = ("AM", "PM")


def split_zones(s: pa.ChunkedArray) -> tuple[pa.ChunkedArray, np.ndarray | None, dict[str, int]]:
    """Take a trailing zone name off each value: (values without it, seconds east of UTC per row or
    None when no value has a zone, {unread zone name: rows}). A value with a zone not in
    :data:`ZONE_OFFSETS` becomes null, so it is counted unparseable rather than read as UTC."""
    if not pc.any(pc.match_substring_regex(s, _ZONED)).as_py():
        return s, None, {}
    parts = pc.extract_regex(s, _ZONED)
    zone = pc.utf8_upper(pc.utf8_trim_whitespace(pc.struct_field(parts, "zone")))
    zoned = pc.and_(pc.is_valid(parts), pc.invert(pc.is_in(zone, pa.array(_CLOCK))))
    zoned = pc.fill_null(zoned, False)
    if not pc.any(zoned).as_py():
        return s, None, {}
    known = pc.is_in(zone, pa.array(list(ZONE_OFFSETS)))
    unread = pc.and_(zoned, pc.invert(known))
    names = pc.value_counts(pc.filter(pc.utf8_trim_whitespace(pc.struct_field(parts, "zone")), unread))
    unread_names = {v["values"].as_py(): v["counts"].as_py() for v in names}
    when = pc.struct_field(parts, "when")
    s = pc.if_else(zoned, pc.if_else(known, when, pa.scalar(None, pa.string())), s)
    offsets = np.zeros(len(zone), dtype=np.int64)
    for name, seconds in ZONE_OFFSETS.items():
        offsets[pc.equal(zone, name).to_numpy(zero_copy_only=False) == True] = seconds  # noqa: E712
    return s, offsets, unread_names


_SMALL_T = re.compile(r"^(\s*\d{4}-\d{2}-\d{2})t(?=\d)")
_DATE_ONLY = re.compile(r"^\s*(\d{4}-\d{2}-\d{2}|\d{1,2}/\d{1,2}/\d{4})\s*$")
_POINT = re.compile(r"POINT\s*\(\s*(-?\d+(?:\.\d*)?)\s+(-?\d+(?:\.\d*)?)\s*\)", re.I)
_PAIR = re.compile(r"\(\s*(-?\d+(?:\.\d*)?)\s*,\s*(-?\d+(?:\.\d*)?)\s*\)")


def _strings(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """Stripped strings with empty turned into null."""
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type)):
        col = pc.cast(col, pa.string())
    col = pc.utf8_trim_whitespace(col)
    return pc.if_else(pc.equal(col, ""), pa.scalar(None, col.type), col)


NAT_NS = np.iinfo(np.int64).min  # NaT as int64 nanoseconds


def parse_timestamps(
    col: pa.ChunkedArray | None, n: int, day_first: bool = False, unread_zones: dict[str, int] | None = None
) -> tuple[np.ndarray, int, int, np.ndarray]:
    """Return (int64 ns since epoch UTC with NaT, missing count, unparseable count, which rows held a
    date with no time of day: those have a day but no hour). ``day_first``: the slashed forms are
    day/month (:func:`day_first`). Zone names not read are added to ``unread_zones``."""
    nat = np.full(n, np.iinfo(np.int64).min, dtype=np.int64)
    no_time = np.zeros(n, dtype=bool)
    if col is None:
        return nat, n, 0, no_time
    if pa.types.is_timestamp(col.type):
        ts = pd.Series(col.to_pandas())
        if ts.dt.tz is None:
            ts = ts.dt.tz_localize("UTC")
        out = ts.dt.tz_convert("UTC").astype("datetime64[ns, UTC]").array.asi8.copy()
        missing = int(ts.isna().sum())
        return out, missing, 0, no_time
    if pa.types.is_integer(col.type) or pa.types.is_floating(col.type):  # epoch seconds
        secs = pd.to_numeric(col.to_pandas(), errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
        ok = np.isfinite(secs)
        nat[ok] = (secs[ok] * 1e9).astype(np.int64)
        return nat, int((~ok).sum()), 0, no_time
    s = _strings(col)
    present = pc.is_valid(s).to_numpy(zero_copy_only=False)
    missing = int(n - present.sum())
    s, offsets, unread = split_zones(s)
    if unread_zones is not None:
        for name, rows in unread.items():
            unread_zones[name] = unread_zones.get(name, 0) + rows
    result = None
    for fmt in PORTAL_FORMATS:
        if day_first:
            fmt = fmt.replace("%m/%d/", "%d/%m/")
        parsed = pc.strptime(s, format=fmt, unit="s", error_is_null=True)
        if parsed.type.tz is None:
            parsed = pc.assume_timezone(parsed, "UTC")
        result = parsed if result is None else pc.coalesce(result, parsed)
        if result.null_count == s.null_count:
            # every date is read: the later forms could fill nothing (the month-name one costs as
            # much as all the others together, 0.5 s a column of the full file)
            break
    out = _seconds_to_ns(result, nat)
    todo = present & (out == NAT_NS)
    if todo.any():
        rest = pd.Series(s.filter(pa.array(todo)).to_pandas(), dtype=object)
        date_only = rest.str.match(_DATE_ONLY).fillna(False).to_numpy(bool)
        parsed_rest = np.full(len(rest), NAT_NS, dtype=np.int64)
        if date_only.any():
            days = pd.to_datetime(rest[date_only].str.strip(), errors="coerce", format="mixed", dayfirst=day_first)
            local = days.dt.tz_localize(AUSTIN_TZ, ambiguous="NaT", nonexistent="shift_forward")
            parsed_rest[date_only] = _datetimes_to_ns(local)
        if (~date_only).any():
            # RFC 3339's small t (``2024-03-06t01:29:39``), which pandas' ISO 8601 reader refuses;
            # only the values no form above read reach here, so a portal file pays nothing for it
            iso_text = rest[~date_only].str.replace(_SMALL_T, r"\1T", n=1, regex=True)
            iso = pd.to_datetime(iso_text, format="ISO8601", utc=True, errors="coerce")
            parsed_rest[~date_only] = _datetimes_to_ns(iso)
        out[todo] = parsed_rest
        no_time[np.flatnonzero(todo)[date_only]] = True
    if offsets is not None:  # a zone's local time, as an offset's: UTC = local time - offset
        shift = (out != NAT_NS) & ~no_time & (offsets != 0)
        out[shift] -= offsets[shift] * 1_000_000_000
    bad = int((present & (out == NAT_NS)).sum())
    return out, missing, bad, no_time & (out != NAT_NS)


# datetime64[ns] spans the years 1677-2262; a parsed year outside it (a typo like 0024 or 9999) is
# unparseable, not an OutOfBoundsDatetime crash of the whole load.
_NS_SAFE_SECONDS = 9_200_000_000


def _datetimes_to_ns(ts: pd.Series) -> np.ndarray:
    """A tz-aware datetime Series of any unit as int64 ns UTC; out of the ns range becomes NaT."""
    micros = ts.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy().astype("datetime64[us]").astype(np.int64)
    ok = (micros != NAT_NS) & (np.abs(micros) < _NS_SAFE_SECONDS * 1_000_000)
    out = np.full(len(micros), NAT_NS, dtype=np.int64)
    out[ok] = micros[ok] * 1_000
    return out


def _seconds_to_ns(parsed: pa.ChunkedArray, nat: np.ndarray) -> np.ndarray:
    secs = pc.cast(parsed, pa.int64()).to_numpy(zero_copy_only=False)
    secs = np.asarray(pd.Series(secs, dtype="float64").to_numpy(na_value=np.nan))
    ok = np.isfinite(secs) & (np.abs(secs) < _NS_SAFE_SECONDS)
    out = nat.copy()
    out[ok] = secs[ok].astype(np.int64) * 1_000_000_000
    return out


# a coordinate as a spreadsheet in a European locale saves it: "30,279182" (a decimal comma; a
# coordinate has no thousands to separate)
_DECIMAL_COMMA = r"^(-?\d+),(\d+)$"


def _floats(col: pa.ChunkedArray | None, n: int, decimal_comma: bool = False) -> np.ndarray:
    if col is None:
        return np.full(n, np.nan)
    if pa.types.is_integer(col.type) or pa.types.is_floating(col.type):
        return pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64, copy=True)
    text = _strings(col)
    if decimal_comma:
        text = pc.replace_substring_regex(text, _DECIMAL_COMMA, r"\1.\2")
    return np.array(
        pd.to_numeric(pd.Series(text.to_pandas(), dtype=object), errors="coerce").to_numpy(
            dtype=np.float64, na_value=np.nan
        ),
        dtype=np.float64,
        copy=True,
    )


def parse_coordinates(lat_col, lon_col, loc_col, n: int, counts: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    lat, lon = _floats(lat_col, n, decimal_comma=True), _floats(lon_col, n, decimal_comma=True)
    had_text = np.zeros(n, dtype=bool)
    for col in (lat_col, lon_col):
        if col is not None:
            had_text |= pc.is_valid(_strings(col) if not pa.types.is_floating(col.type) else col).to_numpy(
                zero_copy_only=False
            )
    need = np.isnan(lat) | np.isnan(lon)
    if loc_col is not None and need.any():
        loc = pd.Series(_strings(loc_col).to_pandas(), dtype=object)
        idx = np.flatnonzero(need & loc.notna().to_numpy())
        if len(idx):
            sub = loc.iloc[idx]
            had_text[idx] = True
            point = sub.str.extract(_POINT)  # lon, lat
            pair = sub.str.extract(_PAIR)  # lat, lon
            p_lon = pd.to_numeric(point[0], errors="coerce").to_numpy(np.float64, na_value=np.nan)
            p_lat = pd.to_numeric(point[1], errors="coerce").to_numpy(np.float64, na_value=np.nan)
            q_lat = pd.to_numeric(pair[0], errors="coerce").to_numpy(np.float64, na_value=np.nan)
            q_lon = pd.to_numeric(pair[1], errors="coerce").to_numpy(np.float64, na_value=np.nan)
            lat[idx] = np.where(np.isnan(p_lat), q_lat, p_lat)
            lon[idx] = np.where(np.isnan(p_lon), q_lon, p_lon)
    with np.errstate(invalid="ignore"):
        invalid = np.isnan(lat) | np.isnan(lon) | (np.abs(lat) > 90) | (np.abs(lon) > 180) | ((lat == 0) & (lon == 0))
    counts["coordinates_invalid"] = int((invalid & had_text).sum())
    counts["coordinates_missing"] = int((invalid & ~had_text).sum())
    lat[invalid] = np.nan
    lon[invalid] = np.nan
    with np.errstate(invalid="ignore"):
        inside = (
            (lat >= AUSTIN_BOX["lat_min"])
            & (lat <= AUSTIN_BOX["lat_max"])
            & (lon >= AUSTIN_BOX["lon_min"])
            & (lon <= AUSTIN_BOX["lon_max"])
        )
    counts["coordinates_outside_austin"] = int((~invalid & ~inside).sum())
    return lat, lon


def encode(col: pa.ChunkedArray | None, n: int, upper: bool = False) -> tuple[np.ndarray, list[str]]:
    """Dictionary-encode text: (int32 codes, -1 = missing; categories in code-point order).

    Sorted categories make code order equal to text order, which top_locations uses to break ties.
    """
    if col is None:
        return np.full(n, -1, dtype=np.int32), []
    s = _strings(col)
    if upper:
        s = pc.utf8_upper(s)
    encoded = pc.dictionary_encode(s).combine_chunks()
    names = encoded.dictionary.to_pylist()
    order = sorted(range(len(names)), key=names.__getitem__)
    remap = np.empty(len(names) + 1, dtype=np.int32)
    remap[np.array(order, dtype=np.int64)] = np.arange(len(names), dtype=np.int32)
    remap[len(names)] = -1
    idx = pc.fill_null(encoded.indices, len(names)).to_numpy(zero_copy_only=False)
    return remap[idx], [names[i] for i in order]


def local_fields(published_ns: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Austin-local (day number since 1970-01-01, hour 0-23, weekday Monday=0); missing -> NO_DAY/-1."""
    n = len(published_ns)
    valid = published_ns != np.iinfo(np.int64).min
    day = np.full(n, NO_DAY, dtype=np.int32)
    hour = np.full(n, -1, dtype=np.int8)
    weekday = np.full(n, -1, dtype=np.int8)
    if valid.any():
        utc = pd.DatetimeIndex(published_ns[valid].view("datetime64[ns]"), tz="UTC")
        local = utc.tz_convert(AUSTIN_TZ).tz_localize(None).asi8
        d = np.floor_divide(local, 86_400 * 10**9)
        day[valid] = d.astype(np.int32)
        hour[valid] = ((local - d * 86_400 * 10**9) // (3600 * 10**9)).astype(np.int8)
        weekday[valid] = ((d + 3) % 7).astype(np.int8)  # 1970-01-01 was a Thursday
    return day, hour, weekday


def normalize(
    table: pa.Table, fmt: Format, colmap: dict[str, str], forced_day_first: bool | None = None
) -> tuple[Columns, dict[str, int], list[str], dict[str, Any]]:
    """Return (canonical columns, bad-value counts, canonical columns the source had, how the dates
    were read: slashed dates day or month first and what decided it, the zone names found but not
    read with their rows). ``forced_day_first``: DATA_DAY_FIRST, when not auto."""
    n = table.num_rows
    src = {dst: table.column(name) for name, dst in colmap.items()}
    counts: dict[str, int] = {}
    dmy, told = day_first(src.get("published"), src.get("status_date"))
    if forced_day_first is not None:
        dmy, told = forced_day_first, "DATA_DAY_FIRST"
    unread_zones: dict[str, int] = {}
    published, counts["published_missing"], counts["published_unparseable"], no_time = parse_timestamps(
        src.get("published"), n, dmy, unread_zones
    )
    status_date, _, counts["status_date_unparseable"], _ = parse_timestamps(
        src.get("status_date"), n, dmy, unread_zones
    )
    lat, lon = parse_coordinates(src.get("latitude"), src.get("longitude"), src.get("location"), n, counts)
    status, status_names = encode(src.get("status"), n, upper=True)
    if "response_minutes" in src:
        response = _floats(src["response_minutes"], n)
        counts["response_time_unparseable"] = int(
            (np.isnan(response) & pc.is_valid(src["response_minutes"]).to_numpy(zero_copy_only=False)).sum()
        )
    else:
        archived = status_names.index("ARCHIVED") if "ARCHIVED" in status_names else -2
        both = (published != NAT) & (status_date != NAT) & (status == archived)
        response = np.full(n, np.nan)
        response[both] = (status_date[both] - published[both]) / 60e9
    with np.errstate(invalid="ignore"):
        response[(response < 0) | (response > MAX_RESPONSE_MINUTES)] = np.nan
    day, hour, weekday = local_fields(published)
    hour[no_time] = -1  # local midnight stands for the day, not for an incident at 00:00
    arrays = {
        "published": published,
        "status_date": status_date,
        "latitude": lat,
        "longitude": lon,
        "response_minutes": response,
        "local_day": day,
        "hour": hour,
        "weekday": weekday,
        "status": status,
    }
    categories: dict[str, Sequence[str]] = {"status": status_names}
    for name in ("issue", "address", "agency"):
        arrays[name], categories[name] = encode(src.get(name), n)
    report_id = _strings(src["report_id"]).combine_chunks() if "report_id" in src else pa.nulls(n, pa.string())
    available = sorted(
        set(src) - {"location"}
        | ({"response_minutes"} if {"published", "status_date", "status"} <= set(src) else set())
    )
    reading = {
        "slashed_dates": None if told is None else "day first" if dmy else "month first",
        "decided_by": told,
        "unread_zones": dict(sorted(unread_zones.items())),
    }
    return Columns(arrays, categories, report_id).derive(), counts, available, reading
