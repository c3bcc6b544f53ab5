"""The one rule for a metric number (value, step or timestamp), used by the hook and the metric inputs.

Cheap to import (no ``neptune``, no Airflow), like :mod:`.server_rules`, whose bounds it applies.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from typing import Any

from airflow_provider_neptune.hooks.server_rules import bound_problem


def parse_number(value: Any) -> float | None:
    """``value`` as a float when it is a real number or numeric text, else None (booleans, bytes: None)."""
    if isinstance(value, bool):
        return None
    try:
        if isinstance(value, str):
            return float(value.strip())
        return float(value) if hasattr(value, "__float__") else None
    except (TypeError, ValueError, OverflowError):
        return None


def as_float_list(name: str, what: str, values: Iterable[Any]) -> list[float]:
    """Finite floats, steps and timestamps within their bounds; ValueError naming series, index, value."""
    floats = finite_floats(values)
    if floats is not None and (
        not floats or (bound_problem(what, min(floats)) is None and bound_problem(what, max(floats)) is None)
    ):
        return floats
    out: list[float] = []
    for index, value in enumerate(values):
        if isinstance(value, bool):
            raise ValueError(
                f"series {name!r}: {what} at index {index} is a boolean ({value!r}), not a number"
            )
        number = parse_number(value)
        if number is None:
            raise ValueError(f"series {name!r}: {what} at index {index} is not a number: {value!r}")
        if not math.isfinite(number):
            raise ValueError(f"series {name!r}: {what} at index {index} is not finite: {value!r}")
        problem = bound_problem(what, number)
        if problem is not None:
            raise ValueError(
                f"series {name!r}: {what} at index {index} is out of range: {value!r}; {problem}"
            )
        out.append(number)
    return out


_PLAIN_NUMBERS = frozenset((int, float))


def finite_floats(values: Any) -> list[float] | None:
    """A new list of floats when ``values`` is a list of plain ints and floats, all finite, else None.

    Checked in whole-list passes at C speed (a tenth of the time of a point-by-point check); on None
    the caller checks point by point and names the first bad one. Booleans, numeric text and float
    subclasses are left to that check.
    """
    if type(values) is not list or not _PLAIN_NUMBERS.issuperset(map(type, values)):
        return None
    try:
        floats = list(map(float, values))
    except OverflowError:  # an int beyond the range of a double
        return None
    if not math.isfinite(sum(floats)) and not all(map(math.isfinite, floats)):
        return None  # the sum is NaN or infinite, and not only because finite values add up past a double
    return floats


def strictly_increasing(values: list[float]) -> bool:
    """True when each value is greater than the one before (one C-speed pass)."""
    return all(map(float.__lt__, values, itertools.islice(values, 1, None)))
