"""
### Neptune checkpoint retention clean-up (daily)

Keeps, in every matched run of the project, the top-`keep_top_k` checkpoints by score, the final
one and any marked `keep`, and deletes the other checkpoints under `namespace` (written by
`NeptuneUploadArtifactOperator`). It never deletes a run's last checkpoint, never touches fields
outside the namespace, and refuses a plan that would delete more than `max_delete_fraction` of the
checkpoints it found; the task log then says which value would let it run.

**First run is a dry run.** With `dry_run` left at `auto`, the first run of this DAG (no earlier
successful run) only reports the plan in its log and XCom; later runs delete. Trigger with
`{"dry_run": true}` or `{"dry_run": false}` to choose explicitly.

**Params**: `project` (empty: the connection's), `namespace`, `keep_top_k`, `direction`
(`max` or `min`), `state` (only `inactive` runs by default: training has finished),
`older_than_days` (only runs created longer ago), `final_only_older_than_days` (runs older than
that keep only their final checkpoint), `dry_run`, `max_delete_fraction`.

**Deployment settings** (environment variables read when the DAG file is parsed):
`NEPTUNE_RETENTION_SCHEDULE` (default `@daily`: a cron expression or preset, or a number of
seconds between runs) and `NEPTUNE_RETENTION_KEEP_TOP_K` (the `keep_top_k` of scheduled runs,
default 3); scheduled runs take the params' defaults, so these are how to change what they do.

**Scheduling**: daily by default, one active run at a time, retries with exponential backoff. Every task uses
the Airflow pool `neptune_api` so the clean-up never competes with training DAGs for Neptune's
request budget; the demo and docker-compose create that pool (`airflow pools set neptune_api 4
"Neptune API"`). Needs the `neptune_default` connection.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import Param, dag

from airflow_provider_neptune.operators.artifacts import NeptuneArtifactRetentionOperator

# "auto": dry run when this DAG has no earlier successful run, real clean-up afterwards.
DRY_RUN = "{{ (not prev_start_date_success) if params.dry_run == 'auto' else params.dry_run }}"


def _schedule(value: str) -> str | timedelta:
    """NEPTUNE_RETENTION_SCHEDULE: seconds between runs (a number) or a cron expression/preset."""
    text = value.strip() or "@daily"
    try:
        seconds = float(text)
    except ValueError:
        return text
    if seconds <= 0:
        raise ValueError(f"NEPTUNE_RETENTION_SCHEDULE must be a positive number of seconds, got {value!r}")
    return timedelta(seconds=seconds)


def _keep_top_k(value: str) -> int:
    """NEPTUNE_RETENTION_KEEP_TOP_K: a whole number of checkpoints, at least 0."""
    try:
        keep = int(value.strip() or "3")
    except ValueError:
        raise ValueError(f"NEPTUNE_RETENTION_KEEP_TOP_K must be a whole number, got {value!r}") from None
    if keep < 0:
        raise ValueError(f"NEPTUNE_RETENTION_KEEP_TOP_K must not be negative, got {value!r}")
    return keep


SCHEDULE = _schedule(os.environ.get("NEPTUNE_RETENTION_SCHEDULE", ""))
KEEP_TOP_K = _keep_top_k(os.environ.get("NEPTUNE_RETENTION_KEEP_TOP_K", ""))


@dag(
    dag_id="neptune_retention_cleanup",
    schedule=SCHEDULE,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["neptune", "example", "retention"],
    default_args={
        "owner": "ml-platform",
        "retries": 3,
        "retry_delay": timedelta(minutes=1),
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=30),
        "pool": "neptune_api",
    },
    params={
        "project": Param("", type="string", description="workspace/project; empty: the connection's"),
        "namespace": Param("checkpoints", type="string", minLength=1, description="checkpoints namespace"),
        "keep_top_k": Param(
            KEEP_TOP_K, type="integer", minimum=0, description="checkpoints kept per run by score"
        ),
        "direction": Param("max", enum=["max", "min"], description="is a higher score better (max)?"),
        "state": Param("inactive", enum=["inactive", "active", ""], description="run state; empty: any"),
        "older_than_days": Param(0, type="number", minimum=0, description="only runs created longer ago"),
        "final_only_older_than_days": Param(
            None,
            type=["null", "number"],
            minimum=0,
            description="older runs keep only their final checkpoint",
        ),
        "dry_run": Param("auto", enum=["auto", True, False], description="auto: dry run on the first run"),
        "max_delete_fraction": Param(
            0.9, type="number", minimum=0, maximum=1, description="refuse plans deleting a larger share"
        ),
    },
)
def neptune_retention_cleanup() -> None:
    """Prune checkpoints of finished runs, within the shared request budget."""
    NeptuneArtifactRetentionOperator(
        task_id="prune_checkpoints",
        project="{{ params.project }}",
        namespace="{{ params.namespace }}",
        keep_top_k="{{ params.keep_top_k }}",
        direction="{{ params.direction }}",
        state="{{ params.state }}",
        older_than_days="{{ params.older_than_days }}",
        final_only_older_than_days="{{ params.final_only_older_than_days }}",
        dry_run=DRY_RUN,
        max_delete_fraction="{{ params.max_delete_fraction }}",
        execution_timeout=timedelta(hours=2),
    )


neptune_retention_cleanup()
