"""Runs-table rows fed into the plan: age filter, counts, the run metric's values, without a server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from neptune.internal.backends.api_model import AttributeType, AttributeWithProperties, LeaderboardEntry

from airflow_provider_neptune.core.checkpoint_records import RECORD_MARKER
from airflow_provider_neptune.core.retention_plan import PlanBuilder, RetentionPolicy
from airflow_provider_neptune.core.retention_scan import metric_value, scan_into

NOW = datetime(2026, 11, 26, 12, tzinfo=UTC)


def _text(when: datetime) -> str:
    """A datetime as the server writes it in a search page."""
    return when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _attr(path: str, kind: AttributeType, value: Any) -> AttributeWithProperties:
    return AttributeWithProperties(path, kind, {"value": value})


def _row(short_id: str, created: datetime, scores: list[float], metric: Any = None) -> LeaderboardEntry:
    """A search-page entry as the client yields it (datetimes still as text)."""
    attributes = [
        _attr("sys/id", AttributeType.STRING, short_id),
        _attr("sys/creation_time", AttributeType.DATETIME, _text(created)),
    ]
    if metric is not None:
        attributes.append(_attr("eval/acc", AttributeType.FLOAT, metric))
    for step, score in enumerate(scores):
        base = f"ckpt/step_{step}"
        attributes += [
            AttributeWithProperties(
                f"{base}/file", AttributeType.FILE, {"name": "m", "ext": "pt", "size": 8}
            ),
            _attr(f"{base}/score", AttributeType.FLOAT, score),
            _attr(f"{base}/step", AttributeType.FLOAT, float(step)),
            _attr(f"{base}/size", AttributeType.FLOAT, 8.0),
            _attr(f"{base}/sha256", AttributeType.STRING, f"{step:x}" * 64),
            _attr(f"{base}/name", AttributeType.STRING, "m.pt"),
            _attr(f"{base}/uploaded_at", AttributeType.DATETIME, _text(created + timedelta(seconds=step))),
            _attr(f"{base}/record", AttributeType.STRING, RECORD_MARKER),
        ]
    return LeaderboardEntry(id=f"uuid-{short_id}", attributes=attributes)


class _Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, event: Any, *args: Any, **kw: Any) -> None:
        self.lines.append(str(event) % args)


def test_rows_are_filtered_by_age_parsed_and_planned_with_their_internal_ids() -> None:
    rows = [
        _row("P-1", NOW - timedelta(days=5), [0.1, 0.9, 0.2]),
        _row("P-2", NOW - timedelta(days=4), [0.5, 0.4]),
        _row("P-3", NOW - timedelta(hours=1), [0.1, 0.9, 0.2]),  # too recent
    ]
    builder = PlanBuilder(RetentionPolicy(keep_top_k=1), now=NOW)
    log = _Log()
    counts = scan_into(
        builder,
        rows,
        namespace="ckpt",
        created_before=NOW - timedelta(days=1),
        run_metric=None,
        progress_every=1,
        task_log=log,
    )
    assert (counts.runs_matched, counts.runs_too_recent, counts.runs_scanned) == (3, 1, 2)
    assert log.lines == ["Scanned 1 runs so far", "Scanned 2 runs so far"]
    plan = builder.finish(runs_scanned=counts.runs_scanned)
    (changed,) = plan.runs  # P-2 keeps its best and its last: nothing to delete
    assert (changed.run_id, changed.internal_id, changed.deleted) == ("P-1", "uuid-P-1", ("step_0",))
    assert plan.checkpoints_found == 5


def test_run_metric_values() -> None:
    assert metric_value("R", "m", None) is None
    assert metric_value("R", "m", "None") is None
    assert metric_value("R", "m", 3) == 3.0
    assert metric_value("R", "m", "0.5") == 0.5
    for bad in (True, "high", float("nan"), {"a": 1}):
        with pytest.raises(ValueError, match=r"run R: run_metric 'm' holds"):
            metric_value("R", "m", bad)
