"""The `jobqueue` command as users run it: a real subprocess of .venv/bin/jobqueue."""

from __future__ import annotations

import json

import pytest

from devstack.paths import SAMPLE

from .expected import FIXTURES
from .support import jq


def test_analyze_prints_json_and_exits_0(tmp_path):
    r = jq(
        "analyze", "top_locations", "n=2", "--data", FIXTURES / "portal10.csv", env={"DATA_CACHE_DIR": str(tmp_path)}
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"top_locations": {"N LAMAR BLVD": 3, "S CONGRESS AVE / E OLTORF ST": 2}}


def test_analyze_in_process(inproc):
    code, out, _ = inproc("analyze", "incident_count_by_date", "date=2024-03-06", "--data", FIXTURES / "portal10.csv")
    assert code == 0 and json.loads(out)["incident_count"] == 3
    code, out, _ = inproc("analyze", "incidents_by_road", "road=S CONGRESS (", "--data", FIXTURES / "portal10.csv")
    assert code == 0 and json.loads(out)["count"] == 1
    code, out, _ = inproc(
        "analyze",
        "incidents_within_radius",
        "latitude=30.2672",
        "longitude=-97.7431",
        "radius_km=0.5",
        "--data",
        FIXTURES / "portal10.csv",
        "--pretty",
    )
    assert code == 0 and json.loads(out)["count"] == 2 and "\n  " in out


