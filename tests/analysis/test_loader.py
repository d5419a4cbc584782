"""Every loader path: each format recognised and normalised the same way, bad files and bad rows."""

from __future__ import annotations

import csv
import gzip
import json
import os
import re

import numpy as np
import pytest

from atx_analysis.dataset import content_hash, load_dataset
from atx_analysis.errors import DataFormatError, MissingColumnError

from devstack.paths import SAMPLE

from .expected import EXPECTED_DAYS, FIXTURES


def test_each_format_is_recognised_and_normalised(eight_rows, load):
    fmt, path = eight_rows
    ds = load(path)
    assert ds.format == fmt
    assert ds.rows == 8
    assert ds.identity == content_hash(path)
    info = ds.info()
    json.dumps(info)  # plain JSON
    assert info["date_range"] == {"first": "2024-03-05", "last": "2024-03-10", "timezone": "America/Chicago"}
    assert info["rows"] == 8 and info["format"] == fmt
    f = ds.frame
    assert f["address"].tolist()[-1] == "E 7TH ST"  # stripped
    assert f["status"].tolist()[5] == "ARCHIVED"  # upper-cased
    assert ds.counts["published_unparseable"] + ds.counts["published_missing"] == 1
    assert ds.counts["coordinates_outside_austin"] == 1
    # row 8: latitude 'abc' but a usable Location (or GeoJSON) point
    assert f["latitude"].iloc[7] == pytest.approx(30.26) and f["longitude"].iloc[7] == pytest.approx(-97.73)
    assert np.isnan(f["latitude"].iloc[4])  # (0, 0) is not a place
    assert np.isnan(f["latitude"].iloc[5])


def test_bad_values_are_counted_per_rule(load):
    ds = load(FIXTURES / "portal10.csv")
    assert ds.counts == {
        "malformed_lines_skipped": 0,
        "published_missing": 0,
        "published_unparseable": 1,
        "status_date_unparseable": 0,
        "coordinates_invalid": 1,
        "coordinates_missing": 1,
        "coordinates_outside_austin": 1,
    }


def test_austin_local_days_not_utc_days(load):
    ds = load(FIXTURES / "portal10.csv")
    from atx_analysis.operations import day_number

    for day, n in EXPECTED_DAYS.items():
        assert ds.index.day_count(day_number(day)) == n, day


def test_tutorial_csv(load):
    ds = load(FIXTURES / "tutorial.csv")
    assert ds.format == "tutorial-csv"
    from atx_analysis.operations import average_response_time, incident_count_by_date

    # date-only values are Austin days; 2024-03-07 05:00 UTC is 23:00 on the 6th in Austin
    assert incident_count_by_date(ds, "2024-03-06")["incident_count"] == 3
    assert incident_count_by_date(ds, "2024-03-07")["incident_count"] == 1
    assert average_response_time(ds)["avg_response"] == pytest.approx((12 + 30.5) / 2)
    assert ds.counts["response_time_unparseable"] == 1


def test_a_date_without_a_time_counts_in_days_and_weekdays_but_in_no_hour(tmp_path, load):
    """The tutorial's ``date`` (2024-03-06) was stored as Austin's midnight, and incidents_by_hour
    counted every such row at hour 0: a made-up peak. Only a row with a time has an hour; a file of
    dates alone cannot answer by hour, and says why, from the cache too."""
    from atx_analysis.errors import NoTimeOfDayError
    from atx_analysis.operations import incidents_by_hour, incidents_by_weekday, plot_incidents_by_hour

    ds = load(FIXTURES / "tutorial.csv")
    hours = incidents_by_hour(ds)
    # 2024-03-07 05:00:00 UTC is 23:00 in Austin; the date-only rows are in no hour
    assert hours["total"] == 1 and hours["counts"]["23"] == 1 and hours["counts"]["0"] == 0
    assert incidents_by_weekday(ds)["total"] == ds.index.dated_rows == 4

    dates_only = tmp_path / "dates.csv"
    lines = (FIXTURES / "tutorial.csv").read_text().splitlines()
    dates_only.write_text("\n".join(line for line in lines if " " not in line.split(",")[0]) + "\n")
    for _ in range(2):  # parsed, then read back from the cache
        ds = load(dates_only)
        assert ds.index.dated_rows == 3 and ds.index.timed_rows == 0
        for op in (incidents_by_hour, plot_incidents_by_hour):
            with pytest.raises(NoTimeOfDayError, match=f"{op.__name__}' needs a time of day.*tutorial-csv"):
                op(ds)
        assert incidents_by_weekday(ds)["counts"]["Wednesday"] == 2


def test_soda_select_subset_loads_and_missing_columns_are_named(load):
    ds = load(FIXTURES / "soda_select.csv")
    assert ds.format == "soda-csv" and ds.rows == 4
    from atx_analysis.operations import average_response_time, incident_count_by_date, top_locations

    assert incident_count_by_date(ds, "2024-03-05")["incident_count"] == 2
    assert top_locations(ds, 1)["top_locations"] == {"S CONGRESS AVE / E OLTORF ST": 2}
    with pytest.raises(MissingColumnError, match=r"response_minutes|issue|status"):
        average_response_time(ds)


def test_a_missing_column_is_named_with_the_operation_asked_for(tmp_path, load):
    """plot_incidents_by_issue (by_hour, by_weekday) on a subset without the column it draws said
    "operation 'incidents_by_issue' needs the 'issue' column", naming an operation nobody asked for
    (the sync route's body carried it as its "operation" too)."""
    import atx_analysis.operations  # noqa: F401  (fills the registry)
    from atx_analysis.registry import REGISTRY

    address_only = tmp_path / "address_only.csv"
    address_only.write_text("address\nS CONGRESS AVE\nN LAMAR BLVD\n", encoding="utf-8")
    refused = set()
    for path in (FIXTURES / "soda_select.csv", address_only):
        ds = load(path)
        for op in REGISTRY:
            try:
                op.run(ds, op.example_submission()["params"])
            except MissingColumnError as err:
                assert err.operation == op.name, (path.name, op.name, str(err))
                assert f"operation '{op.name}' needs" in str(err)
                refused.add(op.name)
    assert {"plot_incidents_by_issue", "plot_incidents_by_hour", "plot_incidents_by_weekday"} <= refused


