"""README's "about N tests" is the suite's size as pytest collects it, within 2.5% (about 60
tests): the figure said 2,470 after the suite had grown past 2,540, and a reader plans the 35-60
minutes of `make test` by it."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from devstack.paths import REPO_ROOT
from tests.support.suite_count import WHOLE_SUITE_COUNT

pytestmark = pytest.mark.slow  # alone, it collects the whole suite: about 20 s


def _collected_in_a_subprocess() -> int:
    """The suite's size when this session collected only part of it: about 20 s."""
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
    return int(collected.group(1))


def test_the_readme_test_count_matches_the_collected_suite(request):
    said = re.search(r"about ([0-9,]+) tests", (REPO_ROOT / "README.md").read_text())
    assert said, "README.md no longer says 'about N tests'"
    figure = int(said.group(1).replace(",", ""))
    # a whole-suite run (make test) has the figure already: this session collected every test
    count = request.config.stash.get(WHOLE_SUITE_COUNT, None) or _collected_in_a_subprocess()
    assert abs(count - figure) <= 0.025 * count, f"README.md says about {figure:,} tests; pytest collects {count:,}"
