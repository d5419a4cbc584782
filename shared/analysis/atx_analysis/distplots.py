"""PNG charts of the distributions: incidents by hour, by weekday, by issue, and a map-like scatter
of the incidents around a point. Same look and canvas helpers as :mod:`atx_analysis.plots`; these
small charts are drawn fresh each call (a few bars, well under the daily chart's cost)."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import numpy as np

from .plots import ACCENT, GRID, INK, MUTED, WIDTH, _auto_locator, _figure, _last_png, _place_axes, _text_px, describe

# Okabe-Ito colours (distinguishable with the common colour-vision deficiencies), then grey for "other"
PALETTE = ("#bf5700", "#0072b2", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#d55e00")
OTHER = "#9aa5b1"


def columns_png(
    labels: Sequence[str],
    counts: Sequence[int],
    title: str,
    xlabel: str,
    note: str,
    highlight: Sequence[int] = (),
    names: Sequence[str] = (),
) -> bytes:
    """Vertical bars with their values on top (hours of the day, days of the week); ``names`` are
    the bars' names in the text alternative when the axis's labels are too short to say ("00")."""
    fig, ax = _figure(WIDTH, 4.5)
    x = np.arange(len(counts))
    colours = [ACCENT if i not in highlight else INK for i in range(len(counts))]
    bars = ax.bar(x, counts, color=colours, width=0.75)
    ax.bar_label(bars, labels=[f"{c:,}" for c in counts], padding=2, color=INK, fontsize=7)
    ax.set_xticks(x, labels)
    ax.set_xlim(-0.6, len(counts) - 0.4)
    # at least 0..3, in whole incidents: a few incidents got ticks at 0.2 or 0.5, fractions of one
    ax.set_ylim(0, max(max(counts, default=0) * 1.12, 3))
    ax.yaxis.set_major_locator(_auto_locator())
    ax.set_xlabel(xlabel, color=INK)
    ax.set_ylabel("incidents", color=INK)
    ax.grid(axis="y", color=GRID, linewidth=0.8)
    ax.set_title(title, loc="left", color=INK, fontsize=13, fontweight="bold")
    fig.text(0.01, 0.02, note, ha="left", va="bottom", color=MUTED, fontsize=8)
    widest = max((len(f"{v:,.0f}") for v in ax.get_yticks()), default=1)
    _place_axes(fig, ax, left_px=_text_px(fig, "8" * widest, 9)[0] + 46, bottom_px=78, top_px=36, right_px=14)
    names = list(names) or list(labels)
    said = f"{title}, a bar chart: {sum(counts):,} incidents"
    if any(counts):
        peak = max(range(len(counts)), key=lambda i: counts[i])
        said += f"; the most: {names[peak]}, {counts[peak]:,}"
    return _last_png(fig, describe(said + ".", (xlabel, "incidents"), zip(names, counts)))


def bars_png(pairs: Sequence[tuple[str, int]], title: str, note: str) -> bytes:
    """Horizontal bars, largest on top (issue types)."""
    n = max(len(pairs), 1)
    fig, ax = _figure(WIDTH, 1.3 + 0.36 * n)
    labels = ["\n".join(textwrap.wrap(str(k), 40)) or "(empty)" for k, _ in pairs] or ["(no data)"]
    values = [v for _, v in pairs] or [0]
    y = np.arange(len(values))[::-1]
    bars = ax.barh(y, values, color=ACCENT, height=0.7)
    ax.bar_label(bars, labels=[f"{v:,}" for v in values], padding=3, color=INK, fontsize=8)
    ax.set_yticks(y, labels)
    ax.set_ylim(-0.6, len(values) - 0.4)
    ax.set_xlim(0, max(max(values) * 1.12, 3))  # whole incidents, as columns_png
    ax.xaxis.set_major_locator(_auto_locator())
    ax.set_xlabel("incidents", color=INK)
    ax.grid(axis="x", color=GRID, linewidth=0.8)
    ax.set_title(title, loc="left", color=INK, fontsize=13, fontweight="bold")
    fig.text(0.01, 0.01, note, ha="left", va="bottom", color=MUTED, fontsize=8)
    widest = max(_text_px(fig, line, 9)[0] for label in labels for line in label.split("\n"))
    _place_axes(fig, ax, left_px=widest + 16, bottom_px=84, top_px=36, right_px=14)
    said = f"{title}, a bar chart, most first: {sum(v for _, v in pairs):,} incidents."
    return _last_png(fig, describe(said, ("issue", "incidents"), pairs))


COMPASS = ("north", "north-east", "east", "south-east", "south", "south-west", "west", "north-west")


def _distance(km: float) -> str:
    """Metres under 1 km ("0.01 km" is read out as "zero point zero one"), else km to 10 m."""
    return f"{km * 1000:,.0f} m" if km < 1 else f"{km:,.2f} km"


def where_they_are(x: np.ndarray, y: np.ndarray) -> str:
    """Where the points lie around the centre, in words: how far half of them are, the nearest and
    the farthest (with their direction), and how many lie in each of the eight compass directions.
    The map's text listed only the issue types, so a screen reader never heard where the incidents
    were, which is what the map is for. ``x``/``y`` are km east/north on the map's own grid."""
    dist = np.hypot(x, y)
    centre = dist < 1e-6  # on the centre itself: no direction
    sector = np.rint(np.degrees(np.arctan2(x, y)) / 45).astype(int) % 8
    near, far = int(np.argmin(dist)), int(np.argmax(dist))

    def at(i: int, of: str = "of it") -> str:
        return "at the centre" if centre[i] else f"{_distance(float(dist[i]))} {COMPASS[sector[i]]} {of}"

    if len(x) == 1:
        said = f"The one incident is {at(0, 'of the centre')}."
    else:
        said = (
            f"Half of them lie within {_distance(float(np.median(dist)))} of the centre; the nearest "
            f"is {at(near)}, the farthest {at(far)}."
        )
    by_sector = np.bincount(sector[~centre], minlength=8)
    parts = [f"{name} {int(n):,}" for name, n in zip(COMPASS, by_sector)]
    if centre.any():
        parts.append(f"at the centre {int(centre.sum()):,}")
    most = [COMPASS[i] for i in np.flatnonzero(by_sector == by_sector.max())] if by_sector.any() else []
    said += f" By direction from the centre: {', '.join(parts)}"
    return said + (f" (the most to the {' and '.join(most)})." if 0 < len(most) < 8 else ".")


