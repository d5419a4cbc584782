"""Each operation against hand-computed expectations on the eight-incident fixtures."""

from __future__ import annotations

import json
import math

import numpy as np

import pytest

import atx_analysis.operations  # noqa: F401  (fills the registry)
from atx_analysis.fold import fold
from atx_analysis.index import MAX_NEEDLE
from atx_analysis.registry import REGISTRY, ParamError, UnknownOperation

from devstack.paths import SAMPLE

from .expected import (
    EXPECTED_AVG,
    EXPECTED_DAYS,
    EXPECTED_HOURS,
    EXPECTED_ISSUES,
    EXPECTED_TOP,
    EXPECTED_WEEKDAYS,
    FIXTURES,
)


def run(ds, name, **params):
    result = REGISTRY.get(name).run(ds, params)
    if not isinstance(result, bytes):
        text = json.dumps(result, allow_nan=False)  # plain JSON: no NaN, no numpy types
        assert json.loads(text) == result
    return result


def test_tutorial_operations_in_every_format(eight_rows, load):
    _, path = eight_rows
    ds = load(path)
    for day, n in EXPECTED_DAYS.items():
        assert run(ds, "incident_count_by_date", date=day)["incident_count"] == n
    assert run(ds, "top_locations", n=5)["top_locations"] == EXPECTED_TOP
    assert run(ds, "average_response_time")["avg_response"] == pytest.approx(EXPECTED_AVG)
    assert run(ds, "unique_issues")["unique_issues"] == EXPECTED_ISSUES
    assert run(ds, "incidents_by_road", road="s congress")["count"] == 4
    assert run(ds, "incidents_by_road", road="S CONGRESS (")["count"] == 1


def test_top_locations_order_and_n(load):
    ds = load(FIXTURES / "portal10.csv")
    top = run(ds, "top_locations")["top_locations"]  # default n=10 > distinct addresses
    assert list(top.items()) == list(EXPECTED_TOP.items())  # count desc, ties by address
    assert list(run(ds, "top_locations", n=2)["top_locations"]) == ["N LAMAR BLVD", "S CONGRESS AVE / E OLTORF ST"]


def test_average_response_details(load):
    ds = load(FIXTURES / "portal10.csv")
    res = run(ds, "average_response_time")
    assert res["incidents_used"] == 4 and res["unit"] == "minutes"


def test_average_response_is_null_without_usable_rows(tmp_path, load):
    lines = (FIXTURES / "portal10.csv").read_text().splitlines()
    path = tmp_path / "active.csv"
    path.write_text("\n".join([lines[0], lines[3]]) + "\n")  # only the ACTIVE row
    res = run(load(path), "average_response_time")
    assert res["avg_response"] is None and res["incidents_used"] == 0


def test_unique_issues_lists_them_as_written(load):
    res = run(load(FIXTURES / "portal10.csv"), "unique_issues")
    assert res["issues"] == ["COLLISION", "Crash Urgent", "Stalled Vehicle", "Traffic Hazard", "crash urgent"]


@pytest.mark.parametrize(
    "road,count",
    [
        ("S CONGRESS (", 1),
        ("congress ave", 3),
        ("LAMAR", 3),
        ("e 7th st", 1),
        ("(SB)", 1),
        (".*", 0),
        ("[", 0),
        ("\\", 0),
        ("S CONGRESS AVE / E OLTORF ST", 2),
        ("zzz", 0),
        ("   ", None),
        # NUL bytes (found by schemathesis: they matched the search buffer's padding and crashed it)
        ("\x00", 0),
        ("a\x00b", 0),
        ("\x00\ub96f\u00d6\x0c", 0),
        ("ST\x00", 0),
    ],
)
def test_road_search_is_literal_and_case_insensitive(load, road, count):
    ds = load(FIXTURES / "portal10.csv")
    if count is None:
        with pytest.raises(ParamError):
            run(ds, "incidents_by_road", road=road)
    else:
        assert run(ds, "incidents_by_road", road=road)["count"] == count


def test_counts_by_issue_hour_weekday(load):
    ds = load(FIXTURES / "portal10.csv")
    by_issue = run(ds, "incidents_by_issue")
    assert by_issue["counts"] == {
        "Traffic Hazard": 3,
        "Crash Urgent": 2,
        "COLLISION": 1,
        "Stalled Vehicle": 1,
        "crash urgent": 1,
    }
    assert list(by_issue["counts"])[:2] == ["Traffic Hazard", "Crash Urgent"]
    hours = run(ds, "incidents_by_hour")["counts"]
    assert {int(h): c for h, c in hours.items() if c} == EXPECTED_HOURS and len(hours) == 24
    days = run(ds, "incidents_by_weekday")
    assert {d: c for d, c in days["counts"].items() if c} == EXPECTED_WEEKDAYS
    assert list(days["counts"])[0] == "Monday" and days["total"] == 7


