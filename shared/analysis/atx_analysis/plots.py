"""PNG charts for the plot operations: matplotlib's object API on the headless Agg canvas (no
pyplot: no global figure registry, nothing to leak), imported lazily so that workers which never
plot do not pay for it at start.

Rendering is most of a plot's cost, so each chart is built once per thread (and per bar count)
and reused: a call only swaps the data, the texts and the ticks, then draws once. The layout is
computed, not searched for: fixed margins sized from the texts actually drawn (the constrained
layout engine would draw everything once more to measure it), and date ticks chosen by
arithmetic instead of matplotlib's date locator and formatter. Text is drawn a line at a time
(:func:`_canvas_class`). A reused chart draws the same pixels as a fresh one (tested).
"""

from __future__ import annotations

import datetime as dt
import functools
import io
import math
import textwrap
import threading
from collections.abc import Iterable

import numpy as np

EPOCH = dt.date(1970, 1, 1)
INK = "#1f2933"
MUTED = "#7b8794"
ACCENT = "#bf5700"  # burnt orange
LIGHT = "#f5c49c"
GRID = "#e4e7eb"
DPI = 120
WIDTH = 10.0  # inches
MAX_TICKS = 10
PNG_COMPRESSION = 1  # zlib level: 6 (the default) costs 3x the time of 1 for a file about a quarter larger
_local = threading.local()  # per-thread charts: a Figure must not be drawn by two threads at once