def radius_png(
    lat: float,
    lon: float,
    radius_km: float,
    lats: np.ndarray,
    lons: np.ndarray,
    issues: Sequence[str],
    codes: np.ndarray,
    note: str,
    top: int = 6,
) -> bytes:
    """The incidents within the radius as points on a local east/north grid in km, coloured by the
    most common issue types, with the circle drawn: a map without map tiles (no network needed)."""
    fig, ax = _figure(8.0, 7.0)
    km_per_deg = 111.195
    x = (lons - lon) * km_per_deg * np.cos(np.radians(lat))
    y = (lats - lat) * km_per_deg
    valid = codes >= 0
    counts = np.bincount(codes[valid], minlength=len(issues)) if len(issues) else np.zeros(0, int)
    order = [int(i) for i in np.argsort(-counts, kind="stable")[:top] if counts[i] > 0]
    rest = ~np.isin(codes, order)
    if rest.any():
        ax.scatter(x[rest], y[rest], s=9, color=OTHER, alpha=0.7, linewidths=0, label=f"other ({int(rest.sum()):,})")
    for colour, code in zip(PALETTE, order):
        mask = codes == code
        ax.scatter(
            x[mask],
            y[mask],
            s=12,
            color=colour,
            alpha=0.85,
            linewidths=0,
            label=f"{issues[code]} ({int(counts[code]):,})",
        )
    t = np.linspace(0, 2 * np.pi, 256)
    ax.plot(radius_km * np.cos(t), radius_km * np.sin(t), color=INK, linewidth=1)
    ax.plot([0], [0], marker="+", color=INK, markersize=12)
    lim = radius_km * 1.08
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xlabel("km east of the centre", color=INK)
    ax.set_ylabel("km north of the centre", color=INK)
    ax.grid(color=GRID, linewidth=0.8)
    ax.set_title(
        f"{len(x):,} incidents within {radius_km:g} km of ({lat:.4f}, {lon:.4f})",
        loc="left",
        color=INK,
        fontsize=12,
        fontweight="bold",
    )
    if len(x):
        ax.legend(
            loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8, title="issue", title_fontsize=8
        )
    fig.text(0.01, 0.01, note, ha="left", va="bottom", color=MUTED, fontsize=8)
    legend_px = 0.0
    if len(x):
        names = [f"{issues[c]} ({int(counts[c]):,})" for c in order] + ["other (000,000)"]
        legend_px = max(_text_px(fig, s, 8)[0] for s in names) + 64
    _place_axes(fig, ax, left_px=60, bottom_px=66, top_px=36, right_px=legend_px + 14)
    said = (
        f"Map of the incidents within {radius_km:g} km of ({lat:.4f}, {lon:.4f}): none."
        if not len(x)
        else (
            f"Map of the {len(x):,} incidents within {radius_km:g} km of ({lat:.4f}, {lon:.4f}), as points on a "
            f"km grid around it, coloured by the {len(order)} most common issue types there. " + where_they_are(x, y)
        )
    )
    rows = [(issues[c], int(counts[c])) for c in order] + ([("other", int(rest.sum()))] if rest.any() else [])
    return _last_png(fig, describe(said, ("issue", "incidents"), rows))
