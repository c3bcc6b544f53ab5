"""Metric logging never reports a point as delivered unless the server holds its step with its value.

Real neptune client against the emulator, sync and async: a resume that skips only points the server
holds with the same value, a conflict that fails naming the series and steps, the read-back after
sending, its request cost, and the step/timestamp bounds enforced before anything is sent.
"""

from __future__ import annotations

import math
import uuid
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_neptune.exceptions import NeptuneDeliveryError, NeptuneStepConflictError
from airflow_provider_neptune.hooks import delivery
from airflow_provider_neptune.hooks.run_pool import POOL
from airflow_provider_neptune.hooks.series import READ_PAGE
from tests.helpers.run_metrics_support import context, series_points, use_emulator

pytestmark = pytest.mark.integration
MODES = ["sync", "async"]


def _cid() -> str:
    return "i-" + uuid.uuid4().hex[:20]


@pytest.mark.parametrize("mode", MODES)
def test_points_below_the_last_step_that_the_server_lacks_fail_and_nothing_is_sent(
    neptune_hook_factory: Any, neptune_emulator: Any, mode: str
) -> None:
    hook = neptune_hook_factory(mode=mode)
    run_id = hook.create_run(custom_run_id=_cid())
    hook.log_metrics(run_id, {"train/loss": [0.25]}, steps=[100])
    with pytest.raises(NeptuneStepConflictError) as info:
        hook.log_metrics(
            run_id,
            {"train/loss": [float(i) for i in range(10)], "eval/acc": [0.5]},
            steps={"train/loss": list(range(10)), "eval/acc": [0]},
        )
    message = str(info.value)
    assert "'train/loss'" in message
    assert "up to step 100" in message
    assert "step 0 (server has none)" in message
    assert "step 4 (server has none)" in message
    assert "10 point(s)" in message
    assert "nothing was sent" in message
    assert info.value.missing == {"train/loss": (100.0, 9.0)}
    assert series_points(neptune_emulator, run_id, "train/loss") == [(100.0, 0.25)]
    assert series_points(neptune_emulator, run_id, "eval/acc") == []  # nothing of the call was sent


@pytest.mark.parametrize("mode", MODES)
def test_a_second_task_with_other_values_on_overlapping_steps_fails_naming_the_first_steps(
    neptune_hook_factory: Any, neptune_emulator: Any, mode: str
) -> None:
    hook = neptune_hook_factory(mode=mode)
    run_id = hook.create_run(custom_run_id=_cid())
    first = {"m": [float(s) for s in range(20)]}
    hook.log_metrics(run_id, first, steps=list(range(20)))
    POOL.close_all(seconds=10)  # the second task is another process: a fresh handle
    second = {"m": [100.0 + s for s in range(10, 30)]}
    with pytest.raises(NeptuneStepConflictError) as info:
        hook.log_metrics(run_id, second, steps=list(range(10, 30)))
    message = str(info.value)
    assert "series 'm' holds points up to step 19" in message
    assert "step 10 (server has 10.0 instead of 110.0)" in message
    assert "10 point(s)" in message  # steps 10..19; 20..29 were never compared, nothing was sent
    assert series_points(neptune_emulator, run_id, "m") == [(float(s), float(s)) for s in range(20)]

    # The same values on the overlap (a retried task): those count as delivered, the rest goes out.
    again = hook.log_metrics(run_id, {"m": [float(s) for s in range(10, 30)]}, steps=list(range(10, 30)))
    assert (again["points_skipped"], again["points_sent"]) == (10, 10)
    assert again["last_steps"] == {"m": 29.0}
    assert series_points(neptune_emulator, run_id, "m") == [(float(s), float(s)) for s in range(30)]