def test_daily_counts_range(load):
    ds = load(FIXTURES / "portal10.csv")
    res = run(ds, "daily_counts", start="2024-03-04", end="2024-03-08")
    assert res["counts"] == {"2024-03-04": 0, "2024-03-05": 2, "2024-03-06": 3, "2024-03-07": 1, "2024-03-08": 0}
    assert res["total"] == 6
    whole = run(ds, "daily_counts")
    assert whole["start"] == "2024-03-05" and whole["end"] == "2024-03-10" and whole["total"] == 7
    with pytest.raises(ParamError) as err:
        run(ds, "daily_counts", start="2024-03-08", end="2024-03-01")
    assert err.value.param == "end"
    with pytest.raises(ParamError):
        run(ds, "daily_counts", start="1990-01-01", end="2024-03-01")


def test_top_roads(load):
    ds = load(FIXTURES / "portal10.csv")
    roads = run(ds, "top_roads", n=3)["top_roads"]
    # S CONGRESS AVE: rows 1, 2 (block stripped), 3; N LAMAR BLVD: 4, 5, 7; ties by name
    assert roads == {"N LAMAR BLVD": 3, "S CONGRESS AVE": 3, "E 7TH ST": 1}


def test_a_comma_in_a_quoted_address_ends_its_road(tmp_path, load):
    """An address quoted in the CSV because it holds a comma ("S CONGRESS AVE, at E OLTORF ST")
    was on a road "S CONGRESS AVE,", ranked apart from S CONGRESS AVE."""
    lines = (FIXTURES / "portal10.csv").read_text().splitlines()
    header = lines[0].split(",")
    row = next(line for line in lines[1:] if "S CONGRESS AVE" in line)
    cells = row.split(",")
    cells[header.index("Address")] = '"S CONGRESS AVE, at E OLTORF ST"'
    path = tmp_path / "comma.csv"
    path.write_text(
        "\n".join([*lines, ",".join(cells), '"x",' + ",".join(cells[1:-4]) + ',"100 E 7TH ST, AUSTIN",,,']) + "\n"
    )
    ds = load(path)
    assert "S CONGRESS AVE, at E OLTORF ST" in list(ds.columns.categories["address"])
    roads = run(ds, "top_roads", n=1000)["top_roads"]
    assert roads["S CONGRESS AVE"] == 4 and roads["E 7TH ST"] == 2
    assert not [r for r in roads if "," in r], roads


def test_within_radius(load):
    ds = load(FIXTURES / "portal10.csv")
    # rows 1 and 3 sit exactly at the centre; row 8 (30.26,-97.73) is ~1.5 km away; row 2 ~1.9 km
    near = run(ds, "incidents_within_radius", latitude=30.2672, longitude=-97.7431, radius_km=0.5)
    assert near["count"] == 2 and near["by_issue"] == {"COLLISION": 1, "Crash Urgent": 1}
    mid = run(ds, "incidents_within_radius", latitude=30.2672, longitude=-97.7431, radius_km=1.6)
    assert mid["count"] == 3
    wide = run(ds, "incidents_within_radius", latitude=30.2672, longitude=-97.7431, radius_km=100)
    assert wide["count"] == 5  # rows 1-4 and 8: row 5 is (0,0), row 6 has none, row 7 is San Antonio (~120 km)


