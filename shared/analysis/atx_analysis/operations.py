"""Every analysis operation, declared once in the registry (name, parameters with bounds, result keys).

The five tutorial operations keep the tutorial's exact names, parameter names and result keys;
extra keys are allowed. Results are plain JSON: ints, floats, strings, None; never numpy types or
NaN. Definitions (docs/analysis.md): a date is an Austin (America/Chicago) calendar day; a
location is the street address; response time is Status Date - Published Date over ARCHIVED rows,
0 to 7 days; road search is a case-insensitive literal substring of the address.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np

from .dataset import Dataset
from .columns import MAX_RESPONSE_MINUTES
from .errors import NoTimeOfDayError
from .registry import REGISTRY, Param, ParamError

EPOCH = dt.date(1970, 1, 1)
MAX_TOP = 1000
MAX_ROAD_LENGTH = 100
MAX_SERIES_DAYS = 5000
MAX_RADIUS_KM = 100.0
MAX_RADIUS_ISSUES = 10  # incidents_within_radius's by_issue: the most common issue types, most first
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


def day_number(date: str) -> int:
    return (dt.date.fromisoformat(date) - EPOCH).days


def day_iso(day: int) -> str:
    return (EPOCH + dt.timedelta(days=int(day))).isoformat()


def _range(ds: Dataset, start: str | None, end: str | None, op: str) -> tuple[int, int]:
    idx = ds.index
    if not len(idx.day_counts) and not (start and end):
        # no dated row (an empty file, or dates in no form the loader reads): there is no first or
        # last day in the data to default to (it used to be 1970-01-01, the epoch)
        if not (start or end):
            raise ParamError(
                "start", "the data has no dated incidents (no usable published date): give 'start' and 'end'"
            )
        start = end = start or end
    first = day_number(start) if start else idx.day0
    last = day_number(end) if end else idx.day0 + max(len(idx.day_counts) - 1, 0)
    if last < first:
        # a default is named as one: "'end' (2026-11-25)" alone read as a date the user had given
        said_end = day_iso(last) + ("" if end else ", the last day in the data")
        said_start = day_iso(first) + ("" if start else ", the first day in the data")
        raise ParamError("end" if end else "start", f"'end' ({said_end}) is before 'start' ({said_start})")
    if last - first + 1 > MAX_SERIES_DAYS:
        raise ParamError("end", f"the range is {last - first + 1} days; at most {MAX_SERIES_DAYS} allowed")
    return first, last


def _check_range(ds: Dataset | None, start: str | None = None, end: str | None = None, **_: Any) -> None:
    """Submit-time form of :func:`_range`: with the data, exactly its rule (defaults from the data);
    without it, what the given dates alone decide."""
    if ds is not None and "published" in ds.available:
        _range(ds, start, end, "")
        return
    if start and end:
        first, last = day_number(start), day_number(end)
        if last < first:
            raise ParamError("end", f"'end' ({end}) is before 'start' ({start})")
        if last - first + 1 > MAX_SERIES_DAYS:
            raise ParamError("end", f"the range is {last - first + 1} days; at most {MAX_SERIES_DAYS} allowed")


def _check_road(ds: Dataset | None, road: str, **_: Any) -> None:
    if not road.strip():
        raise ParamError("road", "'road' must not be empty")


# --- the tutorial's five -----------------------------------------------------------------------


@REGISTRY.operation(
    Param("date", "date", "calendar day in Austin local time (America/Chicago), YYYY-MM-DD", example="2024-03-09"),
    description="Number of incidents published on a calendar day (Austin local time).",
    result_keys=("incident_count", "date"),
)
def incident_count_by_date(ds: Dataset, date: str) -> dict[str, Any]:
    ds.require("published", "incident_count_by_date")
    return {"incident_count": ds.index.day_count(day_number(date)), "date": date}


@REGISTRY.operation(
    Param("n", "int", "how many addresses", default=10, minimum=1, maximum=MAX_TOP, example=10),
    description="The n street addresses with the most incidents, by count descending, ties by address.",
    result_keys=("top_locations",),
)
def top_locations(ds: Dataset, n: int) -> dict[str, Any]:
    ds.require("address", "top_locations")
    return {"top_locations": ds.index.top_locations(n)}


@REGISTRY.operation(
    description="Mean minutes from Published Date to Status Date over ARCHIVED incidents with both "
    "dates and a duration between 0 and 7 days (the data has no response-time column).",
    result_keys=("avg_response", "unit", "incidents_used", "max_duration_minutes"),
)
def average_response_time(ds: Dataset) -> dict[str, Any]:
    ds.require("response_minutes", "average_response_time")
    avg = ds.index.avg_response
    return {
        "avg_response": None if avg is None else round(avg, 3),
        "unit": "minutes",
        "incidents_used": ds.index.response_rows,
        "max_duration_minutes": MAX_RESPONSE_MINUTES,
    }


@REGISTRY.operation(
    description="Number of distinct Issue Reported values, counted as written (mixed spelling kept).",
    result_keys=("unique_issues", "issues"),
)
def unique_issues(ds: Dataset) -> dict[str, Any]:
    ds.require("issue", "unique_issues")
    issues = sorted(ds.index.issue_counts)
    return {"unique_issues": len(issues), "issues": issues}


@REGISTRY.operation(
    Param(
        "road",
        "string",
        "text to find in the address, case-insensitive and literal (no patterns)",
        min_length=1,  # a blank one ("   ") is refused too, by _check_road
        max_length=MAX_ROAD_LENGTH,
        example="S CONGRESS AVE",
    ),
    description="Number of incidents whose address contains the text (case-insensitive literal substring).",
    result_keys=("count", "road", "addresses"),
    check=_check_road,
)
def incidents_by_road(ds: Dataset, road: str) -> dict[str, Any]:
    ds.require("address", "incidents_by_road")
    _check_road(ds, road)
    count, addresses = ds.index.road_count(road)
    return {"count": count, "road": road, "addresses": addresses}


# --- more of what users of this data ask for ---------------------------------------------------


@REGISTRY.operation(
    description="Incidents per Issue Reported value (as written), most frequent first.",
    result_keys=("counts", "total"),
)
def incidents_by_issue(ds: Dataset) -> dict[str, Any]:
    ds.require("issue", "incidents_by_issue")
    counts = ds.index.issue_counts
    return {"counts": dict(counts), "total": sum(counts.values())}


def _hour_counts(ds: Dataset, operation: str) -> list[int]:
    """Incidents per Austin hour; a dataset of dates alone (the tutorial's CSV) has no hours at all."""
    ds.require("published", operation)
    if ds.index.dated_rows and not ds.index.timed_rows:
        raise NoTimeOfDayError(operation, ds.format)
    return [int(c) for c in ds.index.hour_counts]


@REGISTRY.operation(
    description="Incidents per hour of day (0-23, Austin local time). A date with no time of day "
    "(the tutorial's date column) counts in no hour.",
    result_keys=("counts", "total"),
)
def incidents_by_hour(ds: Dataset) -> dict[str, Any]:
    counts = _hour_counts(ds, "incidents_by_hour")
    return {"counts": {str(h): c for h, c in enumerate(counts)}, "total": sum(counts)}


@REGISTRY.operation(
    description="Incidents per day of the week (Austin local time), Monday first.",
    result_keys=("counts", "total"),
)
def incidents_by_weekday(ds: Dataset) -> dict[str, Any]:
    ds.require("published", "incidents_by_weekday")
    counts = [int(c) for c in ds.index.weekday_counts]
    return {"counts": dict(zip(WEEKDAYS, counts)), "total": sum(counts)}


# the ``start`` of both day-series operations (their ``end`` examples differ)
FIRST_DAY = Param(
    "start", "date", "first day (Austin local), default the first day in the data", default=None, example="2024-01-01"
)


@REGISTRY.operation(
    FIRST_DAY,
    Param("end", "date", "last day, inclusive; default the last day in the data", default=None, example="2024-01-31"),
    description=f"Incidents per Austin calendar day from start to end inclusive (at most {MAX_SERIES_DAYS} days), "
    "zeros included.",
    result_keys=("start", "end", "counts", "total"),
    check=_check_range,
)
def daily_counts(ds: Dataset, start: str | None, end: str | None) -> dict[str, Any]:
    ds.require("published", "daily_counts")
    first, last = _range(ds, start, end, "daily_counts")
    series = ds.index.day_series(first, last)
    days = np.arange(first, last + 1).astype("datetime64[D]").astype(str)
    return {
        "start": day_iso(first),
        "end": day_iso(last),
        "counts": dict(zip(days.tolist(), series.tolist())),
        "total": int(series.sum()),
    }


@REGISTRY.operation(
    Param("n", "int", "how many roads", default=10, minimum=1, maximum=MAX_TOP, example=10),
    description="The n roads with the most incidents; the road of an address is its first street "
    "(before '/', '&', ',', ' at '), without the block number.",
    result_keys=("top_roads",),
)
def top_roads(ds: Dataset, n: int) -> dict[str, Any]:
    ds.require("address", "top_roads")
    roads = ds.index.road_counts
    return {"top_roads": dict(list(roads.items())[:n])}


# the point and radius of incidents_within_radius and of its picture
AROUND_A_POINT = (
    Param("latitude", "number", "centre latitude (degrees)", minimum=-90, maximum=90, example=30.2672),
    Param("longitude", "number", "centre longitude (degrees)", minimum=-180, maximum=180, example=-97.7431),
    Param(
        "radius_km",
        "number",
        "radius in kilometres (great-circle)",
        default=1.0,
        minimum=0.001,
        maximum=MAX_RADIUS_KM,
        example=1.0,
    ),
)


@REGISTRY.operation(
    *AROUND_A_POINT,
    description="Incidents with coordinates within radius_km of a point, with the 10 most common issues there "
    f"(by_issue: at most {MAX_RADIUS_ISSUES}, so its counts may sum to less than count).",
    result_keys=("count", "latitude", "longitude", "radius_km", "by_issue"),
)
def incidents_within_radius(ds: Dataset, latitude: float, longitude: float, radius_km: float) -> dict[str, Any]:
    ds.require("latitude", "incidents_within_radius")
    rows = ds.index.within_radius(latitude, longitude, radius_km)
    issues = ds.columns.categories["issue"]
    codes = ds.columns.arrays["issue"][rows]
    counts = np.bincount(codes[codes >= 0], minlength=len(issues))
    order = np.argsort(-counts, kind="stable")
    by_issue = {issues[i]: int(counts[i]) for i in order[:MAX_RADIUS_ISSUES] if counts[i] > 0}
    return {
        "count": len(rows),
        "latitude": latitude,
        "longitude": longitude,
        "radius_km": radius_km,
        "by_issue": by_issue,
    }


# --- plots (PNG bytes) ------------------------------------------------------------------------


def _source(ds: Dataset) -> str:
    name = Path(ds.path).name if ds.path else "in-memory data"
    return f"{name} ({ds.format}, {ds.identity[:8]})"


@REGISTRY.operation(
    FIRST_DAY,
    Param("end", "date", "last day, inclusive; default the last day in the data", default=None, example="2024-06-30"),
    description="PNG: incidents per day with a 7-day (or, over long ranges, 28-day) rolling mean; a range with no incident says so on the plot.",
    produces_png=True,
    check=_check_range,
)
def plot_daily_counts(ds: Dataset, start: str | None, end: str | None) -> bytes:
    from .plots import daily_counts_png

    ds.require("published", "plot_daily_counts")
    first, last = _range(ds, start, end, "plot_daily_counts")
    return daily_counts_png(first, ds.index.day_series(first, last), _source(ds))


@REGISTRY.operation(
    Param("n", "int", "how many addresses", default=10, minimum=1, maximum=50, example=10),
    description="PNG: horizontal bar chart of the n addresses with the most incidents.",
    produces_png=True,
)
def plot_top_locations(ds: Dataset, n: int) -> bytes:
    from .plots import top_locations_png

    ds.require("address", "plot_top_locations")
    return top_locations_png(ds.index.top_locations(n), ds.rows, _source(ds))


# --- pictures of the distributions (PNG) ---------------------------------------------------------


@REGISTRY.operation(
    description="PNG: incidents per hour of day (Austin local time), the chart of incidents_by_hour.",
    produces_png=True,
)
def plot_incidents_by_hour(ds: Dataset) -> bytes:
    from .distplots import columns_png

    counts = _hour_counts(ds, "plot_incidents_by_hour")  # named as the operation asked for, not the one it draws
    return columns_png(
        [f"{h:02d}" for h in range(24)],
        counts,
        "Traffic incidents by hour of day in Austin",
        "hour of day (Austin local time)",
        f"Data: {_source(ds)}; {sum(counts):,} incidents with a published time.",
        names=[f"{h:02d}:00" for h in range(24)],
    )


@REGISTRY.operation(
    description="PNG: incidents per day of the week, Monday first (weekend shaded dark), the chart of "
    "incidents_by_weekday.",
    produces_png=True,
)
def plot_incidents_by_weekday(ds: Dataset) -> bytes:
    from .distplots import columns_png

    ds.require("published", "plot_incidents_by_weekday")
    counts = incidents_by_weekday(ds)["counts"]
    return columns_png(
        list(counts),
        list(counts.values()),
        "Traffic incidents by day of the week in Austin",
        "day of the week (Austin local time)",
        f"Data: {_source(ds)}; {sum(counts.values()):,} incidents with a published date.",
        highlight=(5, 6),
    )


@REGISTRY.operation(
    Param(
        "n",
        "int",
        "how many issue types (the rest are summed as 'all others')",
        default=15,
        minimum=1,
        maximum=50,
        example=15,
    ),
    description="PNG: the n most frequent Issue Reported values as horizontal bars, the chart of incidents_by_issue.",
    produces_png=True,
)
def plot_incidents_by_issue(ds: Dataset, n: int) -> bytes:
    from .distplots import bars_png

    ds.require("issue", "plot_incidents_by_issue")
    result = incidents_by_issue(ds)
    pairs = list(result["counts"].items())
    shown, rest = pairs[:n], sum(v for _, v in pairs[n:])
    if rest:
        shown.append((f"all others ({len(pairs) - n})", rest))
    return bars_png(
        shown,
        f"Traffic incidents by issue type in Austin (top {min(n, len(pairs))})",
        f"Data: {_source(ds)}; {result['total']:,} incidents. Issue names as written in the data.",
    )


@REGISTRY.operation(
    *AROUND_A_POINT,
    description="PNG: the incidents within radius_km of a point, on a km grid around it, coloured by the "
    "most common issue types (the picture of incidents_within_radius).",
    produces_png=True,
)
def plot_incidents_within_radius(ds: Dataset, latitude: float, longitude: float, radius_km: float) -> bytes:
    from .distplots import radius_png

    ds.require("latitude", "plot_incidents_within_radius")
    rows = ds.index.within_radius(latitude, longitude, radius_km)
    arrays = ds.columns.arrays
    codes = arrays["issue"][rows] if "issue" in arrays else np.full(len(rows), -1)
    issues = ds.columns.categories.get("issue", [])
    return radius_png(
        latitude,
        longitude,
        radius_km,
        arrays["latitude"][rows],
        arrays["longitude"][rows],
        issues,
        codes,
        f"Data: {_source(ds)}. Distances are great-circle; the grid is a local flat projection.",
    )
