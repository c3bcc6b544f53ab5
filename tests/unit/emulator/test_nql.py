"""Unit tests of the emulator's NQL parser and evaluator."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_neptune.emulator import nql
from airflow_provider_neptune.emulator.errors import NQLSyntaxError

ROW: dict[str, tuple[str, Any]] = {
    "sys/id": ("string", "SAN-3"),
    "sys/name": ("string", "train resnet"),
    "sys/tags": ("stringSet", ["prod", "gpu"]),
    "sys/state": ("experimentState", "idle"),
    "sys/trashed": ("bool", False),
    "sys/creation_time": ("datetime", 1_700_000_000_000),
    "acc": ("float", 0.91),
    "epochs": ("int", 10),
    "train/loss": ("floatSeries", 0.15),
}


def test_client_generated_queries() -> None:
    query = (
        '((`sys/trashed`:bool = false) AND ((`sys/tags`:stringSet CONTAINS "prod") AND '
        '(`sys/tags`:stringSet CONTAINS "gpu")) AND ((`sys/state`:experimentState = "idle")))'
    )
    assert nql.matches(nql.parse(query), ROW)
    assert not nql.matches(nql.parse('(`sys/tags`:stringSet CONTAINS "cpu")'), ROW)
    assert nql.matches(nql.parse('(`sys/id`:string = "SAN-1") OR (`sys/id`:string = "SAN-3")'), ROW)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", True),
        ("(acc: float > 0.88) AND (train/loss: floatSeries < 0.2)", True),
        ("acc:float >= 0.95", False),
        ("epochs:integer = 10", True),
        ("epochs:int != 10", False),
        ('sys/name:string MATCHES "^train"', True),
        ('sys/name:string NOT CONTAINS "resnet"', False),
        ("NOT (acc:float < 0.5)", True),
        ("missing:float EXISTS", False),
        ("missing:float NOT EXISTS", True),
        ("acc EXISTS AND NOT missing EXISTS", True),
        ('sys/creation_time:datetime > "2023-11-14T00:00:00Z"', True),
        ('sys/creation_time:datetime > "2024-01-01T00:00:00.000Z"', False),
        ('`sys/state`:experimentState = "inactive"', True),
        ("sys/trashed:bool = true", False),
        ("acc:string = 0.91", True),
        ("sys/name:float > 1", False),
    ],
)
def test_operators_and_types(query: str, expected: bool) -> None:
    assert nql.matches(nql.parse(query), ROW) is expected


@pytest.mark.parametrize("query", ["(acc:float >", "acc:float > 1 AND", "((acc:float > 1)", "acc:float = "])
def test_syntax_errors(query: str) -> None:
    with pytest.raises(NQLSyntaxError):
        nql.parse(query)


def test_structure_of_parsed_query() -> None:
    parsed = nql.parse('(a:float > 1 OR b:string = "x y") AND NOT c EXISTS')
    assert parsed == nql.And(
        (
            nql.Or(
                (
                    nql.Condition("a", "float", ">", 1.0),
                    nql.Condition("b", "string", "=", "x y"),
                )
            ),
            nql.Not(nql.Condition("c", None, "EXISTS")),
        )
    )
    assert nql.to_millis("1970-01-01T00:00:01.500Z") == 1500.0


@pytest.mark.parametrize(
    ("literal", "value"),
    [
        ('"a\\"b"', 'a"b'),
        ('"ends\\\\"', "ends\\"),
        ('"\\\\\\""', '\\"'),
        ('"x\\") OR (\\""', 'x") OR ("'),
        ("'it\\'s'", "it's"),
        ('"back`tick (paren)"', "back`tick (paren)"),
    ],
)
def test_string_literals_unescape_backslash_and_quotes(literal: str, value: str) -> None:
    parsed = nql.parse(f"(`sys/tags`:stringSet CONTAINS {literal})")
    assert parsed == nql.Condition("sys/tags", "stringSet", "CONTAINS", value)


def test_unescaped_quote_ends_the_literal() -> None:
    # What an unquoted tag pasted into a query does: the query gains an OR.
    tag = 'a") OR (`sys/id`:string != "'
    parsed = nql.parse(f'(`sys/tags`:stringSet CONTAINS "{tag}")')
    assert isinstance(parsed, nql.Or)
    assert nql.matches(parsed, {"sys/id": ("string", "ANY-1"), "sys/tags": ("stringSet", [])})
