"""How ``jobqueue submit`` and ``jobqueue analyze`` type a ``key=value`` by the parameter's declared
type (``jobqueue.cliargs.typed``): the text is judged as the JSON value it spells, so the command
line accepts and refuses what a JSON body does."""

from __future__ import annotations

import pytest

from jobqueue.cliargs import NUMBER_TEXT, typed

DECLARED = [{"name": "n", "type": "int"}, {"name": "x", "type": "number"}, {"name": "road", "type": "string"}]


@pytest.mark.parametrize(
    "text,sent",
    [
        ("5", 5),
        (" -3 ", -3),
        ("1e3", 1000),  # the JSON number 1e3 is the integer 1000 to the API: now the CLI's too
        ("1E3", 1000),
        ("10.0", 10),
        ("2000e-1", 200),
        ("123456789012345678901234567890", 123456789012345678901234567890),  # digits: exact, not via float
        ("5.5", 5.5),  # sent as the number, refused as the JSON 5.5 is
        ("1e-1", 0.1),
        # text the JSON number grammar (ASCII) does not take stays text, refused by name as before
        ("1_0", "1_0"),
        ("\uff15", "\uff15"),  # full-width 5, which int() took
        ("1e999", "1e999"),  # no finite number
        ("ten", "ten"),
    ],
)
def test_an_integer_parameter_is_the_json_number_its_text_spells(text, sent):
    got = typed(DECLARED, {"n": text})["n"]
    assert got == sent and type(got) is type(sent), (text, got)


@pytest.mark.parametrize("text,sent", [("1e3", 1000.0), (".5", 0.5), ("-2", -2.0), ("nan", "nan"), ("inf", "inf")])
def test_a_number_parameter_is_a_finite_json_number_or_stays_text(text, sent):
    got = typed(DECLARED, {"x": text})["x"]
    assert got == sent and type(got) is type(sent), (text, got)


def test_text_and_undeclared_parameters_stay_as_typed():
    assert typed(DECLARED, {"road": "1e3", "other": "5"}) == {"road": "1e3", "other": "5"}


def test_the_cli_reads_numbers_as_the_operations_check_reads_their_text():
    """One grammar of number text (the client has no analysis package, so it keeps its own copy)."""
    from atx_analysis import registry

    assert NUMBER_TEXT.pattern == registry._NUMBER_TEXT.pattern
