"""A NaN in a templated ``metrics`` mapping, run by Airflow (dag.test()) against the emulator.

Airflow uploads rendered template fields as JSON before ``execute()``; a NaN there used to fail the
task with "Out of range float values are not JSON compliant" and no series named.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.helpers.run_metrics_support import series_points, use_emulator

pytestmark = pytest.mark.integration

DAG_FILE = Path(__file__).resolve().parents[1] / "dags" / "neptune_test_metrics_render.py"


def test_nan_in_rendered_metrics_fails_naming_the_series_or_is_skipped(
    airflow_db: Path,
    neptune_emulator: Any,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from airflow.dag_processing.dagbag import BundleDagBag
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState, TaskInstanceState

    use_emulator(monkeypatch, neptune_emulator, "sync")
    monkeypatch.setenv("NEPTUNE_DATA_DIRECTORY", str(tmp_path / "neptune-data"))
    bag = BundleDagBag(dag_folder=str(DAG_FILE), bundle_path=str(DAG_FILE.parent), bundle_name="test_dags")
    dag = bag.get_dag("neptune_test_metrics_render")
    assert dag is not None, bag.import_errors

    dag_run = dag.test()
    output = capsys.readouterr()
    logs = output.out + output.err

    assert dag_run.state == DagRunState.FAILED
    with create_session() as session:
        tis = {
            ti.task_id: ti
            for ti in session.query(TaskInstance).filter(
                TaskInstance.dag_id == dag.dag_id, TaskInstance.run_id == dag_run.run_id
            )
        }
        run_id = tis["create_run"].xcom_pull(task_ids="create_run", session=session)
        summary = tis["log_skipping"].xcom_pull(task_ids="log_skipping", session=session)
    # Strict: failed at once (no retry: the input will not change), naming series, index and value.
    assert tis["log_strict"].state == TaskInstanceState.FAILED
    assert tis["log_strict"].try_number == 1
    assert "series 'train/loss' index 1: nan is not finite" in logs
    assert "not JSON compliant" not in logs
    # skip_invalid: the NaN is skipped and counted like any invalid point; the rest is logged.
    assert tis["log_skipping"].state == TaskInstanceState.SUCCESS
    assert summary["points_invalid"] == 1
    assert summary["points_sent"] == 5
    assert series_points(neptune_emulator, run_id, "train/loss") == [(0.0, 0.5), (2.0, 0.3)]
    assert series_points(neptune_emulator, run_id, "train/acc") == [(0.0, 0.1), (1.0, 0.2), (2.0, 0.3)]
