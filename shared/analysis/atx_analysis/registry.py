"""The operation registry: each operation declares its parameters once, here.

That single declaration drives dispatch (worker and synchronous API route), validation (API at
submit time, worker again before running), the listing at ``GET /operations``, the example
submissions (``submit_templates.json``) and the OpenAPI document. A bad parameter raises
:class:`ParamError` naming it; nothing else is allowed to reach an operation.
"""

from __future__ import annotations

import calendar
import datetime as dt
import difflib
import functools
import math
import re
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Callable, Mapping

from .errors import PermanentError

_MISSING = object()
MIN_YEAR, MAX_YEAR = 1700, 2199
DATE_PATTERN = r"^(1[7-9][0-9]{2}|2[01][0-9]{2})-"


ECHO_LIMIT = 64


def echo(name: Any) -> str:
    """A client's name for something unknown, as an error repeats it: cut at ``ECHO_LIMIT``
    characters, so a 60,000-character key (a 64 KiB body allows one) is not sent back twice over;
    a lone surrogate (a JSON key ``"\\ud800"``) written as its escape's text, ``\\ud800``, since it
    is no character: sent back as is, the error body held the escape of a lone surrogate, which
    strict JSON readers refuse (RFC 7493's I-JSON forbids it; Rust's serde_json fails on it)."""
    text = str(name)
    if len(text) > ECHO_LIMIT:
        text = f"{text[:ECHO_LIMIT]}... ({len(text)} characters)"
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class ParamError(PermanentError, ValueError):
    """A parameter is missing, unknown, of the wrong type or out of bounds."""

    def __init__(self, param: str | None, message: str):
        super().__init__(message)
        self.param = param
        self.message = message


class UnknownOperation(PermanentError, KeyError):
    def __init__(self, name: str, known: list[str]):
        super().__init__(name)
        self.name = name
        self.known = known

    @functools.cached_property
    def suggestion(self) -> str | None:
        """The known operation closest to the unknown name (difflib's ratio at least 0.6, letter case
        aside), if one is close: ``top_locations`` for ``top_locatons`` or ``TOP_LOCATIONS``. None
        for a name longer than ``ECHO_LIMIT``: no operation's name is near one, and comparing a
        60,000-character one would be wasted work. Worked out once: the message and the error
        body's ``did_you_mean`` both name it."""
        if not isinstance(self.name, str) or len(self.name) > ECHO_LIMIT:
            return None
        by_lower = {known.lower(): known for known in self.known}
        close = difflib.get_close_matches(self.name.lower(), list(by_lower), n=1)
        return by_lower[close[0]] if close else None

    def __str__(self) -> str:
        name = echo(self.name) if isinstance(self.name, str) else self.name
        suggestion = self.suggestion
        hint = f" (did you mean {suggestion!r}?)" if suggestion else ""
        return f"unknown operation {name!r}{hint}; known: {', '.join(self.known)}"

    def details(self) -> dict[str, Any]:
        """The fields of the API's error body: ``operations`` (every known one) and, when one is
        close, ``did_you_mean``."""
        suggestion = self.suggestion
        return {"operations": self.known, **({"did_you_mean": suggestion} if suggestion else {})}


@dataclass(frozen=True)
class Param:
    """One parameter. ``type`` is one of int, number, string, date, boolean."""

    name: str
    type: str
    description: str
    default: Any = _MISSING
    minimum: float | None = None
    maximum: float | None = None
    max_length: int | None = None
    min_length: int | None = None  # 1: the empty string is refused (the spec's minLength says so)
    choices: tuple[str, ...] | None = None
    example: Any = None

    @property
    def required(self) -> bool:
        return self.default is _MISSING

    def json_schema(self) -> dict[str, Any]:
        """JSON Schema (OpenAPI 3.1 dialect) of this parameter."""
        kind = {"int": "integer", "number": "number", "string": "string", "date": "string", "boolean": "boolean"}[
            self.type
        ]
        schema: dict[str, Any] = {"type": kind, "description": self.description}
        if self.type == "date":
            schema["format"] = "date"
            schema["pattern"] = DATE_PATTERN
        if self.minimum is not None:
            schema["minimum"] = self.minimum
        if self.maximum is not None:
            schema["maximum"] = self.maximum
        if self.min_length is not None:
            schema["minLength"] = self.min_length
        if self.max_length is not None:
            schema["maxLength"] = self.max_length
        if self.choices:
            schema["enum"] = list(self.choices)
        if not self.required and self.default is not None:
            schema["default"] = self.default
        if not self.required:  # validate() takes null as "use the default": say so
            schema["type"] = [kind, "null"]
            if "enum" in schema:
                schema["enum"].append(None)
        return schema

    def coerce(self, raw: Any) -> Any:
        """Validate one value from JSON (or a query string, where everything is a string): the
        type's own coercer (:data:`_COERCERS`), then the checks every type shares."""
        name = self.name
        value = _COERCERS[self.type](name, raw)
        if isinstance(value, str) and self.max_length is not None and len(value) > self.max_length:
            raise ParamError(name, f"'{name}' is longer than {self.max_length} characters")
        if isinstance(value, str) and self.min_length is not None and len(value) < self.min_length:
            short = "must not be empty" if self.min_length == 1 else f"is shorter than {self.min_length} characters"
            raise ParamError(name, f"'{name}' {short}")
        if isinstance(value, str) and self.choices and value not in self.choices:
            raise ParamError(name, f"'{name}' must be one of {', '.join(self.choices)}")
        if self.minimum is not None and value < self.minimum:
            raise ParamError(name, f"'{name}' must be at least {self.minimum}")
        if self.maximum is not None and value > self.maximum:
            raise ParamError(name, f"'{name}' must be at most {self.maximum}")
        return value


