"""Shared helpers of the checkpoint integration tests (no tests here): task context, emulator wiring."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_neptune.hooks.neptune import RUN_DEFAULTS as QUIET


class TaskInstanceStub:
    """The task-instance surface the checkpoint operators use: identifiers and xcom_push."""

    def __init__(self) -> None:
        self.dag_id = "checkpoint_it"
        self.run_id = f"manual__{uuid.uuid4().hex[:12]}"
        self.task_id = "task"
        self.map_index = -1
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


def context(ti: TaskInstanceStub | None = None) -> dict[str, Any]:
    """A minimal task context for calling ``execute`` directly."""
    return {"ti": ti or TaskInstanceStub(), "params": {}}


def use_emulator(monkeypatch: pytest.MonkeyPatch, emulator: Any, mode: str) -> None:
    """Point ``neptune_default`` at the emulator in client mode ``mode`` and export its variables."""
    for key, value in emulator.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AIRFLOW_CONN_NEPTUNE_DEFAULT", emulator.airflow_conn_json(mode=mode))


def plain_run(emulator: Any, **kwargs: Any) -> Any:
    """A run opened with the plain neptune client (no provider code), without the client's extras."""
    import neptune

    options = dict(kwargs) if kwargs.get("mode") == "read-only" else {**QUIET, **kwargs}
    return neptune.init_run(project=emulator.project, api_token=emulator.api_token, **options)


@pytest.fixture(autouse=True)
def close_pooled_runs(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Stop the run handles a test left in the process pool while its environment is still set."""
    yield
    from airflow_provider_neptune.hooks.run_pool import POOL

    POOL.close_all(seconds=30)
