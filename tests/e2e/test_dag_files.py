"""Every DAG in dags/ loads in a DagBag with no import errors, no provider warnings and no neptune import,
and follows the house rules (doc_md, owners, retries with exponential backoff, the neptune_api pool);
plus the example pipeline's small numpy model.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path
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
        "hyperparameter_sets",
        "experiment.create_run",
        "experiment.train",
        "experiment.log_metrics",
        "experiment.log_val_metrics",
        *(f"experiment.upload_checkpoint_{slot}" for slot in range(1, 4)),
        "experiment.wait_for_val_accuracy",
        "experiment.stop_run",
    }
    # Everything per hyper-parameter set is mapped; the check runs once.
    assert not tasks["validate_environment"]["in_mapped_group"]
    assert not tasks["hyperparameter_sets"]["in_mapped_group"]
    assert all(
        task["in_mapped_group"] for task_id, task in tasks.items() if task_id.startswith("experiment.")
    )
    sensor = tasks["experiment.wait_for_val_accuracy"]
    assert sensor["class"] == "NeptuneMetricSensor"
    assert sensor["deferrable"] is True
    assert tasks["experiment.train"]["module"] != "airflow_provider_neptune", (
        "training itself needs no API slot"
    )


@pytest.fixture(scope="module")
def example_model() -> Any:
    """The pipeline's training helper, imported the way Airflow does (dags/ on sys.path)."""
    spec = importlib.util.spec_from_file_location(
        "neptune_example_model", REPO / "dags" / "neptune_example_model.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


def test_example_model_checkpoints_evenly_and_ends_on_the_final_epoch(example_model: Any) -> None:
    assert example_model.checkpoint_epochs(8, 3) == [3, 6, 8]
    assert example_model.checkpoint_epochs(3, 3) == [1, 2, 3]
    with pytest.raises(ValueError, match="slots"):
        example_model.checkpoint_epochs(2, 3)


def test_example_model_rejects_unknown_settings(example_model: Any) -> None:
    with pytest.raises(ValueError, match=r"unknown training setting\(s\) \['lr'\]"):
        example_model.TrainingConfig.from_mapping({"name": "x", "learning_rate": 0.1, "lr": 1})
    with pytest.raises(ValueError, match="epochs >= 1"):
        example_model.TrainingConfig.from_mapping({"name": "x", "learning_rate": 0.1, "epochs": 0})


def test_example_model_trains_deterministically(example_model: Any, tmp_path: Path) -> None:
    config = example_model.TrainingConfig(name="t", learning_rate=0.1, epochs=6, samples=200)
    first = example_model.train(config, tmp_path / "a", [2, 4, 6])
    second = example_model.train(config, tmp_path / "b", [2, 4, 6])

    def curves(result: dict[str, Any]) -> dict[str, list[float]]:
        paths = result["metrics_paths"]
        return {**json.loads(Path(paths["train"]).read_text()), **json.loads(Path(paths["val"]).read_text())}

    metrics = curves(first)
    assert metrics == curves(second), "same seed, same curves"
    assert set(metrics) == set(example_model.METRIC_NAMES)
    assert set(json.loads(Path(first["metrics_paths"]["val"]).read_text())) == {"val/loss", "val/accuracy"}
    assert all(len(values) == 6 for values in metrics.values())
    assert first["steps"] == [1, 2, 3, 4, 5, 6]
    assert [c["epoch"] for c in first["checkpoints"]] == [2, 4, 6]
    assert [c["score"] for c in first["checkpoints"]] == [metrics["val/accuracy"][e - 1] for e in (2, 4, 6)]
    assert all(Path(c["path"]).stat().st_size > 0 for c in first["checkpoints"])
    # The model learns something: better than chance on held-out data, loss going down.
    assert first["best_val_accuracy"] > 0.6
    assert metrics["train/loss"][-1] < metrics["train/loss"][0]