def test_a_tutorial_csv_without_a_column_is_named_once(tmp_path, load):
    """The message read "looks like the the tutorial's simplified CSV"."""
    short = tmp_path / "tutorial3.csv"
    short.write_text("date,Location,Issue_Report\n2024-03-06,S CONGRESS AVE,Crash Urgent\n", encoding="utf-8")
    with pytest.raises(DataFormatError) as err:
        load(short)
    assert str(err.value).startswith("looks like the tutorial's simplified CSV but lacks columns: ResponseTime;")
    portal = tmp_path / "portal9.csv"
    lines = (FIXTURES / "portal10.csv").read_text().splitlines()
    portal.write_text("\n".join(line.rsplit(",", 2)[0] for line in lines) + "\n", encoding="utf-8")
    with pytest.raises(DataFormatError) as err:
        load(portal)
    assert str(err.value).startswith("looks like the portal CSV export (10 columns) but lacks columns: Status Date"), (
        err
    )


def test_a_header_of_the_api_names_written_as_words_loads(tmp_path, load):
    """A portal export headed `Traffic Report Status, Traffic Report Status Date Time` (the API's
    names as words) was refused as a portal export lacking Status and Status Date."""
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()
    header = lines[0].replace("Status,Status Date", "Traffic Report Status,Traffic Report Status Date Time")
    assert header.count("Traffic Report Status") == 2
    path = tmp_path / "export.csv"
    path.write_text("\n".join([header, *lines[1:4]]) + "\n", encoding="utf-8")
    ds = load(path)
    assert ds.format == "soda-csv" and ds.rows == 3
    assert set(ds.available) >= {"status", "status_date", "response_minutes", "agency", "published"}
    assert list(ds.columns.categories["status"]) == ["ARCHIVED"]
    assert not np.isnan(ds.columns.arrays["response_minutes"]).all()


@pytest.mark.parametrize("delimiter", [",", ";"])
def test_blank_lines_a_spreadsheet_leaves_after_the_rows_are_no_incidents(tmp_path, load, delimiter):
    """Saved from a spreadsheet program, the export ends in lines of separators only (`,,,,,,,,,`):
    each was an incident with no date, place or issue (105 rows for 100, `published_missing` 5 and
    the "dates unusable" warning); a line of spaces counted as a malformed line."""
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()[:101]
    text = "\r\n".join(line.replace(",", delimiter) for line in lines) + "\r\n"
    path = tmp_path / "saved.csv"
    path.write_text(text + (delimiter * 9 + "\r\n") * 5 + " " + delimiter * 9 + "\r\n   \r\n\r\n", newline="")
    ds = load(path)
    assert ds.rows == 100
    assert not any(ds.counts.values()), ds.counts
    assert ds.date_warning() is None


@pytest.mark.parametrize(
    "totals", ["Total,,,,,,,,,", "Grand Total,100,,,,,,,,", "TOTALS:,,,,,,,,,12.5", "total,,,,,,,,,"]
)
def test_a_totals_row_after_the_incidents_is_no_incident(tmp_path, load, totals):
    """A report tool's export (or a spreadsheet's subtotal) ends in `Total,,,,,,,,,`: it loaded as an
    incident with report id "Total" and no date (101 rows for 100, `published_missing` 1 and the
    "dates unusable" warning). A row named so before the last incident stays."""
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()[:101]
    path = tmp_path / "report.csv"
    path.write_text("\n".join([*lines, totals, ",,,,,,,,,"]) + "\n")
    ds = load(path)
    assert ds.rows == 100 and not any(ds.counts.values()), ds.counts
    assert ds.date_warning() is None
    path.write_text("\n".join([*lines[:50], totals, *lines[50:]]) + "\n")
    assert load(path).rows == 101


@pytest.mark.parametrize("delimiter", [",", ";"])
def test_a_header_repeated_by_joined_exports_is_no_incident(tmp_path, load, delimiter):
    """`cat march.csv april.csv > all.csv` keeps April's header line: it loaded as an incident with
    report id "Traffic Report ID" (101 rows for 100, a date unparseable, coordinates invalid)."""
    lines = [line.replace(",", delimiter) for line in SAMPLE.read_text(encoding="utf-8").splitlines()[:101]]
    path = tmp_path / "all.csv"
    path.write_text("\n".join([*lines[:51], lines[0], *lines[51:]]) + "\n")
    ds = load(path)
    assert ds.rows == 100 and not any(ds.counts.values()), ds.counts


def _sample_frame(rows: int):
    import pandas as pd

    return pd.read_csv(SAMPLE, dtype=str, keep_default_na=False, nrows=rows)


