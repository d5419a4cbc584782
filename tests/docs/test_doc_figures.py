"""Each example plot in the guides has its numbers beside it, as the web page's job view has.

docs/analysis.md showed two plots of the bundled sample as images only: a screen reader heard the
markdown's alt text ("Incidents by hour of day, bundled sample") and none of the figures. Each is
now followed by a ``<details>`` block holding the PNG's own text alternative (its sentence and a
table of its lines), and the PNG is the one the operation draws from the sample today, so the
picture, its embedded text and the table cannot drift apart. ``UPDATE_DOCS_SCREENSHOTS=1`` rewrites
the PNGs (as it does the browser tests' screenshots); the markdown is then edited by hand, the
failure message showing the block to paste."""

from __future__ import annotations

import io
import os
import re

import pytest

from devstack.paths import REPO_ROOT, SAMPLE

GUIDE = REPO_ROOT / "docs" / "analysis.md"
IMG = REPO_ROOT / "docs" / "img"
# each example plot in docs/img: the operation and parameters that drew it from the bundled sample
FIGURES = {
    "plot-incidents-by-hour": ("plot_incidents_by_hour", {}),
    "plot-incidents-within-radius": (
        "plot_incidents_within_radius",
        {"latitude": 30.2672, "longitude": -97.7431, "radius_km": 3.0},
    ),
}


def _text(png: bytes) -> str:
    from PIL import Image

    return Image.open(io.BytesIO(png)).text.get("Description", "")


def numbers_block(description: str) -> str:
    """The markdown that follows a figure: its sentence and its lines as a table."""
    lines = description.split("\n")
    head = lines[1].split(": ")
    rows = [line.rsplit(": ", 1) for line in lines[2:]]
    table = [f"| {head[0]} | {head[1]} |", "| --- | ---: |", *(f"| {label} | {value} |" for label, value in rows)]
    return "\n".join(["<details><summary>The chart's numbers</summary>", "", lines[0], "", *table, "", "</details>"])


def test_every_example_plot_is_listed_here():
    assert sorted(p.stem for p in IMG.glob("plot-*.png")) == sorted(FIGURES)


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_each_example_plot_is_todays_drawing_with_its_numbers_beside_it(name, tmp_path):
    import atx_analysis.operations  # noqa: F401
    from atx_analysis.dataset import load_dataset
    from atx_analysis.registry import REGISTRY

    operation, params = FIGURES[name]
    fresh = REGISTRY.get(operation).run(load_dataset(SAMPLE, cache_dir=str(tmp_path / "cache")), params)
    path = IMG / f"{name}.png"
    if os.environ.get("UPDATE_DOCS_SCREENSHOTS") == "1":
        path.write_bytes(fresh)
    description = _text(fresh)
    assert _text(path.read_bytes()) == description, f"{path.name} is not today's drawing (UPDATE_DOCS_SCREENSHOTS=1)"
    guide = GUIDE.read_text()
    figure = re.search(rf"^!\[[^\]]+\]\(img/{re.escape(name)}\.png\)\n\n", guide, re.M)
    assert figure, f"{name}.png is not shown in {GUIDE.name}"
    block = numbers_block(description)
    assert guide[figure.end() :].startswith(block + "\n"), f"after the figure, expected:\n{block}"
