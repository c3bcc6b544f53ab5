"""DAG for tests/integration/test_retention_dag.py: mapped checkpoint uploads, then the clean-up.

Run through ``dag.test()`` with conf ``{"tag": ..., "workdir": ..., "scores": [...]}``: one run tagged
``tag`` gets one checkpoint per score (uploaded by mapped tasks, run id and values from XCom), then
retention keeps the top 2.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from airflow.sdk import Param, dag, task

from airflow_provider_neptune.operators.artifacts import (
    NeptuneArtifactRetentionOperator,
    NeptuneUploadArtifactOperator,
)


@dag(
    dag_id="neptune_test_retention_pipeline",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={
        "tag": Param("", type="string"),
        "workdir": Param("", type="string"),
        "scores": Param([], type="array"),
    },
)
def neptune_test_retention_pipeline() -> None:
    """create run -> write checkpoints -> upload (mapped) -> retention."""

    @task
    def create_run(params: dict[str, Any] | None = None) -> str:
        from airflow_provider_neptune.hooks.neptune import NeptuneHook

        assert params is not None
        return NeptuneHook().create_run(name="retention pipeline", tags=[params["tag"]])

    @task
    def write_checkpoints(params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        assert params is not None
        workdir = Path(params["workdir"])
        workdir.mkdir(parents=True, exist_ok=True)
        items = []
        for step, score in enumerate(params["scores"]):
            path = workdir / f"epoch_{step}.pt"
            path.write_bytes(f"weights of epoch {step};".encode() * (step + 1))
            items.append({"path": str(path), "score": score, "step": step})
        return items

    run_id = create_run()
    uploads = NeptuneUploadArtifactOperator.partial(task_id="upload", run_id=run_id).expand_kwargs(
        write_checkpoints()
    )
    retention = NeptuneArtifactRetentionOperator(
        task_id="retention",
        tags=["{{ params.tag }}"],
        keep_top_k="2",
        keep_last=False,
        max_delete_fraction="1.0",
    )
    uploads >> retention


neptune_test_retention_pipeline()
