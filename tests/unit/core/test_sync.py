"""core/sync.py: the offline data directory, its owner process and whether it still runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_provider_neptune.core.sync import owner_pid, process_alive, resolve_data_directory


def test_sync_helpers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert owner_pid("run__4f1c__1234__ab12cd34") == 1234
    assert owner_pid("run__4f1c") is None
    assert process_alive(os.getpid())
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert not process_alive(dead.pid)

    (tmp_path / ".neptune" / "offline").mkdir(parents=True)
    assert resolve_data_directory(str(tmp_path)) == tmp_path / ".neptune"
    assert resolve_data_directory(str(tmp_path / ".neptune")) == tmp_path / ".neptune"
    monkeypatch.setenv("NEPTUNE_DATA_DIRECTORY", str(tmp_path / "data"))
    assert resolve_data_directory(None) == tmp_path / "data"
    assert resolve_data_directory("None") == tmp_path / "data"