def test_analyze_defaults_to_the_bundled_sample(tmp_path):
    r = jq("analyze", "unique_issues", cwd=tmp_path, env={"DATA_CACHE_DIR": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["unique_issues"] > 10


@pytest.mark.parametrize(
    "args,code,words",
    [
        (["analyze", "nope"], 2, ["unknown operation", "top_locations"]),
        (["analyze", "top_locatons"], 2, ["unknown operation", "(did you mean 'top_locations'?)"]),
        (["analyze", "top_locations", "n=0"], 2, ["'n'", "at least 1"]),
        (["analyze", "top_locations", "n=ten"], 2, ["'n'", "integer"]),
        (["analyze", "top_locations", "count=3"], 2, ["unknown parameter 'count'"]),
        (["analyze", "top_locations", "n"], 2, ["key=value"]),
        (["analyze", "incident_count_by_date"], 2, ["missing required parameter 'date'"]),
        (["analyze", "plot_top_locations"], 2, ["--output"]),
        (["analyze", "top_locations", "--data", FIXTURES / "wrong_columns.csv"], 2, ["Published Date", "Issue_Report"]),
        (["analyze", "top_locations", "--data", "/nonexistent/file.csv"], 2, ["no such file"]),
    ],
)
def test_bad_input_exits_non_zero_with_a_clear_message(inproc, args, code, words):
    rc, out, err = inproc(*args)
    assert rc == code
    assert out == ""
    for w in words:
        assert w in err


def test_bad_input_from_the_real_command(tmp_path):
    r = jq("analyze", "top_locations", "n=0", env={"DATA_CACHE_DIR": str(tmp_path)})
    assert r.returncode == 2 and r.stdout == ""
    assert "'n' must be at least 1" in r.stderr and "Traceback" not in r.stderr


def test_analyze_writes_png(inproc, tmp_path):
    png = tmp_path / "top.png"
    code, out, err = inproc("analyze", "plot_top_locations", "n=5", "--data", SAMPLE, "--output", png)
    assert code == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads(out)["bytes"] == png.stat().st_size


def test_operations_listing_and_templates(inproc, tmp_path):
    listing = json.loads(inproc("operations")[1])
    names = [op["name"] for op in listing]
    assert names[:5] == [
        "incident_count_by_date",
        "top_locations",
        "average_response_time",
        "unique_issues",
        "incidents_by_road",
    ]
    top = next(op for op in listing if op["name"] == "top_locations")
    assert top["params"][0] == {
        "name": "n",
        "type": "int",
        "required": False,
        "description": "how many addresses",
        "default": 10,
        "minimum": 1,
        "maximum": 1000,
    }
    out = tmp_path / "submit_templates.json"
    assert inproc("operations", "--templates", "--output", out)[0] == 0
    templates = json.loads(out.read_text())
    assert templates["incident_count_by_date"] == {
        "operation": "incident_count_by_date",
        "params": {"date": "2024-03-09"},
    }
    assert set(templates) == set(names)


def test_data_generate_is_deterministic_and_loadable(inproc, tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv.gz"
    assert inproc("data", "generate", "--rows", 300, "--seed", 7, "--output", a)[0] == 0
    assert inproc("data", "generate", "--rows", 300, "--seed", 7, "--output", b)[0] == 0
    import gzip

    assert gzip.decompress(b.read_bytes()) == a.read_bytes()
    info = json.loads(inproc("data", "info", "--data", a)[1])
    assert info["rows"] == 300 and info["format"] == "portal-csv"
    nine = tmp_path / "nine.csv"
    assert inproc("data", "generate", "--rows", 50, "--nine-columns", "--output", nine)[0] == 0
    info = json.loads(inproc("data", "info", "--data", nine)[1])
    assert info["format"] == "portal-csv-9" and info["rows"] == 50
    assert inproc("data", "generate", "--rows", 0, "--output", nine)[0] == 2
    code, _, err = inproc("data", "generate", "--rows", 10**20, "--output", nine)  # was numpy's traceback
    assert code == 2 and "--rows must be from 1 to 50,000,000" in err, err


@pytest.mark.parametrize("form", ["soda-json", "rows-json"])
def test_data_generate_writes_the_same_rows_as_json(inproc, tmp_path, form):
    csv, other = tmp_path / "a.csv", tmp_path / f"a.{form}.gz"
    assert inproc("data", "generate", "--rows", 300, "--seed", 7, "--output", csv)[0] == 0
    assert inproc("data", "generate", "--rows", 300, "--seed", 7, "--format", form, "--output", other)[0] == 0
    a, b = (json.loads(inproc("data", "info", "--data", p)[1]) for p in (csv, other))
    assert b["format"] == "soda-json+gzip"
    for k in ("identity", "format", "path"):
        a.pop(k), b.pop(k)
    # the CSV writes the portal's slashed dates, the JSON ISO ones: only the first has a reading to say
    assert (a.pop("reading")["slashed_dates"], b.pop("reading")["slashed_dates"]) == ("month first", None)
    assert a == b


def test_version_still_works():
    r = jq("version")
    assert r.returncode == 0 and r.stdout.strip()


def test_info_and_fetch_warn_when_the_dates_cannot_be_read(inproc, tmp_path):
    """`jobqueue data fetch --from` (the chart's loader) accepted a file whose dates are in a form the
    loader does not read, printed its info and exited 0: nothing in the loader's log said every date
    answer would be 0. Both commands still succeed, with a warning on stderr."""
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()
    rows = [line.split(",") for line in lines[1:]]
    for row in rows:
        row[1] = "06-Mar-2024 01:29"
    mine = tmp_path / "mine.csv"
    mine.write_text("\n".join([lines[0], *(",".join(r) for r in rows)]) + "\n")
    code, out, err = inproc("data", "info", "--data", mine)
    assert code == 0 and json.loads(out)["bad_values"]["published_unparseable"] == 5000
    assert "jobqueue data info: warning: 5000 of 5000 rows have no usable published date" in err
    code, out, err = inproc("data", "fetch", "--from", mine, "--output", tmp_path / "vol" / "incidents.csv")
    assert code == 0 and json.loads(out)["rows"] == 5000
    assert "warning: 5000 of 5000 rows have no usable published date" in err
    assert inproc("data", "info", "--data", SAMPLE)[2] == ""


def test_data_hold_makes_the_upload_folder_says_what_to_run_and_exits_0_on_sigterm(tmp_path):
    """The chart's data-shell pod runs it as PID 1: it must end on the SIGTERM of a pod deletion."""
    import signal
    import subprocess
    import sys
    from pathlib import Path

    data = tmp_path / "volume" / "traffic_incidents.csv"
    data.parent.mkdir()
    env = {
        "PATH": "/usr/bin:/bin",
        "DATA_PATH": str(data),
        "HOSTNAME": "jobs-atx-jobqueue-data-shell-7f9c-x2",
        "POD_NAMESPACE": "student7",
    }
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("jobqueue")), "data", "hold"], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        first = proc.stdout.readline()
        rest = [proc.stdout.readline() for _ in range(3)]
        assert str(data) in first
        upload = data.parent / "upload"
        assert upload.is_dir()
        assert rest[0].split() == [
            "kubectl",
            "cp",
            "--namespace",
            "student7",
            "my-incidents.csv",
            f"jobs-atx-jobqueue-data-shell-7f9c-x2:{upload}/my-incidents.csv",
        ]
        assert f"jobqueue data fetch --from {upload}/my-incidents.csv --output {data}" in rest[1]
        assert proc.poll() is None, "it waits"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    done = subprocess.run(
        [str(Path(sys.executable).with_name("jobqueue")), "data", "hold", "--data", str(blocked / "x.csv")],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1 and "is the data volume mounted writable?" in done.stderr


@pytest.mark.parametrize("text,value", [("1e1", 10), ("10.0", 10), ("7", 7)])
def test_analyze_takes_an_integral_number_text_as_the_api_takes_the_json_number(inproc, text, value):
    from atx_analysis.registry import REGISTRY

    import atx_analysis.operations  # noqa: F401  (fills the registry)

    code, out, err = inproc("analyze", "top_locations", f"n={text}", "--data", SAMPLE)
    assert code == 0, err
    assert len(json.loads(out)["top_locations"]) == value
    assert REGISTRY.get("top_locations").validate({"n": json.loads(text)}) == {"n": value}  # the API's reading


def test_analyze_refuses_a_fraction_for_an_integer_as_the_api_refuses_the_json_number(inproc):
    from atx_analysis.registry import REGISTRY, ParamError

    import atx_analysis.operations  # noqa: F401

    code, out, err = inproc("analyze", "top_locations", "n=5.5", "--data", FIXTURES / "portal10.csv")
    with pytest.raises(ParamError) as api:
        REGISTRY.get("top_locations").validate({"n": 5.5})  # the JSON body {"n": 5.5}
    assert code == 2 and out == "" and err.strip().endswith(api.value.message), err


def test_operations_output_that_cannot_be_written_is_one_line_and_dash_is_stdout(inproc, tmp_path, monkeypatch):
    # a missing folder or a folder given as the file was a FileNotFoundError/IsADirectoryError
    # traceback (exit 1); "-" wrote a file named "-" where analyze --output - prints
    code, out, err = inproc("operations", "--output", tmp_path / "missing" / "ops.json")
    assert code == 2 and out == "" and "Traceback" not in err
    assert err.strip().startswith("jobqueue operations: error: --output") and "cannot be written" in err
    code, _, err = inproc("operations", "--output", tmp_path)
    assert code == 2 and "is a folder" in err
    monkeypatch.chdir(tmp_path)
    code, out, _ = inproc("operations", "--output", "-")
    assert code == 0 and not (tmp_path / "-").exists()
    assert {op["name"] for op in json.loads(out)} >= {"top_locations"}


def test_operations_templates_as_a_table_is_refused_in_one_line(inproc):
    # operations_table() was given the templates' dict: TypeError traceback, exit 1
    code, out, err = inproc("operations", "--templates", "--format", "table")
    assert code == 2 and out == "" and "Traceback" not in err
    assert "--templates prints JSON" in err and "leave out --format table" in err
    code, out, _ = inproc("operations", "--templates", "--json")
    assert code == 0 and "top_locations" in json.loads(out)


def test_data_generate_into_a_folder_is_one_line_before_any_work(inproc, tmp_path):
    # the rows were made, then replace() onto the folder raised IsADirectoryError (a traceback,
    # exit 1) and left <folder>.tmp behind
    folder = tmp_path / "out"
    folder.mkdir()
    code, out, err = inproc("data", "generate", "--rows", "10", "--output", folder)
    assert code == 2 and out == "" and "Traceback" not in err
    assert f"--output {folder} is a folder" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
