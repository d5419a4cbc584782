"""The docs list every operation and parameter the registry declares."""

from __future__ import annotations

import atx_analysis.operations  # noqa: F401
from atx_analysis.registry import REGISTRY

from devstack.paths import REPO_ROOT


def test_docs_and_readme_cover_every_operation():
    reference = (REPO_ROOT / "docs" / "analysis.md").read_text()
    readme = (REPO_ROOT / "README.md").read_text()
    for op in REGISTRY:
        assert f"### `{op.name}`" in reference, op.name
        assert f"| `{op.name}` |" in readme, op.name
        for p in op.params:
            assert f"| `{p.name}` |" in reference, (op.name, p.name)
            assert f"`{p.name}`" in readme, (op.name, p.name)
