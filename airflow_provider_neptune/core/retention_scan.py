"""A runs-table scan fed into the retention plan: per row the age filter, the checkpoint records and
the run metric; rows are planned as they stream by (worker-side; ``neptune`` only inside the parsers)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from airflow_provider_neptune.core.checkpoint_records import checkpoints_from_fields
from airflow_provider_neptune.core.checkpoint_store import InfoLog, created_at, internal_id, table_row_fields
from airflow_provider_neptune.core.retention_plan import PlanBuilder, RunCheckpoints


@dataclass
class ScanCounts:
    """Runs the query matched, those skipped as created too recently, and those planned."""

    runs_matched: int = 0
    runs_too_recent: int = 0
    runs_scanned: int = 0


def metric_value(run_id: str, path: str, value: Any) -> float | None:
    """The run metric's value as a float (None when the run has none, also ``""`` or ``"None"`` text);
    numbers and numeric text are accepted, anything else is an error naming the run."""
    if value is None or (isinstance(value, str) and value.strip() in ("", "None")):
        return None
    if not isinstance(value, bool):
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = math.nan
        if math.isfinite(number):
            return number
    raise ValueError(
        f"run {run_id}: run_metric {path!r} holds {value!r}, not a finite number; "
        "name a float field or float series"
    )


def scan_into(
    builder: PlanBuilder,
    rows: Iterable[Any],
    *,
    namespace: str,
    created_before: datetime | None,
    run_metric: str | None,
    progress_every: int,
    task_log: InfoLog,
) -> ScanCounts:
    """Plan every row of ``rows`` (runs-table rows) into ``builder``, one at a time.

    Rows created at or after ``created_before`` (or without a creation time, when it is set) are
    counted as too recent and skipped. A progress line goes to ``task_log`` every ``progress_every``
    runs planned.
    """
    counts = ScanCounts()
    for row in rows:
        run_id, values, files = table_row_fields(row)
        counts.runs_matched += 1
        created = created_at(values)
        if created_before is not None and (created is None or created >= created_before):
            counts.runs_too_recent += 1
            continue
        counts.runs_scanned += 1
        if counts.runs_scanned % max(1, progress_every) == 0:
            task_log.info("Scanned %d runs so far", counts.runs_scanned)
        checkpoints = checkpoints_from_fields(values, files, namespace)
        metric = metric_value(run_id, run_metric, values.get(run_metric)) if run_metric else None
        builder.add(RunCheckpoints(run_id, tuple(checkpoints), created, metric, internal_id(row)))
    return counts
