"""A metric file of a few MB goes to the emulator in chunks: every point arrives exactly once,
and logging the file again (a retried task) sends nothing new."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_neptune.operators import NeptuneCreateRunOperator, NeptuneLogMetricsOperator
from tests.helpers.run_metrics_support import context, series_points, use_emulator

pytestmark = pytest.mark.integration

SERIES = ("train/loss", "train/acc")


def _value(series: int, step: int) -> float:
    return round(math.sin(step / 131 + series) * 3, 6)


def _write(path: Path, first: int, last: int, header: bool = True) -> dict[str, list[tuple[float, float]]]:
    """Long-layout CSV rows for steps first..last-1 of every series; returns the points written."""
    points: dict[str, list[tuple[float, float]]] = {name: [] for name in SERIES}
    with path.open("a") as out:
        if header:
            out.write("path,step,timestamp,value\n")
        for step in range(first, last):
            for i, name in enumerate(SERIES):
                out.write(f"{name},{step},{1_764_547_200 + step},{_value(i, step)!r}\n")
                points[name].append((float(step), _value(i, step)))
    return points


@pytest.mark.parametrize(("mode", "steps"), [("async", 40_000), ("sync", 6_000)])
def test_file_in_chunks_arrives_once_and_a_retry_adds_nothing(
    neptune_emulator: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, mode: str, steps: int
) -> None:
    use_emulator(monkeypatch, neptune_emulator, mode)
    run_id = NeptuneCreateRunOperator(task_id="create_run").execute(context())
    path = tmp_path / "metrics.csv"
    half = _write(path, 0, steps // 2)
    # A first attempt that only got through half of the file (as if killed after some chunks).
    first = NeptuneLogMetricsOperator(
        task_id="log", run_id=run_id, metrics_path=str(path), chunk_points=steps // 2
    ).execute(context())
    assert (first["points_sent"], first["chunks"]) == (steps, 2)
    rest = _write(path, steps // 2, steps, header=False)
    retry = NeptuneLogMetricsOperator(
        task_id="log", run_id=run_id, metrics_path=str(path), chunk_points=steps // 2
    ).execute(context())
    assert retry["chunks"] == 4
    assert (retry["points_sent"], retry["points_skipped"]) == (steps, steps)
    assert retry["last_steps"] == {name: float(steps - 1) for name in SERIES}
    for name in SERIES:
        assert series_points(neptune_emulator, run_id, name) == half[name] + rest[name]
