"""README's "about N tests" is the suite's size as pytest collects it, within 2.5% (about 60
tests): the figure said 2,470 after the suite had grown past 2,540, and a reader plans the 35-60
minutes of `make test` by it."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from devstack.paths import REPO_ROOT

pytestmark = pytest.mark.slow  # collects the whole suite: about 15 s


def test_the_readme_test_count_matches_the_collected_suite():
    said = re.search(r"about ([0-9,]+) tests", (REPO_ROOT / "README.md").read_text())
    assert said, "README.md no longer says 'about N tests'"
    figure = int(said.group(1).replace(",", ""))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    last = proc.stdout.strip().splitlines()[-1]
    collected = re.match(r"(\d+) tests? collected", last)
    assert proc.returncode == 0 and collected, f"collection failed: {last}\n{proc.stderr[-2000:]}"
    count = int(collected.group(1))
    assert abs(count - figure) <= 0.025 * count, f"README.md says about {figure:,} tests; pytest collects {count:,}"
