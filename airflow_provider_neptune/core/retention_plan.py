"""Retention planning: which checkpoints of which runs to keep and which to delete.

Pure and deterministic (no ``neptune``, no I/O), so the rules and the safety limits are unit-tested
without a server and a re-run over the same data always yields the same plan. Runs are planned one at
a time as a scan streams them (:class:`PlanBuilder`): the plan keeps only the runs that lose a checkpoint
and running totals, never every run's checkpoints.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from airflow_provider_neptune.core.checkpoint_records import (
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
    """What the scan found for one run (``internal_id``: the id the server edits the run by)."""

    run_id: str
    checkpoints: tuple[Checkpoint, ...]
    created_at: datetime | None = None
    run_metric: float | None = None
    internal_id: str = ""


@dataclass(frozen=True, slots=True)
class RunPlan:
    """The decision for one run: keys kept (with why) and keys deleted (with the bytes they free).

    ``deleted_fields`` holds, for each deleted key, which record fields it has (``Checkpoint.fields``),
    so the deletion can be sent without reading the run again.
    """

    run_id: str
    kept: Mapping[str, str]
    deleted: tuple[str, ...]
    bytes_freed: int
    mode: str = "top-k"
    internal_id: str = ""
    deleted_fields: tuple[int, ...] = ()

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
    """The whole plan with its totals and the safety check.

    ``runs`` holds the plans of the runs that lose at least one checkpoint (in scan order); the runs
    that keep everything are only counted (``runs_with_checkpoints``, ``checkpoints_found``,
    ``checkpoints_kept``), so the plan's size follows the work to do, not the project's size.
    """

    runs: tuple[RunPlan, ...]
    runs_scanned: int
    runs_with_checkpoints: int
    checkpoints_found: int
    checkpoints_kept: int
    extra: Mapping[str, Any] = field(default_factory=dict)

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
            "runs_with_checkpoints": self.runs_with_checkpoints,
            "runs_changed": len(self.runs),
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


def _rank_key(run_metric: float, run_id: str, direction: Direction) -> tuple[float, str]:
    """Sort key of a run by its metric, best first; ties go to the smaller run id."""
    return (-run_metric if direction == "max" else run_metric, run_id)


def best_run_ids(runs: Iterable[RunCheckpoints], count: int, direction: Direction) -> set[str]:
    """The ``count`` runs with the best ``run_metric`` (runs without a value never qualify)."""
    ranked = sorted(
        (_rank_key(r.run_metric, r.run_id, direction), r.run_id) for r in runs if r.run_metric is not None
    )
    return {run_id for _, run_id in ranked[:count]}


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
    gone = [c for c in run.checkpoints if c.key not in kept]
    return RunPlan(
        run_id=run.run_id,
        kept=kept,
        deleted=tuple(c.key for c in gone),
        bytes_freed=sum(c.size for c in gone if c.has_file),
        mode="final-only" if final_only else "top-k",
        internal_id=run.internal_id,
        deleted_fields=tuple(c.fields for c in gone),
    )


class _Ranked:
    """A run among the best so far: both its plans; ordered worst first (a min-heap pops the worst)."""

    __slots__ = ("final_only", "key", "seq", "top_k")

    def __init__(self, key: tuple[float, str], seq: int, top_k: RunPlan, final_only: RunPlan) -> None:
        self.key = key
        self.seq = seq
        self.top_k = top_k
        self.final_only = final_only

    def __lt__(self, other: _Ranked) -> bool:
        return self.key > other.key


class PlanBuilder:
    """Builds a :class:`RetentionPlan` from runs fed one at a time, holding only what the plan needs.

    Each run is planned when it arrives; only plans with deletions and running totals are kept. Under
    ``keep_best_runs`` both plans of a run (top-k and final-only) are held only while the run is among
    the best so far (a heap of at most ``keep_best_runs`` runs); every other run is held as its
    final-only plan.
    """

    def __init__(self, policy: RetentionPolicy, *, now: datetime) -> None:
        self._policy = policy
        self._cutoff = (
            now - timedelta(days=policy.final_only_older_than_days)
            if policy.final_only_older_than_days is not None
            else None
        )
        self._plans: dict[str, tuple[int, RunPlan]] = {}
        self._best: list[_Ranked] = []
        self._with_checkpoints = 0
        self._found = 0
        self._kept = 0

    def _hold(self, seq: int, plan: RunPlan) -> None:
        self._kept += len(plan.kept)
        if plan.deleted:
            self._plans[plan.run_id] = (seq, plan)

    def _release(self, plan: RunPlan) -> None:
        self._kept -= len(plan.kept)
        self._plans.pop(plan.run_id, None)

    def add(self, run: RunCheckpoints) -> None:
        """Plan one run (runs without checkpoints are ignored, as they have nothing to keep)."""
        if not run.checkpoints:
            return
        seq = self._with_checkpoints
        self._with_checkpoints += 1
        self._found += len(run.checkpoints)
        old = self._cutoff is not None and run.created_at is not None and run.created_at < self._cutoff
        count = self._policy.keep_best_runs
        if count is None:
            self._hold(seq, plan_run(run, self._policy, final_only=old))
            return
        final_only = plan_run(run, self._policy, final_only=True)
        if run.run_metric is None or count == 0:
            self._hold(seq, final_only)
            return
        # An old run still takes its place among the best runs (the rules apply independently).
        ranked = _Ranked(
            _rank_key(run.run_metric, run.run_id, self._policy.run_metric_direction),
            seq,
            final_only if old else plan_run(run, self._policy, final_only=False),
            final_only,
        )
        if len(self._best) < count:
            heapq.heappush(self._best, ranked)
            self._hold(seq, ranked.top_k)
            return
        if not self._best[0] < ranked:  # not better than the worst of the best so far
            self._hold(seq, final_only)
            return
        evicted = heapq.heapreplace(self._best, ranked)
        self._hold(seq, ranked.top_k)
        self._release(evicted.top_k)  # no longer among the best: it keeps only its final checkpoint
        self._hold(evicted.seq, evicted.final_only)

    def finish(self, runs_scanned: int | None = None) -> RetentionPlan:
        """The plan of every run added so far (in the order added); ``runs_scanned`` defaults to the
        number of runs with checkpoints."""
        return RetentionPlan(
            runs=tuple(plan for _, plan in sorted(self._plans.values(), key=lambda item: item[0])),
            runs_scanned=runs_scanned if runs_scanned is not None else self._with_checkpoints,
            runs_with_checkpoints=self._with_checkpoints,
            checkpoints_found=self._found,
            checkpoints_kept=self._kept,
        )


def build_plan(
    runs: Iterable[RunCheckpoints], policy: RetentionPolicy, *, now: datetime, runs_scanned: int | None = None
) -> RetentionPlan:
    """Plan every run that has checkpoints; ``now`` is explicit so the age rule is testable."""
    builder = PlanBuilder(policy, now=now)
    for run in runs:
        builder.add(run)
    return builder.finish(runs_scanned)
