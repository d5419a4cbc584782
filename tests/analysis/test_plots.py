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


@pytest.mark.parametrize("days", [1, 2, 30, 3000])
def test_daily_chart_layout_on_short_and_empty_ranges(days):
    """A 2-day chart with no incidents had y ticks 0.0, 0.2 ... (fractions of an incident, wider than
    the margin kept for them, so "incidents" ran off the left edge), its two-line first tick
    ("Jan 01" over "2010") ran into the footer, and each tick sat on a bar's left edge with half a
    day of empty axis past the last bar."""
    import numpy as np

    from atx_analysis.plots import DailyChart

    chart = DailyChart()
    first = 14_610  # 2010-01-01
    for counts in (np.zeros(days, dtype=np.int64), np.arange(days, dtype=np.int64) % 3):
        chart.render(first, counts, "test")
        renderer = chart.fig.canvas.get_renderer()
        ax = chart.ax
        assert all(float(t).is_integer() for t in ax.get_yticks())
        note = chart.note.get_window_extent(renderer)
        for label in ax.get_xticklabels():
            assert label.get_window_extent(renderer).y0 > note.y1, (label.get_text(), counts.sum())
        assert ax.yaxis.label.get_window_extent(renderer).x0 >= 0
        low, high = ax.get_xlim()
        if days <= 400:  # bars from first to first + days, each tick at its bar's middle
            assert (low, high) == (first, first + days)
            assert all(t % 1 == 0.5 for t in ax.get_xticks())
        else:
            assert (low, high) == (first, first + days - 1)


def test_a_range_with_no_incident_says_so_on_the_plot():
    """plot_daily_counts for a range with no incident (before the data) drew an empty frame with its
    y-axis from 0 to 3 and nothing in it: it read as a broken chart. It now says so in the middle of
    the plot; a reused chart drops the words again for a range that has incidents."""
    import numpy as np

    from atx_analysis.plots import DailyChart

    chart = DailyChart()
    chart.render(14_610, np.zeros(31, dtype=np.int64), "test")
    assert chart.empty.get_text() == "No incidents in this range"
    box = chart.empty.get_window_extent(chart.fig.canvas.get_renderer())
    assert box.width > 100 and chart.ax.get_window_extent().contains(*box.p0)  # drawn, inside the axes
    chart.render(14_610, np.arange(31, dtype=np.int64) % 3, "test")
    assert chart.empty.get_text() == ""


def test_a_reused_chart_draws_what_a_fresh_one_does(load):
    """Charts are kept per thread and reused; nothing of one request may show in the next."""
    import threading

    ds = load(SAMPLE)
    daily, top = REGISTRY.get("plot_daily_counts"), REGISTRY.get("plot_top_locations")
    first = daily.run(ds, {"start": "2025-01-01", "end": "2025-03-31"})
    top_first = top.run(ds, {"n": 5})
    daily.run(ds, {})  # a long range: line instead of bars, 28-day mean
    top.run(ds, {"n": 5}) and top.run(ds, {"n": 20})
    assert daily.run(ds, {"start": "2025-01-01", "end": "2025-03-31"}) == first
    assert top.run(ds, {"n": 5}) == top_first
    fresh = {}
    thread = threading.Thread(
        target=lambda: fresh.update(
            d=daily.run(ds, {"start": "2025-01-01", "end": "2025-03-31"}), t=top.run(ds, {"n": 5})
        )
    )
    thread.start()
    thread.join()
    assert fresh == {"d": first, "t": top_first}  # another thread's brand-new charts: same bytes


def test_date_ticks_are_round_and_few():
    import datetime as dt

    from atx_analysis.plots import EPOCH, MAX_TICKS, date_ticks

    def day(s):
        return (dt.date.fromisoformat(s) - EPOCH).days

    for first, last in [
        ("2024-01-01", "2024-01-01"),
        ("2024-01-01", "2024-01-09"),
        ("2024-01-01", "2024-03-31"),
        ("2024-01-01", "2024-12-31"),
        ("2017-09-26", "2026-11-25"),
        ("1990-01-01", "2099-12-31"),
    ]:
        ticks, labels = date_ticks(day(first), day(last))
        assert 1 <= len(ticks) <= MAX_TICKS and len(labels) == len(ticks), (first, last, ticks)
        assert all(day(first) <= t <= day(last) for t in ticks) and ticks == sorted(ticks)
    ticks, labels = date_ticks(day("2024-01-01"), day("2024-12-31"))
    assert labels[:3] == ["2024", "Mar", "May"]  # concise: the year once, then every other month


