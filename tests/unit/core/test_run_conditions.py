"""core/run_conditions.py: metric and run conditions evaluated against an in-memory hook."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_neptune.core.run_conditions import (
    MetricCondition,
    RunCondition,
    condition_from_dict,
)
from airflow_provider_neptune.exceptions import NeptuneRunNotFoundError
from tests.helpers.run_metrics_fakes import FakeHook, hook_with_run


def _metric(**kwargs: Any) -> MetricCondition:
    return MetricCondition(
        **{"run_id": "SAN-1", "path": "val/acc", "condition": ">=", "threshold": 0.9, **kwargs}
    )


def test_met_on_last_value() -> None:
    outcome = _metric().evaluate(hook_with_run([(0, 0.5), (1, 0.95)]))
    assert outcome.status == "met"
    assert outcome.value == 0.95
    assert outcome.step == 1


def test_not_yet_met_while_running() -> None:
    outcome = _metric().evaluate(hook_with_run([(0, 0.95), (1, 0.5)]))
    assert outcome.status == "waiting"
    assert "observed 0.5" in outcome.message


def test_never_met_once_stopped_fails_and_says_why() -> None:
    outcome = _metric().evaluate(hook_with_run([(0, 0.5)], airflow__state="finished"))
    assert outcome.status == "failed"
    assert "stopped" in outcome.message
    assert "airflow/state='finished'" in outcome.message
    assert "observed 0.5" in outcome.message


def test_a_failed_run_is_finished_in_both_modes() -> None:
    hook = hook_with_run([(0, 0.5)])
    hook.fields["SAN-1"]["sys"]["failed"] = True
    for finished_when in ("stopped", "inactive"):
        outcome = _metric(finished_when=finished_when).evaluate(hook)
        assert outcome.status == "failed"
        assert "sys/failed=True" in outcome.message
    assert _metric(finished_when=None).evaluate(hook).status == "waiting"


def test_met_even_if_stopped() -> None:
    assert _metric().evaluate(hook_with_run([(0, 0.91)], airflow__state="finished")).status == "met"


def test_missing_series_waits_until_finished() -> None:
    assert _metric().evaluate(hook_with_run(None)).status == "waiting"
    failed = _metric().evaluate(hook_with_run(None, airflow__state="finished"))
    assert failed.status == "failed"
    assert "has no value" in failed.message


def test_inactive_mode_and_none_mode() -> None:
    inactive = hook_with_run([(0, 0.1)], sys__state="idle")
    assert _metric(finished_when="inactive").evaluate(inactive).status == "failed"
    assert (
        _metric(finished_when="inactive").evaluate(hook_with_run([(0, 0.1)], sys__state="running")).status
        == "waiting"
    )
    assert (
        _metric(finished_when=None).evaluate(hook_with_run([(0, 0.1)], airflow__state="finished")).status
        == "waiting"
    )


@pytest.mark.parametrize(
    ("condition", "threshold", "points", "status", "value"),
    [
        (">=", 0.9, [(0, 0.95), (1, 0.5), (2, 0.6)], "met", 0.95),  # best = max over the window
        (">=", 0.9, [(0, 0.95), (1, 0.5), (2, 0.6), (3, 0.7)], "waiting", 0.7),  # 0.95 left the window
        ("<", 0.2, [(0, 0.1), (1, 0.5), (2, 0.6)], "met", 0.1),  # best = min
        ("==", 3, [(0, 3.0), (1, 4.0), (2, 5.0)], "met", 3.0),
        ("==", 9, [(0, 3.0), (1, 4.0), (2, 5.0)], "waiting", 5.0),
    ],
)
def test_best_of_last_window(
    condition: str, threshold: float, points: list[tuple[float, float]], status: str, value: float
) -> None:
    outcome = _metric(condition=condition, threshold=threshold, value_mode="best", window=3).evaluate(
        hook_with_run(points)
    )
    assert (outcome.status, outcome.value) == (status, value)


def test_field_mode_numeric_and_string() -> None:
    hook = hook_with_run(None, score=0.97, status="done")
    assert _metric(path="score", value_mode="field").evaluate(hook).status == "met"
    assert (
        _metric(path="status", value_mode="field", condition="==", threshold="done").evaluate(hook).status
        == "met"
    )
    not_a_number = _metric(path="status", value_mode="field").evaluate(hook)
    assert not_a_number.status == "failed"
    assert "holds 'done', not a number" in not_a_number.message


def test_nan_never_meets() -> None:
    assert (
        _metric(condition="<", threshold=1).evaluate(hook_with_run([(0, float("nan"))])).status == "waiting"
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"condition": "!="},
        {"value_mode": "max"},
        {"window": 0},
        {"finished_when": "done"},
        {"threshold": "x"},
    ],
)
def test_bad_condition_parameters_are_rejected(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        _metric(**kwargs)


def test_run_conditions() -> None:
    hook = hook_with_run(None, sys__state="running")
    assert RunCondition("SAN-1").evaluate(hook).status == "met"
    assert RunCondition("SAN-1", "inactive").evaluate(hook).status == "waiting"
    hook.fields["SAN-1"]["sys"]["state"] = "idle"
    assert RunCondition("SAN-1", "inactive").evaluate(hook).status == "met"
    assert RunCondition("SAN-1", "field", "eval/done").evaluate(hook).status == "waiting"
    hook.fields["SAN-1"]["eval/done"] = True
    assert RunCondition("SAN-1", "field", "eval/done").evaluate(hook).value is True
    with pytest.raises(ValueError, match="needs the field path"):
        RunCondition("SAN-1", "field")


def test_run_exists_waits_while_not_found() -> None:
    hook = FakeHook()

    def missing(run_id: str, path: str) -> Any:
        raise NeptuneRunNotFoundError(f"no run {run_id}")

    hook.fetch_field = missing  # type: ignore[method-assign]
    outcome = RunCondition("SAN-9").evaluate(hook)
    assert outcome.status == "waiting"
    assert "does not exist yet" in outcome.message


def test_conditions_round_trip_through_dicts() -> None:
    metric = _metric(value_mode="best", window=4, finished_when=None)
    run = RunCondition("SAN-2", "field", "x/y")
    assert condition_from_dict(metric.to_dict()) == metric
    assert condition_from_dict(run.to_dict()) == run
    with pytest.raises(ValueError, match="unknown condition kind"):
        condition_from_dict({"kind": "other"})
