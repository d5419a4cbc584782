"""Property tests: the indexed answers equal a brute-force scan of the same rows, for any rows."""

from __future__ import annotations

import csv
import datetime as dt
import io
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import atx_analysis.operations as ops
from atx_analysis.formats import PORTAL_COLUMNS
from atx_analysis.registry import REGISTRY, ParamError

AUSTIN = ZoneInfo("America/Chicago")
HEADER = list(PORTAL_COLUMNS)
ADDRESSES = ["S CONGRESS AVE", "s congress (sb)", "N LAMAR BLVD / W 38TH ST", "[.*]", "E 7TH ST", "", "a\\b"]

instants = st.datetimes(min_value=dt.datetime(2017, 1, 1), max_value=dt.datetime(2026, 12, 31))
rows = st.lists(
    st.tuples(
        instants,
        st.sampled_from(ADDRESSES),
        st.sampled_from(["Crash Urgent", "crash urgent", "X"]),
        st.integers(-100, 20_000),
        st.sampled_from(["ACTIVE", "ARCHIVED"]),
    ),
    min_size=1,
    max_size=40,
)


def _write(tmp_path, data) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(HEADER)
    for i, (when, addr, issue, minutes, status) in enumerate(data):
        sd = when + dt.timedelta(minutes=minutes)
        fmt = "%m/%d/%Y %I:%M:%S %p +0000"
        w.writerow(
            [
                f"ID{i}",
                when.strftime(fmt),
                issue,
                "",
                "30.27",
                "-97.74",
                addr,
                status,
                sd.strftime(fmt) if sd.year >= 1970 else "",
                "AUSTIN PD",
            ]
        )
    path = tmp_path / f"p{abs(hash(buf.getvalue()))}.csv"
    path.write_text(buf.getvalue())
    return str(path)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=rows, road=st.sampled_from(["congress", "S CONGRESS (", "[.*]", "\\", "7th", "LAMAR BLVD /"]))
def test_indexed_answers_match_brute_force(tmp_path, load, data, road):
    ds = load(_write(tmp_path, data), cache=False)
    days = {}
    for when, *_ in data:
        local = when.replace(tzinfo=dt.UTC).astimezone(AUSTIN).date().isoformat()
        days[local] = days.get(local, 0) + 1
    for day, n in days.items():
        assert ops.incident_count_by_date(ds, day)["incident_count"] == n
    expected_road = sum(1 for _, addr, *_ in data if addr and road.lower() in addr.lower())
    assert ops.incidents_by_road(ds, road)["count"] == expected_road
    used = [m for _, _, _, m, s in data if s == "ARCHIVED" and 0 <= m <= 7 * 24 * 60]
    avg = ops.average_response_time(ds)["avg_response"]
    assert (avg is None) if not used else abs(avg - sum(used) / len(used)) < 1e-3
    counts = {}
    for _, addr, *_ in data:
        if addr:
            counts[addr] = counts.get(addr, 0) + 1
    expected_top = dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:3])
    assert ops.top_locations(ds, 3)["top_locations"] == expected_top
    assert ops.unique_issues(ds)["unique_issues"] == len({i for _, _, i, _, _ in data})


@given(st.one_of(st.integers(), st.text(max_size=8), st.floats(allow_nan=True), st.booleans(), st.none()))
def test_top_locations_n_is_accepted_only_within_bounds(raw):
    op = REGISTRY.get("top_locations")
    try:
        clean = op.validate({"n": raw})
    except ParamError as err:
        assert err.param == "n"
        return
    n = clean["n"]
    assert isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= 1000
