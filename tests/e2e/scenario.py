"""The example DAGs run through real Airflow against the emulator, and what the emulator then holds.

Shared by the end-to-end tests and ``make demo``: start the emulator and an AirflowStack wired to
it, run the training pipeline, the retention clean-up and the environment check, and read back
runs, series and checkpoints with the plain ``neptune`` client (not through the provider).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.e2e.stack import AirflowStack, StackError, parse_time, wait_until

if TYPE_CHECKING:
    from airflow_provider_neptune.emulator import NeptuneEmulator

TRAINING_DAG = "neptune_training_pipeline"
RETENTION_DAG = "neptune_retention_cleanup"
ENVIRONMENT_DAG = "neptune_environment_check"
EXAMPLE_DAGS = (TRAINING_DAG, RETENTION_DAG, ENVIRONMENT_DAG)
POOL = "neptune_api"
GROUP = "experiment"
SENSOR_TASK = f"{GROUP}.wait_for_val_accuracy"
CREATE_TASK = f"{GROUP}.create_run"
TRAIN_TASK = f"{GROUP}.train"
LOG_TASKS = (f"{GROUP}.log_metrics", f"{GROUP}.log_val_metrics")
UPLOAD_PREFIX = f"{GROUP}.upload_checkpoint_"
RETENTION_TASK = "prune_checkpoints"
NAMESPACE = "checkpoints"


@dataclass(frozen=True)
class ScenarioSettings:
    """Knobs of one scenario: sizes small enough for CI, limits that make the shared budget matter."""

    project: str = "airflow/demo"
    pool_slots: int = 2
    parallelism: int = 4
    epochs: int = 8
    samples: int = 400
    checkpoint_top_k: int = 2
    retention_keep_top_k: int = 1
    emulator_rate_limit: float | None = 30.0
    budget_per_second: float = 20.0
    fault_rate: float = 0.0
    seed: int | None = 7
    dag_timeout: float = 420.0


@dataclass
class RunSnapshot:
    """One Neptune run as read back from the emulator with the plain client."""

    sys_id: str
    name: str
    fields: dict[str, Any]
    series: dict[str, list[tuple[float, float]]]
    checkpoints: dict[str, dict[str, Any]]

    @property
    def points(self) -> int:
        """Number of points across every float series."""
        return sum(len(values) for values in self.series.values())


@dataclass
class Scenario:
    """A running emulator plus an Airflow stack wired to it, with helpers to run and inspect the DAGs."""

    home: Path
    settings: ScenarioSettings
    emulator: NeptuneEmulator
    stack: AirflowStack
    dag_runs: dict[str, str] = field(default_factory=dict)

    @property
    def training_output(self) -> Path:
        """Where the training tasks write metrics files and checkpoints."""
        return self.home / "training-output"

    def run_training(self) -> str:
        """Run the training pipeline to success (StackError with the failing task logs otherwise)."""
        conf = {
            "epochs": self.settings.epochs,
            "samples": self.settings.samples,
            "checkpoint_top_k": self.settings.checkpoint_top_k,
            "output_dir": str(self.training_output),
        }
        run_id = self.stack.run_dag(TRAINING_DAG, conf, timeout=self.settings.dag_timeout)
        self.dag_runs[TRAINING_DAG] = run_id
        return run_id

    def run_retention(self) -> str:
        """Run the clean-up for real (not the first-run dry run) on the project's finished runs.

        The DAG only looks at inactive runs (its default), so first wait until the emulator no
        longer counts the freshly stopped training runs as running.
        """
        runs = self.created_runs() if TRAINING_DAG in self.dag_runs else []
        wait_until(
            lambda: set(runs) <= self.inactive_runs(),
            timeout=120,
            interval=2.0,
            what="the training runs to become inactive",
        )
        conf = {"dry_run": False, "keep_top_k": self.settings.retention_keep_top_k}
        run_id = self.stack.run_dag(RETENTION_DAG, conf, timeout=self.settings.dag_timeout)
        self.dag_runs[RETENTION_DAG] = run_id
        return run_id

    def run_environment_check(self) -> str:
        """Run the cross-worker environment check DAG to success."""
        run_id = self.stack.run_dag(ENVIRONMENT_DAG, timeout=self.settings.dag_timeout)
        self.dag_runs[ENVIRONMENT_DAG] = run_id
        return run_id

    def xcom(self, dag_id: str, task_id: str, map_index: int = -1, key: str = "return_value") -> Any:
        """One XCom value of the last run of ``dag_id``, through the REST API."""
        run_id = self.dag_runs[dag_id]
        path = (
            f"/api/v2/dags/{dag_id}/dagRuns/{_q(run_id)}/taskInstances/{task_id}/xcomEntries/{key}"
            f"?map_index={map_index}"
        )
        value = self.stack.api("GET", path)["value"]
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                return json.loads(value)
        return value

    def mapped_count(self, dag_id: str, task_id: str) -> int:
        """How many mapped instances ``task_id`` expanded to in the last run of ``dag_id``."""
        tis = self.stack.task_instances(dag_id, self.dag_runs[dag_id])
        return sum(1 for ti in tis if ti["task_id"] == task_id and ti["map_index"] >= 0)

    def created_runs(self) -> list[str]:
        """The sys/ids the training pipeline created, in map-index order."""
        count = self.mapped_count(TRAINING_DAG, CREATE_TASK)
        return [str(self.xcom(TRAINING_DAG, CREATE_TASK, index)) for index in range(count)]

    def training_results(self) -> list[dict[str, Any]]:
        """What each mapped training task reported (metrics file, steps, checkpoint slots)."""
        results = []
        for index in range(self.mapped_count(TRAINING_DAG, TRAIN_TASK)):
            keys = ["train_metrics_path", "val_metrics_path", "steps", "summary"]
            result = {key: self.xcom(TRAINING_DAG, TRAIN_TASK, index, key) for key in keys}
            # Every series the training wrote, from both files.
            result["metrics"] = {
                **json.loads(Path(result["train_metrics_path"]).read_text()),
                **json.loads(Path(result["val_metrics_path"]).read_text()),
            }
            slots = []
            slot = 1
            while True:
                try:
                    path = self.xcom(TRAINING_DAG, TRAIN_TASK, index, f"checkpoint_{slot}")
                except StackError:
                    break
                slots.append(
                    {
                        "path": path,
                        "epoch": self.xcom(TRAINING_DAG, TRAIN_TASK, index, f"checkpoint_{slot}_epoch"),
                        "score": self.xcom(TRAINING_DAG, TRAIN_TASK, index, f"checkpoint_{slot}_score"),
                    }
                )
                slot += 1
            result["checkpoints"] = slots
            results.append(result)
        return results

    def log_summaries(self) -> list[dict[str, Any]]:
        """What every metric logging task reported (the hook's summary: points, requests, retries)."""
        count = self.mapped_count(TRAINING_DAG, LOG_TASKS[0])
        return [self.xcom(TRAINING_DAG, task, index) for task in LOG_TASKS for index in range(count)]

    def uploads(self) -> list[dict[str, Any]]:
        """What every gated upload task reported (``uploaded`` and ``skipped`` lists, bytes)."""
        tis = self.stack.task_instances(TRAINING_DAG, self.dag_runs[TRAINING_DAG])
        uploads = sorted(
            (ti["task_id"], ti["map_index"]) for ti in tis if ti["task_id"].startswith(UPLOAD_PREFIX)
        )
        return [self.xcom(TRAINING_DAG, task_id, index) for task_id, index in uploads]

    @contextlib.contextmanager
    def verification(self) -> Iterator[None]:
        """Lift the emulator's rate limit and faults while the test itself reads (not the experiment)."""
        self.emulator.set_faults(rate_limit=None, fault_rate=0.0)
        # The plain client talks http to the loopback emulator only with this set; restored after.
        previous = os.environ.get("OAUTHLIB_INSECURE_TRANSPORT")
        os.environ["OAUTHLIB_INSECURE_TRANSPORT"] = "1"
        try:
            yield
        finally:
            if previous is None:
                os.environ.pop("OAUTHLIB_INSECURE_TRANSPORT", None)
            else:
                os.environ["OAUTHLIB_INSECURE_TRANSPORT"] = previous
            self.emulator.set_faults(
                rate_limit=self.settings.emulator_rate_limit, fault_rate=self.settings.fault_rate
            )

    def inactive_runs(self) -> set[str]:
        """sys/ids of the project's inactive runs, from the runs table (the client cannot fetch sys/state)."""
        import neptune

        logging.getLogger("neptune").setLevel(logging.WARNING)
        project, token = self.settings.project, self.emulator.api_token
        with (
            self.verification(),
            neptune.init_project(project=project, api_token=token, mode="read-only") as handle,
        ):
            table = handle.fetch_runs_table(state="inactive", columns=["sys/id"]).to_pandas()
        return set(table["sys/id"]) if len(table) else set()

    def read_run(self, sys_id: str) -> RunSnapshot:
        """Read a run back with the plain neptune client in read-only mode."""
        with self.verification():
            return read_run(self.emulator.api_token, self.settings.project, sys_id, self.home / "downloads")

    def pool_intervals(self, dag_id: str) -> list[tuple[Any, Any]]:
        """[start, end] of every task instance that ran in the neptune_api pool (deferrable sensors aside)."""
        intervals = []
        for ti in self.stack.task_instances(dag_id, self.dag_runs[dag_id]):
            start, end = parse_time(ti.get("start_date")), parse_time(ti.get("end_date"))
            if ti.get("pool") == POOL and start and end:
                intervals.append((start, end))
        return intervals


def _q(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


def read_run(api_token: str, project: str, sys_id: str, download_dir: Path) -> RunSnapshot:
    """Every field, float series and checkpoint entry of one run, read with the unmodified client.

    Plain http to the emulator needs OAUTHLIB_INSECURE_TRANSPORT=1 (Scenario.verification sets it).
    """
    import neptune
    from neptune.attributes.atoms.file import File
    from neptune.attributes.series.float_series import FloatSeries

    # The client announces every run it opens on stdout; reading back needs no such noise.
    logging.getLogger("neptune").setLevel(logging.WARNING)
    run = neptune.init_run(with_id=sys_id, project=project, api_token=api_token, mode="read-only")
    try:
        fields: dict[str, Any] = {}
        series: dict[str, list[tuple[float, float]]] = {}
        checkpoints: dict[str, dict[str, Any]] = {}

        def walk(node: Mapping[str, Any], prefix: str) -> None:
            for name, value in node.items():
                path = f"{prefix}{name}"
                if isinstance(value, Mapping):
                    walk(value, f"{path}/")
                elif isinstance(value, FloatSeries):
                    frame = value.fetch_values(include_timestamp=False)
                    series[path] = [
                        (float(s), float(v)) for s, v in zip(frame["step"], frame["value"], strict=True)
                    ]
                elif isinstance(value, File):
                    target = download_dir / sys_id / path
                    target.parent.mkdir(parents=True, exist_ok=True)
                    value.download(destination=str(target))
                    fields[path] = {"sha256": hashlib.sha256(target.read_bytes()).hexdigest()}
                else:
                    with contextlib.suppress(Exception):
                        fields[path] = value.fetch()

        walk(run.get_structure(), "")
        for path, value in fields.items():
            parts = path.split("/")
            if len(parts) == 3 and parts[0] == NAMESPACE:
                entry = checkpoints.setdefault(parts[1], {})
                entry[parts[2]] = value["sha256"] if parts[2] == "file" else value
        return RunSnapshot(
            sys_id=sys_id,
            name=str(fields.get("sys/name", "")),
            fields={k: v for k, v in fields.items() if not k.startswith(f"{NAMESPACE}/")},
            series=series,
            checkpoints=checkpoints,
        )
    finally:
        run.stop()


def gate_uploads(scores: list[float], top_k: int) -> list[bool]:
    """Which checkpoints the upload gate sends: the ones among the best ``top_k`` so far (ties lose)."""
    seen: list[float] = []
    sent = []
    for score in scores:
        better = len(seen) < top_k or score > sorted(seen, reverse=True)[top_k - 1]
        sent.append(better)
        if better:
            seen.append(score)
    return sent


@contextlib.contextmanager
def running_scenario(home: Path, settings: ScenarioSettings | None = None) -> Iterator[Scenario]:
    """Start the emulator and Airflow (all components) in ``home``; stop both on exit, whatever happens."""
    from airflow_provider_neptune.emulator import NeptuneEmulator

    settings = settings or ScenarioSettings()
    home.mkdir(parents=True, exist_ok=True)
    emulator_kwargs: dict[str, Any] = {
        "projects": (settings.project,),
        "rate_limit": settings.emulator_rate_limit,
        "fault_rate": settings.fault_rate,
        "seed": settings.seed,
        "data_dir": home / "emulator",
    }
    with NeptuneEmulator(**emulator_kwargs) as emulator:
        conn = emulator.airflow_conn_json(
            mode="async",
            rate_limit_per_second=settings.budget_per_second,
            # One budget for every worker process on this host: a file-backed limiter.
            rate_limit_storage=str(home / "neptune-budget.sqlite"),
        )
        extra_env = {
            **emulator.env(),
            "AIRFLOW_CONN_NEPTUNE_DEFAULT": conn,
            "NEPTUNE_DATA_DIRECTORY": str(home / "neptune-data"),
        }
        # The connection, not NEPTUNE_* variables, must carry the settings: prove it.
        extra_env.pop("NEPTUNE_API_TOKEN", None)
        extra_env.pop("NEPTUNE_PROJECT", None)
        stack = AirflowStack(home=home / "airflow", extra_env=extra_env, parallelism=settings.parallelism)
        with stack:
            stack.set_pool(POOL, settings.pool_slots, "Tasks that talk to Neptune")
            stack.wait_for_dags(*EXAMPLE_DAGS)
            yield Scenario(home=home, settings=settings, emulator=emulator, stack=stack)


def fresh_home(prefix: str = "apn-e2e-") -> Path:
    """A new temporary folder for one scenario."""
    return Path(tempfile.mkdtemp(prefix=prefix))
