"""Read templated operator arguments that may arrive as strings.

Unless a DAG sets ``render_template_as_native_obj=True``, a templated ``"{{ params.k }}"`` renders to
the string ``"3"``; these helpers accept the native value or that string and name the argument in
the error when neither makes sense.
"""

from __future__ import annotations

import math
from typing import Any

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_NONE = {"", "none", "null"}


def _is_none(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in _NONE)


def as_bool(name: str, value: Any) -> bool:
    """A boolean from ``True``/``False`` or their usual string spellings."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise ValueError(f"{name} must be true or false, got {value!r}")


def as_optional_float(name: str, value: Any) -> float | None:
    """A finite float, or None for None / "" / "None"."""
    if _is_none(value):
        return None
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return number


def as_optional_int(name: str, value: Any, *, minimum: int | None = None) -> int | None:
    """A whole number (``3`` or ``"3"`` or ``3.0``), or None for None / "" / "None"."""
    number = as_optional_float(name, value)
    if number is None:
        return None
    if not number.is_integer():
        raise ValueError(f"{name} must be a whole number, got {value!r}")
    if minimum is not None and number < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return int(number)


def as_optional_str(value: Any) -> str | None:
    """A stripped string, or None for None / "" / "None"."""
    if _is_none(value):
        return None
    return str(value).strip()
