"""What every ``jobqueue`` subcommand shares: the exit statuses and the ``key=value`` parser.

One parser for ``analyze`` (in-process, typed by ``Operation.describe``) and ``submit`` (through the
API, typed by the parameters ``GET /operations`` declares, the same list): values are text as typed
(``road=183`` is the road "183"), and ``n=5`` becomes 5 because ``n`` is declared an integer, not
because "5" looks like JSON; ``n=1e3`` is 1000, as the JSON number 1e3 is to the API. Stdlib only:
the client install has no analysis package.
"""

from __future__ import annotations

import argparse
import math
import os
import re
from enum import IntEnum
from typing import Any
from collections.abc import Callable, Iterable, Mapping
from urllib.parse import urlsplit


class Exit(IntEnum):
    """Exit statuses of every ``jobqueue`` subcommand (docs/api.md, ``jobqueue --help``)."""

    OK = 0
    FAILED = 1  # the job or operation ran and failed (or was cancelled)
    USAGE = 2  # bad command line, parameter, data file or setting: fix the input
    UNAVAILABLE = 3  # the API (or the data portal) cannot be reached or keeps answering 5xx
    TIMEOUT = 4  # gave up waiting (--timeout); the job may still finish
    NOT_SAVED = 5  # the job completed but its result could not be written to --output

    @classmethod
    def epilog(cls) -> str:
        return (
            "exit status: 0 ok, 1 the job or operation failed, 2 bad usage or input, "
            "3 service unreachable, 4 gave up waiting (--timeout), "
            "5 the job completed but its result could not be saved (--output), "
            "130 interrupted (Ctrl-C), 141 its output's reader went away"
        )


def add_format_options(parser: argparse.ArgumentParser) -> None:
    """``--format auto|table|json`` and ``--json``: a command that prints a table for people and
    JSON for scripts (``auto``: a table on a terminal)."""
    parser.add_argument(
        "--format",
        choices=("auto", "table", "json"),
        default="auto",
        help="table for people, json for scripts (auto: table on a terminal, else json)",
    )
    parser.add_argument("--json", dest="format", action="store_const", const="json", help="same as --format json")


class UsageError(ValueError):
    """A malformed command line: the message says what to type instead."""


def seconds(text: str) -> float:
    """argparse ``type`` for --timeout/--wait: a finite number, 0 or more. A negative one used to
    submit the job and give up at once; refused as usage before anything is sent."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of seconds, 0 or more")
    return value


def wait_seconds(text: str) -> float:
    """argparse ``type`` for ``submit --timeout``: a finite number above 0. A 0 submitted the job and
    gave it up at once (exit 4, the job left queued); :func:`seconds` took it as valid."""
    value = seconds(text.strip())
    if value == 0:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give a number of seconds above 0 (0 would submit the job and give up on it at once); "
            "to submit without waiting, leave out --wait and --timeout"
        )
    return value


def limit(text: str) -> int:
    """argparse ``type`` for ``jobs --limit``: an integer from 1 to 100 (the API's bounds)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= 100:
        raise argparse.ArgumentTypeError(f"{value} is out of range: give 1 to 100")
    return value


def check_url(url: str, source: str) -> str:
    """The API's base URL as the client joins paths to it (``<url>/submit``), or UsageError naming
    ``source`` (--url or JOBQUEUE_URL). ``127.0.0.1:7300`` (no scheme) used to be reported as an
    unreachable service; a query string was joined in front of every path."""
    if url != url.strip() or any(c.isspace() for c in url):
        raise UsageError(f"{source} {url!r} has spaces in it: give it as http://HOST:PORT")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises on a port that is not a number)
    except ValueError as exc:
        raise UsageError(f"{source} {url!r} is not a URL ({exc}): give it as http://HOST:PORT") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        rest = url.split("://")[-1]
        example = f"http://{rest}" if rest and not rest.startswith("/") else "http://HOST:PORT"
        if rest.lstrip(":").isdigit() and rest.count(":") <= 1:  # a port alone: "e.g. http://7300" did not work either
            example = f"http://127.0.0.1:{rest.lstrip(':')}"
        raise UsageError(f"{source} {url!r} needs http:// or https:// and a host, e.g. {example}")
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise UsageError(f"{source} {url!r} takes no query string or fragment: give the API's base URL only")
    return url


