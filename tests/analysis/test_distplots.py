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


def _said(png: bytes) -> str:
    import io

    from PIL import Image

    return Image.open(io.BytesIO(png)).text["Description"].split("\n")[0]


def test_the_radius_map_says_where_the_incidents_are_on_the_sample(load):
    """The map's text listed the issue types only: a screen reader heard nothing of where the incidents
    lie, which is what a map shows. On the bundled sample its sentence now gives the centre, the radius,
    the count, how far half of them are, the nearest and farthest, and the count in each compass
    direction, all recomputed here from the dataset's coordinates (great-circle distances; bearings
    on the same local east/north grid the map draws)."""
    import re

    import numpy as np

    ds = load(SAMPLE)
    point = {**CENTRE, "radius_km": 3.0}
    said = _said(REGISTRY.get("plot_incidents_within_radius").run(ds, point))
    rows = ds.index.within_radius(point["latitude"], point["longitude"], point["radius_km"])
    lat, lon = ds.columns.arrays["latitude"][rows], ds.columns.arrays["longitude"][rows]
    assert len(rows) > 100  # enough points for the directions to mean something
    assert said.startswith(f"Map of the {len(rows):,} incidents within 3 km of (30.2672, -97.7431)")

    p1, p2 = np.radians(point["latitude"]), np.radians(lat)
    h = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(np.radians(lon - point["longitude"]) / 2) ** 2
    km = 2 * 6371.0088 * np.arcsin(np.sqrt(h))
    east = (lon - point["longitude"]) * 111.195 * np.cos(p1)
    north = (lat - point["latitude"]) * 111.195
    names = ["north", "north-east", "east", "south-east", "south", "south-west", "west", "north-west"]
    compass = [names[int(((np.degrees(np.arctan2(e, n)) + 22.5) % 360) // 45)] for e, n in zip(east, north)]

    def read(text: str) -> float:
        value, unit = text.split()
        return float(value.replace(",", "")) / (1000 if unit == "m" else 1)

    half = re.search(r"Half of them lie within ([\d.,]+ k?m) of the centre", said)
    assert half and read(half[1]) == pytest.approx(np.median(km), rel=0.01, abs=0.006), said
    for word, i in (("nearest", int(np.argmin(km))), ("farthest", int(np.argmax(km)))):
        found = re.search(rf"the {word} (?:is )?([\d.,]+ k?m) ([a-z-]+) of it", said)
        assert found and read(found[1]) == pytest.approx(km[i], rel=0.01, abs=0.006), (word, said)
        assert found[2] == compass[i], (word, said)
    by_direction = dict(re.findall(r"([a-z-]+) (\d[\d,]*)", said.split("By direction from the centre: ")[1]))
    assert {k: int(v.replace(",", "")) for k, v in by_direction.items()} == {n: compass.count(n) for n in names}
    most = max(names, key=compass.count)
    assert f"the most to the {most}" in said


def test_the_radius_maps_text_places_points_it_was_given():
    """Points put by hand: three to the north, one far east, one on the centre itself (no direction)."""
    import numpy as np

    from atx_analysis.distplots import where_they_are

    east, north = np.array([0.0, 0.1, -0.1, 2.5, 0.0]), np.array([0.4, 0.9, 0.95, 0.0, 0.0])
    assert where_they_are(east, north) == (
        "Half of them lie within 906 m of the centre; the nearest is at the centre, the farthest 2.50 km "
        "east of it. By direction from the centre: north 3, north-east 0, east 1, south-east 0, south 0, "
        "south-west 0, west 0, north-west 0, at the centre 1 (the most to the north)."
    )
    assert where_they_are(np.array([-0.3]), np.array([-0.3])) == (
        "The one incident is 424 m south-west of the centre. By direction from the centre: north 0, "
        "north-east 0, east 0, south-east 0, south 0, south-west 1, west 0, north-west 0 (the most to the south-west)."
    )
