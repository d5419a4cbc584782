"""PNG charts for the plot operations: matplotlib's object API with the headless Agg canvas (no
pyplot: no global figure registry, safe in threads, nothing to leak), imported lazily so that
workers which never plot do not pay for it at start."""

from __future__ import annotations

import datetime as dt
import io
import textwrap

import numpy as np

EPOCH = dt.date(1970, 1, 1)
INK = "#1f2933"
MUTED = "#7b8794"
ACCENT = "#bf5700"  # burnt orange
LIGHT = "#f5c49c"


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    fig.get_layout_engine().set(h_pad=0.12)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_color(MUTED)
    ax.tick_params(colors=INK, labelsize=9)
    return fig, ax


def _png(fig) -> bytes:
    buf = io.BytesIO()
    # constrained layout instead of bbox_inches="tight": one draw instead of two
    fig.savefig(buf, format="png", facecolor="white", metadata={"Software": "atx-jobqueue"})
    return buf.getvalue()


def daily_counts_png(first_day: int, counts: np.ndarray, source: str) -> bytes:
    import matplotlib.dates as mdates

    fig, ax = _figure(10, 4.5)
    days = np.arange(first_day, first_day + len(counts)).astype("datetime64[D]")
    window = 7 if len(counts) <= 400 else 28
    if len(counts) <= 400:  # one filled step per day: looks like bars, draws as a single path
        edges = np.arange(first_day, first_day + len(counts) + 1).astype("datetime64[D]")
        ax.stairs(counts, edges, fill=True, color=LIGHT, label="incidents per day")
    else:  # thousands of one-pixel bars alias badly; a thin line reads better
        ax.plot(days, counts, color=LIGHT, linewidth=0.6, label="incidents per day")
    if len(counts) >= window:
        rolling = np.convolve(counts, np.ones(window) / window, mode="valid")
        ax.plot(days[window - 1:], rolling, color=ACCENT, linewidth=2, label=f"{window}-day mean")
    start, end = str(days[0]), str(days[-1])
    ax.set_title(f"Traffic incidents per day in Austin, {start} to {end}", loc="left", color=INK,
                 fontsize=13, fontweight="bold")
    ax.set_ylabel("incidents", color=INK)
    locator = mdates.AutoDateLocator(minticks=4, maxticks=10)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.grid(axis="y", color="#e4e7eb", linewidth=0.8)
    ax.set_axisbelow(True)
    ax.set_ylim(bottom=0)
    ax.legend(frameon=False, loc="upper left", fontsize=9)
    fig.supxlabel(f"Data: {source}. Days are Austin local time (America/Chicago); "
                  f"{int(counts.sum()):,} incidents in the range.", x=0.01, ha="left",
                  color=MUTED, fontsize=8)
    return _png(fig)


def top_locations_png(top: dict[str, int], total_rows: int, source: str) -> bytes:
    n = max(len(top), 1)
    fig, ax = _figure(10, 1.2 + 0.38 * n)
    labels = ["\n".join(textwrap.wrap(a, 48)) or "(empty)" for a in top] or ["(no data)"]
    values = list(top.values()) or [0]
    y = np.arange(len(values))[::-1]
    bars = ax.barh(y, values, color=ACCENT, height=0.7)
    ax.set_yticks(y, labels)
    ax.set_xlabel("incidents", color=INK)
    ax.set_title(f"Top {len(top)} incident locations in Austin", loc="left", color=INK, fontsize=13,
                 fontweight="bold")
    ax.bar_label(bars, labels=[f"{v:,}" for v in values], padding=3, color=INK, fontsize=8)
    ax.grid(axis="x", color="#e4e7eb", linewidth=0.8)
    ax.set_axisbelow(True)
    ax.margins(x=0.08)
    fig.supxlabel(f"Data: {source}; {total_rows:,} incidents. Location = street address.",
                  x=0.01, ha="left", color=MUTED, fontsize=8)
    return _png(fig)
