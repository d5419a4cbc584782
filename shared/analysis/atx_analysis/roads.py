"""What road an address is on, for top_roads."""

from __future__ import annotations

import re

import numpy as np

# "1000-1099 W 5TH ST", "S CONGRESS AVE / E OLTORF ST", "N IH 35 SVRD SB at E 51ST ST"; a comma
# ends the street too ("S CONGRESS AVE, at E OLTORF ST", "100 E 7TH ST, AUSTIN"): the road was
# "S CONGRESS AVE," beside "S CONGRESS AVE" in top_roads
_CROSS = re.compile(r"\s*(?:/|&|,|\bat\b|\band\b|\bto\b)\s*", re.I)
_BLOCK = re.compile(r"^\s*(?:\d+(?:-\d+)?\s*(?:BLK|BLOCK)?\s+|BLK\s+|BLOCK\s+)", re.I)
_SPACES = re.compile(r"\s+")


def road_of(address: str) -> str:
    """The road an address is on: the first street of an intersection, without a block number."""
    first = _CROSS.split(address, maxsplit=1)[0]
    first = _BLOCK.sub("", first)
    return _SPACES.sub(" ", first).strip().upper()


def roads_of(addresses: list[str]) -> tuple[np.ndarray, list[str]]:
    """(road code per address, -1 when none; road names in code-point order)."""
    per_address = [road_of(a) for a in addresses]
    names = sorted({r for r in per_address if r})
    code = {r: i for i, r in enumerate(names)}
    return np.array([code.get(r, -1) for r in per_address], dtype=np.int32), names
