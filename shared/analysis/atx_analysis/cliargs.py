"""What every ``jobqueue`` subcommand shares: the exit codes and the ``key=value`` parser.

One parser for ``analyze`` (in-process) and ``submit`` (through the API): values are text as typed
(``road=183`` is the road "183"), then typed by the operation's declared parameters, so
``n=5`` becomes 5 because ``n`` is declared an integer, not because "5" looks like JSON.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any, Iterable, Mapping

from .registry import Param, ParamError


class Exit(IntEnum):
    """Exit statuses of every ``jobqueue`` subcommand (docs/api.md, ``jobqueue --help``)."""

    OK = 0
    FAILED = 1        # the job or operation ran and failed (or was cancelled)
    USAGE = 2         # bad command line, parameter, data file or setting: fix the input
    UNAVAILABLE = 3   # the API (or the data portal) cannot be reached or keeps answering 5xx
    TIMEOUT = 4       # gave up waiting (--timeout); the job may still finish

    @classmethod
    def epilog(cls) -> str:
        return ("exit status: 0 ok, 1 the job or operation failed, 2 bad usage or input, "
                "3 service unreachable, 4 gave up waiting (--timeout)")


def parse_pairs(pairs: Iterable[str]) -> dict[str, str]:
    """``["n=5", "road=S CONGRESS"]`` -> ``{"n": "5", "road": "S CONGRESS"}``; ParamError naming
    a pair without ``=``, an empty key, or a key given twice."""
    params: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ParamError(None, f"parameters are key=value, got {pair!r}")
        if key in params:
            raise ParamError(key, f"parameter {key!r} given twice")
        params[key] = value
    return params


def typed(declared: Iterable[Param | Mapping[str, Any]], raw: Mapping[str, str]) -> dict[str, Any]:
    """Type each value by its declared parameter (a :class:`Param`, or its ``GET /operations``
    description); undeclared keys stay text, for the API to name in its error."""
    params = {d.name: d for d in (_param(d) for d in declared)}
    return {key: params[key].coerce(value) if key in params else value for key, value in raw.items()}


def _param(decl: Param | Mapping[str, Any]) -> Param:
    if isinstance(decl, Param):
        return decl
    return Param(name=decl["name"], type=decl["type"], description="", minimum=decl.get("minimum"),
                 maximum=decl.get("maximum"), max_length=decl.get("max_length"),
                 choices=tuple(decl["choices"]) if decl.get("choices") else None)
