"""Lanes: cheap and expensive jobs wait in separate queues, so a backlog of plots never delays a
2 ms lookup. The default lane is the queue itself (HotQueue's list, the tutorial's contract); plot
operations (they render a PNG, 0.3-1.5 s each) wait in a sibling queue ``<QUEUE_NAME>-plots``.
Workers drain both: the default lane first, at most one plots job per claim, and the plots lane
first once it has been passed over 8 times in a row while it had work (``lua/claim.lua``)."""

from __future__ import annotations

from typing import Any

DEFAULT = "default"
PLOTS = "plots"
LANES = (DEFAULT, PLOTS)


def lane_of(operation: Any) -> str:
    """The lane an operation's jobs wait in: plots (PNG results) apart from everything else."""
    return PLOTS if getattr(operation, "produces_png", False) else DEFAULT
