"""The hook's input checks: finite numbers, |step| <= 2**53, timestamps within 1970..9999 (UTC)."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from airflow_provider_neptune.hooks.points import as_float_list, finite_floats, strictly_increasing
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


@pytest.mark.parametrize(
    ("what", "bad", "expected"),
    [
        ("step", -(2.0**54), "out of range"),
        ("step", float("inf"), "is not finite"),
        ("timestamp", -0.5, "out of range"),
        ("value", float("nan"), "is not finite"),
        ("value", float("-inf"), "is not finite"),
    ],
)
def test_a_list_of_floats_is_checked_as_strictly_as_any_other(what: str, bad: float, expected: str) -> None:
    # All floats: the quick whole-list check must still refuse, and name the index of the bad one.
    with pytest.raises(ValueError, match=r"series 's': \w+ at index 2 ") as info:
        as_float_list("s", what, [1.0, 2.0, bad, 3.0])
    assert expected in str(info.value)


def test_a_list_of_good_floats_comes_back_as_a_new_equal_list() -> None:
    class Tagged(float):
        """A float subclass: converted to a plain float like any other number."""

    values = [0.5, 1e300, -2.0]
    out = as_float_list("s", "value", values)
    assert out == values
    assert out is not values
    converted = as_float_list("s", "step", [Tagged(1.0), 2.0])
    assert [type(v) for v in converted] == [float, float]


@pytest.mark.parametrize(
    "values",
    [
        [1.0, math.nan],
        [math.inf, 1.0],
        [1.0, -math.inf],
        [1, True],
        [1.0, "2"],
        [1.0, None],
        [10**400],
        (1.0, 2.0),
    ],
    ids=["nan", "inf", "-inf", "bool", "text", "None", "huge int", "tuple"],
)
def test_finite_floats_leaves_anything_but_finite_plain_numbers_to_the_point_by_point_check(
    values: object,
) -> None:
    assert finite_floats(values) is None


def test_finite_floats_converts_ints_and_keeps_finite_values_whose_sum_overflows() -> None:
    out = finite_floats([1e308, 1e308, 3, -2])
    assert out == [1e308, 1e308, 3.0, -2.0]
    assert [type(v) for v in out or []] == [float] * 4
    assert finite_floats([]) == []


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], True),
        ([1.0], True),
        ([1.0, 2.0, 2.5], True),
        ([1.0, 1.0], False),
        ([2.0, 1.0], False),
        ([1.0, math.nan, 3.0], False),
    ],
)
def test_strictly_increasing(values: list[float], expected: bool) -> None:
    assert strictly_increasing(values) is expected