def check_token(token: str, source: str) -> str:
    """The token as the client sends it: without surrounding whitespace (a file's last newline, as
    ``open("token").read()`` or a Secret made ``--from-file`` leaves it; the API keeps its own tokens
    stripped the same way), or UsageError naming ``source`` (--token, JOBQUEUE_TOKEN) but never the
    token when one is left that no header can carry (a line break inside: two lines pasted as one)
    or that no API takes (quotes around it). A newline used to end the CLI with a traceback and exit
    status 1."""
    token = token.strip()
    if any(ord(c) < 32 or ord(c) == 127 or ord(c) > 255 for c in token):
        raise UsageError(
            f"{source} has a line break or another character an HTTP header cannot carry inside it "
            "(the value is a secret: not shown): give the token alone, on one line"
        )
    if token[:1] in ("'", '"') or token[-1:] in ("'", '"'):
        # JOBQUEUE_TOKEN="abc" in an env file reaches us with its quotes: every request got 401, and a
        # few of them the client's 429 for guessing; the API refuses such a token of its own at start
        raise UsageError(
            f"{source} begins or ends with a quote, part of the value here (an env file for docker or compose "
            "keeps it), which no API token has: give it without quotes (the value is a secret: not shown)"
        )
    return token


def check_writable(path: str) -> None:
    """UsageError unless ``path`` can be written, checked by opening it (so a read-only or missing
    folder is caught before a job is submitted or run, also for root), without truncating or
    leaving a file behind."""
    if os.path.isdir(path):
        raise UsageError(f"--output {path} is a folder: give a file name in it")
    existed = os.path.exists(path)
    try:
        with open(path, "ab"):
            pass
    except OSError as exc:
        raise UsageError(f"--output {path} cannot be written: {exc.strerror}") from None
    if not existed:
        os.unlink(path)


def parse_pairs(pairs: Iterable[str]) -> dict[str, str]:
    """``["n=5", "road=S CONGRESS"]`` -> ``{"n": "5", "road": "S CONGRESS"}``; UsageError naming a
    pair without ``=``, an empty key, or a key given twice."""
    params: dict[str, str] = {}
    last = ""
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            # the shell split a value at a space (road=S CONGRESS), or a space followed '=' (n= 5): the
            # pair before it is the mistake, so name it with the quoting that keeps the value whole
            if last and params[last]:
                raise UsageError(
                    f"parameters are key=value, got {pair!r} after {last}={params[last]}: a value with spaces "
                    f"goes in quotes, e.g. {last}='{params[last]} {pair}'"
                )
            if last:
                raise UsageError(
                    f"parameters are key=value, got {pair!r} after {last}=: write {last}={pair}, "
                    "with no space after '='"
                )
            raise UsageError(f"parameters are key=value, got {pair!r}")
        if key in params:
            raise UsageError(f"parameter {key!r} given twice")
        params[key] = value
        last = key
    return params


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in {"true", "1", "yes", "false", "0", "no"}:
        return lowered in {"true", "1", "yes"}
    raise ValueError(text)


# A number as typed: ASCII digits, an optional fraction and exponent (``-3``, ``1e3``, ``.5``); the
# same text atx_analysis.registry accepts for a number (tests/core/test_cli_typing.py compares them).
# Python's int() and float() also take "1_0", full-width digits, "nan" and "inf".
NUMBER_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_DIGITS = re.compile(r"[+-]?[0-9]+")


def _number(text: str) -> float:
    if not NUMBER_TEXT.fullmatch(text):
        raise ValueError(text)
    value = float(text)
    if not math.isfinite(value):  # 1e999: no JSON number
        raise ValueError(text)
    return value


def _integer(text: str) -> int | float:
    """An integer parameter's text as the JSON number it spells: ``1e3`` is 1000 and ``10.0`` is 10,
    as the API takes the JSON numbers 1e3 and 10.0; ``5.5`` is the number 5.5, which the check then
    refuses as it refuses JSON's 5.5. Digits alone are read exactly, however many."""
    if _DIGITS.fullmatch(text):
        return int(text)
    value = _number(text)
    return int(value) if value.is_integer() else value


_JSON_TYPES: dict[str, Callable[[str], Any]] = {"int": _integer, "number": _number, "boolean": _boolean}


def typed(declared: Iterable[Mapping[str, Any]], raw: Mapping[str, str]) -> dict[str, Any]:
    """Give each value the JSON type its declared parameter has (``GET /operations`` lists them, and
    ``Operation.describe`` for ``analyze``), so a value typed on the command line is judged as the
    JSON value it spells. Text params, dates, undeclared keys and values that do not convert stay
    text: the check against the same declaration names the parameter (the API in its 400)."""
    kinds = {d["name"]: d["type"] for d in declared}
    out: dict[str, Any] = {}
    for key, value in raw.items():
        convert = _JSON_TYPES.get(kinds.get(key, "string"))
        try:
            out[key] = convert(value.strip()) if convert else value
        except ValueError:
            out[key] = value
    return out
