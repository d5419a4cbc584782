"""docs/autoscaling.md's summary of its measured inputs says what its table measured.

The prose said the tabular analyses "take 10-25 ms" while the table beside it gave 7 to 23 ms
(three of the seven under 10 ms): a reader sizing a threshold from the sentence got the wrong
range. The sentence's bounds are read here and compared with the table's."""

from __future__ import annotations

import re

from devstack.paths import REPO_ROOT

TEXT = (REPO_ROOT / "docs" / "autoscaling.md").read_text()


def _measured() -> dict[str, float]:
    """Operation -> seconds per job, from the table under "Measured inputs"."""
    section = TEXT[TEXT.index("## Measured inputs") : TEXT.index("## Results")]
    return {name: float(sec) for name, sec in re.findall(r"^\| (\w+) \| ([\d.]+) \|", section, re.M)}


def test_the_summary_gives_the_tables_range_for_each_class_of_job():
    measured = _measured()
    tabular = [s for name, s in measured.items() if not name.startswith("plot_")]
    plots = [s for name, s in measured.items() if name.startswith("plot_")]
    assert len(tabular) >= 5 and plots, measured  # the table was read
    said = re.search(r"tabular analyses take (\d+)-(\d+) ms.*?plots take ([\d.]+)-([\d.]+) s", TEXT, re.S)
    assert said, "the summary of the measured inputs is gone"
    lo, hi, plot_lo, plot_hi = (float(x) for x in said.groups())
    assert (lo, hi) == (round(min(tabular) * 1000), round(max(tabular) * 1000)), said.group(0)
    assert (plot_lo, plot_hi) == (round(min(plots), 1), round(max(plots), 1)), said.group(0)
