"""docs/benchmarks.md stays readable: short issue-13 cells, and links into it that resolve.

The hand-written issue-13 table once grew by each session appending its figures to the cells (the
round trip's cell reached several kilobytes, copied again into the gathered targets list). The
history lives in docs/benchmarks-history.md; the table keeps the latest figure and the verdict.
"""

from __future__ import annotations

import re

from bench import report
from devstack.paths import REPO_ROOT

DOCS = REPO_ROOT / "docs"
MAX_CELL = 400
LINK = re.compile(r"\]\(([^)\s]*?benchmarks(?:-history)?\.md)(?:#([^)\s]+))?\)")


def _issue13_rows() -> list[list[str]]:
    notes = report.read_section("notes", DOCS / "benchmarks.md")
    assert notes, "the hand-written section (bench:notes) is missing"
    table = notes[notes.index("### Issue 13") :]
    table = table[table.index("\n|") + 1 :]
    rows = []
    for line in table.splitlines():
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def test_the_issue_13_table_cells_stay_short():
    header, _separator, *rows = _issue13_rows()
    assert header[0] == "target" and header[-1] == "verdict"
    assert len(rows) >= 5
    for row in rows:
        assert len(row) == len(header), row[0]
        assert re.search(r"\b(PASS|MISS)\b", row[-1]), row[0]
        for cell in row:
            assert len(cell) <= MAX_CELL, (
                f"{row[0]!r}: a cell of {len(cell)} characters; history goes to benchmarks-history.md"
            )


def _slugs(path) -> set[str]:
    """GitHub's anchors for a document's headings (duplicates get -1, -2, ...)."""
    seen: dict[str, int] = {}
    slugs = set()
    for line in path.read_text().splitlines():
        match = re.match(r"#{1,6} (.+)", line)
        if not match:
            continue
        slug = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        slugs.add(slug if count == 0 else f"{slug}-{count}")
    return slugs


def test_links_into_the_benchmark_documents_resolve():
    sources = [REPO_ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
    broken = []
    for source in sources:
        for target, anchor in LINK.findall(source.read_text()):
            path = (source.parent / target).resolve() if target else source
            if not path.exists():
                broken.append(f"{source.name}: {target} does not exist")
            elif anchor and anchor not in _slugs(path):
                broken.append(f"{source.name}: {target}#{anchor} names no heading")
    for name in ("benchmarks.md", "benchmarks-history.md"):  # and their links within themselves
        for anchor in re.findall(r"\]\(#([^)\s]+)\)", (DOCS / name).read_text()):
            if anchor not in _slugs(DOCS / name):
                broken.append(f"{name}: #{anchor} names no heading")
    assert not broken, broken
