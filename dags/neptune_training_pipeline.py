"""
### Neptune example: a training pipeline tracked in Neptune

Trains a small logistic-regression model (numpy, generated data) once per hyper-parameter set and
tracks each training as its own Neptune run. Per hyper-parameter set, in a mapped task group:

1. `create_run`: one Neptune run per set and DAG run (deterministic custom run id: a retried task
   reopens the same run), the DAG params recorded under `parameters/`.
2. `train`: the model, writing per-epoch metrics (`train/loss`, `train/accuracy`, `val/loss`,
   `val/accuracy`) to JSON files and checkpoints at three evenly spaced epochs (the last is final).
3. `log_metrics`: the training curves in batched requests; a retry resumes after the server's
   last step, so no point is sent twice.
4. `upload_checkpoint_<k>`: gated uploads, in epoch order: a checkpoint is uploaded only when its
   validation accuracy is among the best `checkpoint_top_k` so far in that run.
5. `log_val_metrics`: the validation curves, last, so that whoever sees `val/accuracy` (a model
   registry, the gate below) can rely on the run's checkpoints being stored.
6. `wait_for_val_accuracy`: a deferrable sensor, the quality gate: it starts as soon as the run
   exists and waits in the triggerer (no worker slot) until `val/accuracy` reaches `min_val_accuracy`.
7. `stop_run`: final summary fields, then a bounded stop that fails if any data was left unsent.

`validate_environment` runs first: package versions, the connection, the client's data directory.
`hyperparameter_sets` then lists the sets: the built-in three, extended to `experiments` sets.

**Queues**: `train`, `log_metrics` and the uploads (the tasks that read what training wrote) run
on the Celery queue named by the environment variable `NEPTUNE_TRAINING_QUEUE` (read when the DAG
file is parsed; default `training`), everything else on the default queue: with CeleryExecutor
both queues need a worker (docker-compose.yaml has one each); LocalExecutor ignores queues.

The hyper-parameter sets train in parallel and log at the same time: they share the connection's
request budget (rate limiter) and the Airflow pool **`neptune_api`**, which caps how many tasks talk
to Neptune at once (the demo and docker-compose create it: `airflow pools set neptune_api 4 ...`).
The sensor waits in the default pool: it holds no slot while deferred, and it must not queue
behind the writers whose data it waits for.

**Params**: `epochs` (at least 3), `samples`, `experiments`, `min_val_accuracy`, `checkpoint_top_k`,
`output_dir` (where training writes; empty: a folder in the system temp dir. With workers on
several hosts use shared storage, since later tasks read the files by path).
**Needs**: the `neptune_default` connection, numpy on the workers.
"""

from __future__ import annotations

import os
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import Param, chain, dag, get_current_context, task, task_group

from airflow_provider_neptune.operators import (
    NeptuneCreateRunOperator,
    NeptuneLogMetricsOperator,
    NeptuneStopRunOperator,
    NeptuneUploadArtifactOperator,
    NeptuneValidateEnvironmentOperator,
)
from airflow_provider_neptune.sensors import NeptuneMetricSensor

DAG_ID = "neptune_training_pipeline"
POOL = "neptune_api"
# Checkpoints per training, at evenly spaced epochs; one gated upload task each.
CHECKPOINT_SLOTS = 3
HYPERPARAMETERS: list[dict[str, Any]] = [
    {"name": "lr-0.01", "learning_rate": 0.01, "l2": 0.0},
    {"name": "lr-0.1", "learning_rate": 0.1, "l2": 0.001},
    {"name": "lr-0.5-l2", "learning_rate": 0.5, "l2": 0.01},
]
TRAINING_QUEUE = os.environ.get("NEPTUNE_TRAINING_QUEUE", "").strip() or "training"


@task(pool="default_pool")
def hyperparameter_sets() -> list[dict[str, Any]]:
    """The sets to train: the built-in ones, then more learning rates until `experiments` sets."""
    count = int(get_current_context()["params"]["experiments"])
    sets = [dict(hp) for hp in HYPERPARAMETERS[:count]]
    for index in range(len(sets), count):
        rate = round(0.02 * (index + 1), 4)
        sets.append({"name": f"lr-{rate}-{index}", "learning_rate": rate, "l2": 0.001})
    return [{"name": hp["name"], "config": hp} for hp in sets]


