"""core/rendered_values.py: templated strings read back as bools, numbers and optional strings."""

from __future__ import annotations

import pytest

from airflow_provider_neptune.core.rendered_values import (
    as_bool,
    as_optional_float,
    as_optional_int,
    as_optional_str,
)


def test_rendered_values_accept_native_and_string_forms() -> None:
    assert as_bool("x", "True") is True
    assert as_bool("x", " no ") is False
    assert as_bool("x", False) is False
    with pytest.raises(ValueError, match="x must be true or false"):
        as_bool("x", "maybe")
    assert as_optional_float("s", "0.25") == 0.25
    assert as_optional_float("s", "None") is None
    with pytest.raises(ValueError, match="finite"):
        as_optional_float("s", "nan")
    assert as_optional_int("k", "3") == 3
    assert as_optional_int("k", 4.0) == 4
    with pytest.raises(ValueError, match="whole number"):
        as_optional_int("k", "2.5")
    with pytest.raises(ValueError, match=">= 1"):
        as_optional_int("k", 0, minimum=1)
    assert as_optional_str("  ") is None
    assert as_optional_str(" ws/p ") == "ws/p"
