"""dag.test() of tests/dags/neptune_test_metrics_pipeline.py against the emulator.

Create, log, wait on a deferrable metric sensor fed by a second task, stop; then the emulator holds
exactly the expected data, read back with the plain neptune client.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from airflow_provider_neptune.core.run_conditions import STATE_FIELD
from tests.helpers.run_metrics_support import read_only_run, series_points, use_emulator, wait_until_idle

pytestmark = pytest.mark.integration

DAG_FILE = Path(__file__).resolve().parents[1] / "dags" / "neptune_test_metrics_pipeline.py"

# Fields the neptune client itself writes on every run (with the hook's capture defaults).
CLIENT_NAMESPACES = ("sys/", "source_code/", "monitoring/")


def _user_fields(structure: dict[str, Any], prefix: str = "") -> set[str]:
    paths: set[str] = set()
    for key, value in structure.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            paths |= _user_fields(value, f"{path}/")
        else:
            paths.add(path)
    return {p for p in paths if not p.startswith(CLIENT_NAMESPACES)}


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_pipeline_creates_logs_waits_deferred_and_stops(
    airflow_db: Path, neptune_emulator: Any, monkeypatch: pytest.MonkeyPatch, mode: str, tmp_path: Path
) -> None:
    from airflow.dag_processing.dagbag import BundleDagBag
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState, TaskInstanceState

    use_emulator(monkeypatch, neptune_emulator, mode)
    monkeypatch.setenv("NEPTUNE_DATA_DIRECTORY", str(tmp_path / "neptune-data"))
    bag = BundleDagBag(dag_folder=str(DAG_FILE), bundle_path=str(DAG_FILE.parent), bundle_name="test_dags")
    dag = bag.get_dag("neptune_test_metrics_pipeline")
    assert dag is not None, bag.import_errors

    dag_run = dag.test()

    assert dag_run.state == DagRunState.SUCCESS
    with create_session() as session:
        tis = {
            ti.task_id: ti
            for ti in session.query(TaskInstance).filter(
                TaskInstance.dag_id == dag.dag_id, TaskInstance.run_id == dag_run.run_id
            )
        }
        states = {task_id: ti.state for task_id, ti in tis.items()}
        run_id = tis["create_run"].xcom_pull(task_ids="create_run", session=session)
        sensor_result = tis["wait_for_accuracy"].xcom_pull(task_ids="wait_for_accuracy", session=session)
        # What the UI's extra link shows: stored by Airflow when each task finished.
        links = {
            task_id: tis[task_id].xcom_pull(task_ids=task_id, key="_link_NeptuneRunLink", session=session)
            for task_id in ("create_run", "log_train", "wait_for_accuracy", "stop_run")
        }
    assert set(states) >= {
        "create_run",
        "train",
        "log_train",
        "feed_accuracy",
        "wait_for_accuracy",
        "stop_run",
    }
    assert set(states.values()) == {TaskInstanceState.SUCCESS}, states
    # The sensor resumed from its trigger with the fed value (it was not met at its first check).
    assert sensor_result["status"] == "met"
    assert (sensor_result["value"], sensor_result["step"]) == (0.93, 2.0)
    assert all(link.endswith(f"/e/{run_id}") for link in links.values()), links

    assert series_points(neptune_emulator, run_id, "train/loss") == [(0.0, 0.9), (1.0, 0.6), (2.0, 0.4)]
    assert series_points(neptune_emulator, run_id, "val/acc") == [(0.0, 0.5), (1.0, 0.7), (2.0, 0.93)]
    assert wait_until_idle(neptune_emulator, run_id) == "idle"
    with read_only_run(neptune_emulator, run_id) as run:
        assert run["sys/name"].fetch() == "metrics-pipeline"
        assert run["sys/tags"].fetch() == {"dag-test"}
        assert run["parameters/lr"].fetch() == 0.05
        assert run["airflow/dag_id"].fetch() == dag.dag_id
        assert run["airflow/dag_run_id"].fetch() == dag_run.run_id
        assert run[STATE_FIELD].fetch() == "finished"
        assert run["summary/status"].fetch() == "ok"
        assert _user_fields(run.get_structure()) == {
            "train/loss",
            "val/acc",
            "parameters/lr",
            "airflow/dag_id",
            "airflow/dag_run_id",
            STATE_FIELD,
            "summary/status",
        }
