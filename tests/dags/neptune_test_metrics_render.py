"""A literal NaN in the templated ``metrics`` mapping, without and with ``skip_invalid`` (dag.test())."""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG

from airflow_provider_neptune.operators import NeptuneCreateRunOperator, NeptuneLogMetricsOperator

METRICS = {"train/loss": [0.5, float("nan"), 0.3], "train/acc": {"values": [0.1, 0.2, 0.3]}}

with DAG(
    dag_id="neptune_test_metrics_render",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["neptune", "test"],
):
    create_run = NeptuneCreateRunOperator(task_id="create_run", name="render-check")
    log_strict = NeptuneLogMetricsOperator(
        task_id="log_strict",
        run_id="{{ ti.xcom_pull('create_run') }}",
        metrics=METRICS,
        retries=2,
        retry_delay=timedelta(seconds=1),
    )
    log_skipping = NeptuneLogMetricsOperator(
        task_id="log_skipping",
        run_id="{{ ti.xcom_pull('create_run') }}",
        metrics=METRICS,
        skip_invalid=True,
    )
    create_run >> [log_strict, log_skipping]
