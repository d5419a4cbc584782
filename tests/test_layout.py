"""The tree's import rules, checked on the source: tests/ is not a library.

- ``bench/``, ``observability/`` and ``devstack/`` never import ``tests`` (shared harness code is
  in ``devstack/``); services and shared packages import neither ``tests`` nor ``devstack``.
- No test module imports from a conftest (shared test code lives in ``tests/support/`` or a
  folder's ``support.py``/``expected.py``); only conftests may share fixtures with each other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from devstack.paths import REPO_ROOT


def _imports(path: Path) -> list[str]:
    """Dotted names a module imports (relative ones kept with their leading dots)."""
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names.append("." * node.level + (node.module or ""))
    return names


def _python_files(*folders: str) -> list[Path]:
    return [
        p
        for folder in folders
        for p in sorted((REPO_ROOT / folder).rglob("*.py"))
        if ".venv" not in p.parts and "__pycache__" not in p.parts
    ]


@pytest.mark.parametrize(
    "folders, banned",
    [
        (("bench", "observability", "devstack"), ("tests",)),
        (("services", "shared"), ("tests", "devstack", "bench", "observability")),
    ],
)
def test_no_upward_imports(folders, banned):
    found = {
        f"{p.relative_to(REPO_ROOT)}: {name}"
        for p in _python_files(*folders)
        for name in _imports(p)
        if name.split(".")[0] in banned
    }
    assert not found, sorted(found)


def test_no_test_module_imports_a_conftest():
    found = {
        f"{p.relative_to(REPO_ROOT)}: {name}"
        for p in _python_files("tests")
        if p.name != "conftest.py"
        for name in _imports(p)
        if name.rsplit(".", 1)[-1] == "conftest"
    }
    assert not found, sorted(found)


def test_the_readme_layout_table_points_at_where_each_thing_is():
    """README.md's Layout row for observability/ said it held the Prometheus rules; they are the
    chart's file (observability/rules.py only reads and checks it), so a reader looking there for
    rules.yml found none. Every path a Layout row names in backticks exists."""
    import re

    from devstack.paths import REPO_ROOT

    text = (REPO_ROOT / "README.md").read_text()
    table = text.split("## Layout", 1)[1].split("\n\n", 2)[1]
    named = [p for p in re.findall(r"`([\w./-]+/[\w./-]*)`", table) if "/" in p]
    assert "helm/atx-jobqueue/files/prometheus/rules.yml" in named, named
    assert all((REPO_ROOT / p).exists() for p in named), [p for p in named if not (REPO_ROOT / p).exists()]
    from observability import rules

    assert rules.RULES_FILE.relative_to(REPO_ROOT).as_posix() in named
