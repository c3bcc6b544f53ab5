"""NeptuneLogMetricsOperator against an in-memory hook: what reaches the hook, errors, progress lines."""

from __future__ import annotations

import re

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_neptune.core.progress import progress_logger
from airflow_provider_neptune.links import RUN_URL_XCOM_KEY
from airflow_provider_neptune.operators import NeptuneLogMetricsOperator
from airflow_provider_neptune.operators.metrics import PROGRESS_MIN_POINTS
from tests.helpers.run_metrics_fakes import FakeHook, FakeTI, make_context


def _run(**kwargs: object) -> tuple[dict[str, object], FakeHook, FakeTI]:
    op = NeptuneLogMetricsOperator(task_id="log", run_id="SAN-1", **kwargs)  # type: ignore[arg-type]
    hook = FakeHook()
    op.make_hook = lambda: hook  # type: ignore[method-assign]
    ti = FakeTI()
    return op.execute(make_context(ti)), hook, ti


def test_sends_validated_series_with_steps_and_returns_summary() -> None:
    summary, hook, ti = _run(metrics={"train/loss": [0.9, 0.5], "val/acc": {"values": [0.1], "steps": [4]}})
    (_name, call), *_ = [c for c in hook.calls if c[0] == "log_metrics"]
    assert call["run_id"] == "SAN-1"
    assert call["metrics"] == {"train/loss": [0.9, 0.5], "val/acc": [0.1]}
    assert call["steps"] == {"train/loss": [0.0, 1.0], "val/acc": [4.0]}
    assert call["timestamps"] is None
    assert summary["points_sent"] == 3
    assert summary["points_invalid"] == 0
    assert summary["series"] == 2
    assert ti.xcom[RUN_URL_XCOM_KEY].endswith("/e/SAN-1")
    assert hook.closed == 1


def test_invalid_input_fails_before_anything_is_sent() -> None:
    op = NeptuneLogMetricsOperator(task_id="log", run_id="SAN-1", metrics={"m": [1.0, float("inf")]})
    hook = FakeHook()
    op.make_hook = lambda: hook  # type: ignore[method-assign]
    with pytest.raises(AirflowFailException, match=r"series 'm' index 1: value inf is not finite"):
        op.execute(make_context())
    assert hook.calls == []


def test_skip_invalid_counts_in_summary() -> None:
    summary, _hook, _ = _run(metrics={"m": [1.0, "x", 2.0]}, skip_invalid=True)
    assert summary["points_invalid"] == 1
    assert summary["points_sent"] == 2


def test_all_invalid_with_skip_is_still_an_error() -> None:
    with pytest.raises(AirflowFailException, match="No valid metric point"):
        _run(metrics={"m": [float("nan")]}, skip_invalid=True)


def test_template_rendered_to_garbage_is_a_clear_error() -> None:
    with pytest.raises(AirflowFailException, match="neither JSON nor a Python literal"):
        _run(metrics="{'m': [1, 2")


def test_timestamps_reach_the_hook() -> None:
    _, hook, _ = _run(metrics={"m": [1, 2]}, timestamps=[10, 20])
    call = next(c[1] for c in hook.calls if c[0] == "log_metrics")
    assert call["timestamps"] == {"m": [10.0, 20.0]}


def test_needs_exactly_one_source() -> None:
    with pytest.raises(ValueError, match="needs metrics or metrics_path"):
        NeptuneLogMetricsOperator(task_id="a", run_id="x")
    with pytest.raises(ValueError, match="not both"):
        NeptuneLogMetricsOperator(task_id="b", run_id="x", metrics={"m": [1]}, metrics_path="f.csv")


def test_progress_lines_for_long_inputs(capsys: pytest.CaptureFixture[str]) -> None:
    op = NeptuneLogMetricsOperator(
        task_id="log", run_id="SAN-1", metrics={"m": list(range(PROGRESS_MIN_POINTS))}
    )
    hook = FakeHook()
    op.make_hook = lambda: hook  # type: ignore[method-assign]
    op.execute(make_context())
    out = capsys.readouterr()
    lines = re.findall(r"Logging to SAN-1: \d+/\d+ points \(\d+%\)", out.out + out.err)
    assert lines[-1] == f"Logging to SAN-1: {PROGRESS_MIN_POINTS}/{PROGRESS_MIN_POINTS} points (100%)"
    assert 2 <= len(lines) <= 10


def test_progress_logger_logs_each_tenth_once() -> None:
    messages: list[str] = []

    class Log:
        def info(self, fmt: str, *args: object) -> None:
            messages.append(fmt % args)

    report = progress_logger(Log(), 100, "x")
    for done in (0, 5, 10, 10, 11, 55, 100, 100):
        report(done, 100)
    assert messages == ["x: 10/100 points (10%)", "x: 55/100 points (55%)", "x: 100/100 points (100%)"]


def test_metrics_is_templated() -> None:
    assert {"run_id", "metrics", "metrics_path", "steps", "timestamps"} <= set(
        NeptuneLogMetricsOperator.template_fields
    )
