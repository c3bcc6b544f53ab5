"""Retention planning rules and safety limits, without a server."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from airflow_provider_neptune.core.checkpoint_records import Checkpoint
from airflow_provider_neptune.core.retention_plan import (
    KEEP_FINAL,
    KEEP_LAST_REMAINING,
    KEEP_MARKED,
    KEEP_TOP_K,
    RetentionPolicy,
    RunCheckpoints,
    best_run_ids,
    build_plan,
    plan_run,
)

NOW = datetime(2026, 11, 26, 12, tzinfo=UTC)


def _run(run_id: str, scores: list[float | None], **kwargs: object) -> RunCheckpoints:
    checkpoints = tuple(
        Checkpoint(key=f"step_{i}", sha256=f"h{i}", score=s, step=float(i), size=10 + i)
        for i, s in enumerate(scores)
    )
    return RunCheckpoints(run_id=run_id, checkpoints=checkpoints, **kwargs)  # type: ignore[arg-type]


def test_keeps_top_k_and_final_deletes_rest_and_counts_bytes() -> None:
    run = _run("R-1", [0.1, 0.9, 0.5, 0.8, 0.2, 0.3])
    plan = plan_run(run, RetentionPolicy(keep_top_k=2), final_only=False)
    assert plan.kept == {"step_1": KEEP_TOP_K, "step_3": KEEP_TOP_K, "step_5": KEEP_FINAL}
    assert plan.deleted == ("step_0", "step_2", "step_4")
    assert plan.bytes_freed == 10 + 12 + 14


def test_min_direction_and_keep_last_false() -> None:
    run = _run("R-1", [0.4, 0.1, 0.3, 0.2])
    plan = plan_run(run, RetentionPolicy(keep_top_k=2, direction="min", keep_last=False), final_only=False)
    assert set(plan.kept) == {"step_1", "step_3"}
    assert plan.deleted == ("step_0", "step_2")


def test_ties_keep_the_earlier_checkpoint() -> None:
    run = _run("R-1", [0.5, 0.7, 0.7, 0.1])
    plan = plan_run(run, RetentionPolicy(keep_top_k=1, keep_last=False), final_only=False)
    assert set(plan.kept) == {"step_1"}


def test_marked_keep_survives_even_final_only() -> None:
    checkpoints = (
        Checkpoint(key="a", sha256="1", score=0.9, step=1, size=5, keep=True),
        Checkpoint(key="b", sha256="2", score=0.8, step=2, size=5),
        Checkpoint(key="c", sha256="3", score=0.1, step=3, size=5),
    )
    plan = plan_run(RunCheckpoints("R", checkpoints), RetentionPolicy(keep_top_k=3), final_only=True)
    assert plan.kept == {"a": KEEP_MARKED, "c": KEEP_FINAL}
    assert plan.deleted == ("b",)


def test_never_deletes_last_remaining_checkpoint() -> None:
    run = _run("R-1", [0.3, 0.2])
    plan = plan_run(run, RetentionPolicy(keep_top_k=0, keep_last=False), final_only=False)
    assert plan.kept == {"step_1": KEEP_LAST_REMAINING}
    assert plan.deleted == ("step_0",)


def test_unscored_checkpoints_rank_below_scored_ones() -> None:
    run = _run("R-1", [None, 0.1, None, 0.2, None])
    plan = plan_run(run, RetentionPolicy(keep_top_k=1, keep_last=False), final_only=False)
    assert set(plan.kept) == {"step_3"}


def test_entries_without_file_are_finished_and_free_nothing() -> None:
    checkpoints = (
        Checkpoint(key="gone", sha256="1", score=0.99, step=9, size=100, has_file=False),
        Checkpoint(key="ok", sha256="2", score=0.5, step=1, size=7),
    )
    plan = plan_run(RunCheckpoints("R", checkpoints), RetentionPolicy(keep_top_k=3), final_only=False)
    assert plan.kept == {"ok": KEEP_TOP_K}
    assert plan.deleted == ("gone",)
    assert plan.bytes_freed == 0


def test_plan_is_idempotent_after_applying_it() -> None:
    run = _run("R-1", [0.4, 0.9, 0.5, 0.8, 0.1, 0.6, 0.3])
    policy = RetentionPolicy(keep_top_k=3)
    first = plan_run(run, policy, final_only=False)
    remaining = RunCheckpoints("R-1", tuple(c for c in run.checkpoints if c.key in first.kept))
    second = plan_run(remaining, policy, final_only=False)
    assert second.deleted == ()
    assert second.kept == first.kept


def test_best_runs_rule_leaves_other_runs_with_final_only() -> None:
    runs = [
        _run("A", [0.1, 0.9, 0.2], run_metric=0.95),
        _run("B", [0.1, 0.9, 0.2], run_metric=0.50),
        _run("C", [0.1, 0.9, 0.2], run_metric=None),
    ]
    plan = build_plan(runs, RetentionPolicy(keep_top_k=2, keep_best_runs=1), now=NOW)
    by_run = {r.run_id: r for r in plan.runs}
    assert set(by_run["A"].kept) == {"step_1", "step_2"}
    assert by_run["A"].mode == "top-k"
    for name in ("B", "C"):
        assert by_run[name].kept == {"step_2": KEEP_FINAL}
        assert by_run[name].mode == "final-only"


def test_age_rule_only_hits_old_runs() -> None:
    runs = [
        _run("old", [0.9, 0.1, 0.2], created_at=NOW - timedelta(days=10)),
        _run("new", [0.9, 0.1, 0.2], created_at=NOW - timedelta(days=1)),
    ]
    plan = build_plan(runs, RetentionPolicy(keep_top_k=1, final_only_older_than_days=7), now=NOW)
    by_run = {r.run_id: r for r in plan.runs}
    assert set(by_run["old"].kept) == {"step_2"}
    assert set(by_run["new"].kept) == {"step_0", "step_2"}


def test_totals_and_refusal_message() -> None:
    runs = [_run("A", [0.1, 0.2, 0.3, 0.4]), _run("B", [0.5]), _run("empty", [])]
    plan = build_plan(runs, RetentionPolicy(keep_top_k=1), now=NOW, runs_scanned=3)
    assert (plan.checkpoints_found, plan.checkpoints_kept, plan.checkpoints_deleted) == (5, 2, 3)
    assert plan.delete_fraction == pytest.approx(0.6)
    assert plan.refusal(0.6) is None
    message = plan.refusal(0.5)
    assert message is not None
    assert "3 of 5" in message
    assert "max_delete_fraction=0.6" in message
    summary = plan.summary(include_plan=True)
    assert summary["runs_scanned"] == 3
    assert summary["runs_with_checkpoints"] == 2
    assert summary["bytes_freed"] == 10 + 11 + 12
    assert [p["run_id"] for p in summary["plan"]] == ["A"]
    assert summary["plan_runs_not_shown"] == 0
    assert plan.summary(include_plan=True, plan_limit=0)["plan_runs_not_shown"] == 1
    assert "plan" not in plan.summary(include_plan=False)


def test_policy_validation() -> None:
    with pytest.raises(ValueError, match="keep_top_k"):
        RetentionPolicy(keep_top_k=-1)
    with pytest.raises(ValueError, match="final_only_older_than_days"):
        RetentionPolicy(final_only_older_than_days=-2)


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("direction", ["max", "min"])
def test_streamed_best_runs_plan_matches_ranking_all_runs_at_once(seed: int, direction: str) -> None:
    """The builder keeps a heap of the best runs as they stream by; the result must equal planning
    with the whole project ranked first (ties in the metric included, runs without a metric too)."""
    rng = random.Random(seed)
    runs = [
        _run(
            f"R{rng.randrange(1000):03d}-{i}",
            [
                rng.choice([None, *(round(rng.random(), 1) for _ in range(3))])
                for _ in range(rng.randrange(0, 6))
            ],
            run_metric=rng.choice([None, 0.1, 0.5, 0.5, rng.random()]),
            created_at=NOW - timedelta(days=rng.randrange(0, 20)),
        )
        for i in range(rng.randrange(1, 40))
    ]
    policy = RetentionPolicy(
        keep_top_k=rng.randrange(0, 4),
        keep_best_runs=rng.randrange(0, 8),
        run_metric_direction="max" if direction == "max" else "min",
        final_only_older_than_days=rng.choice([None, 10.0]),
    )
    best = best_run_ids(
        [r for r in runs if r.checkpoints], policy.keep_best_runs or 0, policy.run_metric_direction
    )
    cutoff = NOW - timedelta(days=10)
    expected = [
        plan_run(
            r,
            policy,
            final_only=r.run_id not in best
            or (
                policy.final_only_older_than_days is not None
                and r.created_at is not None
                and r.created_at < cutoff
            ),
        )
        for r in runs
        if r.checkpoints
    ]
    plan = build_plan(runs, policy, now=NOW, runs_scanned=len(runs))
    assert plan.runs == tuple(p for p in expected if p.deleted)
    assert plan.checkpoints_found == sum(len(p.kept) + len(p.deleted) for p in expected)
    assert plan.checkpoints_kept == sum(len(p.kept) for p in expected)
    assert plan.runs_with_checkpoints == len(expected)
