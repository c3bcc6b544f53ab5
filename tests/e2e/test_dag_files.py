"""Every DAG in dags/ loads in a DagBag with no import errors, no provider warnings and no neptune import,
and follows the house rules (doc_md, owners, retries with exponential backoff, the neptune_api pool).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from tests.e2e.stack import REPO

# Runs in a fresh interpreter: sys.modules and the warnings registry are untouched by other tests.
_PROBE = textwrap.dedent(
    """
    import json, sys, warnings
    warnings.simplefilter("always")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from airflow.dag_processing.dagbag import DagBag
        bag = DagBag(dag_folder=sys.argv[1])
    dags = {}
    for dag_id, dag in bag.dags.items():
        dags[dag_id] = {
            "fileloc": dag.fileloc,
            "doc_md": dag.doc_md or "",
            "tasks": [
                {
                    "task_id": task.task_id,
                    "owner": task.owner,
                    "retries": task.retries,
                    "backoff": float(task.retry_exponential_backoff or 0),
                    "pool": task.pool,
                    "module": type(task).__module__,
                    "class": type(task).__name__,
                    "in_mapped_group": type(task.task_group).__name__ == "MappedTaskGroup",
                    "deferrable": bool(getattr(task, "partial_kwargs", {}).get("deferrable",
                                       getattr(task, "deferrable", False))),
                }
                for task in dag.tasks
            ],
        }
    print(json.dumps({
        "import_errors": {str(k): str(v) for k, v in bag.import_errors.items()},
        "dags": dags,
        "warnings": [
            {"category": w.category.__name__, "message": str(w.message), "filename": w.filename}
            for w in caught
        ],
        "captured_warnings": {str(k): list(v) for k, v in bag.captured_warnings.items()},
        "neptune_imported": "neptune" in sys.modules,
    }))
    """
)


@pytest.fixture(scope="module")
def dagbag() -> dict[str, Any]:
    """What a DagBag of dags/ holds, probed in a fresh interpreter with every warning recorded."""
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, str(REPO / "dags")],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def test_every_dag_file_imports(dagbag: dict[str, Any]) -> None:
    assert dagbag["import_errors"] == {}
    assert {"neptune_training_pipeline", "neptune_retention_cleanup", "neptune_environment_check"} <= set(
        dagbag["dags"]
    )


def test_parsing_does_not_import_neptune(dagbag: dict[str, Any]) -> None:
    assert dagbag["neptune_imported"] is False


def test_no_warnings_from_the_provider_or_the_dags(dagbag: dict[str, Any]) -> None:
    # What the DagBag recorded per DAG file (Airflow's logging setup swallows them otherwise) ...
    assert dagbag["captured_warnings"] == {}
    # ... and anything else raised while loading, from our code.
    ours = [
        w
        for w in dagbag["warnings"]
        if "airflow_provider_neptune" in w["filename"]
        or "/dags/" in w["filename"]
        or "neptune" in w["message"].lower()
    ]
    assert ours == []


def test_every_dag_follows_the_house_rules(dagbag: dict[str, Any]) -> None:
    for dag_id, dag in dagbag["dags"].items():
        assert len(dag["doc_md"].strip()) > 100, f"{dag_id} needs doc_md"
        for task in dag["tasks"]:
            where = f"{dag_id}.{task['task_id']}"
            assert task["owner"] not in ("", "airflow"), f"{where} needs a real owner"
            assert task["retries"] >= 1, f"{where} needs retries"
            assert task["backoff"] > 1, f"{where} needs exponential retry backoff"
            if task["module"].startswith("airflow_provider_neptune") and not task["deferrable"]:
                assert task["pool"] == "neptune_api", f"{where} talks to Neptune outside the neptune_api pool"


def test_training_pipeline_shape(dagbag: dict[str, Any]) -> None:
    tasks = {task["task_id"]: task for task in dagbag["dags"]["neptune_training_pipeline"]["tasks"]}
    assert set(tasks) == {
        "validate_environment",
        "experiment.create_run",
        "experiment.train",
        "experiment.log_metrics",
        *(f"experiment.upload_checkpoint_{slot}" for slot in range(1, 4)),
        "experiment.wait_for_val_accuracy",
        "experiment.stop_run",
    }
    # Everything per hyper-parameter set is mapped; the check runs once.
    assert not tasks["validate_environment"]["in_mapped_group"]
    assert all(
        task["in_mapped_group"] for task_id, task in tasks.items() if task_id.startswith("experiment.")
    )
    sensor = tasks["experiment.wait_for_val_accuracy"]
    assert sensor["class"] == "NeptuneMetricSensor"
    assert sensor["deferrable"] is True
    assert tasks["experiment.train"]["module"] != "airflow_provider_neptune", (
        "training itself needs no API slot"
    )
