"""Every picture in docs/img is shown by a guide, and every screenshot the browser tests take for the
docs is there.

docs/ui.md "shows every page" (README.md) but had no picture of the Data page, and the stalled
overview the browser tests photograph sat in docs/img with no guide showing it."""

from __future__ import annotations

import re

from devstack.paths import REPO_ROOT

IMG = REPO_ROOT / "docs" / "img"
DOCS_TEXT = "\n".join(p.read_text() for p in [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))])


def test_every_picture_is_shown_by_a_guide():
    pictures = sorted(p.name for p in IMG.glob("*.png"))
    assert pictures, "docs/img is empty"
    unshown = [name for name in pictures if f"img/{name})" not in DOCS_TEXT]
    assert not unshown, f"pictures in docs/img no guide shows: {unshown}"


def test_every_screenshot_the_browser_tests_take_is_in_docs_img():
    taken = {
        name
        for path in (REPO_ROOT / "tests" / "ui").glob("*.py")
        for name in re.findall(r"screenshot\(page, \"([\w-]+)\"\)", path.read_text())
    }
    assert "ui-data" in taken, taken  # the scan found them
    missing = sorted(name for name in taken if not (IMG / f"{name}.png").exists())
    assert not missing, f"screenshots not in docs/img (UPDATE_DOCS_SCREENSHOTS=1 writes them): {missing}"
