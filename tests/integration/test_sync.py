"""NeptuneSyncOperator against the emulator: offline runs with stashed checkpoints, unsent async queues."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_neptune.hooks.delivery import real_processor
from airflow_provider_neptune.hooks.neptune import NeptuneHook
from airflow_provider_neptune.operators.artifacts import NeptuneUploadArtifactOperator
from airflow_provider_neptune.operators.sync import LOCK_NAME, NeptuneSyncOperator
from tests.helpers.artifacts_support import close_pooled_runs, context, plain_run, use_emulator  # noqa: F401 (fixture)

pytestmark = pytest.mark.integration


def _leftover_files(data_dir: Path) -> list[Path]:
    return sorted(p for p in data_dir.rglob("*") if p.is_file() and p.name != LOCK_NAME)


def test_offline_run_syncs_with_its_checkpoint_after_the_file_is_deleted(
    neptune_emulator: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    data_dir = tmp_path / "neptune-data"
    monkeypatch.setenv("NEPTUNE_DATA_DIRECTORY", str(data_dir))
    use_emulator(monkeypatch, neptune_emulator, "offline")
    custom_id = f"offline-{uuid.uuid4().hex[:12]}"
    checkpoint = tmp_path / "model.pt"
    weights = os.urandom(64 * 1024)
    checkpoint.write_bytes(weights)

    hook = NeptuneHook()
    with hook.get_run(custom_run_id=custom_id) as run:
        run["train/loss"].extend([0.9, 0.5, 0.25], steps=[0, 1, 2])
    result = NeptuneUploadArtifactOperator(
        task_id="upload", custom_run_id=custom_id, path=str(checkpoint), score=0.8, step=2
    ).execute(context())
    assert [u["key"] for u in result["uploaded"]] == ["step_2"]
    hook.close()  # the offline run ends: everything is on disk
    checkpoint.unlink()  # the bytes now live only in the client's stash under the data directory
    assert any(p.read_bytes() == weights for p in _leftover_files(data_dir))

    ops_before = neptune_emulator.stats().get("operations_total")
    report = NeptuneSyncOperator(task_id="sync", data_directory=str(data_dir)).execute(context())
    assert [s["kind"] for s in report["synced"]] == ["offline"]
    assert report["errors"] == []
    assert report["left"] == {"offline": [], "async_unsent": [], "in_use": [], "not_found": []}
    sys_id = report["synced"][0]["run_id"]
    assert report["operations_sent"] >= 5

    run = plain_run(neptune_emulator, with_id=sys_id, mode="read-only")
    try:
        target = tmp_path / "downloaded"
        run["checkpoints/step_2/file"].download(destination=str(target))
        assert target.read_bytes() == weights
        assert run["checkpoints/step_2/score"].fetch() == 0.8
        assert run["checkpoints/step_2/size"].fetch() == len(weights)
        values = run["train/loss"].fetch_values(include_timestamp=False, progress_bar=False)
        assert list(values["value"]) == [0.9, 0.5, 0.25]
    finally:
        run.stop()
    assert _leftover_files(data_dir) == []  # the stash went with the synced run

    ops_after_first = neptune_emulator.stats().get("operations_total")
    again = NeptuneSyncOperator(task_id="sync", data_directory=str(data_dir)).execute(context())
    assert again["synced"] == []
    assert again["operations_sent"] == 0
    assert neptune_emulator.stats().get("operations_total") == ops_after_first
    assert ops_after_first != ops_before


CHILD = textwrap.dedent(
    """
    import os, neptune
    run = neptune.init_run(mode="async", flush_period=3600, capture_hardware_metrics=False, git_ref=False,
                           capture_stdout=False, capture_stderr=False, source_files=[])
    print(run["sys/id"].fetch(), flush=True)
    run["train/acc"].extend([0.1, 0.2, 0.3, 0.4], steps=[1, 2, 3, 4])
    run["params/lr"] = 0.125
    run.wait(disk_only=True)
    os._exit(0)  # dies before its background thread sends anything
    """
)


def test_unsent_async_queue_is_synced_once_and_live_queues_are_left_alone(
    neptune_emulator: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    data_dir = tmp_path / "neptune-data"
    monkeypatch.setenv("NEPTUNE_DATA_DIRECTORY", str(data_dir))
    use_emulator(monkeypatch, neptune_emulator, "async")
    env = {**os.environ, **neptune_emulator.env(), "NEPTUNE_DATA_DIRECTORY": str(data_dir)}
    child = subprocess.run(
        [sys.executable, "-c", CHILD], env=env, capture_output=True, text=True, timeout=120
    )
    assert child.returncode == 0, child.stderr
    sys_id = child.stdout.strip().splitlines()[-1]

    live = plain_run(neptune_emulator, mode="async", flush_period=3600)
    # Its sending thread is held (the client's own pause, which returns once the thread is idle), so
    # this process's queue surely holds an unsent operation while the sync runs.
    processor = real_processor(live)
    processor.pause()
    try:
        live["progress"] = 0.5
        live.wait(disk_only=True)
        report = NeptuneSyncOperator(task_id="sync", data_directory=str(data_dir)).execute(context())
        assert [(s["kind"], s["run_id"]) for s in report["synced"]] == [("async", sys_id)]
        assert report["synced"][0]["operations"] >= 2
        assert len(report["left"]["in_use"]) == 1
        assert f"process {os.getpid()}" in report["left"]["in_use"][0]
    finally:
        processor.resume()
        live.stop()

    run = plain_run(neptune_emulator, with_id=sys_id, mode="read-only")
    try:
        values = run["train/acc"].fetch_values(include_timestamp=False, progress_bar=False)
        assert list(values["step"]) == [1, 2, 3, 4]
        assert run["params/lr"].fetch() == 0.125
    finally:
        run.stop()

    again = NeptuneSyncOperator(task_id="sync", data_directory=str(data_dir)).execute(context())
    assert again["synced"] == []
    assert again["operations_sent"] == 0


def test_operations_the_server_rejects_fail_the_sync_with_the_reason(
    neptune_emulator: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from airflow_provider_neptune.operators.sync import NeptuneSyncError

    data_dir = tmp_path / "neptune-data"
    monkeypatch.setenv("NEPTUNE_DATA_DIRECTORY", str(data_dir))
    use_emulator(monkeypatch, neptune_emulator, "async")
    run = plain_run(neptune_emulator, mode="offline")
    run["loss"].append(0.5, step=5)
    run["loss"].append(0.4, step=3)  # not increasing: only the server notices, at sync time
    run["ok"] = 1.0
    run.stop()

    with pytest.raises(NeptuneSyncError, match="rejected 1 synced operation") as failed:
        NeptuneSyncOperator(task_id="sync", data_directory=str(data_dir)).execute(context())
    assert "loss" in str(failed.value)
    (synced,) = failed.value.report["synced"]
    stored = plain_run(neptune_emulator, with_id=synced["run_id"], mode="read-only")
    try:
        assert stored["ok"].fetch() == 1.0
        assert list(stored["loss"].fetch_values(progress_bar=False)["step"]) == [5]
    finally:
        stored.stop()
    report = NeptuneSyncOperator(task_id="sync", data_directory=str(data_dir), fail_on_errors=False).execute(
        context()
    )
    assert report["synced"] == []  # the rest was sent the first time; nothing is sent twice
