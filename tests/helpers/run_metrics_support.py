"""Helpers for the run/metrics integration tests: a task-like context and plain-client read-back."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest


class TaskInstanceStub:
    """The few task-instance attributes the operators use, with an XCom dict."""

    def __init__(self, dag_id: str = "it_dag", run_id: str | None = None, map_index: int = -1) -> None:
        self.dag_id = dag_id
        self.run_id = run_id or f"manual__{uuid.uuid4().hex[:12]}"
        self.task_id = "task"
        self.map_index = map_index
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


def context(ti: TaskInstanceStub | None = None, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """A minimal task context for calling ``execute`` outside a scheduler."""
    return {"ti": ti or TaskInstanceStub(), "params": params or {}}


def use_emulator(monkeypatch: pytest.MonkeyPatch, emulator: Any, mode: str = "sync", **extra: Any) -> None:
    """Point ``neptune_default`` at the emulator (client mode ``mode``) and export its env vars."""
    for key, value in emulator.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AIRFLOW_CONN_NEPTUNE_DEFAULT", emulator.airflow_conn_json(mode=mode, **extra))


@contextmanager
def read_only_run(emulator: Any, sys_id: str) -> Iterator[Any]:
    """The run opened with the plain neptune client in read-only mode (no provider code involved)."""
    import neptune

    run = neptune.init_run(
        with_id=sys_id, mode="read-only", project=emulator.project, api_token=emulator.api_token
    )
    try:
        yield run
    finally:
        run.stop()


def series_points(emulator: Any, sys_id: str, path: str) -> list[tuple[float, float]]:
    """(step, value) points of a float series, read back with the plain client; [] when absent."""
    with read_only_run(emulator, sys_id) as run:
        if not run.exists(path):
            return []
        frame = run[path].fetch_values(include_timestamp=False, progress_bar=False)
    return [(float(step), float(value)) for step, value in zip(frame["step"], frame["value"], strict=True)]


def runs_with_custom_id(emulator: Any, custom_run_id: str) -> list[str]:
    """sys/ids of every run in the project with this custom run id (plain client)."""
    import neptune

    with neptune.init_project(
        project=emulator.project, api_token=emulator.api_token, mode="read-only"
    ) as project:
        table = project.fetch_runs_table(
            columns=["sys/id", "sys/custom_run_id"], progress_bar=False
        ).to_pandas()
    if table.empty:
        return []
    return sorted(table[table["sys/custom_run_id"] == custom_run_id]["sys/id"].tolist())


def wait_until_idle(emulator: Any, sys_id: str, timeout: float = 30.0) -> str:
    """Poll the run's state (plain client) until it reads idle; return the last state seen.

    A client's last ping can land just after its stop closed the run, which keeps the run "running"
    for the server's state timeout; a stopped run still turns idle within that bound.
    """
    deadline = time.monotonic() + timeout
    while True:
        with read_only_run(emulator, sys_id) as run:
            state = str(run["sys"].fetch()["state"])  # sys/state itself has no fetch() in neptune 1.x
        if state == "idle" or time.monotonic() > deadline:
            return state
        time.sleep(0.5)