# Text forms of numbers and dates: ASCII digits in the plain decimal / YYYY-MM-DD form the spec
# states. Python's int(), float() and date.fromisoformat() also take "1_0", full-width or
# Arabic-Indic digits and ISO basic or week dates ("20240115", "2024-W03-1"), which the OpenAPI
# patterns refuse: a client relying on them would break against any other implementation.
_INT_TEXT = re.compile(r"[+-]?[0-9]+")
_NUMBER_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_DATE_TEXT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class NotWhole(float):
    """A number whose written form is not a whole number though its float is (``0.99999999999999999``
    and ``5.00000000000000000001`` read as 1.0 and 5.0): the API's JSON reader makes these, so an
    integer parameter refuses what was sent rather than the float it rounded to."""


def _to_int(name: str, raw: Any) -> int:
    if isinstance(raw, bool):
        raise ParamError(name, f"'{name}' must be an integer")
    if isinstance(raw, str):
        try:
            if not _INT_TEXT.fullmatch(raw.strip()):
                raise ValueError(raw)
            raw = int(raw.strip())
        except ValueError:
            raise ParamError(name, f"'{name}' must be an integer, got {raw!r}") from None
    if isinstance(raw, float) and raw.is_integer() and not isinstance(raw, NotWhole):
        raw = int(raw)
    if not isinstance(raw, int):
        raise ParamError(name, f"'{name}' must be an integer")
    return raw


def _to_number(name: str, raw: Any) -> float:
    if isinstance(raw, bool):
        raise ParamError(name, f"'{name}' must be a number")
    if isinstance(raw, str):
        try:
            if not _NUMBER_TEXT.fullmatch(raw.strip()):
                raise ValueError(raw)
            raw = float(raw.strip())
        except ValueError:
            raise ParamError(name, f"'{name}' must be a number, got {raw!r}") from None
    if isinstance(raw, int):
        try:  # a JSON integer of 400 digits is valid JSON but no float: 400, not 500
            raw = float(raw)
        except OverflowError:
            raise ParamError(name, f"'{name}' is out of range") from None
    if not isinstance(raw, (int, float)) or not math.isfinite(raw):
        raise ParamError(name, f"'{name}' must be a finite number")
    return float(raw)


def _to_boolean(name: str, raw: Any) -> bool:
    if isinstance(raw, str) and raw.lower() in {"true", "1", "yes", "false", "0", "no"}:
        raw = raw.lower() in {"true", "1", "yes"}
    if not isinstance(raw, bool):
        raise ParamError(name, f"'{name}' must be true or false")
    return raw


def _no_such_day(text: str) -> str:
    """Why ``text`` (``YYYY-MM-DD`` digits) names no day: its month, or its day in that month."""
    year, month, day = (int(part) for part in text.split("-"))
    if not 1 <= month <= 12:
        return f"{text} has month {month:02d} (months are 01 to 12)"
    days = calendar.monthrange(year, month)[1]
    return f"{text} has day {day:02d}, and {year:04d}-{month:02d} has days 01 to {days:02d}"


def _to_date(name: str, raw: Any) -> str:
    if not isinstance(raw, str):
        raise ParamError(name, f"'{name}' must be a date string YYYY-MM-DD")
    text = raw.strip()
    if not _DATE_TEXT.fullmatch(text):
        raise ParamError(name, f"'{name}' must be a date YYYY-MM-DD, got {raw!r}")
    if not MIN_YEAR <= int(text[:4]) <= MAX_YEAR:  # pandas' nanosecond range: year 1 was a 500
        raise ParamError(name, f"'{name}' must be a date between {MIN_YEAR} and {MAX_YEAR}")
    try:
        value = dt.date.fromisoformat(text).isoformat()
    except ValueError:
        # written as asked, but no day (2024-02-30, 2023-02-29, 2024-13-01): "must be a date
        # YYYY-MM-DD, got '2024-02-30'" read as if the form were wrong
        raise ParamError(name, f"'{name}' must be a calendar day: {_no_such_day(text)}") from None
    return value


def _to_string(name: str, raw: Any) -> str:
    if not isinstance(raw, str):
        raise ParamError(name, f"'{name}' must be a string")
    return raw


# Param.type -> its coercer: the value as the operation receives it, or a ParamError naming the param.
_COERCERS: dict[str, Callable[[str, Any], Any]] = {
    "int": _to_int,
    "number": _to_number,
    "boolean": _to_boolean,
    "date": _to_date,
    "string": _to_string,
}


