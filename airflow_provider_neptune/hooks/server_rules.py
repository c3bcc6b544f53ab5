"""What a Neptune server accepts, defined once for the hook and the operators.

Cheap to import (no ``neptune``, no Airflow), so operators may check their arguments at DAG parse time
with the same rules the hook applies when it sends.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

#: The neptune client silently ignores longer custom run ids (and creates a new run every time).
MAX_CUSTOM_RUN_ID_LENGTH = 36
#: Largest accepted |step|: every integer up to 2**53 is exact in float64, the server's step type.
MAX_ABS_STEP = float(2**53)
#: Accepted timestamps, unix seconds: 1970-01-01T00:00:00Z to 9999-12-31T23:59:59Z (what datetime holds).
TIMESTAMP_RANGE = (0.0, 253402300799.0)
#: Counters the hook keeps per server: requests sent, 429 answers, retries, points and bytes logged.
COUNTER_KEYS = ("requests", "throttled", "retries", "points", "bytes")
#: The counters operators report in their results (what the request budget is spent on).
REQUEST_KEYS = ("requests", "throttled", "retries")


def check_custom_run_id(custom_run_id: str | None) -> None:
    """Raise ValueError when ``custom_run_id`` is longer than Neptune accepts."""
    if custom_run_id is not None and len(custom_run_id) > MAX_CUSTOM_RUN_ID_LENGTH:
        raise ValueError(
            f"custom_run_id {custom_run_id!r} has {len(custom_run_id)} characters; Neptune accepts at most "
            f"{MAX_CUSTOM_RUN_ID_LENGTH} and the client would silently create a new run every time"
        )


def bound_problem(what: str, number: float) -> str | None:
    """Why a finite step or timestamp is out of the accepted range, or None when it is fine."""
    if what == "step" and abs(number) > MAX_ABS_STEP:
        return f"|step| must be at most 2**53 ({MAX_ABS_STEP:.0f}) so that it is exact in float64"
    if what == "timestamp" and not TIMESTAMP_RANGE[0] <= number <= TIMESTAMP_RANGE[1]:
        return (
            f"timestamps are unix seconds from {TIMESTAMP_RANGE[0]:.0f} (1970-01-01) to "
            f"{TIMESTAMP_RANGE[1]:.0f} (9999-12-31T23:59:59Z)"
        )
    return None


def counter_delta(
    before: Mapping[str, int], after: Mapping[str, int], keys: Sequence[str] = COUNTER_KEYS
) -> dict[str, int]:
    """Per-counter difference ``after - before`` over ``keys`` (missing counters count as 0)."""
    return {key: after.get(key, 0) - before.get(key, 0) for key in keys}
