"""Fidelity fixtures: the real neptune client pointed at the session emulator from a scratch folder."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_neptune.emulator import NeptuneEmulator
from airflow_provider_neptune.hooks.neptune import RUN_DEFAULTS

# Write modes of the client every write test runs in.
MODES = ["sync", "async"]


@pytest.fixture
def fidelity_emulator(
    neptune_emulator: NeptuneEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> NeptuneEmulator:
    """The session emulator with NEPTUNE_* set for the plain client; async queues go to tmp_path."""
    for key, value in neptune_emulator.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    return neptune_emulator


@pytest.fixture
def own_project(fidelity_emulator: NeptuneEmulator) -> str:
    """A project no other test writes to (tables stay predictable when tests share the emulator)."""
    return fidelity_emulator.add_project(f"fidelity/p{uuid.uuid4().hex[:10]}")


@pytest.fixture
def run_factory(neptune_emulator_env: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    """Open runs on the emulator from inside tmp_path (the async queue and the client's file-hash
    cache under HOME live there too); every run opened is stopped afterwards."""
    import neptune

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    opened: list[Any] = []

    def open_run(mode: str) -> Any:
        run = neptune.init_run(
            project=neptune_emulator_env.project,
            api_token=neptune_emulator_env.api_token,
            mode=mode,
            **RUN_DEFAULTS,
        )
        opened.append(run)
        return run

    yield open_run
    for run in opened:
        run.stop()