@pytest.mark.parametrize("form", ["json", "jsonl", "parquet", "typed-parquet"])
def test_blank_header_and_totals_rows_are_no_incidents_in_every_format(tmp_path, load, form):
    """Blank rows, a repeated header and a totals row were dropped from CSV only: the same export
    converted to JSON (a converter keeps every line) or to Parquet (``read_csv(dtype=str)`` of
    joined files, then ``to_parquet``) loaded each as an incident with no date or place."""
    import pandas as pd

    from atx_analysis.generator import SODA_FIELDS

    frame = _sample_frame(100)
    header = pd.DataFrame([dict(zip(frame.columns, frame.columns))])
    blank = pd.DataFrame([dict.fromkeys(frame.columns, "")])
    totals = pd.DataFrame([{**dict.fromkeys(frame.columns, ""), "Traffic Report ID": "Grand Total", "Latitude": "100"}])
    if form == "typed-parquet":  # typed columns: a float sum under Latitude, no header (a number holds no name)
        frame = frame.assign(Latitude=pd.to_numeric(frame["Latitude"]))
        blank, totals = blank.assign(Latitude=None), totals.assign(Latitude=100.0)
        joined = pd.concat([frame.iloc[:50], blank, frame.iloc[50:], totals, blank], ignore_index=True)
    else:
        joined = pd.concat([frame.iloc[:50], header, blank, frame.iloc[50:], totals, blank], ignore_index=True)
    path = tmp_path / f"export.{form}"
    if form.endswith("parquet"):
        joined.to_parquet(path, index=False)
    else:  # SODA's names, empty fields left out as SODA does, the header a record of the names
        records = [{SODA_FIELDS[k]: v for k, v in row.items() if v != ""} for row in joined.to_dict("records")]
        records = [
            {k: k for k in SODA_FIELDS.values()} if r.get("traffic_report_id") == "Traffic Report ID" else r
            for r in records
        ]
        text = json.dumps(records) if form == "json" else "\n".join(json.dumps(r) for r in records) + "\n"
        path.write_text(text)
    ds = load(path)
    assert ds.rows == 100 and not any(ds.counts.values()), (ds.format, ds.counts)
    assert ds.date_warning() is None


def test_coordinates_with_a_decimal_comma_are_read(tmp_path, load):
    """A spreadsheet in a European locale saves the export with ';' (read) and writes Latitude and
    Longitude with a decimal comma, `30,27`: each such point was invalid (counted in
    coordinates_invalid, found by no radius search) unless Location held it too."""
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()[:3]
    header = lines[0].split(",")
    rows = []
    for line in lines[1:]:
        cells = line.split(",")
        cells[header.index("Location")] = ""
        for name in ("Latitude", "Longitude"):
            cells[header.index(name)] = cells[header.index(name)].replace(".", ",")
        rows.append(";".join(cells))
    path = tmp_path / "european.csv"
    path.write_text("\n".join([";".join(header), *rows]) + "\n", encoding="utf-8")
    expected = [float(line.split(",")[header.index("Latitude")]) for line in lines[1:]]
    ds = load(path)
    assert ds.counts["coordinates_invalid"] == 0
    assert ds.columns.arrays["latitude"].tolist() == expected
    assert (ds.columns.arrays["longitude"] < -97).all()


def test_wrong_columns_error_names_expected_columns(load):
    with pytest.raises(DataFormatError) as err:
        load(FIXTURES / "wrong_columns.csv")
    msg = str(err.value)
    for col in ("Published Date", "Issue Reported", "published_date", "Issue_Report", "ResponseTime"):
        assert col in msg
    assert "id, when, what" in msg


def test_portal_file_missing_a_column_says_which(tmp_path, load):
    lines = (FIXTURES / "portal10.csv").read_text().splitlines()
    cut = [",".join(line.split(",")[:1] + line.split(",")[2:]) for line in lines[:2]]  # drop Published Date
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join(cut) + "\n")
    with pytest.raises(DataFormatError, match="lacks columns: Published Date"):
        load(bad)


@pytest.mark.parametrize(
    "content", [b"", b"\x1f\x8bnot really gzip", b"[1, 2, 3]", b"{not json", b"PAR1garbage", b"\n\n"]
)
def test_unreadable_files_raise_data_format_error(tmp_path, load, content):
    bad = tmp_path / "bad.dat"
    bad.write_bytes(content)
    with pytest.raises(DataFormatError):
        load(bad)


def test_missing_file(tmp_path, load):
    with pytest.raises(DataFormatError, match="no such file"):
        load(tmp_path / "nope.csv")


def test_a_missing_relative_path_names_the_folder_it_was_looked_for_in(tmp_path, monkeypatch, load):
    """`jobqueue-api` started outside the checkout reads the default DATA_PATH,
    data/traffic_incidents_sample.csv, from wherever it runs: /readyz's log said only
    "data/traffic_incidents_sample.csv: no such file", which looks like the file is gone."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataFormatError) as err:
        load("data/traffic_incidents_sample.csv")
    assert str(err.value) == (
        f"data/traffic_incidents_sample.csv: no such file (a relative path, looked for in {tmp_path}: "
        f"give an absolute path, or start from the folder it is relative to)"
    )


@pytest.mark.parametrize("spaced", [" {}", "{} ", "{}\n"])
def test_a_path_with_a_space_around_it_says_so(tmp_path, load, spaced):
    """DATA_PATH=" /data/x.csv" (quoted, or a YAML string) said "/data/x.csv: no such file" about a
    file that exists: the space was in the message, where no one sees it."""
    real = tmp_path / "traffic.csv"
    real.write_text("x")
    with pytest.raises(DataFormatError) as err:
        load(spaced.format(real))
    assert str(err.value) == (
        f"{spaced.format(real)!r}: no such file (the path begins or ends with white space, which is part of the "
        f"name here): write it without, e.g. {str(real)!r}"
    )


def test_a_tilde_path_says_the_tilde_is_not_expanded(tmp_path, monkeypatch, load):
    """DATA_PATH="~/traffic.csv" (quoted, or from a .env or compose file) reaches the loader with its
    '~': that it was "a relative path" looked for in the current folder is true but no help."""
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(DataFormatError) as err:
        load("~/traffic.csv")
    assert str(err.value) == (
        f"~/traffic.csv: no such file ('~' is expanded by a shell only where it is unquoted; here it is "
        f"part of the name): write the full path, e.g. {tmp_path}/traffic.csv"
    )


def test_a_folder_is_named_as_a_folder_with_the_files_in_it(tmp_path, load):
    """DATA_PATH=/srv/data (the volume's mount point, not the file in it) said "no such file" for a
    folder that is there; the API's /readyz log and the worker (exit 3) said the same."""
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "traffic_incidents.csv").write_text("x\n")
    with pytest.raises(DataFormatError, match=r"is a folder, not a file.*traffic_incidents\.csv"):
        load(folder)
    from atx_analysis.readers import read_raw

    with pytest.raises(DataFormatError, match="is a folder, not a file"):
        read_raw(folder)


