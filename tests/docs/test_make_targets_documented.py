"""Every target of the Makefile is named in README.md or docs/ as `make <target>`.

The docs-run test checks that the targets the docs name exist; this is the other way round. `make
clean` was in no guide, so nobody read that it removes `.run` (and, until it stopped the stack
first, that it left a running stack with nothing `make down` could find)."""

from __future__ import annotations

import re

from devstack.paths import REPO_ROOT

DOCS_TEXT = "\n".join(p.read_text() for p in [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))])


def targets() -> set[str]:
    return set(re.findall(r"^([a-z][\w-]*):", (REPO_ROOT / "Makefile").read_text(), re.M))


def documented(target: str) -> bool:
    return re.search(rf"\bmake (?:[A-Z_]+=\S+ )*{re.escape(target)}\b", DOCS_TEXT) is not None


def test_every_make_target_is_in_the_docs():
    found = targets()
    assert {"up", "down", "setup"} <= found, found  # the Makefile was read
    missing = sorted(t for t in found if not documented(t))
    assert not missing, f"make targets no guide names: {missing}"
