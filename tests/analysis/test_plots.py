"""The PNG operations produce real, sensibly sized images."""

from __future__ import annotations

import struct

import pytest

import atx_analysis.operations  # noqa: F401
from atx_analysis.registry import REGISTRY

from devstack.paths import SAMPLE

from .expected import FIXTURES

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_MAGIC
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    return struct.unpack(">II", data[16:24])


def test_plot_daily_counts(load):
    ds = load(SAMPLE)
    png = REGISTRY.get("plot_daily_counts").run(ds, {"start": "2025-01-01", "end": "2025-06-30"})
    width, height = png_size(png)
    assert 900 <= width <= 1600 and 400 <= height <= 800
    assert 10_000 < len(png) < 500_000
    assert png.rstrip(b"\x00").endswith(b"IEND\xaeB`\x82")
    whole = REGISTRY.get("plot_daily_counts").run(ds, {})  # the whole range draws a line, not bars
    assert png_size(whole)[0] >= 900


@pytest.mark.parametrize("n", [1, 10, 50])
def test_plot_top_locations_grows_with_n(load, n):
    ds = load(SAMPLE)
    png = REGISTRY.get("plot_top_locations").run(ds, {"n": n})
    width, height = png_size(png)
    assert width >= 900
    assert height >= 150 + 30 * n  # one readable row per address


def test_plots_on_tiny_and_empty_ranges(load):
    ds = load(FIXTURES / "portal10.csv")
    png = REGISTRY.get("plot_daily_counts").run(ds, {"start": "2030-01-01", "end": "2030-01-02"})
    assert png_size(png)[0] > 0
    assert png_size(REGISTRY.get("plot_top_locations").run(ds, {"n": 3}))[1] > 0
