"""The road search's case-insensitive comparison: Unicode simple case folding, one letter for one.

Both the needle and every address are folded by :func:`fold` (the parsed haystack, the cached one
and the needle alike). Upper-casing (``str.upper``) turned one letter into two (``ß`` -> ``SS``,
``ﬁ`` -> ``FI``), so ``road=ß`` found every ``CROSS`` and ``SS`` while ``ẞ`` missed ``STRAßE``;
full folding (``str.casefold``) does the same (``ß`` -> ``ss``). A letter whose fold is several
letters is taken as its lower case when that is one letter (``ẞ`` -> ``ß``, ``ᾈ`` -> ``ᾀ``), else as
written (``İ``, ligatures like ``ﬁ``): it then matches its own case partners and nothing else.
"""

from __future__ import annotations


def _letter(c: str) -> str:
    folded = c.casefold()
    if len(folded) == 1:
        return folded
    lower = c.lower()
    return lower if len(lower) == 1 else c


def fold(text: str) -> str:
    """``text`` folded letter by letter: as long as ``text``, so a match is a match of the text."""
    folded = text.casefold()
    if len(folded) == len(text):  # each letter folded to one: the usual case, at C speed
        return folded
    return "".join(map(_letter, text))
