"""What render_template_fields of NeptuneLogMetricsOperator finds and does with NaN and infinities.

The same path run by Airflow itself (dag.test()) is in tests/integration/test_metrics_render.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_neptune.core.rendered_metrics import rendered_problems
from airflow_provider_neptune.operators import NeptuneLogMetricsOperator
from tests.helpers.run_metrics_fakes import FakeHook, make_context

NAN, INF = float("nan"), float("inf")


def test_every_non_finite_number_is_named_by_series_field_and_index() -> None:
    problems = rendered_problems(
        {"a": [1.0, NAN], "b": {"values": [INF], "steps": [0], "timestamps": [-INF]}},
        {"a": [0, NAN]},
        [1.0, INF],
    )
    assert problems == [
        "series 'a' index 1: nan is not finite",
        "series 'b' values index 0: inf is not finite",
        "series 'b' timestamps index 0: -inf is not finite",
        "series 'a' steps index 1: nan is not finite",
        "timestamps index 1: inf is not finite",
    ]
    assert rendered_problems({"a": [1.0, 2.0]}, [0, 1], None) == []
    assert rendered_problems('{"a": [NaN]}', None, None) == []  # text is stored as it is; load() checks it


def _rendered(**kwargs: Any) -> NeptuneLogMetricsOperator:
    op = NeptuneLogMetricsOperator(task_id="log", run_id="SAN-1", **kwargs)
    op.render_template_fields(make_context())  # type: ignore[arg-type]
    return op


def test_without_skip_invalid_rendering_fails_before_airflow_stores_the_fields() -> None:
    with pytest.raises(AirflowFailException) as info:
        _rendered(metrics={"train/loss": [0.5, NAN, 0.3]})
    assert "1 invalid metric point(s) in the rendered input; nothing was sent" in str(info.value)
    assert "series 'train/loss' index 1: nan is not finite" in str(info.value)


def test_with_skip_invalid_the_fields_become_json_and_the_point_is_skipped_and_counted() -> None:
    op = _rendered(metrics={"m": [0.5, NAN, 0.3]}, steps=[0, 1, 2], skip_invalid=True)
    json.dumps(op.metrics, allow_nan=False)  # what Airflow's rendered-fields upload needs
    hook = FakeHook()
    op.make_hook = lambda: hook  # type: ignore[method-assign]
    summary = op.execute(make_context())  # type: ignore[arg-type]
    assert summary["points_invalid"] == 1
    (_name, call), *_ = [c for c in hook.calls if c[0] == "log_metrics"]
    assert call["metrics"] == {"m": [0.5, 0.3]}
    assert call["steps"] == {"m": [0.0, 2.0]}  # the skipped point does not shift the steps after it
