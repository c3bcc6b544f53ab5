"""The hook's input checks: finite numbers, |step| <= 2**53, timestamps within 1970..9999 (UTC)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from airflow_provider_neptune.hooks.points import as_float_list
from airflow_provider_neptune.hooks.server_rules import bound_problem


def test_the_edges_of_the_ranges_are_accepted() -> None:
    year_9999_end = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()
    assert as_float_list("s", "timestamp", [0, year_9999_end]) == [0.0, year_9999_end]
    assert as_float_list("s", "step", [-(2**53), 2**53]) == [-(2.0**53), 2.0**53]
    assert as_float_list("s", "value", [1e308, -1e308]) == [1e308, -1e308]  # values: any finite float


@pytest.mark.parametrize(
    ("what", "bad", "expected"),
    [
        ("timestamp", datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp() + 1, "out of range"),
        ("timestamp", -0.001, "out of range"),
        ("timestamp", 1e20, "out of range: 1e+20"),
        ("step", 2**53 + 2, "out of range: 9007199254740994"),
        ("step", -(2.0**54), "out of range"),
        ("step", float("inf"), "is not finite"),
        ("value", float("nan"), "is not finite"),
        ("value", 10**400, "is not a number"),
        ("value", True, "is a boolean"),
    ],
)
def test_bad_numbers_are_named_with_series_and_index(what: str, bad: object, expected: str) -> None:
    with pytest.raises(ValueError, match=r"series 'train/loss': \w+ at index 1 ") as info:
        as_float_list("train/loss", what, [0, bad])
    assert expected in str(info.value)


def test_bound_problem_says_what_the_range_is() -> None:
    assert bound_problem("step", 2.0**53) is None
    assert "2**53" in (bound_problem("step", 2.0**53 * 2) or "")
    assert "9999-12-31" in (bound_problem("timestamp", 1e12) or "")
    assert bound_problem("value", 1e300) is None
