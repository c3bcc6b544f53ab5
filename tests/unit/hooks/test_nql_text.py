"""Unit tests of NQL quoting: every quoted value parses back, with the emulator's parser, to itself."""

from __future__ import annotations

import pytest

from airflow_provider_neptune.emulator import nql
from airflow_provider_neptune.hooks.nql_text import check_fragment, condition, quote_attribute, quote_string

AWKWARD = [
    'a") OR ("',
    "back`tick",
    "p(a)r)) OR ((",
    "sl\\ash",
    "ends with a backslash\\",
    '"',
    '\\"',
    "it's",
    'x\\") OR (`sys/id`:string != "',
    "ünïcödé ✓",
    "AND OR NOT CONTAINS",
]


def test_rule_is_backslash_then_double_quote() -> None:
    assert quote_string("a\"b\\c`d'e", "tag") == '"a\\"b\\\\c`d\'e"'


@pytest.mark.parametrize("value", AWKWARD)
def test_quoted_value_is_one_condition_holding_exactly_the_value(value: str) -> None:
    parsed = nql.parse(condition("sys/tags", "stringSet", "CONTAINS", value, "tag"))
    assert parsed == nql.Condition("sys/tags", "stringSet", "CONTAINS", value)
    row = {"sys/tags": ("stringSet", [value])}
    assert nql.matches(parsed, row)
    assert not nql.matches(parsed, {"sys/tags": ("stringSet", [value + "x"])})


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("line\nbreak", r"tag 'line\\nbreak' contains the control character '\\n'"),
        ("tab\there", "control character"),
        ("", "tag is empty"),
        (3, "tag must be a string"),
    ],
)
def test_inexpressible_values_are_refused(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        quote_string(value, "tag")


def test_attribute_names_with_backticks_are_refused() -> None:
    assert quote_attribute("eval/acc", "run_metric") == "`eval/acc`"
    with pytest.raises(ValueError, match="run_metric 'a`b' cannot be written as an NQL attribute name"):
        quote_attribute("a`b", "run_metric")


@pytest.mark.parametrize(
    "fragment",
    [
        "`x`:float > 1",
        '(`a`:string = "x)") OR (`b`:string = "(")',
        "(`we)ird`:float > 1)",
        "`s`:string = 'it\\'s )'",
        '`s`:string = "\\\\"',
    ],
)
def test_balanced_fragments_pass(fragment: str) -> None:
    assert check_fragment(fragment, "query") == fragment


@pytest.mark.parametrize(
    ("fragment", "message"),
    [
        ('`a`:string = "x") OR (`b`:string = "y"', "closes a parenthesis it did not open"),
        ("(`a`:float > 1", "1 '\\(' not closed"),
        ('`a`:string = "open', "literal starting at character 13 is not closed"),
        ('`a`:string = "\\"', "not closed"),
        ("`a:float > 1", "literal starting at character 0 is not closed"),
    ],
)
def test_fragments_that_could_escape_their_parentheses_are_refused(fragment: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_fragment(fragment, "query")
