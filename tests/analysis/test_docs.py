"""The docs list every operation and parameter the registry declares, and their figures about the
bundled sample are its real ones."""

from __future__ import annotations

import atx_analysis.operations  # noqa: F401
from atx_analysis.registry import REGISTRY

from atx_analysis.dataset import load_dataset

from devstack.paths import REPO_ROOT, SAMPLE


def test_docs_and_readme_cover_every_operation():
    reference = (REPO_ROOT / "docs" / "analysis.md").read_text()
    readme = (REPO_ROOT / "README.md").read_text()
    for op in REGISTRY:
        assert f"### `{op.name}`" in reference, op.name
        assert f"| `{op.name}` |" in readme, op.name
        for p in op.params:
            assert f"| `{p.name}` |" in reference, (op.name, p.name)
            assert f"`{p.name}`" in readme, (op.name, p.name)


def test_data_doc_counts_the_samples_outliers_as_they_are():
    """docs/data.md said "about 1.4% outliers" and "about 1.4% of the real data" outside Austin; the
    bundled sample has 45 points outside the box and 16 at (0, 0) in 5,000 rows (1.22%)."""
    counts = load_dataset(SAMPLE, cache=False).counts
    outside, zero, none = (
        counts["coordinates_outside_austin"],
        counts["coordinates_invalid"],
        counts["coordinates_missing"],
    )
    doc = " ".join((REPO_ROOT / "docs" / "data.md").read_text().split())
    assert f"{outside} of the bundled sample's 5,000 rows, {outside / 50:.1f}%" in doc
    assert f"{outside + zero} outliers in 5,000 rows, {(outside + zero) / 50:.2f}%, {zero} at (0, 0)" in doc
    assert f"and {outside} outside the box, and {none} rows with no point" in doc
    assert "1.4% outliers" not in doc and "of the real data" not in doc
