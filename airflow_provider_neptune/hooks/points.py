"""The one rule for a metric number (value, step or timestamp), used by the hook and the metric inputs.

Cheap to import (no ``neptune``, no Airflow), like :mod:`.server_rules`, whose bounds it applies.
"""

from __future__ import annotations

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
    if _plain_and_in_bounds(what, values):
        return list(values)  # what an operator hands over after validating: checked in C-speed passes
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


def _plain_and_in_bounds(what: str, values: Iterable[Any]) -> bool:
    """True when ``values`` is a list of finite floats (no subclasses) whose extremes are in bounds."""
    if type(values) is not list or not all(type(value) is float for value in values):
        return False
    if not values:
        return True
    low, high = min(values), max(values)
    if not (math.isfinite(low) and math.isfinite(high)) or any(value != value for value in values):
        return False  # NaN or infinity somewhere: the loop above names the first one
    return bound_problem(what, low) is None and bound_problem(what, high) is None
