"""The vocabulary of run conditions and the checks of their parameters, without the conditions.

Sensors validate their parameters when a DAG file is parsed; this module lets them do it without
importing the worker-side ``core.run_conditions`` (banned at parse time), which applies the same
checks, so both report the same errors. It stays outside ``core/`` because sensors and
NeptuneStopRunOperator (``STATE_FIELD``) need it at parse time.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

STATE_FIELD = "airflow/state"
"""Field NeptuneStopRunOperator assigns when it stops a run; its presence means the run is finished."""

CONDITIONS: dict[str, Callable[[Any, Any], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
}
VALUE_MODES = ("last", "best", "field")
FINISHED_WHEN = ("stopped", "inactive")
RUN_WAIT_FOR = ("exists", "inactive", "field")


def as_number(value: Any) -> float | None:
    """Return ``value`` as a float when it is an int or float (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def check_metric_condition(
    *,
    run_id: str,
    path: str,
    condition: str,
    threshold: Any,
    value_mode: str,
    window: int,
    finished_when: str | None,
) -> None:
    """Raise ValueError naming the first invalid parameter of a metric condition."""
    if condition not in CONDITIONS:
        raise ValueError(f"condition must be one of {sorted(CONDITIONS)}, got {condition!r}")
    if value_mode not in VALUE_MODES:
        raise ValueError(f"value_mode must be one of {VALUE_MODES}, got {value_mode!r}")
    if finished_when is not None and finished_when not in FINISHED_WHEN:
        raise ValueError(f"finished_when must be one of {FINISHED_WHEN} or None, got {finished_when!r}")
    if not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be a positive integer, got {window!r}")
    if condition != "==" and as_number(threshold) is None:
        raise ValueError(f"condition {condition!r} needs a numeric threshold, got {threshold!r}")
    if not run_id or not path:
        raise ValueError("run_id and path must be non-empty")


def check_run_condition(*, run_id: str, wait_for: str, field: str | None) -> None:
    """Raise ValueError naming the first invalid parameter of a run condition."""
    if wait_for not in RUN_WAIT_FOR:
        raise ValueError(f"wait_for must be one of {RUN_WAIT_FOR}, got {wait_for!r}")
    if wait_for == "field" and not field:
        raise ValueError("wait_for='field' needs the field path in `field`")
    if not run_id:
        raise ValueError("run_id must be non-empty")
