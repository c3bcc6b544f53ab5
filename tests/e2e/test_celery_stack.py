"""The distributed stack of docker-compose.yaml, run for real: CeleryExecutor, PostgreSQL, Redis,
the emulator and two Celery workers (queues default and training), each service a process tree of
its own started by tests.e2e.compose_stack from the file. Everything is observed through the REST
API, the emulator's control endpoints and the plain neptune client; the stack starts once.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.compose_stack import ComposeStack, EmulatorControl, Loopback, load_services
from tests.e2e.scenario import (
    CREATE_TASK,
    ENVIRONMENT_DAG,
    EXAMPLE_DAGS,
    LOG_TASKS,
    RETENTION_DAG,
    RETENTION_TASK,
    SENSOR_TASK,
    TRAINING_DAG,
    RunSnapshot,
    read_run,
)
from tests.e2e.stack import StackError, log_text, parse_time, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1200)]

EXPERIMENTS = 8
# Test-only settings, as a docker-compose.override.yaml would add them: a killed worker's task is
# noticed after 30 s instead of 5 min; DAG files are parsed once (the default re-parses every 30 s,
# which costs a core on a small machine); the clean-up runs every 30 s and keeps one checkpoint.
OVERRIDES: dict[str, dict[str, str | None]] = {
    "*": {
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",
        "NEPTUNE_RETENTION_SCHEDULE": "30",
        "NEPTUNE_RETENTION_KEEP_TOP_K": "1",
    }
}
TRAINING_WORKER = "airflow-worker-training"


@dataclass
class Celery:
    """The running compose stack, its emulator and what the tests ran on it."""

    stack: ComposeStack
    emulator: EmulatorControl
    home: Path
    budget: float
    created: list[str] = field(default_factory=list)

    def training_conf(self, experiments: int, epochs: int = 8) -> dict[str, Any]:
        return {
            "experiments": experiments,
            "epochs": epochs,
            "samples": 400,
            "output_dir": str(self.home / "training-output"),
        }

    def xcom(
        self, dag_id: str, run_id: str, task_id: str, map_index: int = -1, key: str = "return_value"
    ) -> Any:
        path = (
            f"/api/v2/dags/{dag_id}/dagRuns/{_q(run_id)}/taskInstances/{task_id}/xcomEntries/{key}"
            f"?map_index={map_index}"
        )
        value = self.stack.api("GET", path)["value"]
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                return value
        return value

    def read_back(self, sys_id: str) -> RunSnapshot:
        """One run as the plain client reads it (the emulator's limit lifted: reading is not the test)."""
        previous = self.emulator.set_faults(rate_limit=None)
        # Only for this read: the variable must not leak into the tests that run after this module.
        saved = os.environ.get("NEPTUNE_ALLOW_SELF_SIGNED_CERTIFICATE")
        os.environ["NEPTUNE_ALLOW_SELF_SIGNED_CERTIFICATE"] = "1"
        try:
            return read_run(self.emulator.api_token, self.emulator.project, sys_id, self.home / "downloads")
        finally:
            if saved is None:
                os.environ.pop("NEPTUNE_ALLOW_SELF_SIGNED_CERTIFICATE", None)
            else:
                os.environ["NEPTUNE_ALLOW_SELF_SIGNED_CERTIFICATE"] = saved
            self.emulator.set_faults(rate_limit=previous.get("rate_limit"))


def _q(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


# Module scope: one start per test session (only this module uses it), stopped before the other
# e2e modules start their own Airflow, so that two stacks never share the small machine.
@pytest.fixture(scope="module")
def celery(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Celery]:
    """Start docker-compose.yaml's services once; stop them all after this module."""
    home = tmp_path_factory.mktemp("celery-stack")
    stack = ComposeStack(home=home, overrides=OVERRIDES, startup_timeout=300.0)
    with stack:
        print("\n" + stack.report())
        stack.wait_for_dags(*EXAMPLE_DAGS, timeout=240)
        budget = float(stack.connection_extra()["rate_limit_per_second"])
        yield Celery(stack=stack, emulator=stack.emulator(), home=home, budget=budget)


def expected_series(train_result: dict[str, Any]) -> dict[str, list[tuple[float, float]]]:
    """What an uninterrupted run sends: every series of both metrics files, at the training's steps."""
    out = {}
    for key in ("train_metrics_path", "val_metrics_path"):
        for path, values in json.loads(Path(train_result[key]).read_text()).items():
            out[path] = [
                (float(step), float(v)) for step, v in zip(train_result["steps"], values, strict=True)
            ]
    return out


def check_series_once(celery: Celery, run_id: str) -> tuple[int, list[RunSnapshot]]:
    """Every series of every run of ``run_id`` equals its metrics files: each point exactly once."""
    stack = celery.stack
    count = sum(
        1
        for ti in stack.task_instances(TRAINING_DAG, run_id)
        if ti["task_id"] == CREATE_TASK and ti["map_index"] >= 0
    )
    snapshots, points = [], 0
    for index in range(count):
        sys_id = str(celery.xcom(TRAINING_DAG, run_id, CREATE_TASK, index))
        trained = {
            key: celery.xcom(TRAINING_DAG, run_id, "experiment.train", index, key)
            for key in ("train_metrics_path", "val_metrics_path", "steps")
        }
        snap = celery.read_back(sys_id)
        expected = expected_series(trained)
        got = {path: values for path, values in snap.series.items() if path in expected}
        assert got == expected, f"{sys_id}: series differ from what the training wrote"
        points += sum(len(values) for values in expected.values())
        snapshots.append(snap)
    return points, snapshots


# The runner itself ------------------------------------------------------------------------------


def test_the_runner_starts_what_the_file_says(tmp_path: Path) -> None:
    original = (Path(__file__).resolve().parents[2] / "docker-compose.yaml").read_text()
    services = load_services(Path(__file__).resolve().parents[2] / "docker-compose.yaml")
    stack = ComposeStack(home=tmp_path / "a")
    assert stack.service_argv(TRAINING_WORKER)[-4:] == [
        "--queues",
        "training",
        "--celery-hostname",
        f"celery@{TRAINING_WORKER}",
    ]
    env = stack.service_env("airflow-scheduler")
    redis_port = stack.loopback.address("redis", 6379)
    assert env["AIRFLOW__CELERY__BROKER_URL"] == f"redis://127.0.0.1:{redis_port}/0"
    assert (
        env["AIRFLOW__CORE__EXECUTOR"] == services["airflow-scheduler"].environment["AIRFLOW__CORE__EXECUTOR"]
    )
    # A change in the file changes what the runner starts.
    changed = original.replace(
        "command: celery worker --queues training", "command: celery worker --queues gpu"
    )
    changed = changed.replace(
        'AIRFLOW__CORE__LOAD_EXAMPLES: "false"', 'AIRFLOW__CORE__LOAD_EXAMPLES: "false"\n    EXTRA_SETTING: x'
    )
    assert changed.count("--queues gpu") == 1
    assert "EXTRA_SETTING" in changed
    (tmp_path / "compose.yaml").write_text(changed)
    other = ComposeStack(home=tmp_path / "b", compose_file=tmp_path / "compose.yaml")
    assert other.service_argv(TRAINING_WORKER)[-4:-2] == ["--queues", "gpu"]
    assert other.workers() == {"airflow-worker": ["default"], TRAINING_WORKER: ["gpu"]}
    assert other.service_env("airflow-triggerer")["EXTRA_SETTING"] == "x"
    assert "EXTRA_SETTING" not in stack.service_env("airflow-triggerer")


def test_host_names_ports_and_paths_are_swapped(tmp_path: Path) -> None:
    services = load_services()
    loop = Loopback(tmp_path, services)
    api = services["airflow-apiserver"]
    pg = loop.address("postgres", 5432)
    assert (
        loop.translate("postgresql+psycopg2://airflow:airflow@postgres/airflow", api)
        == f"postgresql+psycopg2://airflow:airflow@127.0.0.1:{pg}/airflow"
    )
    assert (
        loop.translate("db+postgresql://a:b@postgres/airflow", api)
        == f"db+postgresql://a:b@127.0.0.1:{pg}/airflow"
    )
    emulator = loop.address("neptune-emulator", 5050)
    assert loop.translate("https://neptune-emulator:5050", api) == f"https://localhost:{emulator}"
    assert loop.translate("/opt/airflow/emulator-data/tls/ca-bundle.pem", api) == str(
        tmp_path / "volumes" / "neptune-emulator-data" / "tls" / "ca-bundle.pem"
    )
    own = loop.address("airflow-apiserver", 8080)
    assert loop.translate("curl http://localhost:8080/api/v2/version", api) == (
        f"curl http://127.0.0.1:{own}/api/v2/version"
    )
    # An unknown host is left alone.
    assert loop.translate("https://example.org:5050/x", api) == "https://example.org:5050/x"


# The distributed promises ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def training(celery: Celery) -> dict[str, Any]:
    """One run of the training pipeline with 8 experiments, the emulator's limit = the connection's budget."""
    celery.emulator.set_faults(rate_limit=celery.budget, fault_rate=0.0, latency_ms=0.0)
    celery.emulator.reset_stats()
    run_id = celery.stack.run_dag(TRAINING_DAG, celery.training_conf(EXPERIMENTS), timeout=900)
    stats = celery.emulator.stats()
    points, snapshots = check_series_once(celery, run_id)
    summaries = [
        celery.xcom(TRAINING_DAG, run_id, task, index) for task in LOG_TASKS for index in range(EXPERIMENTS)
    ]
    return {
        "run_id": run_id,
        "stats": stats,
        "points": points,
        "snapshots": snapshots,
        "summaries": summaries,
    }


def test_training_pipeline_on_both_workers_within_the_shared_budget(
    celery: Celery, training: dict[str, Any]
) -> None:
    stack = celery.stack
    tis = stack.task_instances(TRAINING_DAG, training["run_id"])
    assert sum(1 for ti in tis if ti["task_id"] == CREATE_TASK) == EXPERIMENTS
    assert {ti["state"] for ti in tis} == {"success"}
    # Each queue's tasks ran on that queue's worker, a separate host with its own name.
    hosts = {(ti["queue"], ti["hostname"]) for ti in tis}
    assert hosts == {("default", "airflow-worker"), ("training", TRAINING_WORKER)}, hosts
    neptune_hosts = {ti["hostname"] for ti in tis if ti["task_id"] in LOG_TASKS}
    assert neptune_hosts == {"airflow-worker", TRAINING_WORKER}, "both hosts talk to Neptune"
    stats = training["stats"]
    budgeted = stats["accepted_total"] + stats["throttled_total"]
    assert budgeted > 0
    ratio = stats["throttled_total"] / budgeted
    print(f"\n429s: {stats['throttled_total']} of {budgeted} budgeted requests ({ratio:.2%})")
    assert stats["throttled_total"] <= 0.01 * budgeted, stats["requests_by_status"]
    sent = sum(int(summary["points_sent"]) for summary in training["summaries"])
    print(f"points: {sent} sent by the log tasks, {training['points']} read back")
    assert sent == training["points"] == sum(snap.points for snap in training["snapshots"])


def test_deferrable_sensor_waits_in_the_triggerer_while_a_worker_feeds_the_metric(
    celery: Celery, training: dict[str, Any]
) -> None:
    stack, run_id = celery.stack, training["run_id"]
    tis = stack.task_instances(TRAINING_DAG, run_id)
    jobs = stack.api("GET", "/api/v2/jobs?job_type=TriggererJob&limit=100")["jobs"]
    assert {job["hostname"] for job in jobs} == {"airflow-triggerer"}
    feeders = {ti["map_index"]: ti for ti in tis if ti["task_id"] == LOG_TASKS[1]}
    sensors = [ti for ti in tis if ti["task_id"] == SENSOR_TASK]
    assert len(sensors) == EXPERIMENTS
    waited_while_fed = 0
    for ti in sensors:
        index, try_number = ti["map_index"], ti["try_number"]
        log = stack.task_log(TRAINING_DAG, run_id, SENSOR_TASK, try_number, index)
        deferred_at = [
            parse_time(json.loads(line)["timestamp"])
            for line in log.splitlines()
            if line.startswith("{") and "Pausing task as DEFERRED" in line
        ]
        assert deferred_at, log_text(log)[-3000:]
        triggers = stack.trigger_logs(TRAINING_DAG, run_id, SENSOR_TASK, try_number, index)
        assert any("Trigger fired event" in log_text(text) for text in triggers.values()), triggers
        assert "val/accuracy >= 0.6 met" in log_text(log)
        feeder = feeders[index]
        fed_start, fed_end = parse_time(feeder["start_date"]), parse_time(feeder["end_date"])
        assert fed_start
        assert fed_end
        assert deferred_at[0]
        # The sensor gave up its worker slot before the worker started feeding val/accuracy, and
        # the trigger fired (the sensor resumed) only after the feeding task had sent it.
        assert deferred_at[0] < fed_start, (deferred_at, feeder)
        assert parse_time(ti["end_date"]) >= fed_end
        waited_while_fed += 1
    assert waited_while_fed == EXPERIMENTS


def test_a_worker_killed_mid_log_task_is_retried_and_loses_no_point(celery: Celery) -> None:
    stack, emulator = celery.stack, celery.emulator
    emulator.set_faults(rate_limit=celery.budget, latency_ms=0.0)
    stack.unpause(TRAINING_DAG)
    run_id = stack.trigger(TRAINING_DAG, celery.training_conf(2, epochs=60))
    log_task = LOG_TASKS[0]  # runs on the training queue

    def running_log_task() -> dict[str, Any] | None:
        stack.check_alive()
        for ti in stack.task_instances(TRAINING_DAG, run_id):
            if ti["task_id"] == log_task and ti["state"] == "running":
                return ti
        return None

    victim = wait_until(running_log_task, timeout=600, interval=0.5, what=f"{log_task} to run")
    # Slow the answers down so that the task is caught between two of its requests.
    emulator.set_faults(rate_limit=celery.budget, latency_ms=700.0)
    before = emulator.stats()["points_total"]
    wait_until(
        lambda: emulator.stats()["points_total"] > before,
        timeout=60,
        interval=0.2,
        what="a first batch of points",
    )
    assert victim["hostname"] == TRAINING_WORKER
    stack.kill(TRAINING_WORKER, signal.SIGKILL)
    emulator.set_faults(rate_limit=celery.budget, latency_ms=0.0)
    # What restart: always does: the worker comes back (a retry may also wait for it).
    stack.restart(TRAINING_WORKER)
    state = stack.wait_for_run(TRAINING_DAG, run_id, timeout=600)
    assert state == "success", stack.failure_report(TRAINING_DAG, run_id)
    final = next(
        ti
        for ti in stack.task_instances(TRAINING_DAG, run_id)
        if ti["task_id"] == log_task and ti["map_index"] == victim["map_index"]
    )
    assert final["try_number"] > victim["try_number"], "the killed try was retried"
    tries = stack.tries(TRAINING_DAG, run_id, log_task, victim["map_index"])
    assert [t["state"] for t in tries][-1] == "success"
    assert any(t["state"] == "failed" for t in tries[:-1]), tries
    points, _ = check_series_once(celery, run_id)
    assert points > 0


def test_environment_check_names_the_training_worker_that_differs(celery: Celery) -> None:
    stack = celery.stack
    stack.restart(TRAINING_WORKER, {"NEPTUNE_DATA_DIRECTORY": None})
    try:
        stack.unpause(ENVIRONMENT_DAG)
        run_id = stack.trigger(ENVIRONMENT_DAG)
        assert stack.wait_for_run(ENVIRONMENT_DAG, run_id, timeout=300) == "failed"
        compare = next(
            ti for ti in stack.task_instances(ENVIRONMENT_DAG, run_id) if ti["task_id"].endswith(".compare")
        )
        text = log_text(stack.task_log(ENVIRONMENT_DAG, run_id, compare["task_id"], compare["try_number"]))
        problem = next(
            (line for line in text.splitlines() if "NEPTUNE_DATA_DIRECTORY" in line and "not on" in line), ""
        )
        assert "not on training" in problem, text[-3000:]
        assert TRAINING_WORKER in problem
        assert "default" in problem
    finally:
        stack.restart(TRAINING_WORKER)
    run_id = stack.run_dag(ENVIRONMENT_DAG, timeout=300)
    checks = {
        ti["queue"]: ti["hostname"]
        for ti in stack.task_instances(ENVIRONMENT_DAG, run_id)
        if ".check_" in ti["task_id"]
    }
    assert checks == {"default": "airflow-worker", "training": TRAINING_WORKER}


def test_retention_runs_on_its_schedule_and_its_second_run_deletes_nothing(
    celery: Celery, training: dict[str, Any]
) -> None:
    stack = celery.stack
    stack.unpause(RETENTION_DAG)
    try:

        def scheduled_runs() -> list[dict[str, Any]] | None:
            stack.check_alive()
            runs = stack.api("GET", f"/api/v2/dags/{RETENTION_DAG}/dagRuns?order_by=run_after&limit=100")[
                "dag_runs"
            ]
            for run in runs:
                if run["state"] == "failed":
                    report = stack.failure_report(RETENTION_DAG, run["dag_run_id"])
                    raise StackError(f"{run['dag_run_id']} failed\n{report}")
            done = [run for run in runs if run["state"] == "success"]
            return done if len(done) >= 3 else None

        runs = wait_until(scheduled_runs, timeout=600, interval=2.0, what="three scheduled clean-up runs")
    finally:
        stack.api("PATCH", f"/api/v2/dags/{RETENTION_DAG}", {"is_paused": True})
    assert {run["run_type"] for run in runs} == {"scheduled"}
    reports = [celery.xcom(RETENTION_DAG, run["dag_run_id"], RETENTION_TASK) for run in runs[:3]]
    dry, first, second = reports
    print(
        f"\nclean-up: planned {dry.get('checkpoints_to_delete')}, deleted {first['checkpoints_deleted']}, "
        f"then {second['checkpoints_deleted']}"
    )
    assert dry["dry_run"] is True, dry
    assert dry["checkpoints_deleted"] == 0, dry
    assert first["dry_run"] is False, first
    assert first["checkpoints_deleted"] > 0, first
    assert second["dry_run"] is False, second
    assert second["checkpoints_deleted"] == 0, second
    assert second["runs_scanned"] >= EXPERIMENTS
    assert datetime.fromisoformat(runs[1]["run_after"]) > datetime.fromisoformat(runs[0]["run_after"])
    # The training pipeline's runs kept their final checkpoint.
    for snap in training["snapshots"][:2]:
        after = celery.read_back(snap.sys_id)
        if snap.checkpoints:
            final = max(snap.checkpoints, key=lambda key: snap.checkpoints[key]["step"])
            assert final in after.checkpoints


def test_service_logs_are_kept_apart(celery: Celery) -> None:
    # Separate hosts: each worker wrote its own log and consumed only its queue.
    logs = {name: celery.stack.component_log(name) for name in ("airflow-worker", TRAINING_WORKER)}
    assert "celery@airflow-worker ready" in logs["airflow-worker"]
    assert f"celery@{TRAINING_WORKER} ready" in logs[TRAINING_WORKER]
