"""Query-string parameters shared by several routes, each checked with a named 400 on bad input."""

from __future__ import annotations

import math
import re

from flask import request

from jobqueue.jobs import is_valid_job_id

from .errors import ApiError


def job_id_or_400(job_id: str) -> str:
    if not is_valid_job_id(job_id):
        raise ApiError(
            400,
            "invalid_job_id",
            "a job id is a lowercase UUID4 like '3f2b8c4e-1d2a-4b5c-9e8f-0a1b2c3d4e5f' (from the submit response)",
        )
    return job_id


def single_arg(name: str) -> str | None:
    """The value of a query parameter given at most once; ``?x=`` or ``?x=1&x=2`` is a 400 naming it
    (the OpenAPI document declares one scalar value, and a silent pick would hide a client's bug)."""
    values = request.args.getlist(name)
    if not values:
        return None
    if len(values) > 1 or values[0] == "":
        what = "given more than once" if len(values) > 1 else "empty"
        raise ApiError(
            400, f"invalid_{name}", f"'{name}' is {what}; give it once, with a value, or leave it out", param=name
        )
    return values[0]


def number_arg(name: str, default: float, lo: float, hi: float | None = None) -> float:
    raw = single_arg(name)
    if raw is None:
        return default
    return _number(name, raw, lo, hi)


# The plain ASCII forms the OpenAPI document's number and integer mean, as the operations' parameters
# take them (atx_analysis.registry): float() and int() also read "1_0" as 10 and full-width or
# Arabic-Indic digits ("３", "٣") as 3, so ?wait=1_0 held a poll 10 s and ?limit=５ listed 5 jobs,
# where any other implementation of the document answers 400.
_INT_TEXT = re.compile(r"[+-]?[0-9]+")
_NUMBER_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def _number(name: str, raw: str, lo: float, hi: float | None) -> float:
    try:
        if not _NUMBER_TEXT.fullmatch(raw.strip()):
            raise ValueError(raw)
        value = float(raw)
    except ValueError:
        raise ApiError(400, f"invalid_{name}", f"'{name}' must be a number, got {raw[:40]!r}", param=name) from None
    if not math.isfinite(value) or value < lo:
        raise ApiError(400, f"invalid_{name}", f"'{name}' must be a finite number >= {lo}", param=name)
    return value if hi is None else min(value, hi)


def int_arg(name: str, default: int, lo: int, hi: int) -> int:
    raw = single_arg(name)
    if raw is None:
        return default
    try:
        if not _INT_TEXT.fullmatch(raw.strip()):
            raise ValueError(raw)
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"invalid_{name}", f"'{name}' must be an integer, got {raw[:40]!r}", param=name) from None
    if not lo <= value <= hi:
        raise ApiError(400, f"invalid_{name}", f"'{name}' must be between {lo} and {hi}", param=name)
    return value


def wait_seconds(cap: float) -> float:
    """``?wait=SECONDS`` for long polls: non-negative, silently capped at MAX_WAIT_SECONDS."""
    return number_arg("wait", 0.0, 0.0, cap)


# a query string that is one ``wait`` in plain decimal digits and nothing else: ``request.args`` and
# :func:`wait_seconds` read it as that number whatever the rest of the request (no escapes, no '+')
_PLAIN_WAIT = re.compile(r"wait=([0-9]{1,9}(?:\.[0-9]{1,9})?)")


def plain_wait(query: str, cap: float) -> float | None:
    """What :func:`wait_seconds` makes of a raw query string that is empty or a plain ``wait=N``;
    None for any other (the caller leaves that request to Flask's path, which judges it)."""
    if not query:
        return 0.0
    found = _PLAIN_WAIT.fullmatch(query)
    return None if found is None else _number("wait", found[1], 0.0, cap)


DELTA_SECONDS_MAX = 2**31  # RFC 9111 section 1.2.2: what a larger delta-seconds counts as


def prefer_wait(header: str | None) -> int | None:
    """The ``wait`` preference of an RFC 7240 ``Prefer`` header (``Prefer: respond-async, wait=10``):
    delta-seconds, the first ``wait`` given; None when absent or not ASCII digits (a preference the
    server cannot read is ignored, RFC 7240 section 2, so never a 400). ``str.isdigit`` alone also
    passes '²' (a Latin-1 header byte) that ``int`` refuses; a number too large to represent counts
    as the largest (RFC 9111 section 1.2.2), so the caller caps it like ``?wait=``."""
    if not header:
        return None
    for preference in header.split(","):
        name, _, value = preference.split(";", 1)[0].partition("=")
        if name.strip().lower() == "wait":
            value = value.strip().strip('"')
            if not (value.isascii() and value.isdigit()):
                return None
            # int() refuses more than 4300 digits: a long one is the largest without converting it
            return DELTA_SECONDS_MAX if len(value) > 10 else min(int(value), DELTA_SECONDS_MAX)
    return None
