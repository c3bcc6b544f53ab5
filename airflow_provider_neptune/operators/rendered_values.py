"""Old import path of :mod:`airflow_provider_neptune.core.rendered_values`, kept for callers.

Imported only where tasks run (inside ``execute``), hence exempt from the parse-time import ban.
"""

from __future__ import annotations

from airflow_provider_neptune.core.rendered_values import (
    as_bool,
    as_optional_float,
    as_optional_int,
    as_optional_str,
)

__all__ = ["as_bool", "as_optional_float", "as_optional_int", "as_optional_str"]