def _dist_km(lat1, lon1, lat2, lon2):
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = math.sin((p2 - p1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    return 2 * 6371.0088 * math.asin(math.sqrt(a))


def test_within_radius_matches_brute_force_on_sample(load):
    ds = load(SAMPLE)
    f = ds.frame
    for lat, lon, r in [(30.27, -97.74, 2.0), (30.4, -97.7, 5.0), (30.1, -97.8, 0.3)]:
        expected = sum(1 for a, b in zip(f["latitude"], f["longitude"]) if a == a and _dist_km(lat, lon, a, b) <= r)
        assert run(ds, "incidents_within_radius", latitude=lat, longitude=lon, radius_km=r)["count"] == expected


@pytest.mark.parametrize(
    "name,params,bad",
    [
        ("incident_count_by_date", {}, "date"),
        ("incident_count_by_date", {"date": "2024-13-01"}, "date"),
        ("incident_count_by_date", {"date": 20240306}, "date"),
        ("top_locations", {"n": 0}, "n"),
        ("top_locations", {"n": 1001}, "n"),
        ("top_locations", {"n": "ten"}, "n"),
        ("top_locations", {"n": True}, "n"),
        ("top_locations", {"count": 3}, "count"),
        ("incidents_by_road", {"road": "x" * 101}, "road"),
        ("incidents_by_road", {"road": 5}, "road"),
        ("incidents_within_radius", {"latitude": 91, "longitude": 0}, "latitude"),
        ("incidents_within_radius", {"latitude": 30, "longitude": -97, "radius_km": 0}, "radius_km"),
        ("incidents_within_radius", {"latitude": 30, "longitude": -97, "radius_km": "nan"}, "radius_km"),
        ("plot_top_locations", {"n": 51}, "n"),
    ],
)
def test_bad_parameters_are_named(load, name, params, bad):
    ds = load(FIXTURES / "portal10.csv")
    with pytest.raises(ParamError) as err:
        REGISTRY.get(name).run(ds, params)
    assert err.value.param == bad
    assert bad in err.value.message


def test_unknown_operation():
    with pytest.raises(UnknownOperation) as err:
        REGISTRY.get("drop_tables")
    assert "top_locations" in str(err.value)


def test_tutorial_names_params_and_result_keys():
    expected = {
        "incident_count_by_date": (["date"], "incident_count"),
        "top_locations": (["n"], "top_locations"),
        "average_response_time": ([], "avg_response"),
        "unique_issues": ([], "unique_issues"),
        "incidents_by_road": (["road"], "count"),
    }
    for name, (params, key) in expected.items():
        op = REGISTRY.get(name)
        assert [p.name for p in op.params] == params
        assert key in op.result_keys
    assert REGISTRY.get("top_locations").params[0].default == 10


def test_every_operation_runs_its_example_on_the_sample(load):
    ds = load(SAMPLE)
    for op in REGISTRY:
        sub = op.example_submission()
        result = run(ds, op.name, **sub["params"])
        if op.produces_png:
            assert result[:8] == b"\x89PNG\r\n\x1a\n"
        else:  # exactly, in order: /operations and docs/analysis.md list these (docs walk-through #11),
            # and results keep their documented order (daily_counts' keys were listed in another)
            assert list(op.result_keys) == list(result), op.name


def test_a_file_whose_every_line_is_malformed_is_not_called_a_header_only(tmp_path, load):
    """A header with one more name than the lines have fields (a column named in a spreadsheet but
    never filled) skips every line as malformed; the warning guessed "a header only?" for a file of
    5,000 lines, and named neither the skipped count nor the cause."""
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()[:4]
    ragged = tmp_path / "ragged-header.csv"
    ragged.write_text("\n".join([lines[0] + ",Notes", *lines[1:]]) + "\n", encoding="utf-8")
    ds = load(ragged)
    assert ds.rows == 0 and ds.counts["malformed_lines_skipped"] == 3
    warning = ds.date_warning()
    assert "header only" not in warning, warning
    assert warning == (
        "none of the file's 3 data lines could be read: each has the wrong number of fields for the header "
        "(counted in malformed_lines_skipped; docs/data.md): every answer counts nothing"
    )


def test_daily_counts_on_data_without_a_dated_row_defaults_to_the_given_day(tmp_path, load):
    """A file with no usable published date (header only, or dates in no form the loader reads) has
    no first or last day: the defaults were the epoch, so `start=2030-01-01` alone was refused with
    "'end' (1970-01-01) is before 'start'" and no parameters gave a 1970-01-01 series."""
    from atx_analysis.registry import REGISTRY

    empty = tmp_path / "header-only.csv"
    empty.write_text(SAMPLE.read_text(encoding="utf-8").splitlines()[0] + "\n")
    ds = load(empty)
    assert ds.date_warning() == "the file has no incident rows (a header only?): every answer counts nothing"
    for op in ("daily_counts", "plot_daily_counts"):
        check = REGISTRY.get(op).check  # what the API runs at submit time, with its dataset
        for given in ({"start": "2030-01-01"}, {"end": "2030-01-01"}):
            check(ds, **given)
        with pytest.raises(ParamError) as err:
            check(ds)
        assert err.value.param == "start" and "no dated incidents" in err.value.message
    res = run(ds, "daily_counts", start="2030-01-01")
    assert (res["start"], res["end"], res["counts"], res["total"]) == ("2030-01-01", "2030-01-01", {"2030-01-01": 0}, 0)
    assert run(ds, "daily_counts", end="2024-03-09")["counts"] == {"2024-03-09": 0}
    assert run(ds, "daily_counts", start="2024-03-01", end="2024-03-02")["total"] == 0


def test_a_reversed_range_names_the_day_that_was_a_default(load):
    """`start=2030-01-01` alone on data ending 2024-03-10 said "'end' (2024-03-10) is before 'start'",
    a date the user never gave, and blamed `end`."""
    ds = load(FIXTURES / "portal10.csv")
    with pytest.raises(ParamError) as err:
        run(ds, "daily_counts", start="2030-01-01")
    assert err.value.param == "start"
    assert err.value.message == "'end' (2024-03-10, the last day in the data) is before 'start' (2030-01-01)"
    with pytest.raises(ParamError) as err:
        run(ds, "daily_counts", end="2020-01-01")
    assert err.value.param == "end"
    assert err.value.message == "'end' (2020-01-01) is before 'start' (2024-03-05, the first day in the data)"


@pytest.mark.parametrize(
    "kind,text",
    [
        ("int", "1_0"),
        ("int", "\uff15"),  # full-width 5
        ("int", "\u0663"),  # Arabic-Indic 3
        ("number", "1_0.5"),
        ("number", "\uff15.0"),
        ("number", "nan"),
        ("date", "20240115"),
        ("date", "2024-W03-1"),
        ("date", "\uff12\uff10\uff12\uff14-01-15"),
    ],
)
def test_text_numbers_and_dates_take_only_the_plain_ascii_form(kind, text):
    """Security review I2: Python's int/float/fromisoformat took "1_0", full-width digits and ISO
    basic or week dates, which the OpenAPI patterns refuse; each is now the named 400 error."""
    from atx_analysis.registry import Param, ParamError

    with pytest.raises(ParamError) as err:
        Param("v", kind, "test").coerce(text)
    assert err.value.param == "v"


@pytest.mark.parametrize(
    "kind,text,value",
    [
        ("int", " 5 ", 5),
        ("int", "-3", -3),
        ("number", "1e3", 1000.0),
        ("number", ".5", 0.5),
        ("date", "2024-01-15", "2024-01-15"),
    ],
)
def test_plain_text_numbers_and_dates_still_coerce(kind, text, value):
    from atx_analysis.registry import Param

    assert Param("v", kind, "test").coerce(text) == value


def test_within_radius_by_issue_is_the_ten_most_common(load):
    """by_issue lists 10 issue types at most (docs/analysis.md); it used to be documented as "the
    most common issues", and its counts summing to less than count read as a wrong number."""
    ds = load(SAMPLE)
    res = run(ds, "incidents_within_radius", latitude=30.2672, longitude=-97.7431, radius_km=100)
    rows = ds.index.within_radius(30.2672, -97.7431, 100)
    issues = ds.columns.categories["issue"]
    codes = ds.columns.arrays["issue"][rows]
    every = {issues[c]: int(n) for c, n in enumerate(np.bincount(codes[codes >= 0], minlength=len(issues))) if n}
    assert len(every) > 10 and len(res["by_issue"]) == 10
    assert list(res["by_issue"].items()) == sorted(every.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
    assert sum(res["by_issue"].values()) < res["count"] == len(rows)


@pytest.mark.parametrize("cache_mode", ["readwrite", "off"])
def test_a_road_of_100_letters_that_grow_when_upper_cased_is_found(tmp_path, load, cache_mode):
    """The road parameter allows 100 characters. When the search compared them upper-cased, 'ΐ'
    (2 bytes) was 'Ϊ́' (6): 100 of them were 600 bytes, past the search's cap, and the road was not
    found in the address that holds it (count 0). Folded (fold.py) each stays one letter."""
    road = "\u0390" * 100
    lines = (FIXTURES / "portal10.csv").read_text(encoding="utf-8").splitlines()
    cells = lines[1].split(",")
    cells[6] = road + " ST"
    path = tmp_path / "greek.csv"
    path.write_text("\n".join([lines[0], ",".join(cells), *lines[2:]]) + "\n", encoding="utf-8")
    for _ in range(2):  # the second load maps the cache the first wrote (readwrite)
        ds = load(path, cache_mode=cache_mode)
        assert len(road.upper().encode()) == 600 and len(fold(road).encode()) == 200 <= MAX_NEEDLE
        assert run(ds, "incidents_by_road", road=road) == {"count": 1, "road": road, "addresses": 1}
        assert run(ds, "incidents_by_road", road=road[3:] + " st")["count"] == 1  # 100 characters too
