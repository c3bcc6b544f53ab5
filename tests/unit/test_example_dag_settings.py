"""Deployment settings of the example DAGs read from the environment at parse time: the training
queue of the training pipeline, the retention clean-up's schedule and scheduled keep_top_k."""

from __future__ import annotations

import importlib.util
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


def _load(monkeypatch: pytest.MonkeyPatch, name: str, **env: str | None) -> Any:
    for key, value in env.items():
        if value is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, value)
    monkeypatch.syspath_prepend(str(REPO / "dags"))
    spec = importlib.util.spec_from_file_location(f"settings_{name}", REPO / "dags" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_retention_schedule_defaults_to_daily(monkeypatch: pytest.MonkeyPatch) -> None:
    module = _load(
        monkeypatch,
        "neptune_retention_cleanup",
        NEPTUNE_RETENTION_SCHEDULE=None,
        NEPTUNE_RETENTION_KEEP_TOP_K=None,
    )
    dag = module.neptune_retention_cleanup()
    assert module.SCHEDULE == "@daily"
    assert dag.params["keep_top_k"] == 3


def test_retention_schedule_and_keep_top_k_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    module = _load(
        monkeypatch,
        "neptune_retention_cleanup",
        NEPTUNE_RETENTION_SCHEDULE="45",
        NEPTUNE_RETENTION_KEEP_TOP_K="1",
    )
    dag = module.neptune_retention_cleanup()
    assert timedelta(seconds=45) == module.SCHEDULE
    assert dag.params["keep_top_k"] == 1
    cron = _load(monkeypatch, "neptune_retention_cleanup", NEPTUNE_RETENTION_SCHEDULE="0 3 * * *")
    assert cron.SCHEDULE == "0 3 * * *"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"NEPTUNE_RETENTION_SCHEDULE": "-5"}, "NEPTUNE_RETENTION_SCHEDULE must be a positive number"),
        ({"NEPTUNE_RETENTION_KEEP_TOP_K": "two"}, "NEPTUNE_RETENTION_KEEP_TOP_K must be a whole number"),
        ({"NEPTUNE_RETENTION_KEEP_TOP_K": "-1"}, "NEPTUNE_RETENTION_KEEP_TOP_K must not be negative"),
    ],
)
def test_retention_settings_reject_bad_values(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        _load(monkeypatch, "neptune_retention_cleanup", **env)


def test_training_tasks_run_on_the_training_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    dag = _load(
        monkeypatch, "neptune_training_pipeline", NEPTUNE_TRAINING_QUEUE=None
    ).neptune_training_pipeline()
    queues = {task.task_id: task.queue for task in dag.tasks}
    on_training = {task_id for task_id, queue in queues.items() if queue == "training"}
    assert on_training == {
        "experiment.train",
        "experiment.log_metrics",
        *(f"experiment.upload_checkpoint_{slot}" for slot in range(1, 4)),
    }
    assert queues["experiment.log_val_metrics"] == queues["experiment.create_run"] != "training"
    gpu = _load(
        monkeypatch, "neptune_training_pipeline", NEPTUNE_TRAINING_QUEUE="gpu"
    ).neptune_training_pipeline()
    assert gpu.get_task("experiment.train").queue == "gpu"


def test_hyperparameter_sets_extend_the_built_in_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    module = _load(monkeypatch, "neptune_training_pipeline")
    func = module.hyperparameter_sets.function
    monkeypatch.setattr(module, "get_current_context", lambda: {"params": {"experiments": 8}})
    sets = func()
    assert len(sets) == 8
    assert [s["config"] for s in sets[:3]] == module.HYPERPARAMETERS
    names = [s["name"] for s in sets]
    assert len(set(names)) == 8, names
    assert all(s["name"] == s["config"]["name"] for s in sets)
    monkeypatch.setattr(module, "get_current_context", lambda: {"params": {"experiments": 2}})
    assert [s["config"] for s in func()] == module.HYPERPARAMETERS[:2]