@dataclass(frozen=True)
class Operation:
    """An analysis: ``func(dataset, **params)`` returns a JSON-able dict, or PNG bytes if ``produces_png``."""

    name: str
    func: Callable[..., Any]
    description: str
    params: tuple[Param, ...] = ()
    produces_png: bool = False
    result_keys: tuple[str, ...] = ()
    needs_dataset: bool = True
    example: Mapping[str, Any] = field(default_factory=dict)
    # cross-parameter rules (end before start, range length, blank text): ``check(dataset, **clean)``
    # raises ParamError; the API runs it at submit so a job never fails on them in the worker.
    # ``dataset`` may be None (an API without the data): check what the parameters alone decide.
    check: Callable[..., None] | None = None

    def check_params(self, dataset: Any, clean: Mapping[str, Any]) -> None:
        """Run the operation-level rules on already validated parameters; raise ParamError."""
        if self.check is not None:
            self.check(dataset, **clean)

    def validate(self, params: Any) -> dict[str, Any]:
        """Return the complete, coerced parameters (defaults filled in) or raise ParamError."""
        if params is None:
            params = {}
        if not isinstance(params, Mapping):
            raise ParamError(None, "'params' must be a JSON object")
        known = {p.name for p in self.params}
        unknown = sorted(set(params) - known)
        if unknown:
            allowed = ", ".join(sorted(known)) or "none"
            name = echo(unknown[0])
            raise ParamError(name, f"unknown parameter '{name}' for {self.name}; allowed: {allowed}")
        clean: dict[str, Any] = {}
        for p in self.params:
            if p.name in params and params[p.name] is not None:
                clean[p.name] = p.coerce(params[p.name])
            elif p.required:
                raise ParamError(p.name, f"missing required parameter '{p.name}' for {self.name}")
            else:
                clean[p.name] = p.default
        return clean

    def run(self, dataset: Any, params: Mapping[str, Any]) -> Any:
        clean = self.validate(params)
        return self.func(dataset, **clean) if self.needs_dataset else self.func(**clean)

    def example_submission(self) -> dict[str, Any]:
        if self.example:
            params = dict(self.example)
        else:
            params = {p.name: p.example for p in self.params if p.example is not None}
        return {"operation": self.name, "params": params}

    def describe(self) -> dict[str, Any]:
        """What ``GET /operations`` lists for this operation."""
        return {
            "name": self.name,
            "description": self.description,
            "result": "image/png" if self.produces_png else "application/json",
            "result_keys": list(self.result_keys),
            "params": [
                {
                    "name": p.name,
                    "type": p.type,
                    "required": p.required,
                    "description": p.description,
                    **({"default": p.default} if not p.required else {}),
                    **{
                        k: v
                        for k, v in (
                            ("minimum", p.minimum),
                            ("maximum", p.maximum),
                            ("min_length", p.min_length),
                            ("max_length", p.max_length),
                            ("choices", p.choices),
                        )
                        if v is not None
                    },
                }
                for p in self.params
            ],
            "example": self.example_submission(),
        }

    def params_schema(self) -> dict[str, Any]:
        """JSON Schema of ``params``: the one declaration both validation and the OpenAPI spec use."""
        return {
            # validate() takes a missing or null params as {}: fine unless a parameter is required
            "type": "object" if any(p.required for p in self.params) else ["object", "null"],
            "additionalProperties": False,
            "properties": {p.name: p.json_schema() for p in self.params},
            "required": [p.name for p in self.params if p.required],
        }


class Registry:
    def __init__(self) -> None:
        self._ops: dict[str, Operation] = {}

    def add(self, op: Operation) -> Operation:
        if op.name in self._ops:
            raise ValueError(f"operation {op.name} registered twice")
        self._ops[op.name] = op
        return op

    def operation(
        self,
        *params: Param,
        description: str,
        produces_png: bool = False,
        result_keys: tuple[str, ...] = (),
        example: Mapping[str, Any] | None = None,
        name: str | None = None,
        check: Callable[..., None] | None = None,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator: ``@REGISTRY.operation(Param(...), description=...)`` over ``def op(ds, ...)``."""

        def wrap(func: Callable[..., Any]) -> Callable[..., Any]:
            self.add(
                Operation(
                    name or func.__name__,
                    func,
                    description,
                    tuple(params),
                    produces_png,
                    result_keys,
                    True,
                    dict(example or {}),
                    check,
                )
            )
            return func

        return wrap

    def get(self, name: Any) -> Operation:
        if not isinstance(name, str) or name not in self._ops:
            raise UnknownOperation(str(name), self.names())
        return self._ops[name]

    def names(self) -> list[str]:
        return list(self._ops)

    def __contains__(self, name: object) -> bool:
        return name in self._ops

    def __iter__(self):
        return iter(self._ops.values())

    def merged(self, *extra: Operation) -> Registry:
        """A copy with more operations (the diagnostic ``sleep`` when enabled)."""
        out = Registry()
        for op in [*self._ops.values(), *extra]:
            out.add(op)
        return out


REGISTRY = Registry()
"""The analysis operations. ``atx_analysis.operations`` fills it on import."""
