"""pytest plugin (entry point `pytest11`): fixtures that run the Neptune emulator.

- `neptune_emulator_session`: one emulator subprocess for the whole test session.
- `neptune_emulator`: that server for one test; afterwards rate limit, faults and pending
  fail_next rules are cleared so no test leaks faults into the next.
- `neptune_emulator_env`: `neptune_emulator` plus NEPTUNE_* variables and the
  AIRFLOW_CONN_NEPTUNE_DEFAULT connection pointing at it, for the test only.
- `neptune_emulator_factory`: start extra emulators with NeptuneEmulator keyword arguments; the
  ones a test starts are stopped after it.

Imports nothing heavy (no airflow, no neptune) so loading the plugin costs nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from airflow_provider_neptune.emulator.process import NeptuneEmulator

# Runs opened by tests should read as running between the client's 10 s pings, and as idle soon
# after a test stops them.
SESSION_STATE_TIMEOUT = 15.0


@pytest.fixture(scope="session")
def neptune_emulator_session() -> Iterator[NeptuneEmulator]:
    """The session-wide emulator (default project airflow/sandbox)."""
    with NeptuneEmulator(state_timeout=SESSION_STATE_TIMEOUT) as emulator:
        yield emulator


@pytest.fixture
def neptune_emulator(neptune_emulator_session: NeptuneEmulator) -> Iterator[NeptuneEmulator]:
    """The shared emulator; rate limit, faults and fail_next rules are cleared after the test."""
    yield neptune_emulator_session
    if neptune_emulator_session.running:
        neptune_emulator_session.clear_faults()


@pytest.fixture
def neptune_emulator_env(
    neptune_emulator: NeptuneEmulator, monkeypatch: pytest.MonkeyPatch
) -> NeptuneEmulator:
    """The shared emulator with NEPTUNE_API_TOKEN, NEPTUNE_PROJECT, OAUTHLIB_INSECURE_TRANSPORT and
    AIRFLOW_CONN_NEPTUNE_DEFAULT set for the test (plain `neptune.init_run()` and the default
    Airflow connection both reach it)."""
    for key, value in neptune_emulator.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AIRFLOW_CONN_NEPTUNE_DEFAULT", neptune_emulator.airflow_conn_json())
    return neptune_emulator


@pytest.fixture
def neptune_emulator_factory() -> Iterator[Callable[..., NeptuneEmulator]]:
    """Start dedicated emulators: `factory(rate_limit=5, data_dir=tmp_path)`; stopped after the test."""
    started: list[NeptuneEmulator] = []

    def start(**kwargs: Any) -> NeptuneEmulator:
        emulator = NeptuneEmulator(**kwargs).start()
        started.append(emulator)
        return emulator

    yield start
    for emulator in reversed(started):
        emulator.stop()