@pytest.mark.parametrize("mode", MODES)
def test_floats_compare_exactly_after_the_round_trip(
    neptune_hook_factory: Any, neptune_emulator: Any, mode: str
) -> None:
    hook = neptune_hook_factory(mode=mode)
    run_id = hook.create_run(custom_run_id=_cid())
    values = [0.1 + 0.2, 1 / 3, math.pi * 1e-300, -2.5e300, 5e-324, -0.0, 123456789.123456789]
    hook.log_metrics(run_id, {"f": values})
    POOL.close_all(seconds=10)
    again = hook.log_metrics(run_id, {"f": values})
    assert (again["points_skipped"], again["points_sent"]) == (len(values), 0)
    nudged = list(values)
    nudged[1] = math.nextafter(nudged[1], 1.0)  # one ulp away is another value
    with pytest.raises(NeptuneStepConflictError, match=r"step 1 \(server has 0.3333333333333333 instead of"):
        hook.log_metrics(run_id, {"f": nudged})


def _other_writer(neptune_emulator: Any, run_id: str) -> Any:
    """Another process's handle on the run (plain client, sync): a concurrent writer."""
    import neptune

    return neptune.init_run(
        with_id=run_id,
        project=neptune_emulator.project,
        api_token=neptune_emulator.api_token,
        mode="sync",
        capture_hardware_metrics=False,
        capture_stdout=False,
        capture_stderr=False,
        git_ref=False,
        source_files=[],
    )


