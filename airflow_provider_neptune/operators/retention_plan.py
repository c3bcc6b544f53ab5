"""Retention planning: which checkpoints of which runs to keep and which to delete.

Pure and deterministic (no ``neptune``, no I/O), so the rules and the safety limits are unit-tested
without a server and a re-run over the same data always yields the same plan.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from airflow_provider_neptune.operators.checkpoint_records import (
    Checkpoint,
    Direction,
    final_checkpoint,
    ranked_by_score,
)

KEEP_TOP_K = "top-k"
KEEP_FINAL = "final"
KEEP_MARKED = "marked keep"
KEEP_LAST_REMAINING = "last remaining checkpoint"


@dataclass(frozen=True)
class RetentionPolicy:
    """The rules: per run top-k + final + marked; optionally project-wide "best runs" and age rules.

    ``keep_best_runs``: only the best N runs by their ``run_metric`` value keep their top-k; the others
    keep only their final checkpoint. ``final_only_older_than_days``: runs created longer ago than that
    keep only their final checkpoint. Marked checkpoints are kept in every case.
    """

    keep_top_k: int = 3
    direction: Direction = "max"
    keep_last: bool = True
    keep_best_runs: int | None = None
    run_metric_direction: Direction = "max"
    final_only_older_than_days: float | None = None

    def __post_init__(self) -> None:
        if self.keep_top_k < 0:
            raise ValueError(f"keep_top_k must be >= 0, got {self.keep_top_k}")
        if self.keep_best_runs is not None and self.keep_best_runs < 0:
            raise ValueError(f"keep_best_runs must be >= 0, got {self.keep_best_runs}")
        if self.final_only_older_than_days is not None and self.final_only_older_than_days < 0:
            raise ValueError(
                f"final_only_older_than_days must be >= 0, got {self.final_only_older_than_days}"
            )


@dataclass(frozen=True)
class RunCheckpoints:
    """What the scan found for one run."""

    run_id: str
    checkpoints: tuple[Checkpoint, ...]
    created_at: datetime | None = None
    run_metric: float | None = None


@dataclass(frozen=True)
class RunPlan:
    """The decision for one run: keys kept (with why) and keys deleted (with the bytes they free)."""

    run_id: str
    kept: Mapping[str, str]
    deleted: tuple[str, ...]
    bytes_freed: int
    mode: str = "top-k"

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form for XCom and logs."""
        return {
            "run_id": self.run_id,
            "mode": self.mode,
            "keep": dict(self.kept),
            "delete": list(self.deleted),
            "bytes_freed": self.bytes_freed,
        }


@dataclass(frozen=True)
class RetentionPlan:
    """The whole plan with its totals and the safety check."""

    runs: tuple[RunPlan, ...]
    runs_scanned: int
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def checkpoints_found(self) -> int:
        """Checkpoint entries found in the planned runs."""
        return sum(len(r.kept) + len(r.deleted) for r in self.runs)

    @property
    def checkpoints_kept(self) -> int:
        """Entries the plan keeps."""
        return sum(len(r.kept) for r in self.runs)

    @property
    def checkpoints_deleted(self) -> int:
        """Entries the plan deletes."""
        return sum(len(r.deleted) for r in self.runs)

    @property
    def bytes_freed(self) -> int:
        """Bytes the deletions free (entries whose file is already gone count 0)."""
        return sum(r.bytes_freed for r in self.runs)

    @property
    def delete_fraction(self) -> float:
        """Share of the entries found that the plan deletes (0 when none were found)."""
        found = self.checkpoints_found
        return self.checkpoints_deleted / found if found else 0.0

    def refusal(self, max_delete_fraction: float) -> str | None:
        """Why this plan must not run under ``max_delete_fraction``, or None when it may."""
        if self.delete_fraction <= max_delete_fraction + 1e-12:
            return None
        needed = _ceil2(self.delete_fraction)
        return (
            f"refusing to delete {self.checkpoints_deleted} of {self.checkpoints_found} checkpoints "
            f"({self.delete_fraction:.0%}): more than max_delete_fraction={max_delete_fraction:g}. "
            f"Review the plan with dry_run=True, then set max_delete_fraction={needed:g} (or 1.0 to allow "
            "any plan) to let it run."
        )

    def summary(self, *, include_plan: bool, plan_limit: int = 200) -> dict[str, Any]:
        """Totals (and, when asked, the plan of at most ``plan_limit`` runs with deletions) for XCom."""
        result: dict[str, Any] = {
            "runs_scanned": self.runs_scanned,
            "runs_with_checkpoints": len(self.runs),
            "checkpoints_found": self.checkpoints_found,
            "checkpoints_kept": self.checkpoints_kept,
            "checkpoints_deleted": self.checkpoints_deleted,
            "bytes_freed": self.bytes_freed,
            "delete_fraction": round(self.delete_fraction, 4),
            **self.extra,
        }
        if include_plan:
            changed = [r for r in self.runs if r.deleted]
            result["plan"] = [r.as_dict() for r in changed[:plan_limit]]
            result["plan_runs_not_shown"] = max(0, len(changed) - plan_limit)
        return result


