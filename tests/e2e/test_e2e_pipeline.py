"""The example DAGs in real Airflow (scheduler, dag-processor, triggerer, api-server; LocalExecutor)
against the emulator: what the emulator holds afterwards, deferral, the pool cap, the connection form.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.scenario import (
    CREATE_TASK,
    POOL,
    RETENTION_DAG,
    RETENTION_TASK,
    SENSOR_TASK,
    TRAINING_DAG,
    RunSnapshot,
    Scenario,
    ScenarioSettings,
    gate_uploads,
    running_scenario,
)
from tests.e2e.stack import log_text, max_overlap

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

SETTINGS = ScenarioSettings(project="airflow/e2e")
SERIES = ("train/loss", "train/accuracy", "val/loss", "val/accuracy")


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    """One emulator and one Airflow stack for the whole module."""
    with running_scenario(tmp_path_factory.mktemp("e2e"), SETTINGS) as running:
        yield running


@pytest.fixture(scope="module")
def training(scenario: Scenario) -> dict[str, Any]:
    """Run the training pipeline once; snapshot every run before the clean-up changes them."""
    scenario.run_training()
    stats = scenario.emulator.stats()  # Airflow's traffic only: before the read-back below
    runs = scenario.created_runs()
    return {
        "runs": runs,
        "results": scenario.training_results(),
        "snapshots": [scenario.read_run(run) for run in runs],
        "stats": stats,
    }


@pytest.fixture(scope="module")
def retention(scenario: Scenario, training: dict[str, Any]) -> dict[str, Any]:
    """Run the clean-up once after training; snapshot the runs again."""
    scenario.run_retention()
    return {
        "report": scenario.xcom(RETENTION_DAG, RETENTION_TASK),
        "snapshots": [scenario.read_run(run) for run in training["runs"]],
    }


def test_connection_form_offers_the_neptune_type(scenario: Scenario) -> None:
    hooks = scenario.stack.api("GET", "/ui/connections/hook_meta")
    neptune = [hook for hook in hooks if hook["connection_type"] == "neptune"]
    assert len(neptune) == 1, [hook["connection_type"] for hook in hooks]
    meta = neptune[0]
    assert meta["hook_name"] == "Neptune"
    extra = meta["extra_fields"]
    for name in (
        "project",
        "mode",
        "rate_limit_per_second",
        "rate_limit_storage",
        "retry_count",
        "retry_backoff",
        "request_timeout",
        "logging_level",
    ):
        assert name in extra, f"connection form lacks {name}: {sorted(extra)}"
    assert extra["mode"]["schema"]["enum"][:4] == ["async", "sync", "offline", "read-only"]
    standard = meta["standard_fields"]
    assert standard["password"]["title"] == "API token"
    for hidden in ("schema", "port", "login"):
        assert standard.get(hidden) is None or standard[hidden].get("hidden"), hidden


def test_training_runs_hold_every_logged_point(training: dict[str, Any]) -> None:
    results: list[dict[str, Any]] = training["results"]
    snapshots: list[RunSnapshot] = training["snapshots"]
    assert len(snapshots) == 3
    assert len({snap.sys_id for snap in snapshots}) == 3, "one run per hyper-parameter set"
    for snap, result in zip(snapshots, results, strict=True):
        logged = result["metrics"]
        steps = [float(step) for step in result["steps"]]
        assert set(logged) == set(SERIES)
        for path in SERIES:
            assert snap.series[path] == list(zip(steps, logged[path], strict=True)), (snap.sys_id, path)
        training_fields = result["summary"]["training"]
        assert snap.fields["training/learning_rate"] == training_fields["learning_rate"]
        assert snap.fields["training/final_val_accuracy"] == logged["val/accuracy"][-1]
        assert snap.fields["airflow/state"] == "finished"
        assert snap.fields["airflow/dag_id"] == TRAINING_DAG
        assert snap.fields["parameters/epochs"] == SETTINGS.epochs
        assert snap.fields["sys/tags"] == {"example", "logistic-regression"}


def test_only_checkpoints_that_passed_the_gate_were_uploaded(
    scenario: Scenario, training: dict[str, Any]
) -> None:
    # What the upload tasks say they sent is what the runs hold.
    reported = sum(len(upload["uploaded"]) for upload in scenario.uploads())
    assert reported == sum(len(snap.checkpoints) for snap in training["snapshots"])
    for snap, result in zip(training["snapshots"], training["results"], strict=True):
        slots = result["checkpoints"]
        sent = gate_uploads([slot["score"] for slot in slots], SETTINGS.checkpoint_top_k)
        expected = {
            hashlib.sha256(Path(slot["path"]).read_bytes()).hexdigest(): slot
            for slot, passed in zip(slots, sent, strict=True)
            if passed
        }
        held = {entry["file"]: entry for entry in snap.checkpoints.values()}
        assert set(held) == set(expected), f"{snap.sys_id}: gate sent {sent}, run holds {snap.checkpoints}"
        for digest, entry in held.items():
            assert entry["sha256"] == digest, "the recorded sha256 is the uploaded bytes' digest"
            assert entry["score"] == pytest.approx(expected[digest]["score"])
            assert entry["step"] == pytest.approx(expected[digest]["epoch"])


def test_the_shared_budget_kept_throttling_rare(scenario: Scenario, training: dict[str, Any]) -> None:
    stats = training["stats"]
    assert stats["requests_total"] > 0
    assert stats["throttled_total"] <= 0.02 * stats["requests_total"], stats
    points = sum(summary["points_sent"] for summary in scenario.log_summaries())
    assert points == sum(snap.points for snap in training["snapshots"])


def test_deferrable_sensors_ran_in_the_triggerer(scenario: Scenario, training: dict[str, Any]) -> None:
    run_id = scenario.dag_runs[TRAINING_DAG]
    stack = scenario.stack
    sensors = [ti for ti in stack.task_instances(TRAINING_DAG, run_id) if ti["task_id"] == SENSOR_TASK]
    assert len(sensors) == 3
    for ti in sensors:
        assert ti["state"] == "success"
        # Look at every try: under load a try can be retried (e.g. a missed heartbeat), and the
        # retry may find the metric already there. At least one try must have deferred.
        tries = range(1, ti["try_number"] + 1)
        logs = {
            n: log_text(stack.task_log(TRAINING_DAG, run_id, SENSOR_TASK, n, ti["map_index"])) for n in tries
        }
        # The worker checked once, found the metric missing and handed the wait to the triggerer ...
        deferred = [n for n, text in logs.items() if "Pausing task as DEFERRED" in text]
        assert deferred, logs[ti["try_number"]][-3000:]
        # ... which ran the trigger, logging into a file of its own, until the condition was met.
        fired = [
            n
            for n in deferred
            if "Trigger fired event"
            in log_text(
                "\n".join(stack.trigger_logs(TRAINING_DAG, run_id, SENSOR_TASK, n, ti["map_index"]).values())
            )
        ]
        assert fired, (
            f"no triggerer log with a fired event for {SENSOR_TASK}[{ti['map_index']}], tries {deferred}"
        )
        # The successful (last) try reports the met condition.
        assert "val/accuracy >= 0.6 met" in logs[ti["try_number"]], logs[ti["try_number"]][-3000:]


def test_the_pool_capped_concurrent_neptune_tasks(scenario: Scenario, training: dict[str, Any]) -> None:
    intervals = scenario.pool_intervals(TRAINING_DAG)
    tis = scenario.stack.task_instances(TRAINING_DAG, scenario.dag_runs[TRAINING_DAG])
    in_pool = [ti for ti in tis if ti["pool"] == POOL]
    assert len(intervals) == len(in_pool) >= 1 + 3 * 7, "validate + create, 2 logs, 3 uploads, stop per set"
    assert {ti["task_id"] for ti in tis if ti["pool"] != POOL} == {
        SENSOR_TASK,
        "experiment.train",
        "hyperparameter_sets",
    }
    peak = max_overlap(intervals)
    assert peak <= SETTINGS.pool_slots, (
        f"{peak} tasks of pool {POOL} ran at once; it has {SETTINGS.pool_slots}"
    )
    # The cap was reached, so it was the pool (not a lack of work) that limited concurrency.
    assert peak == SETTINGS.pool_slots
    assert scenario.mapped_count(TRAINING_DAG, CREATE_TASK) == 3


def test_retention_kept_the_best_and_the_final_checkpoint(
    retention: dict[str, Any], training: dict[str, Any]
) -> None:
    report = retention["report"]
    deleted = 0
    for before, after in zip(training["snapshots"], retention["snapshots"], strict=True):
        entries = before.checkpoints
        assert set(after.checkpoints) <= set(entries)
        if not entries:
            continue
        final = max(entries, key=lambda key: entries[key]["step"])
        best_score = max(entry["score"] for entry in entries.values())
        assert final in after.checkpoints, "the final checkpoint is always kept"
        others = {key: entry for key, entry in after.checkpoints.items() if key != final}
        # keep_top_k=1: besides the final one, at most the single best one survives.
        assert len(others) <= SETTINGS.retention_keep_top_k, (before.checkpoints, after.checkpoints)
        assert all(entry["score"] == best_score for entry in others.values()), after.checkpoints
        if entries[final]["score"] < best_score:
            assert len(others) == 1, "the best checkpoint is kept"
        deleted += len(entries) - len(after.checkpoints)
        # Series and fields outside the namespace are untouched.
        assert after.series == before.series
    assert report["checkpoints_deleted"] == deleted
    assert report["runs_scanned"] >= 3


def test_environment_check_dag_succeeds(scenario: Scenario) -> None:
    run_id = scenario.run_environment_check()
    states = {ti["state"] for ti in scenario.stack.task_instances("neptune_environment_check", run_id)}
    assert states == {"success"}