@functools.cache
def _canvas_class():
    """An Agg canvas whose renderer rasterises each line of text as one bitmap (FreeType lays out
    and draws the whole line in C), as matplotlib did before 3.11. Since 3.11 Agg draws text glyph
    by glyph from Python (a transform matrix, a render and a blit per glyph): the ~440 glyphs of a
    top-10 chart were about 40% of its time. The pixels differ from glyph-by-glyph drawing only in
    sub-pixel placement (tested). Falls back to matplotlib's own drawing where the line API it uses
    is missing (another matplotlib), and for mathtext."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg, get_hinting_flag

    class LineTextRenderer(RendererAgg):
        def draw_text(self, gc, x, y, s, prop, angle, ismath=False, mtext=None):
            font = self._prepare_font(prop)
            if ismath or not hasattr(font, "draw_glyphs_to_bitmap"):
                return super().draw_text(gc, x, y, s, prop, angle, ismath, mtext)
            font.set_text(s, 0, flags=get_hinting_flag())  # unrotated: the blit below rotates
            font.draw_glyphs_to_bitmap(antialiased=gc.get_antialiased())
            # (x, y) is the line's baseline origin, y downwards; FreeType's offsets are in 1/64 px
            descent = font.get_descent() / 64
            left, top = (v / 64 for v in font.get_bitmap_offset())
            turn = math.radians(angle)
            col = round(x + left + descent * math.sin(turn))
            row = round(y + top + descent * math.cos(turn))
            self._renderer.draw_text_image(font, col, row + 1, angle, gc)

    class LineTextCanvas(FigureCanvasAgg):
        def get_renderer(self):
            width, height = self.figure.bbox.size
            key = (width, height, self.figure.dpi)
            if self._lastKey != key:  # a new size or dpi: a new renderer, as matplotlib's canvas does
                self.renderer = LineTextRenderer(width, height, self.figure.dpi)
                self._lastKey = key  # type: ignore[assignment]  # (the stub says int sizes; matplotlib stores floats)
            return self.renderer

    return LineTextCanvas


def _figure(width: float, height: float):
    import matplotlib
    from matplotlib.figure import Figure

    # every text on these charts is the data's or ours, never a formula: an address or issue with
    # two '$' was drawn as mathtext (in italics without its '$', or a ParseSyntaxException that
    # failed the job). A process-wide setting, as tick labels are made afresh at drawing time.
    matplotlib.rcParams["text.parse_math"] = False
    fig = Figure(figsize=(width, height), dpi=DPI)
    _canvas_class()(fig)
    ax = fig.add_axes((0.1, 0.1, 0.8, 0.8))
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_color(MUTED)
    ax.tick_params(colors=INK, labelsize=9)
    ax.set_axisbelow(True)
    return fig, ax


def describe(summary: str, columns: tuple[str, str], rows: Iterable[tuple[str, int]]) -> str:
    """A chart's text alternative: a sentence saying what it shows, then its numbers, one
    ``label: value`` line each after a line naming the two columns. It travels inside the PNG
    (:func:`_png`), so every route and every download of the image carries it, and the web page
    shows it as the image's alt text and a table (a screen reader heard the chart's name alone)."""
    lines = [" ".join(summary.split()), f"{columns[0]}: {columns[1]}"]
    lines += [f"{' '.join(str(label).split()) or '(empty)'}: {value:,}" for label, value in rows]
    return "\n".join(lines)


def _png(fig, description: str) -> bytes:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Software", "atx-jobqueue")
    # iTXt (UTF-8) whatever the text: an address may hold any character
    info.add_itxt("Description", description)
    buf = io.BytesIO()
    fig.canvas.print_png(buf, pil_kwargs={"compress_level": PNG_COMPRESSION, "pnginfo": info})
    return buf.getvalue()


def _last_png(fig, description: str) -> bytes:
    """The PNG of a figure drawn once (the charts drawn fresh each call), its pixel buffer freed at
    once: a Figure's parts refer to each other, so the figure itself waits for Python's next full
    collection, and the renderer its canvas keeps (the ~3 MB buffer) would wait with it, in the
    worker and in the API process that drew it."""
    png = _png(fig, description)
    renderer = fig.canvas.__dict__.pop("renderer", None)
    if renderer is not None:  # the texts drawn keep it too: empty it, dropping its buffer
        renderer.__dict__.clear()
    return png


def _text_px(fig, text: str, size: float) -> tuple[float, float]:
    """Width and height in pixels of ``text`` at ``size`` points (no drawing)."""
    from matplotlib.font_manager import FontProperties

    renderer = fig.canvas.get_renderer()
    w, h, _ = renderer.get_text_width_height_descent(text, FontProperties(size=size), ismath=False)
    return w, h


def _place_axes(fig, ax, left_px: float, bottom_px: float, top_px: float, right_px: float) -> None:
    width, height = fig.bbox.width, fig.bbox.height
    ax.set_position(
        (left_px / width, bottom_px / height, 1 - (left_px + right_px) / width, 1 - (bottom_px + top_px) / height)
    )


# --- date ticks --------------------------------------------------------------------------------
def date_ticks(first: int, last: int) -> tuple[list[int], list[str]]:
    """At most MAX_TICKS day numbers in [first, last] on round dates, with concise labels: the year
    where it changes (and on the first tick), else the month or the day."""
    span = last - first + 1
    first_date, last_date = EPOCH + dt.timedelta(days=first), EPOCH + dt.timedelta(days=last)
    for step in (1, 2, 7, 14):
        if span / step <= MAX_TICKS:
            days = (
                list(range(first, last + 1, step))
                if step < 7
                else [d for d in range(first, last + 1) if (d - 4) % 7 == 0][:: step // 7]
            )  # Mondays
            return days, _labels(days, "%b %d")
    for months in (1, 2, 3, 6):
        dates = _month_starts(first_date, last_date, months)
        if len(dates) <= MAX_TICKS:
            return [(d - EPOCH).days for d in dates], _labels([(d - EPOCH).days for d in dates], "%b")
    years = 1
    while (last_date.year - first_date.year + 1) / years > MAX_TICKS:
        years *= 2
    dates = [dt.date(y, 1, 1) for y in range(first_date.year, last_date.year + 1) if y % years == 0]
    dates = [d for d in dates if first_date <= d <= last_date]
    return [(d - EPOCH).days for d in dates], [str(d.year) for d in dates]


def _month_starts(first: dt.date, last: dt.date, step: int) -> list[dt.date]:
    out: list[dt.date] = []
    y, m = first.year, first.month
    while True:
        d = dt.date(y, m, 1)
        if d > last:
            return out
        if d >= first and (m - 1) % step == 0:
            out.append(d)
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)


def _labels(days: list[int], fmt: str) -> list[str]:
    labels, year = [], None
    for i, day in enumerate(days):
        d = EPOCH + dt.timedelta(days=day)
        if i == 0 or d.year != year:
            labels.append(d.strftime(fmt) + f"\n{d.year}" if fmt != "%b" or d.month != 1 else str(d.year))
        else:
            labels.append(d.strftime(fmt))
        year = d.year
    return labels


# --- incidents per day -------------------------------------------------------------------------
class DailyChart:
    HEIGHT = 4.5

    def __init__(self):
        fig, ax = _figure(WIDTH, self.HEIGHT)
        self.fig, self.ax = fig, ax
        self.bars = ax.stairs([0.0], [0.0, 1.0], fill=True, color=LIGHT, label="incidents per day")
        (self.line,) = ax.plot([], [], color=LIGHT, linewidth=0.6, label="incidents per day")
        (self.mean,) = ax.plot([], [], color=ACCENT, linewidth=2)
        self.title = ax.set_title("", loc="left", color=INK, fontsize=13, fontweight="bold")
        ax.set_ylabel("incidents", color=INK)
        ax.grid(axis="y", color=GRID, linewidth=0.8)
        self.note = fig.text(0.01, 0.02, "", ha="left", va="bottom", color=MUTED, fontsize=8)
        # a range with no incident drew an empty frame that read as a broken chart: it says so instead
        self.empty = ax.text(0.5, 0.5, "", transform=ax.transAxes, ha="center", va="center", color=INK, fontsize=14)

    def render(self, first_day: int, counts: np.ndarray, source: str) -> bytes:
        ax, n = self.ax, len(counts)
        self.empty.set_text("" if counts.any() else "No incidents in this range")
        window = 7 if n <= 400 else 28
        as_bars = n <= 400  # one filled step per day looks like bars; thousands of them alias: a line
        # a day's bar spans [day, day + 1): its tick, its point and its mean sit at its middle
        centre = 0.5 if as_bars else 0.0
        x = np.arange(first_day, first_day + n, dtype=float) + centre
        self.bars.set_visible(as_bars)
        self.line.set_visible(not as_bars)
        if as_bars:
            self.bars.set_data(counts.astype(float), np.arange(first_day, first_day + n + 1, dtype=float))
        else:
            self.line.set_data(x, counts)
        has_mean = n >= window
        self.mean.set_visible(has_mean)
        if has_mean:
            self.mean.set_data(x[window - 1 :], np.convolve(counts, np.ones(window) / window, mode="valid"))
        self.mean.set_label(f"{window}-day mean")
        handles = [self.bars if as_bars else self.line] + ([self.mean] if has_mean else [])
        ax.legend(handles=handles, frameon=False, loc="upper left", fontsize=9)
        start, end = (str(np.datetime64(first_day, "D")), str(np.datetime64(first_day + n - 1, "D")))
        self.title.set_text(f"Traffic incidents per day in Austin, {start} to {end}")
        self.note.set_text(
            f"Data: {source}. Days are Austin local time (America/Chicago); "
            f"{int(counts.sum()):,} incidents in the range."
        )
        ax.set_xlim(first_day, first_day + n - 1 + 2 * centre)
        top = float(counts.max()) if n else 0.0
        # at least 0..3: below that the integer locator falls back to 0.2 steps, a fraction of an incident
        ax.set_ylim(0, max(top * 1.05, 3.0))
        ax.yaxis.set_major_locator(_auto_locator())
        ticks, labels = date_ticks(first_day, first_day + n - 1)
        ax.set_xticks([t + centre for t in ticks], labels)
        widest = max((len(f"{v:,.0f}") for v in ax.get_yticks()), default=1)
        lines = max((label.count("\n") + 1 for label in labels), default=1)  # "Jan 01\n2024" takes two
        _place_axes(
            self.fig,
            ax,
            left_px=_text_px(self.fig, "8" * widest, 9)[0] + 46,
            bottom_px=42 + 16 * lines,
            top_px=36,
            right_px=14,
        )
        return _png(self.fig, self.describe(start, end, counts))

    def describe(self, start: str, end: str, counts: np.ndarray) -> str:
        total, n = int(counts.sum()), len(counts)
        said = f"Chart of traffic incidents per day in Austin, {start} to {end} ({n:,} days): "
        if not total:
            said += "no incidents in this range."
        else:
            peak = int(np.argmax(counts))
            said += (
                f"{total:,} incidents, {total / n:,.1f} a day on average; the most, {int(counts[peak]):,}, "
                f"on {np.datetime64(start) + peak}."
            )
        days = np.arange(np.datetime64(start), np.datetime64(start) + n).astype(str)
        return describe(said, ("day", "incidents"), zip(days.tolist(), counts.tolist()))


def _auto_locator():
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(nbins=6, integer=True, min_n_ticks=3)


# --- top locations -----------------------------------------------------------------------------
class TopChart:
    def __init__(self, n: int):
        fig, ax = _figure(WIDTH, 1.2 + 0.38 * max(n, 1))
        self.fig, self.ax, self.n = fig, ax, max(n, 1)
        y = np.arange(self.n)[::-1]
        self.bars = ax.barh(y, np.zeros(self.n), color=ACCENT, height=0.7)
        self.values = [ax.text(0, yi, "", va="center", ha="left", color=INK, fontsize=8) for yi in y]
        ax.set_xlabel("incidents", color=INK)
        self.title = ax.set_title("", loc="left", color=INK, fontsize=13, fontweight="bold")
        ax.grid(axis="x", color=GRID, linewidth=0.8)
        ax.set_ylim(-0.6, self.n - 0.4)
        self.y = y
        self.note = fig.text(0.01, 0.01, "", ha="left", va="bottom", color=MUTED, fontsize=8)

    def render(self, top: dict[str, int], total_rows: int, source: str) -> bytes:
        ax = self.ax
        labels = ["\n".join(textwrap.wrap(a, 48)) or "(empty)" for a in top] or ["(no data)"]
        values = list(top.values()) or [0]
        high = max(values) if values else 0
        pad = 0.01 * max(high, 1)
        for rect, text, v, shown in zip(self.bars, self.values, values, range(len(values))):
            rect.set_width(v)
            text.set_position((v + pad, self.y[shown]))
            text.set_text(f"{v:,}")
        ax.set_yticks(self.y[: len(labels)], labels)
        ax.set_xlim(0, max(high * 1.12, 3))  # whole incidents: 0..1.12 got ticks at 0.2
        ax.xaxis.set_major_locator(_auto_locator())
        self.title.set_text(f"Top {len(top)} incident locations in Austin")
        self.note.set_text(f"Data: {source}; {total_rows:,} incidents. Location = street address.")
        widest = max(_text_px(self.fig, line, 9)[0] for label in labels for line in label.split("\n"))
        _place_axes(self.fig, ax, left_px=widest + 16, bottom_px=62, top_px=36, right_px=14)
        said = f"Bar chart of the top {len(top)} incident locations in Austin, most first ({total_rows:,} incidents in the data)."
        return _png(self.fig, describe(said, ("address", "incidents"), top.items()))


def _chart(kind: str, key, build):
    charts = getattr(_local, "charts", None)
    if charts is None:
        charts = _local.charts = {}
    chart = charts.get((kind, key))
    if chart is None:
        chart = charts[(kind, key)] = build()
    return chart


def daily_counts_png(first_day: int, counts: np.ndarray, source: str) -> bytes:
    return _chart("daily", None, DailyChart).render(first_day, np.asarray(counts), source)


def top_locations_png(top: dict[str, int], total_rows: int, source: str) -> bytes:
    n = max(len(top), 1)
    return _chart("top", n, lambda: TopChart(n)).render(top, total_rows, source)