def _ceil2(value: float) -> float:
    hundredths = int(value * 100)
    if hundredths / 100 < value:
        hundredths += 1
    return min(hundredths / 100, 1.0)


def best_run_ids(runs: Iterable[RunCheckpoints], count: int, direction: Direction) -> set[str]:
    """The ``count`` runs with the best ``run_metric`` (runs without a value never qualify)."""
    sign = -1.0 if direction == "max" else 1.0
    scored = [r for r in runs if r.run_metric is not None]
    scored.sort(key=lambda r: (sign * (r.run_metric if r.run_metric is not None else 0.0), r.run_id))
    return {r.run_id for r in scored[:count]}


def plan_run(run: RunCheckpoints, policy: RetentionPolicy, *, final_only: bool) -> RunPlan:
    """Keep top-k (unless ``final_only``), the final one and marked ones; delete the rest.

    Entries whose file is already gone (a deletion interrupted half-way) hold no bytes and are always
    removed. At least one checkpoint with a file is always kept.
    """
    with_file = [c for c in run.checkpoints if c.has_file]
    kept: dict[str, str] = {}
    for checkpoint in with_file:
        if checkpoint.keep:
            kept[checkpoint.key] = KEEP_MARKED
    if not final_only:
        for checkpoint in ranked_by_score(with_file, policy.direction)[: policy.keep_top_k]:
            kept.setdefault(checkpoint.key, KEEP_TOP_K)
    final = final_checkpoint(with_file)
    if final is not None and (policy.keep_last or final_only):
        kept.setdefault(final.key, KEEP_FINAL)
    if final is not None and not kept:
        kept[final.key] = KEEP_LAST_REMAINING
    deleted = tuple(c.key for c in run.checkpoints if c.key not in kept)
    freed = sum(c.size for c in run.checkpoints if c.key not in kept and c.has_file)
    return RunPlan(
        run_id=run.run_id,
        kept=kept,
        deleted=deleted,
        bytes_freed=freed,
        mode="final-only" if final_only else "top-k",
    )


def build_plan(
    runs: Iterable[RunCheckpoints], policy: RetentionPolicy, *, now: datetime, runs_scanned: int | None = None
) -> RetentionPlan:
    """Plan every run that has checkpoints; ``now`` is explicit so the age rule is testable."""
    with_checkpoints = [r for r in runs if r.checkpoints]
    best: set[str] | None = None
    if policy.keep_best_runs is not None:
        best = best_run_ids(with_checkpoints, policy.keep_best_runs, policy.run_metric_direction)
    cutoff = (
        now - timedelta(days=policy.final_only_older_than_days)
        if policy.final_only_older_than_days is not None
        else None
    )
    plans = []
    for run in with_checkpoints:
        final_only = (best is not None and run.run_id not in best) or (
            cutoff is not None and run.created_at is not None and run.created_at < cutoff
        )
        plans.append(plan_run(run, policy, final_only=final_only))
    return RetentionPlan(
        runs=tuple(plans),
        runs_scanned=runs_scanned if runs_scanned is not None else len(with_checkpoints),
    )
