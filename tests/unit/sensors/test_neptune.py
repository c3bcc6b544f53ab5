"""NeptuneMetricSensor / NeptuneRunSensor and their conditions against an in-memory hook."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from airflow.sdk import PokeReturnValue
from airflow.sdk.exceptions import (
    AirflowException,
    AirflowFailException,
    AirflowRescheduleException,
    TaskDeferred,
)

from airflow_provider_neptune.core.run_conditions import (
    MetricCondition,
    RunCondition,
    condition_from_dict,
)
from airflow_provider_neptune.exceptions import NeptuneRunNotFoundError
from airflow_provider_neptune.links import RUN_URL_XCOM_KEY
from airflow_provider_neptune.sensors import NeptuneMetricSensor, NeptuneRunSensor
from airflow_provider_neptune.triggers.neptune import NeptuneConditionTrigger
from tests.helpers.run_metrics_fakes import FakeHook, make_context


def _hook(points: list[tuple[float, float]] | None = None, **fields: Any) -> FakeHook:
    hook = FakeHook()
    if points is not None:
        hook.series["SAN-1"] = {"val/acc": points}
    run_fields = {k.replace("__", "/"): v for k, v in fields.items()}
    state = run_fields.pop("sys/state", None)
    hook.fields["SAN-1"] = {"sys/id": "SAN-1", "sys": {"id": "SAN-1", "state": state}, **run_fields}
    return hook


def _metric(**kwargs: Any) -> MetricCondition:
    return MetricCondition(
        **{"run_id": "SAN-1", "path": "val/acc", "condition": ">=", "threshold": 0.9, **kwargs}
    )


def test_met_on_last_value() -> None:
    outcome = _metric().evaluate(_hook([(0, 0.5), (1, 0.95)]))
    assert outcome.status == "met"
    assert outcome.value == 0.95
    assert outcome.step == 1


def test_not_yet_met_while_running() -> None:
    outcome = _metric().evaluate(_hook([(0, 0.95), (1, 0.5)]))
    assert outcome.status == "waiting"
    assert "observed 0.5" in outcome.message


def test_never_met_once_stopped_fails_and_says_why() -> None:
    outcome = _metric().evaluate(_hook([(0, 0.5)], airflow__state="finished"))
    assert outcome.status == "failed"
    assert "stopped" in outcome.message
    assert "airflow/state='finished'" in outcome.message
    assert "observed 0.5" in outcome.message


def test_a_failed_run_is_finished_in_both_modes() -> None:
    hook = _hook([(0, 0.5)])
    hook.fields["SAN-1"]["sys"]["failed"] = True
    for finished_when in ("stopped", "inactive"):
        outcome = _metric(finished_when=finished_when).evaluate(hook)
        assert outcome.status == "failed"
        assert "sys/failed=True" in outcome.message
    assert _metric(finished_when=None).evaluate(hook).status == "waiting"


def test_met_even_if_stopped() -> None:
    assert _metric().evaluate(_hook([(0, 0.91)], airflow__state="finished")).status == "met"


def test_missing_series_waits_until_finished() -> None:
    assert _metric().evaluate(_hook(None)).status == "waiting"
    failed = _metric().evaluate(_hook(None, airflow__state="finished"))
    assert failed.status == "failed"
    assert "has no value" in failed.message


def test_inactive_mode_and_none_mode() -> None:
    inactive = _hook([(0, 0.1)], sys__state="idle")
    assert _metric(finished_when="inactive").evaluate(inactive).status == "failed"
    assert (
        _metric(finished_when="inactive").evaluate(_hook([(0, 0.1)], sys__state="running")).status
        == "waiting"
    )
    assert (
        _metric(finished_when=None).evaluate(_hook([(0, 0.1)], airflow__state="finished")).status == "waiting"
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
        _hook(points)
    )
    assert (outcome.status, outcome.value) == (status, value)


def test_field_mode_numeric_and_string() -> None:
    hook = _hook(None, score=0.97, status="done")
    assert _metric(path="score", value_mode="field").evaluate(hook).status == "met"
    assert (
        _metric(path="status", value_mode="field", condition="==", threshold="done").evaluate(hook).status
        == "met"
    )
    not_a_number = _metric(path="status", value_mode="field").evaluate(hook)
    assert not_a_number.status == "failed"
    assert "holds 'done', not a number" in not_a_number.message


def test_nan_never_meets() -> None:
    assert _metric(condition="<", threshold=1).evaluate(_hook([(0, float("nan"))])).status == "waiting"


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
    hook = _hook(None, sys__state="running")
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


def _sensor(hook: FakeHook, **kwargs: Any) -> NeptuneMetricSensor:
    params: dict[str, Any] = {
        "run_id": "SAN-1",
        "path": "val/acc",
        "condition": ">=",
        "threshold": 0.9,
        "poke_interval": 0,
        "timeout": 5,
    }
    sensor = NeptuneMetricSensor(task_id="wait", **{**params, **kwargs})
    sensor.hook = hook  # type: ignore[misc]
    return sensor


def test_poke_returns_value_when_met_and_false_while_waiting() -> None:
    hook = _hook([(0, 0.5)])
    sensor = _sensor(hook)
    assert sensor.poke(make_context()) is False
    hook.series["SAN-1"]["val/acc"].append((1, 0.93))
    result = sensor.poke(make_context())
    assert isinstance(result, PokeReturnValue)
    assert result.xcom_value["value"] == 0.93


def test_poke_fails_fast_without_retry_when_run_finished() -> None:
    sensor = _sensor(_hook([(0, 0.5)], airflow__state="finished"))
    with pytest.raises(AirflowFailException, match="was not met"):
        sensor.poke(make_context())


def test_templated_threshold_text_is_converted_or_rejected() -> None:
    sensor = _sensor(_hook([(0, 0.95)]), threshold="0.9")
    assert sensor.build_condition().threshold == 0.9
    sensor.threshold = "high"
    with pytest.raises(AirflowFailException, match="not a number"):
        sensor.build_condition()


def test_execute_poke_mode_records_link_and_returns_event() -> None:
    hook = _hook([(0, 0.95)])
    context = make_context()
    result = _sensor(hook).execute(context)
    assert result["status"] == "met"
    assert context["ti"].xcom[RUN_URL_XCOM_KEY].endswith("/e/SAN-1")
    assert hook.closed == 1


def test_deferrable_checks_once_then_defers_with_serializable_trigger() -> None:
    hook = _hook([(0, 0.5)])
    sensor = _sensor(hook, deferrable=True, poke_interval=7, timeout=60)
    with pytest.raises(TaskDeferred) as info:
        sensor.execute(make_context())
    trigger = info.value.trigger
    assert isinstance(trigger, NeptuneConditionTrigger)
    assert info.value.method_name == "execute_complete"
    assert info.value.timeout == timedelta(seconds=60)
    _, kwargs = trigger.serialize()
    assert kwargs["poke_interval"] == 7
    assert condition_from_dict(kwargs["condition"]) == sensor.build_condition()


def test_deferrable_returns_at_once_when_already_met() -> None:
    sensor = _sensor(_hook([(0, 0.99)]), deferrable=True)
    assert sensor.execute(make_context())["value"] == 0.99


def test_execute_complete_handles_each_event() -> None:
    sensor = _sensor(_hook([(0, 0.99)]))
    met = {"status": "met", "message": "ok", "value": 0.99, "step": 0}
    assert sensor.execute_complete(make_context(), met) == met
    with pytest.raises(AirflowFailException, match="never"):
        sensor.execute_complete(make_context(), {"status": "failed", "message": "never"})
    with pytest.raises(AirflowException, match="trigger failed: boom"):
        sensor.execute_complete(make_context(), {"status": "error", "message": "boom"})


def test_run_sensor_poke_and_parse_time_validation() -> None:
    hook = _hook(None, sys__state="running")
    sensor = NeptuneRunSensor(task_id="r", run_id="SAN-1", wait_for="inactive", poke_interval=0)
    sensor.hook = hook  # type: ignore[misc]
    assert sensor.poke(make_context()) is False
    hook.fields["SAN-1"]["sys"]["state"] = "idle"
    assert sensor.poke(make_context())
    with pytest.raises(ValueError, match="wait_for"):
        NeptuneRunSensor(task_id="bad", run_id="x", wait_for="gone")
    with pytest.raises(ValueError, match="condition"):
        NeptuneMetricSensor(task_id="bad2", run_id="x", path="p", condition="~", threshold=1)


def test_reschedule_mode_frees_the_slot_until_met() -> None:
    hook = _hook([(0, 0.5)])
    sensor = _sensor(hook, mode="reschedule", poke_interval=30, timeout=3600)
    with pytest.raises(AirflowRescheduleException) as info:
        sensor.execute(make_context())
    assert info.value.reschedule_date is not None
    assert hook.closed == 1
    hook.series["SAN-1"]["val/acc"].append((1, 0.9))
    assert sensor.execute(make_context())["value"] == 0.9
