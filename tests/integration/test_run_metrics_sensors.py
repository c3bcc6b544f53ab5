"""Metric and run sensors, and their trigger, against the emulator: met, not yet, never, missing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_neptune.hooks.neptune import NeptuneHook
from airflow_provider_neptune.operators import (
    NeptuneCreateRunOperator,
    NeptuneLogMetricsOperator,
    NeptuneStopRunOperator,
)
from airflow_provider_neptune.sensors import NeptuneMetricSensor, NeptuneRunSensor
from airflow_provider_neptune.triggers.neptune import NeptuneConditionTrigger
from tests.helpers.run_metrics_support import context, use_emulator

pytestmark = pytest.mark.integration


def _sensor(run_id: str, path: str = "val/acc", **kwargs: Any) -> NeptuneMetricSensor:
    params: dict[str, Any] = {"condition": ">=", "threshold": 0.9, "poke_interval": 0.1, "timeout": 30}
    return NeptuneMetricSensor(task_id="wait", run_id=run_id, path=path, **{**params, **kwargs})


def _log(run_id: str, values: list[float], steps: list[int]) -> None:
    NeptuneLogMetricsOperator(task_id="log", run_id=run_id, metrics={"val/acc": values}, steps=steps).execute(
        context()
    )


def _stop(run_id: str) -> None:
    NeptuneStopRunOperator(task_id="stop", run_id=run_id, timeout=30).execute(context())


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_metric_sensor_not_yet_met_then_met(
    neptune_emulator: Any, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    use_emulator(monkeypatch, neptune_emulator, mode)
    run_id = NeptuneCreateRunOperator(task_id="create_run").execute(context())
    _log(run_id, [0.5, 0.7], [0, 1])
    sensor = _sensor(run_id)
    assert sensor.poke(context()) is False
    best = _sensor(run_id, value_mode="best", window=2, condition=">", threshold=0.6)
    assert best.poke(context())  # 0.7 among the last 2 points
    _log(run_id, [0.95], [2])
    result = sensor.execute(context())
    assert (result["status"], result["value"], result["step"]) == ("met", 0.95, 2.0)


def test_metric_sensor_never_met_fails_fast_once_stopped(
    neptune_emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_emulator(monkeypatch, neptune_emulator, "sync")
    run_id = NeptuneCreateRunOperator(task_id="create_run").execute(context())
    _log(run_id, [0.5, 0.6], [0, 1])
    _stop(run_id)
    with pytest.raises(AirflowFailException, match=r"stopped .*was not met \(observed 0.6\)"):
        _sensor(run_id, timeout=3600).execute(context())


def test_missing_series_waits_then_fails_when_the_run_ends(
    neptune_emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_emulator(monkeypatch, neptune_emulator, "sync")
    run_id = NeptuneCreateRunOperator(task_id="create_run").execute(context())
    sensor = _sensor(run_id, path="val/never_logged")
    assert sensor.poke(context()) is False
    _stop(run_id)
    with pytest.raises(AirflowFailException, match="val/never_logged has no value"):
        sensor.poke(context())


def test_field_mode_and_inactive_mode(neptune_emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    use_emulator(monkeypatch, neptune_emulator, "sync")
    run_id = NeptuneCreateRunOperator(task_id="create_run").execute(context())
    NeptuneStopRunOperator(
        task_id="stop", run_id=run_id, state=None, final_fields={"eval": {"f1": 0.93}}
    ).execute(context())
    assert _sensor(run_id, path="eval/f1", value_mode="field").poke(context())
    # Nothing holds the run open any more: with finished_when="inactive" a missing series is final
    # (execute() pokes until the server reports the run idle, within the sensor timeout).
    with pytest.raises(AirflowFailException, match="inactive"):
        _sensor(run_id, path="val/acc", finished_when="inactive", poke_interval=0.5).execute(context())


def test_run_sensor_exists_inactive_field(neptune_emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    use_emulator(monkeypatch, neptune_emulator, "async")
    assert NeptuneRunSensor(task_id="e", run_id="SAN-987654", poke_interval=0).poke(context()) is False
    hook = NeptuneHook()
    run_id = hook.create_run(custom_run_id="run-sensor-it")  # stays open (pooled) in this process
    assert NeptuneRunSensor(task_id="e", run_id=run_id).poke(context())
    inactive = NeptuneRunSensor(
        task_id="i", run_id=run_id, wait_for="inactive", poke_interval=0.5, timeout=30
    )
    assert inactive.poke(context()) is False
    field = NeptuneRunSensor(task_id="f", run_id=run_id, wait_for="field", field="eval/done")
    assert field.poke(context()) is False
    with hook.get_run(run_id=run_id) as run:
        run["eval/done"] = True
    hook.stop_run(run_id, timeout=30)
    assert inactive.execute(context())["status"] == "met"
    assert field.poke(context())


def test_trigger_polls_the_emulator_until_met(neptune_emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    use_emulator(monkeypatch, neptune_emulator, "sync")
    run_id = NeptuneCreateRunOperator(task_id="create_run").execute(context())
    _log(run_id, [0.5], [0])
    trigger = NeptuneConditionTrigger(_sensor(run_id).build_condition().to_dict(), poke_interval=0.1)
    _classpath, kwargs = trigger.serialize()
    rebuilt = NeptuneConditionTrigger(**kwargs)

    async def scenario() -> dict[str, Any]:
        events = rebuilt.run()
        pending = asyncio.ensure_future(anext(events))
        await asyncio.sleep(0.5)
        assert not pending.done(), "the trigger fired before the threshold was reached"
        await asyncio.to_thread(_log, run_id, [0.97], [1])
        event = await asyncio.wait_for(pending, timeout=30)
        await events.aclose()
        return dict(event.payload)

    payload = asyncio.run(scenario())
    assert (payload["status"], payload["value"], payload["step"]) == ("met", 0.97, 1.0)