def test_the_read_back_after_sending_compares_values_not_only_the_last_step(
    neptune_hook_factory: Any, neptune_emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = neptune_hook_factory(mode="async")
    run_id = hook.create_run(custom_run_id=_cid())
    hook.log_metrics(run_id, {"m": [0.0]}, steps=[0])
    # What the read-back has to catch on its own: the error report of the server is not seen.
    monkeypatch.setattr(delivery.DeliveryTracker, "take_errors", lambda self: [])

    def other_task_writes_first(done: int, total: int) -> None:
        if done == 0:  # after the resume check, before this call sends: another writer takes steps 1..5
            with _other_writer(neptune_emulator, run_id) as other:
                other["m"].extend([9.0] * 5, steps=[1, 2, 3, 4, 5])

    with pytest.raises(NeptuneDeliveryError) as info:
        hook.log_metrics(
            run_id, {"m": [1.0, 2.0, 3.0, 4.0, 5.0]}, steps=[1, 2, 3, 4, 5], progress=other_task_writes_first
        )
    message = str(info.value)
    assert "m: 5 point(s) not on the server with the value sent" in message
    assert "step 1 (server has 9.0 instead of 1.0)" in message
    assert info.value.missing == {"m": (5.0, 5.0)}  # the last step alone looked fine


def test_read_requests_grow_with_the_points_sent_and_the_overlap_read(neptune_hook_factory: Any) -> None:
    hook = neptune_hook_factory(mode="async")
    run_id = hook.create_run(custom_run_id=_cid())
    size = READ_PAGE * 5 // 2
    values = [float(i % 97) for i in range(size)]
    first = hook.log_metrics(run_id, {"big": values, "small": values[:3]})
    # Resume check: one listing of all series (the handle was opened before this call). Read-back:
    # 3 pages of "big", 1 of "small".
    assert first["read_requests"] == 1 + 3 + 1
    POOL.close_all(seconds=10)
    retried = hook.log_metrics(run_id, {"big": values})
    # The handle opens in this call: the client's own listing holds the last steps (no request).
    # Then the overlapping points (3 pages); nothing sent, nothing to read back.
    assert (retried["points_skipped"], retried["points_sent"]) == (size, 0)
    assert retried["read_requests"] == 0 + 3
    tail = hook.log_metrics(
        run_id, {"big": [*values[size - 100 :], 1.0]}, steps=list(range(size - 100, size + 1))
    )
    # Listing (a pooled handle); the overlap (the last 100 steps) lies in the last page: the first page
    # (which gives the count) shows it is further on, the last page holds it. Then the one new point.
    assert (tail["points_skipped"], tail["points_sent"]) == (100, 1)
    assert tail["read_requests"] == 1 + 2 + 1


@pytest.mark.parametrize(
    ("field", "bad", "expected"),
    [
        ("timestamps", 1e20, "timestamp at index 2 is out of range: 1e+20"),
        ("timestamps", -1.0, "timestamp at index 2 is out of range: -1.0"),
        ("steps", 1e308, "step at index 2 is out of range: 1e+308"),
        ("steps", float(2**54), "step at index 2 is out of range: 1.8014398509481984e+16"),
    ],
)
def test_the_operator_rejects_out_of_range_timestamps_and_steps_before_sending(
    neptune_emulator: Any, monkeypatch: pytest.MonkeyPatch, field: str, bad: float, expected: str
) -> None:
    from airflow_provider_neptune.operators import NeptuneCreateRunOperator, NeptuneLogMetricsOperator

    use_emulator(monkeypatch, neptune_emulator, "sync")
    run_id = NeptuneCreateRunOperator(task_id="create_run", name="bounds").execute(context())
    columns: dict[str, list[float]] = {"steps": [0.0, 1.0, 2.0], "timestamps": [1.7e9, 1.7e9 + 1, 1.7e9 + 2]}
    columns[field][2] = bad  # the last point, so the steps still increase
    operator = NeptuneLogMetricsOperator(
        task_id="log", run_id=run_id, metrics={"train/loss": {"values": [0.3, 0.2, 0.1], **columns}}
    )
    with pytest.raises(AirflowFailException) as info:
        operator.execute(context())
    assert "series 'train/loss'" in str(info.value)
    assert expected in str(info.value)
    assert series_points(neptune_emulator, run_id, "train/loss") == []


def test_an_overlap_in_the_middle_of_a_long_series_is_found_by_a_search(neptune_hook_factory: Any) -> None:
    hook = neptune_hook_factory(mode="async")
    run_id = hook.create_run(custom_run_id=_cid())
    values = [float(i) / 7 for i in range(5000)]
    hook.log_metrics(run_id, {"long": values})
    POOL.close_all(seconds=10)
    # Steps 2500..2509 lie in neither the first nor the last page of the 5,000 points.
    same = hook.log_metrics(run_id, {"long": values[2500:2510]}, steps=list(range(2500, 2510)))
    assert (same["points_skipped"], same["points_sent"]) == (10, 0)
    # Listing + first page + last page + a binary search over the 5 pages (at most 3 more reads).
    assert same["read_requests"] <= 1 + 2 + 3
    changed = values[2500:2510]
    changed[7] = -1.0
    with pytest.raises(NeptuneStepConflictError) as info:
        hook.log_metrics(run_id, {"long": changed}, steps=list(range(2500, 2510)))
    assert (
        f"1 point(s) not on the server with the value sent (first: step 2507 (server has {values[2507]!r}"
        in (str(info.value))
    )


@pytest.mark.parametrize("parallel_from", [0, 10**9])
def test_the_read_back_uses_threads_only_for_large_sends_and_catches_a_wrong_value_either_way(
    neptune_hook_factory: Any, neptune_emulator: Any, monkeypatch: pytest.MonkeyPatch, parallel_from: int
) -> None:
    import threading

    from airflow_provider_neptune.hooks import metrics, series

    monkeypatch.setattr(metrics, "PARALLEL_READ_POINTS", parallel_from)
    readers: set[int] = set()
    fetch = series.SeriesReader._fetch

    def recorded(self: Any, offset: int, limit: int) -> Any:
        readers.add(threading.get_ident())
        return fetch(self, offset, limit)

    monkeypatch.setattr(series.SeriesReader, "_fetch", recorded)
    hook = neptune_hook_factory(mode="async")
    run_id = hook.create_run(custom_run_id=_cid())
    paths = [f"s{i}" for i in range(4)]
    hook.log_metrics(run_id, {path: [0.0] for path in paths}, steps=[0])
    readers.clear()
    monkeypatch.setattr(delivery.DeliveryTracker, "take_errors", lambda self: [])

    def other_task_writes_first(done: int, total: int) -> None:
        if done == 0:  # another writer takes step 1 of one series with another value
            with _other_writer(neptune_emulator, run_id) as other:
                other["s2"].extend([9.0], steps=[1])

    with pytest.raises(NeptuneDeliveryError) as info:
        hook.log_metrics(run_id, {path: [1.0] for path in paths}, steps=[1], progress=other_task_writes_first)
    assert "s2: 1 point(s) not on the server with the value sent" in str(info.value)
    assert set(info.value.missing) == {"s2"}
    main = threading.get_ident()
    if parallel_from:
        assert readers == {main}
    else:
        assert main not in readers
        assert len(readers) >= 1