def test_malformed_lines_are_skipped_and_counted(load):
    ds = load(FIXTURES / "ragged.csv")
    assert ds.rows == 2
    assert ds.counts["malformed_lines_skipped"] == 1


def test_cache_roundtrip_gives_the_same_frame(tmp_path):
    cache = tmp_path / "cache"
    first = load_dataset(FIXTURES / "portal10.csv", cache_dir=str(cache))
    assert not first.from_cache and len(list(cache.glob("*.arrow"))) == 1
    second = load_dataset(FIXTURES / "portal10.csv", cache_dir=str(cache))
    assert second.from_cache
    assert second.format == first.format and second.counts == first.counts
    assert second.frame.equals(first.frame)
    assert second.info()["date_range"] == first.info()["date_range"]


def test_cache_is_keyed_by_content(tmp_path):
    data = tmp_path / "d.csv"
    data.write_bytes((FIXTURES / "portal10.csv").read_bytes())
    a = load_dataset(data)  # default: .cache/ beside the file
    assert (tmp_path / ".cache").is_dir()
    lines = data.read_text().splitlines()
    data.write_text("\n".join(lines[:3]) + "\n")
    b = load_dataset(data)
    assert b.rows == 2 and not b.from_cache and b.identity != a.identity


def test_read_only_data_dir_still_loads(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    data = ro / "d.csv"
    data.write_bytes((FIXTURES / "portal10.csv").read_bytes())
    os.chmod(ro, 0o555)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as a user that can write anywhere (root): covered by the unwritable-dir test")
        ds = load_dataset(data)
        assert ds.rows == 8 and not ds.from_cache
    finally:
        os.chmod(ro, 0o755)


def test_default_cache_location_unusable_falls_back(tmp_path):
    """As root every directory is writable, so make `.cache` beside the data a plain file instead."""
    data = tmp_path / "d.csv"
    data.write_bytes((FIXTURES / "portal10.csv").read_bytes())
    (tmp_path / ".cache").write_text("not a directory")
    ds = load_dataset(data)
    assert ds.rows == 8 and not ds.from_cache and ds.identity == content_hash(data)


def test_unwritable_cache_dir_falls_back(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with caplog.at_level("INFO"):
        ds = load_dataset(FIXTURES / "portal10.csv", cache_dir=str(blocker / "sub"))
    assert ds.rows == 8 and not ds.from_cache
    # said where an operator looks: every process will parse the file again
    assert any(r.levelname == "WARNING" and "not caching parsed data" in r.getMessage() for r in caplog.records)


def test_corrupt_cache_is_ignored(tmp_path):
    cache = tmp_path / "cache"
    load_dataset(FIXTURES / "portal10.csv", cache_dir=str(cache))
    (victim,) = cache.glob("*.arrow")
    victim.write_bytes(b"PAR1 torn")
    ds = load_dataset(FIXTURES / "portal10.csv", cache_dir=str(cache))
    assert ds.rows == 8 and not ds.from_cache


def test_bundled_sample_loads(load):
    ds = load(SAMPLE)
    assert ds.format == "portal-csv"
    assert 2000 <= ds.rows <= 10000
    first, last = ds.date_range
    assert first.startswith("2017") and last >= "2026-01-01"
    assert ds.counts["coordinates_outside_austin"] > 0
    assert set(ds.frame["status"].unique()) == {"ACTIVE", "ARCHIVED"}


def test_gzip_detected_by_content_not_name(tmp_path, load):
    path = tmp_path / "no_extension"
    with gzip.open(path, "wb") as fh:
        fh.write((FIXTURES / "tutorial.csv").read_bytes())
    assert load(path).format == "tutorial-csv+gzip"


def test_identity_memo_is_used_only_for_an_unchanged_file(tmp_path):
    data = tmp_path / "d.csv"
    data.write_bytes((FIXTURES / "portal10.csv").read_bytes())
    cache = tmp_path / "c"
    first = load_dataset(data, cache_dir=str(cache))
    memo = cache / "d.csv.identity.json"
    assert json.loads(memo.read_text())["sha256"] == first.identity == content_hash(data)
    # a forged memo is believed only while size, mtime and inode match
    forged = json.loads(memo.read_text())
    memo.write_text(json.dumps({**forged, "sha256": "f" * 64}))
    assert load_dataset(data, cache_dir=str(cache)).identity == "f" * 64
    os.utime(data, ns=(1, 1))
    assert load_dataset(data, cache_dir=str(cache)).identity == content_hash(data)


def test_a_missing_column_names_the_form_that_lacks_it(tmp_path, load):
    """The COE 332 tutorial's CSV has no coordinates; asking it for a radius said "(a SODA $select
    subset without it?)", a hint about another form of the data."""
    from atx_analysis.errors import MissingColumnError

    tutorial = tmp_path / "tutorial.csv"
    tutorial.write_text("date,Location,Issue_Report,ResponseTime\n2024-03-09 10:00,1 MAIN ST,COLLISION,12\n")
    ds = load(tutorial)
    with pytest.raises(MissingColumnError, match=r"'latitude' column.*its form, tutorial-csv, has no such column"):
        ds.require("latitude", "incidents_within_radius")


def _as_spreadsheet_saves(tmp_path):
    """The bundled portal export with an accented address near its end (past the first 64 KB), as a
    user's spreadsheet program may save it: Windows-1252 "CSV", UTF-16 "Unicode text", a European
    locale's ";" separator, a tab-separated file, and the same with the accent on the first row."""
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()
    last = lines[-1].split(",")
    last[6] = "CAÑADA DR / MÉNDEZ ST"
    lines[-1] = ",".join(last)
    text = "\r\n".join(lines) + "\r\n"
    early = "\r\n".join([lines[0], lines[-1], *lines[1:-1]]) + "\r\n"
    files = {
        "utf-8": text.encode("utf-8"),
        "cp1252": text.encode("cp1252"),
        "cp1252 (accent on row 1)": early.encode("cp1252"),
        "cp1252+gzip": gzip.compress(text.encode("cp1252")),
        "utf-16": text.encode("utf-16"),
        "semicolons": text.replace(",", ";").encode("utf-8"),
        "tabs": text.replace(",", "\t").encode("cp1252"),
    }
    paths = {}
    for name, data in files.items():
        paths[name] = tmp_path / f"{name.split(' ')[0]}.csv"
        paths[name].write_bytes(data)
    return paths


def test_the_portal_export_saved_by_a_spreadsheet_program_loads_the_same(tmp_path, load):
    """A file that is not UTF-8 was refused whole ("cannot read as csv: 'utf-8' codec can't decode
    byte 0xd1"), and one separated by ";" or tabs was "unrecognised columns [Traffic Report ID;...]"."""
    paths = _as_spreadsheet_saves(tmp_path)
    reference = load(paths.pop("utf-8"))
    for name, path in paths.items():
        ds = load(path)
        assert (ds.format.removesuffix("+gzip"), ds.rows, ds.counts) == ("portal-csv", 5000, reference.counts), name
        assert "CAÑADA DR / MÉNDEZ ST" in set(ds.frame["address"].dropna()), name
        assert sorted(ds.frame["address"].dropna().unique()) == sorted(reference.frame["address"].dropna().unique())


def test_the_portal_json_export_reads_old_locations_and_counts_bad_rows(tmp_path, load):
    """The portal's Export -> JSON (rows.json) was refused: "JSON must be a list of records
    (objects), as the SODA API returns". An old location column comes as [address, lat, lon, ...];
    a row that is not one value per column is skipped and counted."""
    doc = {
        "meta": {"view": {"columns": [{"fieldName": ":sid"}, {"fieldName": "address"}, {"fieldName": "location"}]}},
        "data": [
            [1, "S CONGRESS AVE", ['{"address": ""}', "30.2672", "-97.7431", None, False]],
            [2, "E 7TH ST", [None, None, None, None, True]],
            [3, "TOO SHORT"],
        ],
    }
    path = tmp_path / "rows.json"
    path.write_text(json.dumps(doc))
    ds = load(path)
    assert (ds.format, ds.rows, ds.counts["malformed_lines_skipped"]) == ("soda-json", 2, 1)
    assert ds.frame["latitude"].iloc[0] == pytest.approx(30.2672)
    assert ds.frame["longitude"].iloc[0] == pytest.approx(-97.7431)
    assert np.isnan(ds.frame["latitude"].iloc[1])


def test_a_file_whose_dates_cannot_be_read_says_so_in_the_api_and_worker_logs(tmp_path, load, caplog):
    """Dates in a form the loader does not read (`06-Mar-2024 01:29`) loaded with
    no word in any log: the API was ready and every date, hour and weekday answer was 0."""
    from jobqueue_api.state import DatasetSlot, load_dataset_into
    from jobqueue_worker.data import DataSource

    lines = SAMPLE.read_text(encoding="utf-8").splitlines()
    rows = [line.split(",") for line in lines[1:]]
    for row in rows[:100]:
        row[1] = "06-Mar-2024 01:29"
    path = tmp_path / "short-dates.csv"
    path.write_text("\n".join([lines[0], *(",".join(r) for r in rows)]) + "\n")

    assert load(SAMPLE).date_warning() is None
    some = load(path).date_warning()
    assert some is not None and some.startswith("100 of 5000 rows have no usable published date (100 in no form")
    for row in rows:
        row[1] = "06-Mar-2024 01:29"
    path.write_text("\n".join([lines[0], *(",".join(r) for r in rows)]) + "\n")
    caplog.set_level("WARNING")
    options = {"cache_dir": str(tmp_path / "cache")}
    load_dataset_into(DatasetSlot(), str(path), **options)
    DataSource(str(path), **options).get()
    warnings = [r for r in caplog.records if r.getMessage() == "dataset dates unusable"]
    assert [r.name for r in warnings] == ["jobqueue.api", "jobqueue.worker.data"]
    assert all(r.detail.startswith("5000 of 5000 rows have no usable published date") for r in warnings)


@pytest.mark.parametrize(
    "written",
    [
        "03/06/2024 01:29:00 AM +0000",
        "3/6/2024 1:29",
        "3/6/2024 1:29 AM",
        "03/06/2024 01:29 AM",
        "3/6/24 1:29",
        "06.03.2024 01:29",
        "06.03.2024 01:29:39",
    ],
)
def test_dates_as_a_spreadsheet_program_writes_them_back_are_read(tmp_path, load, written):
    """Opened in a spreadsheet and saved, the portal's `03/06/2024 01:29:39 AM +0000` comes back as
    `3/6/2024 1:29`, `3/6/2024 1:29 AM` or, with the short date format, `3/6/24 1:29`: the last two
    were unreadable (every date answer 0), and `%Y` read `3/6/24` as the year 24. A spreadsheet in a
    European locale (which saves with ';') writes the day first between dots, `06.03.2024 01:29`:
    unreadable too."""
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()
    row = lines[1].split(",")
    row[1] = written
    path = tmp_path / "resaved.csv"
    path.write_text(lines[0] + "\n" + ",".join(row) + "\n")
    ds = load(path)
    assert ds.counts["published_unparseable"] == 0
    assert ds.date_range == ("2024-03-05", "2024-03-05")  # 01:29 UTC is the evening before in Austin


def test_day_first_dates_of_a_uk_or_french_spreadsheet_are_not_read_month_first(tmp_path, load):
    """Saved by a spreadsheet in a day-first locale, the dates come back as `13/03/2024 13:29` and
    `06/03/2024 13:29`: the first was unparseable and the second read as June 3rd, so every answer
    about March 6th was wrong without a warning."""
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()
    header = lines[0].split(",")
    rows = []
    for day in ("13", "06", "06"):
        cells = lines[1].split(",")
        cells[header.index("Published Date")] = f"{day}/03/2024 13:29"
        cells[header.index("Status Date")] = f"{day}/03/2024 14:00"
        rows.append(";".join(cells))
    path = tmp_path / "saved.csv"
    path.write_text("\n".join([";".join(header), *rows]) + "\n", encoding="utf-8")
    ds = load(path)
    assert ds.counts["published_unparseable"] == 0 and ds.counts["status_date_unparseable"] == 0
    assert ds.date_range == ("2024-03-06", "2024-03-13")
    from atx_analysis.operations import day_number

    assert ds.index.day_count(day_number("2024-03-06")) == 2
    assert ds.columns.arrays["response_minutes"].tolist() == [31.0] * 3
    # the portal's own month-first dates stay month first: a day past 12 says so
    month_first = tmp_path / "portal.csv"
    cells = lines[1].split(",")
    cells[header.index("Published Date")] = "03/13/2024 01:29:39 AM +0000"
    month_first.write_text("\n".join([lines[0], lines[1], ",".join(cells)]) + "\n", encoding="utf-8")
    assert load(month_first).date_range[0] == "2024-03-12"  # 01:29 UTC on the 13th


def _load_one_row(tmp_path, load, published, status):
    """The sample's first row (archived) with these Published and Status Date values, loaded; both
    must be read, as 01:29 UTC on March 6th: 19:29 the evening before in Austin."""
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()
    row = lines[1].split(",")
    assert row[7] == "ARCHIVED"
    row[1], row[8] = published, status
    path = tmp_path / "one_row.csv"
    path.write_text(lines[0] + "\n" + ",".join(row) + "\n")
    ds = load(path)
    assert ds.counts["published_unparseable"] == 0 and ds.counts["status_date_unparseable"] == 0
    assert ds.date_range == ("2024-03-05", "2024-03-05")
    assert ds.columns.arrays["hour"].tolist() == [19]
    return ds


@pytest.mark.parametrize(
    "written", ["2024 Mar 06 01:29:39 AM", "2024 Mar 06 01:29:39 AM +0000", "2024 MAR 06 01:29:39 am"]
)
def test_the_portals_month_name_form_is_read(tmp_path, load, written):
    """The portal's export also writes `2024 Mar 06 01:29:39 AM` (with or without `+0000`): every
    such row was unparseable, so a file of them answered 0 for every date, hour and response time."""
    ds = _load_one_row(tmp_path, load, written, written.replace("01:29:39", "02:14:39"))
    assert ds.columns.arrays["response_minutes"].tolist() == [45.0]


@pytest.mark.parametrize(
    ("published", "status"),
    [
        ("2024-03-06 01:29:39 UTC", "2024-03-06 02:14:39 UTC"),
        ("2024-03-06T01:29:39Z", "2024-03-06T02:14:39Z"),
        ("2024-03-06 01:29:39 GMT", "2024-03-06 02:14:39 gmt"),
        ("03/05/2024 07:29:39 PM CST", "03/05/2024 08:14:39 PM CST"),
        ("2024-03-05 19:29:39 CST", "2024-03-05 21:14:39 CDT"),
        ("3/5/2024 19:29 cst", "3/6/2024 1:29 UTC"),
    ],
)
def test_timestamps_with_a_zone_name_are_read(tmp_path, load, published, status):
    """`2024-03-06 01:29:39 UTC` or `... CST` (a database's or a script's export) were counted
    unparseable: a file of them answered 0 for every date, hour and response time."""
    ds = _load_one_row(tmp_path, load, published, status)
    assert ds.columns.arrays["response_minutes"].tolist() == [45.0 if published[-1] != "t" else 0.0]
    assert ds.info()["reading"]["unread_zones"] == {}


@pytest.mark.parametrize(
    ("published", "status"),
    [
        ("2024-03-06 1:29:39 AM", "2024-03-06 2:14:39 am"),
        ("2024-03-05 07:29 PM CST", "2024-03-06 02:14 am"),
        ("2024-03-06T1:29 AM", "2024-03-06T02:14 am"),
        ("2024-03-05T07:29:39 PM CST", "2024-03-06T2:14:39 AM UTC"),
        ("2024-03-06t1:29 am", "2024-03-06t02:14 Am"),
        ("2024-03-05t07:29:39 PM CST", "2024-03-06t2:14:39 am utc"),
        ("2024-03-06t01:29:39", "2024-03-06t02:14:39z"),
        ("Wed, 06 Mar 2024 01:29:39 GMT", "Wed, 06 Mar 2024 02:14:39 GMT"),
        ("Tue, 05 Mar 2024 19:29:39 -0600", "wed, 06 mar 2024 02:14:39 +0000"),
        ("Tue, 05 Mar 2024 19:29 CST", "Tue, 05 Mar 2024 21:14 CDT"),
    ],
)
def test_a_12_hour_clock_in_iso_order_and_email_dates_are_read(tmp_path, load, published, status):
    """`2024-03-06 1:29:39 AM` (a report tool's ISO order on a 12-hour clock, also with ISO's T:
    `2024-03-06T1:29 PM`, unread while the same time with a space was; and RFC 3339's small t,
    `2024-03-06t1:29 pm`, unread while the capital was) and RFC 1123 dates
    (`Wed, 06 Mar 2024 01:29:39 GMT`, an HTTP header's or a mail export's) were counted
    unparseable: a file of them answered 0 for every date, hour and response time."""
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()
    row = next(csv.reader([lines[1]]))
    assert row[7] == "ARCHIVED"
    row[1], row[8] = published, status
    path = tmp_path / "twelve.csv"
    with path.open("w", newline="") as out:
        csv.writer(out).writerows([lines[0].split(","), row])
    ds = load(path)
    assert ds.counts["published_unparseable"] == 0 and ds.counts["status_date_unparseable"] == 0
    assert ds.date_range == ("2024-03-05", "2024-03-05")
    assert ds.columns.arrays["hour"].tolist() == [19]
    assert ds.columns.arrays["response_minutes"].tolist() == [45.0]


def test_a_dotted_p_m_is_counted_unparseable_not_guessed(tmp_path, load):
    """docs/data.md reads AM/PM in any case but not `p.m.`: such a value is counted, not misread."""
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()
    row = lines[1].split(",")
    row[1] = "2024-03-06t1:29 p.m."
    path = tmp_path / "dotted.csv"
    path.write_text(lines[0] + "\n" + ",".join(row) + "\n")
    assert load(path).counts["published_unparseable"] == 1


def test_a_zone_name_the_loader_does_not_know_is_counted_and_named(tmp_path, load):
    """An unknown zone (`EST`, `America/Chicago`) is not taken as UTC: the value is unparseable and
    the load report names the zone, so the user knows what to rewrite."""
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()
    rows = [line.split(",") for line in lines[1:]]
    for i, row in enumerate(rows):
        row[1] = "2024-03-06 01:29:39 " + ("EST" if i % 2 else "America/Chicago")
    path = tmp_path / "zoned.csv"
    path.write_text("\n".join([lines[0], *(",".join(r) for r in rows)]) + "\n")
    ds = load(path)
    assert ds.counts["published_unparseable"] == 5000
    assert ds.info()["reading"]["unread_zones"] == {"America/Chicago": 2500, "EST": 2500}
    warning = ds.date_warning()
    assert warning is not None and warning.endswith(
        "zone names not read: America/Chicago (2500 values), EST (2500 values)"
    )


def _uk_file(tmp_path, days=("06", "05")):
    """The sample's first row saved by a day-first spreadsheet, every day 12 or less: nothing in the
    data tells `06/03/2024` (March 6th) from June 3rd."""
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()
    header = lines[0].split(",")
    rows = []
    for day in days:
        cells = lines[1].split(",")
        cells[header.index("Published Date")] = f"{day}/03/2024 13:29"
        cells[header.index("Status Date")] = f"{day}/03/2024 14:00"
        rows.append(",".join(cells))
    path = tmp_path / "uk.csv"
    path.write_text("\n".join([lines[0], *rows]) + "\n", encoding="utf-8")
    return path


def test_day_first_dates_with_no_day_past_12_are_read_as_the_setting_says(tmp_path):
    """`06/03/2024` and `05/03/2024` were read as June 3rd and May 3rd, and nothing said that was a
    guess; DATA_DAY_FIRST=true reads them day first, and the reading says what decided it. The two
    readings of the same bytes are cached apart, so changing the setting never maps the other one."""
    path = _uk_file(tmp_path)
    cache = str(tmp_path / "cache")
    guessed = load_dataset(path, cache_dir=cache)
    assert guessed.date_range == ("2024-05-03", "2024-06-03")
    assert guessed.info()["reading"] == {"slashed_dates": "month first", "decided_by": "guess", "unread_zones": {}}
    told = load_dataset(path, cache_dir=cache, day_first=True)
    assert told.date_range == ("2024-03-05", "2024-03-06") and not told.from_cache
    assert told.info()["reading"]["slashed_dates"] == "day first"
    assert told.info()["reading"]["decided_by"] == "DATA_DAY_FIRST"
    again = load_dataset(path, cache_dir=cache, day_first=True)
    assert again.from_cache and again.date_range == told.date_range and again.reading == told.reading
    assert load_dataset(path, cache_dir=cache).date_range == guessed.date_range
    month_first = load_dataset(_uk_file(tmp_path, days=("13", "06")), cache_dir=cache, day_first=False)
    assert month_first.counts["published_unparseable"] == 1  # 13/03 is no month-first date
    # the data itself tells: no guess
    assert load_dataset(_uk_file(tmp_path, days=("13", "06")), cache_dir=cache).reading["decided_by"] == "data"


def test_a_month_first_guess_is_logged_by_the_api_and_the_worker(tmp_path, caplog):
    """DATA_DAY_FIRST=auto guessing month first said so in /data and on the web page, but nothing in
    the logs: a day-first file read as the wrong months loaded with no word. One line each, naming
    the setting; none when the data or the setting decided."""
    from jobqueue_api.state import DatasetSlot, load_dataset_into
    from jobqueue_worker.data import DataSource

    path = _uk_file(tmp_path)
    options = {"cache_dir": str(tmp_path / "cache")}
    caplog.set_level("WARNING")
    load_dataset_into(DatasetSlot(), str(path), **options)
    DataSource(str(path), **options).get()
    guessed = [r for r in caplog.records if r.getMessage() == "dataset dates guessed"]
    assert [r.name for r in guessed] == ["jobqueue.api", "jobqueue.worker.data"]
    assert all("read month first: a guess" in r.detail and "DATA_DAY_FIRST=true" in r.detail for r in guessed)
    caplog.clear()
    load_dataset_into(DatasetSlot(), str(path), day_first=False, **options)
    DataSource(str(_uk_file(tmp_path, days=("13", "06"))), **options).get()
    assert not [r for r in caplog.records if r.getMessage() == "dataset dates guessed"]


def test_the_day_first_setting_is_read_in_any_case_and_a_wrong_one_refused():
    from jobqueue.settings import SettingsError, load_settings

    assert load_settings({"DATA_DAY_FIRST": "TRUE"}).data_options()["day_first"] is True
    assert load_settings({"DATA_DAY_FIRST": "false"}).data_options()["day_first"] is False
    assert load_settings({"DATA_DAY_FIRST": "yes"}).data_options()["day_first"] is True  # as RESULT_CACHE=yes
    assert load_settings({"DATA_DAY_FIRST": " Auto "}).data_options()["day_first"] is None
    assert load_settings({}).data_options()["day_first"] is None
    with pytest.raises(SettingsError, match=r"DATA_DAY_FIRST must be auto or a boolean \(1/0"):
        load_settings({"DATA_DAY_FIRST": "dd/mm"})
    from atx_analysis.cache import loader_version

    # the result cache keys on it too: a repeat after the setting changed is run again, not answered
    # from the other reading's result
    assert len({loader_version(None), loader_version(True), loader_version(False)}) == 3


@pytest.mark.parametrize("line", ["sep=;", '"sep=;"', "SEP=;"])
def test_excels_separator_line_before_the_header_is_read(tmp_path, load, line):
    """A CSV made for Excel starts with `sep=;` so that Excel in any locale splits it; the loader
    refused it ("unrecognised columns [sep=, ]"), though the rest is the portal's export."""
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()[:4]
    body = [";".join(row.split(",")) for row in lines]  # the sample's first rows hold no quoted comma
    path = tmp_path / "excel.csv"
    path.write_bytes(("\r\n".join([line, *body]) + "\r\n").encode("cp1252"))
    ds = load(path)
    assert (ds.format, ds.rows, ds.counts["malformed_lines_skipped"]) == ("portal-csv", 3, 0)
    assert ds.counts["published_unparseable"] == 0 and ds.counts["coordinates_invalid"] == 0


def test_unnamed_trailing_columns_a_spreadsheet_adds_are_ignored(tmp_path, load):
    """Saved by a spreadsheet whose cells right of the data were once touched, each line ends in
    `,,`: the header names '' twice, and the file was refused for it, though extra columns are
    ignored. A real name twice is still refused."""
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()[:4]
    path = tmp_path / "saved.csv"
    path.write_text("\n".join(line + ",," for line in lines) + "\n")
    ds = load(path)
    assert (ds.format, ds.rows, ds.counts["malformed_lines_skipped"]) == ("portal-csv", 3, 0)
    twice = tmp_path / "twice.csv"
    twice.write_text("\n".join(line + "," + line.split(",")[2] for line in lines) + "\n")
    with pytest.raises(DataFormatError, match="the header names 'Issue Reported' more than once"):
        load(twice)


def test_a_file_still_being_written_when_the_load_starts_is_read_whole(tmp_path):
    """A copy onto DATA_PATH still under way as the API started: the API loaded the rows written so
    far (3,480 of 5,000, one cut line skipped), kept them, and cached them under the partial bytes'
    hash, while the workers, later, read the whole file. Now a read the file changed under is done
    again once the file held still, and nothing of the partial read is cached or remembered."""
    import threading
    import time

    src = SAMPLE.read_bytes()
    path = tmp_path / "copying.csv"
    path.write_bytes(src[:1000])

    def copy_the_rest() -> None:
        step = len(src) // 100  # a write every 10 ms: any read of the file overlaps one
        with path.open("ab") as out:
            for i in range(1000, len(src), step):
                out.write(src[i : i + step])
                out.flush()
                time.sleep(0.01)

    writer = threading.Thread(target=copy_the_rest)
    writer.start()
    try:
        ds = load_dataset(path, cache_dir=str(tmp_path / "cache"))
    finally:
        writer.join()
    assert path.read_bytes() == src
    assert ds.rows == 5000 and ds.counts["malformed_lines_skipped"] == 0
    assert ds.identity == content_hash(path)
    again = load_dataset(path, cache_dir=str(tmp_path / "cache"))
    assert again.from_cache and again.identity == ds.identity and again.rows == 5000
    assert [p.name.split(".")[2] for p in (tmp_path / "cache").glob("*.arrow")] == [ds.identity[:20]]


def test_a_copy_that_pauses_while_the_load_reads_is_still_read_whole(tmp_path):
    """A read can fall wholly between two writes of a copy (CI: the load read 53 rows of 5,000, the
    file unchanged from before the read to after it). A file just modified that ends in a cut line
    is taken as still being written: read again once it held still."""
    import threading
    import time

    src = SAMPLE.read_bytes()
    warm = tmp_path / "warm.csv"
    warm.write_bytes(src)
    load_dataset(warm, cache=False)  # the parser's imports, so the first read below takes milliseconds
    path = tmp_path / "paused.csv"
    path.write_bytes(src[:10_000])  # cut mid-line
    assert not src[:10_000].endswith(b"\n")

    def finish_later() -> None:
        time.sleep(1.0)  # no write while the first read runs
        with path.open("ab") as out:
            out.write(src[10_000:])

    writer = threading.Thread(target=finish_later)
    writer.start()
    try:
        ds = load_dataset(path, cache_dir=str(tmp_path / "cache"))
    finally:
        writer.join()
    assert ds.rows == 5000 and ds.counts["malformed_lines_skipped"] == 0
    assert [p.name.split(".")[2] for p in (tmp_path / "cache").glob("*.arrow")] == [ds.identity[:20]]


def test_a_settled_file_with_a_cut_last_line_loads_without_waiting(tmp_path, caplog):
    """The wait is only for a file modified in the last seconds: an old file whose last line is cut
    loads at once, the line counted as skipped."""
    import time

    src = SAMPLE.read_bytes()
    path = tmp_path / "old.csv"
    path.write_bytes(src[:10_000])
    os.utime(path, (time.time() - 60, time.time() - 60))
    with caplog.at_level("WARNING", logger="atx_analysis"):
        ds = load_dataset(path, cache_dir=str(tmp_path / "cache"))
    assert "changed while it was read" not in caplog.text
    assert ds.rows > 0 and ds.counts["malformed_lines_skipped"] == 1


@pytest.mark.parametrize(
    ("members", "said"),
    [
        ({"traffic.csv": SAMPLE.read_bytes()[:2000]}, "a ZIP archive: unzip it"),
        ({"[Content_Types].xml": b"<Types/>", "xl/workbook.xml": b"<w/>"}, "an Excel workbook (.xlsx)"),
    ],
)
def test_a_zip_or_an_excel_workbook_is_refused_saying_what_it_is(tmp_path, load, members, said):
    """A zipped download, or the export saved as an Excel workbook, was read as a CSV and refused as
    "'charmap' codec can't decode byte 0x8f" or "Empty CSV file": nothing said it was a ZIP."""
    import zipfile

    path = tmp_path / "incidents.csv"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    with pytest.raises(DataFormatError, match=re.escape(said)):
        load(path)
