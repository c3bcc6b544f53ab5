"""The "Neptune run" extra link: resolution order, and that it survives DAG serialization."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from airflow.sdk import DAG

from airflow_provider_neptune.links import RUN_URL_XCOM_KEY, NeptuneRunLink
from airflow_provider_neptune.operators import (
    NeptuneCreateRunOperator,
    NeptuneLogMetricsOperator,
    NeptuneStopRunOperator,
)
from airflow_provider_neptune.sensors import NeptuneMetricSensor, NeptuneRunSensor


def test_link_prefers_the_operator_then_xcom(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.sdk.bases.xcom import BaseXCom

    asked: list[tuple[Any, str]] = []
    stored: dict[str, Any] = {"url": None}

    def get_value(*, ti_key: Any, key: str) -> Any:
        asked.append((ti_key, key))
        return stored["url"]

    monkeypatch.setattr(BaseXCom, "get_value", get_value)
    op = NeptuneStopRunOperator(task_id="stop", run_id="SAN-1")
    assert NeptuneRunLink().get_link(op, ti_key="key") == ""  # type: ignore[arg-type]
    stored["url"] = "http://127.0.0.1:9/ws/p/e/SAN-1"
    assert NeptuneRunLink().get_link(op, ti_key="key") == stored["url"]  # type: ignore[arg-type]
    assert asked[-1] == ("key", RUN_URL_XCOM_KEY)
    op.neptune_run_url = "http://127.0.0.1:9/ws/p/e/SAN-2"  # type: ignore[attr-defined]
    calls = len(asked)
    assert NeptuneRunLink().get_link(op, ti_key="key") == "http://127.0.0.1:9/ws/p/e/SAN-2"  # type: ignore[arg-type]
    assert len(asked) == calls


def test_every_run_operator_and_sensor_carries_the_link_through_serialization() -> None:
    from airflow.serialization.serialized_objects import DagSerialization

    with DAG("links_dag", schedule=None, start_date=datetime(2026, 1, 1)) as dag:
        NeptuneCreateRunOperator(task_id="create_run")
        NeptuneLogMetricsOperator(task_id="log", run_id="x", metrics={"m": [1]})
        NeptuneStopRunOperator(task_id="stop", run_id="x")
        NeptuneMetricSensor(task_id="metric", run_id="x", path="m", condition=">", threshold=0)
        NeptuneRunSensor(task_id="run", run_id="x")
    restored = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))
    for task_id in ("create_run", "log", "stop", "metric", "run"):
        links = restored.get_task(task_id).operator_extra_links
        assert [(link.name, link.xcom_key) for link in links] == [("Neptune run", "_link_NeptuneRunLink")]
