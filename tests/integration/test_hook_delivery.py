"""Verified delivery against the emulator: nothing is lost silently, nothing arrives twice."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_neptune.exceptions import NeptuneDeliveryError
from airflow_provider_neptune.hooks.run_pool import POOL

pytestmark = pytest.mark.integration
MODES = ["sync", "async"]


def _cid() -> str:
    return "d-" + uuid.uuid4().hex[:20]


@pytest.mark.parametrize("mode", MODES)
def test_operation_error_fails_the_call_with_a_clear_message(neptune_hook_factory: Any, mode: str) -> None:
    hook = neptune_hook_factory(mode=mode)
    run_id = hook.create_run(custom_run_id=_cid())
    hook.log_metrics(run_id, {"train/loss": [0.5, 0.4, 0.3]})
    # Without resume the same steps go out again; the server rejects non-increasing steps.
    with pytest.raises(NeptuneDeliveryError) as info:
        hook.log_metrics(run_id, {"train/loss": [0.9, 0.8, 0.7]}, resume=False)
    message = str(info.value)
    assert f"run {run_id}" in message
    assert "rejected" in message
    assert "train/loss" in message
    assert info.value.errors
    # What the server holds is untouched: the first three points, once.
    assert hook.fetch_series(run_id, "train/loss") == [(0.0, 0.5), (1.0, 0.4), (2.0, 0.3)]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
@pytest.mark.parametrize("still_exiting", [False, True], ids=["thread gone", "thread still exiting"])
def test_killed_async_thread_fails_the_call_and_names_the_queue_on_disk(
    neptune_hook_factory: Any, neptune_emulator: Any, monkeypatch: pytest.MonkeyPatch, still_exiting: bool
) -> None:
    from airflow_provider_neptune.hooks import delivery

    hook = neptune_hook_factory(mode="async")
    run_id = hook.create_run(custom_run_id=_cid())
    if still_exiting:
        # The dying thread marks itself stopped a moment before it ends; a check in that moment still
        # sees it alive. Hold it in that moment: the handle must be dropped all the same.
        with hook.get_run(run_id) as run:
            monkeypatch.setattr(delivery.consumer_of(run), "is_alive", lambda: True)
    # One HTTP 400 on executeOperations kills the client's async thread (it logs, nothing raises).
    neptune_emulator.set_faults(fail_next={"route": "executeOperations", "status": 400, "count": 1})
    with pytest.raises(NeptuneDeliveryError) as info:
        hook.log_metrics(run_id, {"eval/acc": [0.1, 0.2, 0.3, 0.4]}, delivery_timeout=20)
    error = info.value
    message = str(error)
    assert "async thread is dead" in message
    assert "eval/acc" in message  # what was lost
    assert error.queue_path is not None
    assert error.queue_path in message
    assert "neptune sync --path" in message
    queue = Path(error.queue_path)
    assert queue.is_dir()
    assert any(p.name.startswith("data-") and p.stat().st_size > 0 for p in queue.iterdir())
    assert error.missing["eval/acc"][1] == 3.0
    assert hook.fetch_series(run_id, "eval/acc") == []  # nothing reached the server
    # The dead handle is dropped: a retry opens a fresh one and delivers everything once.
    retried = hook.log_metrics(run_id, {"eval/acc": [0.1, 0.2, 0.3, 0.4]})
    assert retried["points_sent"] == 4
    assert hook.fetch_series(run_id, "eval/acc") == [(0.0, 0.1), (1.0, 0.2), (2.0, 0.3), (3.0, 0.4)]


def test_rejected_request_in_sync_mode_fails_the_call(
    neptune_hook_factory: Any, neptune_emulator: Any
) -> None:
    hook = neptune_hook_factory(mode="sync")
    run_id = hook.create_run(custom_run_id=_cid())
    neptune_emulator.set_faults(fail_next={"route": "executeOperations", "status": 400, "count": 1})
    with pytest.raises(NeptuneDeliveryError) as info:
        hook.log_metrics(run_id, {"eval/acc": [0.1, 0.2]})
    assert "rejected" in str(info.value)
    assert "eval/acc" in str(info.value)


@pytest.mark.parametrize("mode", MODES)
def test_every_point_arrives_exactly_once_with_ten_percent_faults(
    neptune_hook_factory: Any, neptune_emulator: Any, mode: str
) -> None:
    hook = neptune_hook_factory(mode=mode, retry_count=8)
    run_id = hook.create_run(custom_run_id=_cid())
    neptune_emulator.reset_stats()
    neptune_emulator.set_faults(fault_rate=0.1)
    expected: dict[str, list[tuple[float, float]]] = {"a": [], "b": [], "c": []}
    for chunk in range(6):
        steps = list(range(chunk * 10, chunk * 10 + 10))
        batch = {name: [float(s) * (i + 1) for s in steps] for i, name in enumerate(expected)}
        for name, values in batch.items():
            expected[name].extend((float(s), v) for s, v in zip(steps, values, strict=True))
        if chunk % 2:
            POOL.close_all(seconds=30)  # a fresh handle now and then, like a retried task
        summary = hook.log_metrics(run_id, batch, steps=steps)
        assert summary["points_sent"] == 30
    stats = neptune_emulator.stats()
    neptune_emulator.set_faults(fault_rate=0.0)
    assert stats["faults_injected_total"] > 0  # the faults really happened
    for name, points in expected.items():
        assert hook.fetch_series(run_id, name) == points
    assert hook.counters["retries"] > 0


def test_throttling_without_a_budget_is_retried_counted_and_complete(
    neptune_hook_factory: Any, neptune_emulator: Any
) -> None:
    # No client-side budget: the server's 429s are waited out (whole Retry-After) and counted.
    hook = neptune_hook_factory(mode="sync", rate_limit_per_second=0)
    run_id = hook.create_run(custom_run_id=_cid())
    neptune_emulator.set_faults(rate_limit=4)
    metrics = {f"s{i}": [float(v) for v in range(5)] for i in range(4)}
    summary = hook.log_metrics(run_id, metrics)
    neptune_emulator.set_faults(rate_limit=None)
    assert summary["throttled"] > 0
    assert summary["retries"] >= summary["throttled"]
    assert summary["points_sent"] == 20
    for name in metrics:
        assert hook.fetch_series(run_id, name) == [(float(v), float(v)) for v in range(5)]


def test_bounded_stop_of_a_stuck_queue_raises_and_the_thread_ends_cleanly(
    neptune_hook_factory: Any, neptune_emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading
    import time

    from airflow_provider_neptune.hooks import delivery

    crashes: list[str] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: crashes.append(repr(args.exc_value)))
    hook = neptune_hook_factory(mode="async", retry_count=1)
    run_id = hook.create_run(custom_run_id=_cid())
    with hook.get_run(run_id) as run:
        consumer = delivery.consumer_of(run)
    neptune_emulator.set_faults(fault_rate=1.0)  # the server fails every request
    with pytest.raises(NeptuneDeliveryError, match="still unsent"):
        hook.log_metrics(run_id, {"stuck": [1.0, 2.0]}, resume=False, delivery_timeout=2)
    with pytest.raises(NeptuneDeliveryError, match="unsent") as info:
        hook.stop_run(run_id, timeout=3)
    assert info.value.queue_path
    neptune_emulator.set_faults(fault_rate=0.0)
    deadline = time.monotonic() + 90
    while consumer.is_alive():  # the client's own retry finishes its request, then the thread ends
        assert time.monotonic() < deadline, "the async thread did not end"
        time.sleep(0.1)
    assert crashes == []  # no write to a closed queue file
