"""What every ``jobqueue`` subcommand shares: the exit statuses and the ``key=value`` parser.

One parser for ``analyze`` (in-process, where ``Operation.validate`` types the values) and
``submit`` (through the API, typed by the parameters ``GET /operations`` declares): values are text
as typed (``road=183`` is the road "183"), and ``n=5`` becomes 5 because ``n`` is declared an
integer, not because "5" looks like JSON. Stdlib only: the client install has no analysis package.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any
from collections.abc import Callable, Iterable, Mapping


class Exit(IntEnum):
    """Exit statuses of every ``jobqueue`` subcommand (docs/api.md, ``jobqueue --help``)."""

    OK = 0
    FAILED = 1  # the job or operation ran and failed (or was cancelled)
    USAGE = 2  # bad command line, parameter, data file or setting: fix the input
    UNAVAILABLE = 3  # the API (or the data portal) cannot be reached or keeps answering 5xx
    TIMEOUT = 4  # gave up waiting (--timeout); the job may still finish

    @classmethod
    def epilog(cls) -> str:
        return (
            "exit status: 0 ok, 1 the job or operation failed, 2 bad usage or input, "
            "3 service unreachable, 4 gave up waiting (--timeout)"
        )


class UsageError(ValueError):
    """A malformed command line: the message says what to type instead."""


def parse_pairs(pairs: Iterable[str]) -> dict[str, str]:
    """``["n=5", "road=S CONGRESS"]`` -> ``{"n": "5", "road": "S CONGRESS"}``; UsageError naming a
    pair without ``=``, an empty key, or a key given twice."""
    params: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"parameters are key=value, got {pair!r}")
        if key in params:
            raise UsageError(f"parameter {key!r} given twice")
        params[key] = value
    return params


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"true", "1", "yes", "false", "0", "no"}:
        return lowered in {"true", "1", "yes"}
    raise ValueError(text)


_JSON_TYPES: dict[str, Callable[[str], Any]] = {"int": int, "number": float, "boolean": _boolean}


def typed(declared: Iterable[Mapping[str, Any]], raw: Mapping[str, str]) -> dict[str, Any]:
    """Give each value the JSON type its declared parameter has (``GET /operations`` lists them).
    Text params, dates, undeclared keys and values that do not convert stay text: the API checks
    them against the same declaration and names the parameter in its 400."""
    kinds = {d["name"]: d["type"] for d in declared}
    out: dict[str, Any] = {}
    for key, value in raw.items():
        convert = _JSON_TYPES.get(kinds.get(key, "string"))
        try:
            out[key] = convert(value.strip()) if convert else value
        except ValueError:
            out[key] = value
    return out
