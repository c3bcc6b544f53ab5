"""DAG for tests/integration/test_run_metrics_dag.py (run through ``dag.test()``).

[create_run, train] -> log_train (metrics from train's XCom) -> feed_accuracy ->
wait_for_accuracy (deferrable) -> stop_run.
``feed_accuracy`` plays a trainer that keeps running beside the pipeline: it starts a thread that,
once the sensor is deferred (seen in the Airflow metadata DB), logs the value the sensor waits for.
``dag.test()`` runs tasks one after another in one process and the trigger inline, so the thread is
what makes the sensor truly wait on data that arrives while it is deferred.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from datetime import datetime

from airflow.sdk import dag, get_current_context, task

from airflow_provider_neptune.operators import (
    NeptuneCreateRunOperator,
    NeptuneLogMetricsOperator,
    NeptuneStopRunOperator,
)
from airflow_provider_neptune.sensors import NeptuneMetricSensor

DAG_ID = "neptune_test_metrics_pipeline"
SENSOR_TASK_ID = "wait_for_accuracy"
RUN_ID = "{{ ti.xcom_pull(task_ids='create_run') }}"
TRAIN_METRICS = {"train/loss": [0.9, 0.6, 0.4], "val/acc": [0.5, 0.7]}
FED_STEP, FED_VALUE = 2, 0.93
THRESHOLD = 0.9


def _sensor_deferred(db_path: str, dag_run_id: str) -> bool:
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5) as db:
        row = db.execute(
            "SELECT next_method FROM task_instance WHERE dag_id=? AND run_id=? AND task_id=?",
            (DAG_ID, dag_run_id, SENSOR_TASK_ID),
        ).fetchone()
    return bool(row and row[0])


def _feed_when_deferred(run_id: str, dag_run_id: str, db_path: str) -> None:
    from airflow_provider_neptune.hooks.neptune import NeptuneHook

    deadline = time.monotonic() + 120
    while not _sensor_deferred(db_path, dag_run_id):
        if time.monotonic() > deadline:
            print("feed_accuracy: the sensor never deferred; not feeding", flush=True)
            return
        time.sleep(0.1)
    hook = NeptuneHook()
    try:
        hook.log_metrics(run_id, {"val/acc": [FED_VALUE]}, steps=[FED_STEP])
    finally:
        hook.close()


@task
def train() -> dict[str, list[float]]:
    """Stand-in for training: returns the per-epoch metrics, passed on through XCom."""
    return TRAIN_METRICS


@task
def feed_accuracy(neptune_run_id: str) -> None:
    """Start the background "trainer" that logs val/acc = 0.93 once the sensor waits in its trigger."""
    dag_run_id = get_current_context()["run_id"]
    db_path = os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].removeprefix("sqlite:///")
    threading.Thread(
        target=_feed_when_deferred,
        args=(neptune_run_id, dag_run_id, db_path),
        name="feed_accuracy",
        daemon=True,
    ).start()


@dag(dag_id=DAG_ID, schedule=None, start_date=datetime(2026, 1, 1), catchup=False, params={"lr": 0.05})
def neptune_test_metrics_pipeline() -> None:
    """Create a run, log, wait (deferred) for a metric fed by another task, stop the run."""
    create_run = NeptuneCreateRunOperator(task_id="create_run", name="metrics-pipeline", tags=["dag-test"])
    log_train = NeptuneLogMetricsOperator(task_id="log_train", run_id=RUN_ID, metrics=train())
    wait = NeptuneMetricSensor(
        task_id=SENSOR_TASK_ID,
        run_id=RUN_ID,
        path="val/acc",
        condition=">=",
        threshold=THRESHOLD,
        deferrable=True,
        poke_interval=0.2,
        timeout=120,
    )
    stop_run = NeptuneStopRunOperator(
        task_id="stop_run", run_id=RUN_ID, timeout=60, final_fields={"summary": {"status": "ok"}}
    )
    create_run >> log_train >> feed_accuracy(RUN_ID) >> wait >> stop_run


neptune_test_metrics_pipeline()
