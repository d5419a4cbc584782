"""The release's version is written in five pyproject files and the chart's ``appVersion``; they
must agree (``jobqueue --version`` reads the core package's, images are labelled from the chart's).
A release bump that misses one is caught here instead of by a user comparing two numbers."""

from __future__ import annotations

import re
import tomllib

from devstack.paths import REPO_ROOT

PYPROJECTS = [
    "pyproject.toml",
    "shared/core/pyproject.toml",
    "shared/analysis/pyproject.toml",
    "services/api/pyproject.toml",
    "services/worker/pyproject.toml",
]


def test_every_pyproject_and_the_charts_app_version_name_one_version():
    versions = {path: tomllib.loads((REPO_ROOT / path).read_text())["project"]["version"] for path in PYPROJECTS}
    chart = (REPO_ROOT / "helm/atx-jobqueue/Chart.yaml").read_text()
    versions["helm/atx-jobqueue/Chart.yaml appVersion"] = re.search(r'^appVersion:\s*"?([^"\s]+)"?', chart, re.M)[1]
    assert len(set(versions.values())) == 1, versions
    packages = [*REPO_ROOT.glob("services/*/pyproject.toml"), *REPO_ROOT.glob("shared/*/pyproject.toml")]
    assert {p.relative_to(REPO_ROOT).as_posix() for p in packages} <= set(PYPROJECTS)  # a new package is listed


def test_hotqueue_is_pinned_to_the_tutorials_version():
    """The worker must read and write the HotQueue wire format the tutorial's 0.2.8 does."""
    core = tomllib.loads((REPO_ROOT / "shared/core/pyproject.toml").read_text())
    assert "hotqueue==0.2.8" in core["project"]["dependencies"]
