"""A plain ``neptune.init_run()`` inside a git checkout sends git info (with a datetime) and must work."""

from __future__ import annotations

import subprocess
from pathlib import Path

import neptune
import pytest

from airflow_provider_neptune.emulator import NeptuneEmulator


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_init_run_in_git_checkout_records_run(
    neptune_emulator: NeptuneEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    for args in (
        ["init", "-q"],
        ["-c", "user.name=t", "-c", "user.email=t@e", "commit", "-q", "--allow-empty", "-m", "x"],
    ):
        subprocess.run(["git", *args], cwd=repo, check=True)
    monkeypatch.chdir(repo)
    for key, value in neptune_emulator.env().items():
        monkeypatch.setenv(key, value)
    run = neptune.init_run(mode=mode, name=f"git-{mode}")
    try:
        run["x"] = 1.5
        run.wait()
        run_id = run["sys/id"].fetch()
    finally:
        run.stop()
    with neptune.init_run(with_id=run_id, mode="read-only") as check:
        assert check["x"].fetch() == 1.5
        assert check["sys/name"].fetch() == f"git-{mode}"
