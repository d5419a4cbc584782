"""bench/bench_loader_formats.py runs the chart's loader on each input form and reports a peak
for each (no memory or time assertions: the figures come from running it at full size)."""

from __future__ import annotations

import pytest

from bench import bench_loader_formats

pytestmark = pytest.mark.slow


def test_it_loads_every_form_and_prints_a_row_each(tmp_path, capsys):
    assert bench_loader_formats.main(["--rows", "500", "--repeats", "1", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for form in ("csv", "soda-json", "rows-json"):
        row = next(line for line in out.splitlines() if line.startswith(f"| {form} |"))
        assert row.count(" MB") == 3 and "1.00x" in out, row
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "traffic_incidents_500.csv",
        "traffic_incidents_500.rows.json",
        "traffic_incidents_500.soda.json",
    ]
