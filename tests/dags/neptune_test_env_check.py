"""DAG for tests/integration/test_environment_dag.py: the per-queue check group, driven by run conf."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import Param, dag

from airflow_provider_neptune.operators.fingerprints import environment_check_group


@dag(
    dag_id="neptune_test_env_check",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={
        "run_id": Param("", type="string"),
        "requirements": Param("", type="string"),
        "required_env": Param([], type="array"),
    },
)
def neptune_test_env_check() -> None:
    """Two queues (LocalExecutor-style: both run here), fingerprints optionally logged to a run."""
    environment_check_group(
        queues=["default", "gpu"],
        requirements="{{ params.requirements }}",
        required_env="{{ params.required_env }}",
        run_id="{{ params.run_id }}",
        max_clock_skew_seconds=30,
        log_timeout=30,
    )


neptune_test_env_check()
