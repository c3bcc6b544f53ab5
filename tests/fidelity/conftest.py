"""Fidelity fixtures: the real neptune client pointed at the session emulator from a scratch folder."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from airflow_provider_neptune.emulator import NeptuneEmulator

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
