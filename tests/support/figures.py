"""Measured figures of the chaos and fuzz suites: tests fill the ``figures`` fixture, the session
prints them once at the end and merges them into ``.run/chaos-report.json`` (docs/reliability.md
quotes it). Conftests that want it import ``figures`` and call :func:`summary` from their
``pytest_terminal_summary``.
"""

from __future__ import annotations

import json
import time

import pytest

from devstack.paths import REPO_ROOT

REPORT = REPO_ROOT / ".run" / "chaos-report.json"
_FIGURES: dict[str, dict] = {}
_printed = False


@pytest.fixture
def figures(request):
    """A dict the test fills with what it measured."""
    data: dict = {}
    yield data
    if data:
        _FIGURES[request.node.name] = data


def summary(terminalreporter) -> None:
    global _printed
    if _printed or not _FIGURES:
        return
    _printed = True
    terminalreporter.section("chaos figures")
    for name, data in _FIGURES.items():
        terminalreporter.write_line(f"{name}: {json.dumps(data, sort_keys=True)}")
    REPORT.parent.mkdir(exist_ok=True)
    previous = json.loads(REPORT.read_text()) if REPORT.exists() else {}
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    previous.update({name: {**data, "at": stamp} for name, data in _FIGURES.items()})
    REPORT.write_text(json.dumps(previous, indent=2, sort_keys=True) + "\n")
