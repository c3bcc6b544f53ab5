"""A log task SIGKILLed in the middle and retried leaves every series equal to an uninterrupted run's."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_neptune.hooks.neptune import NeptuneHook
from airflow_provider_neptune.operators import NeptuneCreateRunOperator, NeptuneLogMetricsOperator
from tests.helpers.run_metrics_support import context, series_points, use_emulator

pytestmark = pytest.mark.integration

POINTS = 1000
PATHS = ("train/loss", "train/acc")

# The "task": NeptuneLogMetricsOperator.execute in a process of its own, as a worker would run it.
TASK = """
import json, sys
from airflow_provider_neptune.operators import NeptuneLogMetricsOperator

class TI:
    dag_id, run_id, task_id, map_index = "kill_dag", "manual__kill", "log", -1
    def xcom_push(self, key, value):
        pass

op = NeptuneLogMetricsOperator(
    task_id="log", run_id=sys.argv[1], metrics_path=sys.argv[2], neptune_conn_id=sys.argv[3]
)
print("SUMMARY " + json.dumps(op.execute({"ti": TI(), "params": {}})), flush=True)
"""


def _metrics() -> dict[str, Any]:
    loss = [round(2.0 * math.exp(-i / 400) + 0.01 * math.sin(i), 6) for i in range(POINTS)]
    acc = [round(1.0 - 0.9 * math.exp(-i / 300), 6) for i in range(POINTS)]
    steps = [10 * i for i in range(POINTS)]
    return {"train/loss": {"values": loss, "steps": steps}, "train/acc": {"values": acc, "steps": steps}}


def _start_task(run_id: str, metrics_path: Path, conn_id: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", TASK, run_id, str(metrics_path), conn_id],
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _on_server(reader: NeptuneHook, run_id: str) -> int:
    """Points on the server over both series (steps are 10*i, so last step -> count)."""
    last = reader.last_steps(run_id, PATHS)
    return sum(0 if step is None else int(step) // 10 + 1 for step in last.values())


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_killed_and_retried_log_task_equals_uninterrupted(
    neptune_emulator: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, mode: str
) -> None:
    use_emulator(monkeypatch, neptune_emulator, mode)
    # The task that gets killed has a small request budget, so that sending takes a few seconds.
    monkeypatch.setenv(
        "AIRFLOW_CONN_NEPTUNE_SLOW", neptune_emulator.airflow_conn_json(mode=mode, rate_limit_per_second=8)
    )
    monkeypatch.setenv("NEPTUNE_DATA_DIRECTORY", str(tmp_path / "neptune-data"))
    monkeypatch.setenv("NEPTUNE_ASYNC_BATCH_SIZE", "2")  # async: at most 2 operations per request
    metrics = _metrics()
    metrics_path = tmp_path / "metrics.json"
    metrics_path.write_text(json.dumps(metrics))
    total = POINTS * len(PATHS)

    reference = NeptuneCreateRunOperator(task_id="create_run", name="reference").execute(context())
    NeptuneLogMetricsOperator(task_id="log", run_id=reference, metrics=metrics).execute(context())

    run_id = NeptuneCreateRunOperator(task_id="create_run", name="killed").execute(context())
    NeptuneHook().close()
    reader = NeptuneHook(mode="read-only")
    task = _start_task(run_id, metrics_path, "neptune_slow")
    try:
        deadline = time.monotonic() + 120
        while _on_server(reader, run_id) == 0:
            assert task.poll() is None, f"the task ended before any point arrived:\n{task.communicate()[0]}"
            assert time.monotonic() < deadline, "no point reached the server within 120 s"
            time.sleep(0.05)
        os.kill(task.pid, signal.SIGKILL)
    finally:
        output = task.communicate(timeout=30)[0]
    assert task.returncode == -signal.SIGKILL, output
    partial = _on_server(reader, run_id)
    assert 0 < partial < total, f"the kill did not land in the middle ({partial}/{total} points)"

    retry = _start_task(run_id, metrics_path, "neptune_default")
    output = retry.communicate(timeout=180)[0]
    assert retry.returncode == 0, output
    summary = json.loads(output.split("SUMMARY ", 1)[1].splitlines()[0])
    assert summary["points_skipped"] + summary["points_sent"] == total
    assert summary["points_skipped"] >= partial - 2 * 100  # at most one in-flight operation per series
    reader.close()

    for path in PATHS:
        expected = [
            (float(step), float(value))
            for step, value in zip(metrics[path]["steps"], metrics[path]["values"], strict=True)
        ]
        assert series_points(neptune_emulator, reference, path) == expected
        assert series_points(neptune_emulator, run_id, path) == expected
