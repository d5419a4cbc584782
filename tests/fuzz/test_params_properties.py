"""Property tests of parameter parsing (``Param.coerce`` / ``Operation.validate``).

Whatever JSON a client sends as ``params`` (or whatever strings arrive in a query string), validation
either returns complete, typed, in-bounds parameters or raises ``ParamError`` naming the culprit:
never another exception (which the API would turn into a 500) and never a value outside the
declared bounds reaching an operation.
"""

from __future__ import annotations

import datetime as dt
import math

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from atx_analysis.registry import Operation, Param, ParamError
from jobqueue.catalogue import SLEEP

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)

# Strings shaped like what a query string or a careless client sends for each type.
numberish = st.one_of(
    st.integers().map(str),
    st.floats().map(repr),
    st.from_regex(r"\s*-?\d{1,500}(\.\d*)?([eE][+-]?\d{1,4})?\s*", fullmatch=True),
    st.sampled_from(["nan", "inf", "-inf", "1_000", "0x10", "", " ", "1e309", "٣"]),
)
dateish = st.one_of(
    st.dates().map(dt.date.isoformat),
    st.text(max_size=12),
    st.sampled_from(["2024-02-30", "2024-13-01", "20240306", "2024-03-06T00:00", "0000-01-01"]),
)

bounds = st.one_of(st.none(), st.integers(-1000, 1000))


@st.composite
def params(draw) -> Param:
    kind = draw(st.sampled_from(["int", "number", "string", "date", "boolean"]))
    name = draw(st.from_regex(r"[a-z][a-z_]{0,10}", fullmatch=True))
    lo = hi = max_length = choices = None
    if kind in {"int", "number"}:
        lo, hi = draw(bounds), draw(bounds)
        if lo is not None and hi is not None and lo > hi:
            lo, hi = hi, lo
    if kind == "string":
        max_length = draw(st.none() | st.integers(0, 50))
        choices = draw(
            st.none() | st.lists(st.text(min_size=1, max_size=5), min_size=1, max_size=4, unique=True).map(tuple)
        )
    return Param(name, kind, "fuzzed", minimum=lo, maximum=hi, max_length=max_length, choices=choices)


def _check_value(p: Param, value) -> None:
    """The postcondition every accepted value satisfies."""
    if p.type == "int":
        assert isinstance(value, int) and not isinstance(value, bool)
    elif p.type == "number":
        assert isinstance(value, float) and math.isfinite(value)
    elif p.type == "boolean":
        assert isinstance(value, bool)
    elif p.type == "date":
        assert dt.date.fromisoformat(value).isoformat() == value
    elif p.type == "string":
        assert isinstance(value, str)
        if p.max_length is not None:
            assert len(value) <= p.max_length
        if p.choices:
            assert value in p.choices
    if p.minimum is not None:
        assert value >= p.minimum
    if p.maximum is not None:
        assert value <= p.maximum


@FUZZ
@given(p=params(), raw=json_values | numberish | dateish)
@example(p=Param("x", "number", "huge JSON integer"), raw=10**400)  # was an OverflowError (a 500)
@example(p=Param("x", "int", "huge digit string", maximum=10), raw="9" * 5000)
def test_coerce_returns_a_valid_value_or_a_param_error(p, raw):
    try:
        value = p.coerce(raw)
    except ParamError as err:
        assert err.param == p.name and err.message
        return
    _check_value(p, value)
    assert p.coerce(value) == value, "coercion is idempotent"


@FUZZ
@given(p=params(), raw=json_values)
def test_query_string_form_agrees_with_json_form(p, raw):
    """``?n=5`` and ``{"n": 5}`` mean the same: a value accepted from JSON is accepted as its text."""
    try:
        value = p.coerce(raw)
    except ParamError:
        return
    if p.type in {"int", "number", "date"} or (p.type == "string"):
        text = value if isinstance(value, str) else repr(value)
        assert p.coerce(text) == value


@FUZZ
@given(
    ps=st.lists(params(), max_size=4, unique_by=lambda p: p.name),
    body=st.one_of(json_values, st.dictionaries(st.text(max_size=10), json_values, max_size=6)),
)
def test_validate_is_total_and_complete(ps, body):
    op = Operation("fuzzed", lambda **kw: kw, "fuzzed op", params=tuple(ps), needs_dataset=False)
    try:
        clean = op.validate(body)
    except ParamError as err:
        assert err.message
        if err.param is not None and isinstance(body, dict):
            assert err.param in body or err.param in {p.name for p in ps}
        return
    assert set(clean) == {p.name for p in ps}, "every declared parameter is filled in, nothing else"
    for p in ps:
        if not (p.required is False and clean[p.name] == p.default):
            _check_value(p, clean[p.name])
    assert op.validate(clean) == clean


@FUZZ
@given(seconds=json_values | numberish)
@example(seconds=-(10**400))
def test_sleep_seconds_stay_within_the_cap(seconds):
    """The diagnostic op is the one a fuzzer can reach through the API: its cap must hold."""
    try:
        clean = SLEEP.validate({"seconds": seconds})
    except ParamError:
        return
    assert 0.0 <= clean["seconds"] <= 60.0
