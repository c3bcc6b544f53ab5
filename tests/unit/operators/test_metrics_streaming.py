"""NeptuneLogMetricsOperator streams files to the hook in chunks, with the rules held across chunks."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_neptune.core.metric_inputs import open_metric_source
from airflow_provider_neptune.operators import NeptuneLogMetricsOperator
from airflow_provider_neptune.operators.metrics import DEFAULT_CHUNK_POINTS
from tests.helpers.run_metrics_fakes import FakeHook, make_context

SERIES = ("train/loss", "train/acc", "val/loss")


def _value(series: int, step: int) -> float:
    return round(math.cos(step / 97 + series) * 10, 6)


def _write_long_csv(path: Path, steps: int) -> dict[str, list[tuple[float, float]]]:
    """A long-layout CSV (path, step, value), the series interleaved row by row; returns its points."""
    expected: dict[str, list[tuple[float, float]]] = {name: [] for name in SERIES}
    with path.open("w") as out:
        out.write("path,step,value\n")
        for step in range(steps):
            for i, name in enumerate(SERIES):
                out.write(f"{name},{step},{_value(i, step)!r}\n")
                expected[name].append((float(step), _value(i, step)))
    return expected


def _execute(**kwargs: Any) -> tuple[dict[str, Any], FakeHook]:
    op = NeptuneLogMetricsOperator(task_id="log", run_id="SAN-1", **kwargs)
    hook = FakeHook()
    op.make_hook = lambda: hook  # type: ignore[method-assign]
    return op.execute(make_context()), hook


def _sent(hook: FakeHook) -> tuple[list[int], dict[str, list[tuple[float, float]]]]:
    """Points per log_metrics call, and every point the hook received, per series, in order."""
    sizes: list[int] = []
    got: dict[str, list[tuple[float, float]]] = {}
    for name, call in hook.calls:
        if name != "log_metrics":
            continue
        sizes.append(sum(len(v) for v in call["metrics"].values()))
        for path, values in call["metrics"].items():
            got.setdefault(path, []).extend(zip(call["steps"][path], values, strict=True))
    return sizes, got


def test_a_few_mb_csv_reaches_the_hook_in_chunks_each_point_once(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    expected = _write_long_csv(path, 40_000)  # 120,000 points, about 3 MB
    assert path.stat().st_size > 2_000_000
    summary, hook = _execute(metrics_path=str(path), chunk_points=25_000)
    sizes, got = _sent(hook)
    assert sizes == [25_000, 25_000, 25_000, 25_000, 20_000]
    assert got == expected
    assert summary["chunks"] == 5
    assert summary["points_sent"] == 120_000
    assert summary["series"] == 3
    assert hook.closed == 1


def test_default_chunk_size_also_splits_a_large_file(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    _write_long_csv(path, 40_000)
    summary, hook = _execute(metrics_path=str(path))
    sizes, _ = _sent(hook)
    assert len(sizes) == summary["chunks"] == 12
    assert max(sizes) == DEFAULT_CHUNK_POINTS


def test_a_mapping_already_in_memory_goes_in_one_call() -> None:
    metrics = {name: [float(i) for i in range(10_000)] for name in SERIES}
    summary, hook = _execute(metrics=metrics, chunk_points=1000)
    sizes, _ = _sent(hook)
    assert sizes == [30_000]
    assert summary["chunks"] == 1


def test_a_bad_point_at_the_end_of_a_large_file_fails_before_anything_is_sent(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    _write_long_csv(path, 20_000)
    with path.open("a") as out:
        out.write("val/loss,20000,nan\n")
    op = NeptuneLogMetricsOperator(task_id="log", run_id="SAN-1", metrics_path=str(path), chunk_points=1000)
    hook = FakeHook()
    op.make_hook = lambda: hook  # type: ignore[method-assign]
    with pytest.raises(AirflowFailException, match=r"line 60002, column 3 \('value'\): series 'val/loss'"):
        op.execute(make_context())
    assert [c for c in hook.calls if c[0] == "log_metrics"] == []


def test_steps_must_increase_across_a_chunk_boundary(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    rows = [f"{step},{step / 10}" for step in range(10)] + ["9,5.0", "10,6.0"]  # step 9 again at row 11
    path.write_text("step,loss\n" + "\n".join(rows) + "\n")
    with pytest.raises(AirflowFailException, match=r"line 12, column 1 \('step'\): series 'loss' index 10"):
        _execute(metrics_path=str(path), chunk_points=10)
    summary, hook = _execute(metrics_path=str(path), chunk_points=10, skip_invalid=True)
    _, got = _sent(hook)
    assert [step for step, _ in got["loss"]] == [float(s) for s in range(11)]
    assert summary["points_invalid"] == 1
    assert summary["chunks"] == 2


def test_nan_skipped_across_chunks_keeps_index_steps(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("loss\n" + "\n".join(["1", "nan", "3", "4", "nan", "6"]) + "\n")
    summary, hook = _execute(metrics_path=str(path), chunk_points=2, skip_invalid=True)
    sizes, got = _sent(hook)
    assert sizes == [2, 2]
    assert got["loss"] == [(0.0, 1.0), (2.0, 3.0), (3.0, 4.0), (5.0, 6.0)]
    assert summary["points_invalid"] == 2


def test_parquet_is_read_in_record_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from airflow_provider_neptune.core import metric_files

    monkeypatch.setattr(metric_files, "PARQUET_BATCH_ROWS", 1000)
    batches: list[int] = []
    real = pq.ParquetFile.iter_batches

    def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        for batch in real(self, *args, **kwargs):
            batches.append(batch.num_rows)
            yield batch

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", counting)
    path = tmp_path / "m.parquet"
    pq.write_table(pa.table({"step": list(range(5000)), "loss": [s / 7 for s in range(5000)]}), path)
    summary, hook = _execute(metrics_path=str(path), chunk_points=2000)
    sizes, got = _sent(hook)
    assert sizes == [2000, 2000, 1000]
    assert got["loss"] == [(float(s), s / 7) for s in range(5000)]
    assert batches == [1000] * 10  # read twice (validate, then send), a batch at a time
    assert summary["points_sent"] == 5000


def test_a_json_file_is_sent_in_chunks_too(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_text('{"a": [1, 2, 3, 4, 5], "b": {"values": [6, 7], "steps": [10, 20]}}')
    summary, hook = _execute(metrics_path=str(path), chunk_points=3)
    sizes, got = _sent(hook)
    assert sizes == [3, 3, 1]
    assert got == {"a": [(float(i), float(i + 1)) for i in range(5)], "b": [(10.0, 6.0), (20.0, 7.0)]}
    assert summary["chunks"] == 3


def test_shared_steps_argument_applies_to_a_file_without_a_step_column(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("loss,acc\n1,2\n3,4\n")
    _, hook = _execute(metrics_path=str(path), steps=[5, 9], chunk_points=1)
    _, got = _sent(hook)
    assert got == {"loss": [(5.0, 1.0), (9.0, 3.0)], "acc": [(5.0, 2.0), (9.0, 4.0)]}
    with pytest.raises(AirflowFailException, match=r"m\.csv: series 'loss': 2 values but 3 steps"):
        _execute(metrics_path=str(path), steps=[5, 9, 11])


def test_second_pass_rejects_a_file_that_changed(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("step,loss\n0,1\n1,2\n")
    source = open_metric_source(metrics_path=path)
    assert source.scan().points == 2
    path.write_text("step,loss\n0,1\n1,oops\n")
    with pytest.raises(ValueError, match=r"changed while it was being logged: .*line 3, column 2"):
        list(source.chunks(10))


def test_chunk_points_must_be_positive() -> None:
    with pytest.raises(ValueError, match="chunk_points must be a positive integer"):
        NeptuneLogMetricsOperator(task_id="x", run_id="r", metrics={"m": [1]}, chunk_points=0)
