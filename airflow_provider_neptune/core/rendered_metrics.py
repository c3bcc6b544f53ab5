"""NaN and infinities in rendered metric arguments, found before Airflow stores the rendered fields.

Airflow's upload of rendered fields fails on them without naming a series; these helpers name the
series and index, or turn the numbers into text ("nan") for ``skip_invalid``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any


def _non_finite(value: Any, where: str) -> Iterator[tuple[str, float]]:
    """(location, number) of every NaN or infinity inside lists and mappings of ``value``."""
    if isinstance(value, float):
        if not math.isfinite(value):
            yield where, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _non_finite(item, f"{where}[{key!r}]")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from _non_finite(item, f"{where} index {index}")


def as_text(value: Any) -> Any:
    """``value`` with every NaN or infinity replaced by its text ("nan", "inf"), which JSON can hold."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, Mapping):
        return {key: as_text(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [as_text(item) for item in value]
    return value


def rendered_problems(metrics: Any, steps: Any, timestamps: Any) -> list[str]:
    """Every NaN or infinity in rendered metrics, steps and timestamps, named by series and index."""
    found: list[tuple[str, float]] = []
    if isinstance(metrics, Mapping):
        for path, entry in metrics.items():
            if isinstance(entry, Mapping):
                for key, column in entry.items():
                    found.extend(_non_finite(column, f"series {path!r} {key}"))
            else:
                found.extend(_non_finite(entry, f"series {path!r}"))
    for name, field in (("steps", steps), ("timestamps", timestamps)):
        if isinstance(field, Mapping):
            for path, column in field.items():
                found.extend(_non_finite(column, f"series {path!r} {name}"))
        else:
            found.extend(_non_finite(field, name))
    return [f"{where}: {number!r} is not finite" for where, number in found]
