"""NeptuneMetricSensor / NeptuneRunSensor against an in-memory hook (conditions: core/test_run_conditions)."""

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
    condition_from_dict,
)
from airflow_provider_neptune.links import RUN_URL_XCOM_KEY
from airflow_provider_neptune.sensors import NeptuneMetricSensor, NeptuneRunSensor
from airflow_provider_neptune.triggers.neptune import NeptuneConditionTrigger
from tests.helpers.run_metrics_fakes import FakeHook, hook_with_run, make_context


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
    hook = hook_with_run([(0, 0.5)])
    sensor = _sensor(hook)
    assert sensor.poke(make_context()) is False
    hook.series["SAN-1"]["val/acc"].append((1, 0.93))
    result = sensor.poke(make_context())
    assert isinstance(result, PokeReturnValue)
    assert result.xcom_value["value"] == 0.93


def test_poke_fails_fast_without_retry_when_run_finished() -> None:
    sensor = _sensor(hook_with_run([(0, 0.5)], airflow__state="finished"))
    with pytest.raises(AirflowFailException, match="was not met"):
        sensor.poke(make_context())


def test_templated_threshold_text_is_converted_or_rejected() -> None:
    sensor = _sensor(hook_with_run([(0, 0.95)]), threshold="0.9")
    assert sensor.build_condition().threshold == 0.9
    sensor.threshold = "high"
    with pytest.raises(AirflowFailException, match="not a number"):
        sensor.build_condition()


def test_execute_poke_mode_records_link_and_returns_event() -> None:
    hook = hook_with_run([(0, 0.95)])
    context = make_context()
    result = _sensor(hook).execute(context)
    assert result["status"] == "met"
    assert context["ti"].xcom[RUN_URL_XCOM_KEY].endswith("/e/SAN-1")
    assert hook.closed == 1


def test_deferrable_checks_once_then_defers_with_serializable_trigger() -> None:
    hook = hook_with_run([(0, 0.5)])
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
    sensor = _sensor(hook_with_run([(0, 0.99)]), deferrable=True)
    assert sensor.execute(make_context())["value"] == 0.99


def test_execute_complete_handles_each_event() -> None:
    sensor = _sensor(hook_with_run([(0, 0.99)]))
    met = {"status": "met", "message": "ok", "value": 0.99, "step": 0}
    assert sensor.execute_complete(make_context(), met) == met
    with pytest.raises(AirflowFailException, match="never"):
        sensor.execute_complete(make_context(), {"status": "failed", "message": "never"})
    with pytest.raises(AirflowException, match="trigger failed: boom"):
        sensor.execute_complete(make_context(), {"status": "error", "message": "boom"})


def test_run_sensor_poke_and_parse_time_validation() -> None:
    hook = hook_with_run(None, sys__state="running")
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
    hook = hook_with_run([(0, 0.5)])
    sensor = _sensor(hook, mode="reschedule", poke_interval=30, timeout=3600)
    with pytest.raises(AirflowRescheduleException) as info:
        sensor.execute(make_context())
    assert info.value.reschedule_date is not None
    assert hook.closed == 1
    hook.series["SAN-1"]["val/acc"].append((1, 0.9))
    assert sensor.execute(make_context())["value"] == 0.9