@task(multiple_outputs=True, pool="default_pool", queue=TRAINING_QUEUE)
def train(config: dict[str, Any]) -> dict[str, Any]:
    """Train one hyper-parameter set; return the metrics file, steps and one record per checkpoint slot."""
    from neptune_example_model import TrainingConfig, checkpoint_epochs
    from neptune_example_model import train as fit

    context = get_current_context()
    params = context["params"]
    settings = TrainingConfig.from_mapping(
        {**config, "epochs": params["epochs"], "samples": params["samples"]}
    )
    base = Path(params["output_dir"] or os.path.join(tempfile.gettempdir(), DAG_ID))
    out_dir = base / context["run_id"].replace(":", "_").replace("+", "_") / settings.name
    result = fit(settings, out_dir, checkpoint_epochs(settings.epochs, CHECKPOINT_SLOTS))
    outputs: dict[str, Any] = {
        "train_metrics_path": result["metrics_paths"]["train"],
        "val_metrics_path": result["metrics_paths"]["val"],
        "steps": result["steps"],
        "summary": {
            "training": {
                "model": "logistic-regression",
                "learning_rate": settings.learning_rate,
                "l2": settings.l2,
                "epochs": settings.epochs,
                "best_val_accuracy": result["best_val_accuracy"],
                "final_val_accuracy": result["final_val_accuracy"],
            }
        },
    }
    for slot, checkpoint in enumerate(result["checkpoints"], start=1):
        outputs[f"checkpoint_{slot}"] = checkpoint["path"]
        outputs[f"checkpoint_{slot}_epoch"] = checkpoint["epoch"]
        outputs[f"checkpoint_{slot}_score"] = checkpoint["score"]
    return outputs


@task_group
def experiment(name: str, config: dict[str, Any]) -> None:
    """Create, train, log, upload, wait and stop for one hyper-parameter set (a mapped group)."""
    create_run = NeptuneCreateRunOperator(
        task_id="create_run",
        name=name,
        tags=["example", "logistic-regression"],
        description="neptune_training_pipeline, DAG run {{ run_id }}",
    )
    # XComArgs resolve per map index inside the mapped group; typed Any for the operators' str params.
    run_id: Any = create_run.output
    trained: Any = train(config)
    log_metrics = NeptuneLogMetricsOperator(
        task_id="log_metrics",
        run_id=run_id,
        metrics_path=trained["train_metrics_path"],
        steps=trained["steps"],
        queue=TRAINING_QUEUE,
    )
    uploads = [
        NeptuneUploadArtifactOperator(
            task_id=f"upload_checkpoint_{slot}",
            run_id=run_id,
            path=trained[f"checkpoint_{slot}"],
            score=trained[f"checkpoint_{slot}_score"],
            step=trained[f"checkpoint_{slot}_epoch"],
            namespace="checkpoints",
            only_if_better=True,
            keep_top_k="{{ params.checkpoint_top_k }}",
            direction="max",
            queue=TRAINING_QUEUE,
        )
        for slot in range(1, CHECKPOINT_SLOTS + 1)
    ]
    # Validation results go out last: whoever sees val/accuracy can rely on the checkpoints being stored.
    log_val_metrics = NeptuneLogMetricsOperator(
        task_id="log_val_metrics",
        run_id=run_id,
        metrics_path=trained["val_metrics_path"],
        steps=trained["steps"],
    )
    wait = NeptuneMetricSensor(
        task_id="wait_for_val_accuracy",
        run_id=run_id,
        path="val/accuracy",
        condition=">=",
        threshold="{{ params.min_val_accuracy }}",
        value_mode="last",
        deferrable=True,
        poke_interval=2,
        timeout=600,
        pool="default_pool",
        # Start (and defer) before the writers queued for the neptune_api pool.
        priority_weight=100,
        weight_rule="absolute",
    )
    stop = NeptuneStopRunOperator(task_id="stop_run", run_id=run_id, final_fields=trained["summary"])
    create_run >> [trained, wait]
    chain(trained, log_metrics, *uploads, log_val_metrics, stop)
    wait >> stop


@dag(
    dag_id=DAG_ID,
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["neptune", "example", "training"],
    default_args={
        "owner": "ml-platform",
        "retries": 2,
        "retry_delay": timedelta(seconds=10),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=5),
        "pool": POOL,
    },
    params={
        "epochs": Param(
            8, type="integer", minimum=CHECKPOINT_SLOTS, maximum=500, description="training epochs"
        ),
        "samples": Param(400, type="integer", minimum=20, maximum=1_000_000, description="generated samples"),
        "experiments": Param(
            len(HYPERPARAMETERS),
            type="integer",
            minimum=1,
            maximum=64,
            description="hyper-parameter sets to train (the built-in ones first, then more learning rates)",
        ),
        "min_val_accuracy": Param(
            0.6, type="number", minimum=0, maximum=1, description="the sensor waits for val/accuracy >= this"
        ),
        "checkpoint_top_k": Param(
            2, type="integer", minimum=1, description="upload a checkpoint only if among the best k so far"
        ),
        "output_dir": Param("", type="string", description="where training writes; empty: system temp dir"),
    },
)
def neptune_training_pipeline() -> None:
    """Validate the environment, then train and track every hyper-parameter set in parallel."""
    validate = NeptuneValidateEnvironmentOperator(
        task_id="validate_environment",
        requirements={"numpy": ">=1.26"},
        check_connection=True,
        min_free_disk_mb=50,
    )
    sets = hyperparameter_sets()
    experiments = experiment.expand_kwargs(sets)
    validate >> sets >> experiments


neptune_training_pipeline()
