"""
### Neptune environment check across workers

Runs `NeptuneValidateEnvironmentOperator` once on each Celery queue, then compares the
fingerprints. A worker with another `neptune` version, a missing variable, a full data
directory, a skewed clock or a connection that does not work fails its own check; the
`compare` task then fails naming the workers and the packages (or variables, or modes)
that differ, so a training DAG placed after this group never starts on an inconsistent fleet.

**Queues** come from the environment variable `NEPTUNE_ENV_CHECK_QUEUES` (comma-separated,
read when the DAG file is parsed; default `default,training`). With CeleryExecutor every
listed queue needs a worker consuming it (`airflow celery worker -q default,training`),
or its check waits in the queue. LocalExecutor ignores queues: both checks run on the
local host and the compare checks that host against itself.

**Params**: `run_id` (optional `sys/id` of a Neptune run): when set, every worker's
fingerprint is logged to that run under `environment/<hostname>/<queue>`.

Needs the `neptune_default` connection and the `neptune_api` pool.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import Param, dag

from airflow_provider_neptune.operators.fingerprints import environment_check_group

QUEUES = [
    q.strip() for q in os.environ.get("NEPTUNE_ENV_CHECK_QUEUES", "default,training").split(",") if q.strip()
]


@dag(
    dag_id="neptune_environment_check",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    doc_md=__doc__,
    tags=["neptune", "example", "environment"],
    params={"run_id": Param("", type="string", description="Neptune run sys/id to log fingerprints to")},
    default_args={
        "owner": "ml-platform",
        "retries": 1,
        "retry_delay": timedelta(seconds=10),
        "retry_exponential_backoff": 2.0,
        "pool": "neptune_api",
    },
)
def neptune_environment_check() -> None:
    """Fan out one environment check per queue, then compare the fingerprints."""
    environment_check_group(
        queues=QUEUES,
        requirements={"numpy": ">=1.24"},
        required_env=["NEPTUNE_API_TOKEN", "NEPTUNE_PROJECT"],
        min_free_disk_mb=100,
        max_clock_skew_seconds=30,
        run_id="{{ params.run_id }}",
    )


neptune_environment_check()
