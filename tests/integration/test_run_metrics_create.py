"""Create / stop operators against the emulator with the real neptune client (sync and async)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_neptune.core.run_conditions import STATE_FIELD
from airflow_provider_neptune.exceptions import NeptuneDeliveryError
from airflow_provider_neptune.hooks.neptune import NeptuneHook
from airflow_provider_neptune.operators import NeptuneCreateRunOperator, NeptuneStopRunOperator
from tests.helpers.run_metrics_support import (
    TaskInstanceStub,
    context,
    read_only_run,
    runs_with_custom_id,
    use_emulator,
    wait_until_idle,
)

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_retried_create_makes_no_second_run(
    neptune_emulator: Any, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    use_emulator(monkeypatch, neptune_emulator, mode)
    ti = TaskInstanceStub(dag_id=f"create_{mode}")
    op = NeptuneCreateRunOperator(task_id="create_run", name="train", tags=["it", mode], params={"lr": 0.01})
    first = op.execute(context(ti, params={"lr": 0.01, "arch": {"depth": 4}}))
    NeptuneHook().close()  # a retry is a new process: nothing pooled survives
    second = op.execute(context(ti, params={"lr": 0.01, "arch": {"depth": 4}}))
    assert first == second
    custom_run_id = ti.xcom["custom_run_id"]
    assert runs_with_custom_id(neptune_emulator, custom_run_id) == [first]
    with read_only_run(neptune_emulator, first) as run:
        assert run["sys/name"].fetch() == "train"
        assert run["sys/tags"].fetch() == {"it", mode}
        assert run["parameters/lr"].fetch() == 0.01
        assert run["parameters/arch/depth"].fetch() == 4
        assert run["airflow/dag_id"].fetch() == f"create_{mode}"
        assert run["airflow/dag_run_id"].fetch() == ti.run_id
    assert ti.xcom["neptune_run_url"].endswith(f"/e/{first}")


def test_same_run_id_in_two_dags_never_shares_a_run(
    neptune_emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_emulator(monkeypatch, neptune_emulator, "sync")
    shared_run_id = "scheduled__2026-01-01T00:00:00+00:00"
    a, b = TaskInstanceStub("dag_a", shared_run_id), TaskInstanceStub("dag_b", shared_run_id)
    run_a = NeptuneCreateRunOperator(task_id="create_run").execute(context(a))
    run_b = NeptuneCreateRunOperator(task_id="create_run").execute(context(b))
    assert run_a != run_b
    assert runs_with_custom_id(neptune_emulator, a.xcom["custom_run_id"]) == [run_a]
    assert runs_with_custom_id(neptune_emulator, b.xcom["custom_run_id"]) == [run_b]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_stop_writes_final_fields_and_leaves_the_run_inactive(
    neptune_emulator: Any, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    use_emulator(monkeypatch, neptune_emulator, mode)
    sys_id = NeptuneCreateRunOperator(task_id="create_run").execute(context())
    NeptuneHook().close()
    stop = NeptuneStopRunOperator(
        task_id="stop", run_id=sys_id, timeout=30, final_fields={"eval": {"f1": 0.75}}
    )
    assert stop.execute(context()) == sys_id
    with read_only_run(neptune_emulator, sys_id) as run:
        assert run[STATE_FIELD].fetch() == "finished"
        assert run["eval/f1"].fetch() == 0.75
    assert wait_until_idle(neptune_emulator, sys_id) == "idle"


def test_stop_fails_when_data_would_be_left_unsent(
    neptune_emulator: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    use_emulator(monkeypatch, neptune_emulator, "async", retry_count=1, retry_backoff=0.1)
    monkeypatch.setenv("NEPTUNE_DATA_DIRECTORY", str(tmp_path / "neptune-data"))
    sys_id = NeptuneCreateRunOperator(task_id="create_run").execute(context())
    with NeptuneHook().get_run(run_id=sys_id):  # a handle this "task process" keeps open
        pass
    neptune_emulator.set_faults(fault_rate=1.0)  # every request fails from now on
    stop = NeptuneStopRunOperator(
        task_id="stop", run_id=sys_id, timeout=5, final_fields={"eval": {"f1": 0.5}}
    )
    started = time.monotonic()
    with pytest.raises(NeptuneDeliveryError) as info:
        stop.execute(context())
    elapsed = time.monotonic() - started
    neptune_emulator.set_faults(fault_rate=0.0)
    assert sys_id in str(info.value)
    assert elapsed < 60, f"the stop was not bounded ({elapsed:.0f} s)"
    with read_only_run(neptune_emulator, sys_id) as run:
        assert not run.exists("eval/f1")