def _coarse(png: bytes):
    """Grey levels averaged over 4x4 blocks: a sub-pixel shift of a glyph fades, a missing text does not."""
    import io

    import numpy as np
    from PIL import Image

    grey = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=float)
    h, w = grey.shape[0] // 4 * 4, grey.shape[1] // 4 * 4
    return grey[:h, :w].reshape(h // 4, 4, w // 4, 4).mean(axis=(1, 3))


@pytest.mark.parametrize("name", [n for n in REGISTRY.names() if n.startswith("plot_")])
def test_text_drawn_a_line_at_a_time_looks_as_matplotlibs_own(load, name, monkeypatch):
    """The charts draw each text line as one bitmap (plots._canvas_class), not glyph by glyph as
    matplotlib 3.11's Agg does: same chart up to sub-pixel placement of the glyphs. Left out, a text
    changes ~3-5% of the 4x4 blocks of these charts; placed differently, ~0.2-0.3% (measured)."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from atx_analysis import plots

    ds = load(SAMPLE)
    op = REGISTRY.get(name)
    params = op.example_submission()["params"]
    monkeypatch.setattr(plots, "_local", type(plots._local)())  # fresh charts for each canvas
    ours = op.run(ds, params)
    assert type(plots._figure(1, 1)[0].canvas.get_renderer()).__name__ == "LineTextRenderer"
    monkeypatch.setattr(plots, "_local", type(plots._local)())
    monkeypatch.setattr(plots, "_canvas_class", lambda: FigureCanvasAgg)
    stock = op.run(ds, params)
    assert png_size(ours) == png_size(stock)
    apart = np.abs(_coarse(ours) - _coarse(stock)) > 24
    assert apart.mean() < 0.01, f"{apart.mean():.2%} of the blocks differ"


def _with_dollars(tmp_path):
    """portal10.csv with addresses and issue names holding two '$' (a price, a typo, a pasted
    formula), which matplotlib draws as mathtext unless told not to."""
    import csv

    rows = list(csv.reader((FIXTURES / "portal10.csv").open(newline="")))
    address, issue = rows[0].index("Address"), rows[0].index("Issue Reported")
    for row in rows[1:4]:
        row[address], row[issue] = "100 $5 ST & $X^2 RD", "CRASH $URGENT$"
    rows[4][address], rows[4][issue] = r"$\frac{$ ST", r"a$\frac{$b"
    path = tmp_path / "dollars.csv"
    with path.open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    return path


@pytest.mark.parametrize("name", [n for n in REGISTRY.names() if n.startswith("plot_")])
def test_labels_from_the_data_are_drawn_literally(load, tmp_path, name, monkeypatch):
    """Two '$' in an address or issue name made it mathtext: 'CRASH $URGENT$' was drawn as an
    italic CRASH URGENT, and '$\\frac{$ ST' failed the job (ParseSyntaxException)."""
    from atx_analysis import plots

    ds = load(_with_dollars(tmp_path))
    op = REGISTRY.get(name)
    params = {**op.example_submission()["params"], **({"n": 5} if "n" in op.example_submission()["params"] else {})}
    monkeypatch.setattr(plots, "_local", type(plots._local)())
    assert png_size(op.run(ds, params))[0] > 0
    if name == "plot_top_locations":
        (chart,) = plots._local.charts.values()
        chart.fig.canvas.draw()
        for label in chart.ax.get_yticklabels():
            text = label.get_text()
            # as wide as the literal text (mathtext drops the '$' and sets the rest in italics)
            assert label.get_window_extent().width == pytest.approx(plots._text_px(chart.fig, text, 9)[0], abs=2)
        assert r"$\frac{$ ST" in [t.get_text() for t in chart.ax.get_yticklabels()]


def _description(png: bytes) -> tuple[str, list[str], list[tuple[str, int]]]:
    import io

    from PIL import Image

    lines = Image.open(io.BytesIO(png)).text["Description"].split("\n")
    rows = [line.rsplit(": ", 1) for line in lines[2:]]
    return lines[0], lines[1].split(": "), [(label, int(value.replace(",", ""))) for label, value in rows]


def test_every_plot_carries_its_numbers_as_text(load):
    """A screen reader had the chart's name and nothing of what it showed: each PNG now holds its
    text alternative (iTXt 'Description'), the same numbers as the operation it draws."""
    ds = load(SAMPLE)

    def run(name, **params):
        return REGISTRY.get(name).run(ds, params)

    summary, columns, rows = _description(run("plot_top_locations", n=5))
    assert columns == ["address", "incidents"] and "top 5 incident locations" in summary
    assert rows == list(run("top_locations", n=5)["top_locations"].items())
    summary, columns, rows = _description(run("plot_daily_counts", start="2024-01-01", end="2024-01-31"))
    daily = run("daily_counts", start="2024-01-01", end="2024-01-31")
    assert rows == list(daily["counts"].items()) and f"{daily['total']:,} incidents" in summary
    _, _, rows = _description(run("plot_incidents_by_hour"))
    assert rows == [
        (f"{h}:00", c) for h, c in ((f"{int(k):02d}", v) for k, v in run("incidents_by_hour")["counts"].items())
    ]
    _, _, rows = _description(run("plot_incidents_by_weekday"))
    assert rows == list(run("incidents_by_weekday")["counts"].items())
    _, _, rows = _description(run("plot_incidents_by_issue", n=3))
    issues = list(run("incidents_by_issue")["counts"].items())
    assert rows[:3] == issues[:3] and rows[3] == (f"all others ({len(issues) - 3})", sum(v for _, v in issues[3:]))
    point = {"latitude": 30.2672, "longitude": -97.7431, "radius_km": 1.0}
    summary, _, rows = _description(run("plot_incidents_within_radius", **point))
    found = run("incidents_within_radius", **point)
    assert f"{found['count']:,} incidents within 1 km" in summary
    assert rows[:6] == list(found["by_issue"].items())[:6] and sum(v for _, v in rows) == found["count"]


def test_an_empty_plot_says_so_in_its_text(load):
    summary, _, rows = _description(
        REGISTRY.get("plot_daily_counts").run(load(SAMPLE), {"start": "2030-01-01", "end": "2030-01-03"})
    )
    assert summary.endswith("no incidents in this range.") and rows == [
        (d, 0) for d in ("2030-01-01", "2030-01-02", "2030-01-03")
    ]


@pytest.mark.parametrize("name", ["plot_incidents_by_issue", "plot_incidents_by_hour", "plot_incidents_by_weekday"])
def test_a_few_incidents_get_ticks_in_whole_incidents(load, name, monkeypatch):
    """Ten incidents drew count axes ticked 0, 0.5, 1, 1.5 (by issue, by weekday) or 0.2, 0.4 (by hour):
    fractions of an incident. The figure is looked at as it is saved (the drawing is untouched)."""
    from atx_analysis import distplots, plots

    seen = []

    def keep(fig, description):
        seen.append(fig)
        return plots._last_png(fig, description)

    monkeypatch.setattr(distplots, "_last_png", keep)
    op = REGISTRY.get(name)
    assert png_size(op.run(load(FIXTURES / "portal10.csv"), op.example_submission()["params"]))[0] > 0
    ax = seen[0].axes[0]
    counts = ax.get_xticks() if name == "plot_incidents_by_issue" else ax.get_yticks()
    assert len(counts) >= 3 and all(float(t).is_integer() for t in counts), list(counts)


def test_top_locations_of_one_incident_each_are_ticked_in_whole_incidents(monkeypatch):
    from atx_analysis import plots

    monkeypatch.setattr(plots, "_local", type(plots._local)())
    plots.top_locations_png({"100 MAIN ST": 1}, 1, "test")
    (chart,) = plots._local.charts.values()
    ticks = chart.ax.get_xticks()  # were 0, 0.2, 0.4 ... 1.2
    assert len(ticks) >= 3 and all(float(t).is_integer() for t in ticks), list(ticks)
