"""NeptuneConditionTrigger: serialize() round trip, events, and a non-blocking event loop."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from airflow.sdk._shared.module_loading import import_string
from airflow.sdk.serde import deserialize, serialize
from airflow.triggers.base import TriggerEvent

from airflow_provider_neptune.core.run_conditions import STATE_FIELD, MetricCondition, RunCondition
from airflow_provider_neptune.triggers.neptune import NeptuneConditionTrigger
from tests.helpers.run_metrics_fakes import FakeHook

CONDITION = MetricCondition("SAN-1", "val/acc", ">=", 0.9, value_mode="best", window=3)


def _trigger(hook: Any, condition: dict[str, Any] | None = None) -> NeptuneConditionTrigger:
    trigger = NeptuneConditionTrigger(
        condition or CONDITION.to_dict(), neptune_conn_id="my_conn", project="ws/p", poke_interval=0.01
    )
    trigger._make_hook = lambda: hook  # type: ignore[method-assign]
    return trigger


def test_serialize_round_trips_through_airflow_serde() -> None:
    trigger = NeptuneConditionTrigger(CONDITION.to_dict(), "my_conn", "ws/p", poke_interval=5)
    classpath, kwargs = trigger.serialize()
    # What the task runner sends to the triggerer, and how the triggerer rebuilds it.
    rebuilt = import_string(classpath)(**deserialize(serialize(kwargs)))
    assert isinstance(rebuilt, NeptuneConditionTrigger)
    assert rebuilt.serialize() == (classpath, kwargs)
    assert classpath == "airflow_provider_neptune.triggers.neptune.NeptuneConditionTrigger"
    assert kwargs == {
        "condition": CONDITION.to_dict(),
        "neptune_conn_id": "my_conn",
        "project": "ws/p",
        "poke_interval": 5.0,
    }


def test_bad_condition_fails_at_construction() -> None:
    with pytest.raises(ValueError, match="condition"):
        NeptuneConditionTrigger(
            {"kind": "metric", "run_id": "x", "path": "p", "condition": "?", "threshold": 1}
        )


async def _first_event(trigger: NeptuneConditionTrigger) -> TriggerEvent:
    return await asyncio.wait_for(anext(trigger.run()), timeout=10)


def test_waits_then_fires_met_and_closes_hook() -> None:
    hook = FakeHook()
    hook.series["SAN-1"] = {"val/acc": [(0, 0.1)]}
    reads = 0
    original = hook.fetch_series

    def fetch_series(run_id: str, path: str) -> list[tuple[float, float]]:
        nonlocal reads
        reads += 1
        if reads == 3:
            hook.series["SAN-1"]["val/acc"].append((1, 0.92))
        return original(run_id, path)

    hook.fetch_series = fetch_series  # type: ignore[method-assign]
    event = asyncio.run(_first_event(_trigger(hook)))
    assert event.payload["status"] == "met"
    assert event.payload["value"] == 0.92
    assert reads == 3
    assert hook.closed == 1


def test_fires_failed_when_run_stopped() -> None:
    hook = FakeHook()
    hook.series["SAN-1"] = {"val/acc": [(0, 0.1)]}
    hook.fields["SAN-1"] = {STATE_FIELD: "finished"}
    event = asyncio.run(_first_event(_trigger(hook)))
    assert event.payload["status"] == "failed"
    assert "was not met" in event.payload["message"]


def test_hook_error_becomes_error_event() -> None:
    hook = FakeHook()

    def broken(run_id: str, path: str) -> Any:
        raise ConnectionError("server gone")

    hook.fetch_field = broken  # type: ignore[method-assign]
    event = asyncio.run(_first_event(_trigger(hook, RunCondition("SAN-1", "inactive").to_dict())))
    assert event.payload == {"status": "error", "message": "ConnectionError: server gone"}
    assert hook.closed == 1


def test_slow_reads_do_not_block_the_event_loop() -> None:
    """While a read blocks in its thread, other coroutines keep running (here: the one that unblocks it)."""
    release = threading.Event()
    hook = FakeHook()
    hook.series["SAN-1"] = {"val/acc": [(0, 0.95)]}
    original = hook.fetch_series

    def slow(run_id: str, path: str) -> list[tuple[float, float]]:
        if not release.wait(timeout=10):
            raise TimeoutError("the event loop was blocked")
        return original(run_id, path)

    hook.fetch_series = slow  # type: ignore[method-assign]

    async def main() -> TriggerEvent:
        task = asyncio.ensure_future(_first_event(_trigger(hook)))
        for _ in range(3):  # the loop is free: these iterations run while the read is blocked
            await asyncio.sleep(0)
        assert not task.done()
        release.set()
        return await task

    assert asyncio.run(main()).payload["status"] == "met"
