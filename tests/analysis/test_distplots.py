"""The distribution pictures: hour, weekday, issue and radius PNGs from the same numbers as their
JSON operations."""

from __future__ import annotations

import pytest

import atx_analysis.operations  # noqa: F401
from atx_analysis.registry import REGISTRY, ParamError
from devstack.paths import SAMPLE

from .test_plots import png_size

CENTRE = {"latitude": 30.2672, "longitude": -97.7431}


@pytest.mark.parametrize(
    "name,params",
    [
        ("plot_incidents_by_hour", {}),
        ("plot_incidents_by_weekday", {}),
        ("plot_incidents_by_issue", {"n": 10}),
        ("plot_incidents_within_radius", {**CENTRE, "radius_km": 2}),
    ],
)
def test_each_distribution_has_a_picture(load, name, params):
    ds = load(SAMPLE)
    op = REGISTRY.get(name)
    assert op.produces_png
    png = op.run(ds, params)
    width, height = png_size(png)
    assert width >= 900 and height >= 400
    assert 10_000 < len(png) < 600_000


def test_issue_chart_grows_with_n_and_sums_the_rest(load):
    ds = load(SAMPLE)
    op = REGISTRY.get("plot_incidents_by_issue")
    small, large = png_size(op.run(ds, {"n": 3}))[1], png_size(op.run(ds, {"n": 20}))[1]
    assert large > small + 17 * 20
    with pytest.raises(ParamError):
        op.validate({"n": 0})


def test_every_picture_is_as_wide_as_the_docs_say(load):
    """docs/analysis.md said "about 1200 px wide" for every plot; the radius map is 960 px."""
    ds = load(SAMPLE)
    widths = {op.name: png_size(op.run(ds, op.example_submission()["params"]))[0] for op in REGISTRY if op.produces_png}
    assert widths.pop("plot_incidents_within_radius") == 960
    assert widths and set(widths.values()) == {1200}, widths


def test_radius_picture_with_no_incident_inside(load):
    ds = load(SAMPLE)
    png = REGISTRY.get("plot_incidents_within_radius").run(ds, {"latitude": 0.0, "longitude": 0.0, "radius_km": 1})
    assert png_size(png)[0] > 0


def test_every_json_distribution_has_its_png_twin():
    for name in ("incidents_by_hour", "incidents_by_weekday", "incidents_by_issue", "incidents_within_radius"):
        twin = REGISTRY.get(f"plot_{name}")
        assert {p.name for p in twin.params} >= {p.name for p in REGISTRY.get(name).params}


def _anonymous_mb() -> float:
    with open("/proc/self/smaps_rollup") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Anonymous:")) / 1024


def _kept_by_batches(ds, name: str, release) -> list[float]:
    """Anonymous memory (MB) after each of 3 batches of 5 charts, ``release`` run after each, with
    Python's full collection held off (it comes when it comes: here, never during the batches). The
    first batch also fills matplotlib's caches; later ones should add only what is kept."""
    import gc

    op = REGISTRY.get(name)
    gc.collect()
    gc.disable()
    try:
        kept = []
        for _ in range(3):
            for _ in range(5):
                op.run(ds, {})
            release()
            kept.append(_anonymous_mb())
    finally:
        gc.enable()
        gc.collect()
    return kept


def test_memory_handed_back_after_jobs_keeps_no_discarded_picture(load):
    """Each distribution chart is a new Figure, and a Figure is freed only by a full collection (its
    parts refer to each other), with its ~3 MB pixel buffer. The worker's housekeeping handed freed
    memory back every 10 s after jobs but left these for the collector, so a worker held several
    dead charts privately: 8 MB of the memory benchmark's 79 MB per extra worker process."""
    from atx_analysis.dataset import release_after_jobs

    kept = _kept_by_batches(load(SAMPLE), "plot_incidents_by_hour", release_after_jobs)
    assert kept[2] - kept[1] < 3, f"5 more discarded charts kept {kept[2] - kept[1]:.0f} MB ({kept})"


def test_a_chart_drawn_fresh_frees_its_pixels_without_waiting_for_a_collection(load):
    """The API draws these charts in its own processes, which never run the worker's collection
    after jobs: each chart's ~3 MB pixel buffer waited there for Python's next full collection
    (20 MB for 5 charts with the collector idle). Emptied once the PNG is out, only the figure's
    small parts wait (about 7 MB for 5)."""
    from atx_analysis.dataset import release_freed_memory

    kept = _kept_by_batches(load(SAMPLE), "plot_incidents_by_issue", release_freed_memory)
    assert kept[2] - kept[1] < 12, f"5 more charts kept {kept[2] - kept[1]:.0f} MB uncollected ({kept})"
