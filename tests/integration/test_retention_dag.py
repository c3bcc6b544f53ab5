"""The checkpoint operators run by Airflow (``dag.test()``) against the emulator.

* tests/dags/neptune_test_retention_pipeline.py: mapped uploads fed by XCom, then retention.
* dags/neptune_retention_cleanup.py (the shipped DAG), on a private emulator because it scans the
  whole project: its first run is a dry run, the next one deletes.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_neptune.hooks.run_pool import POOL
from tests.helpers.artifacts_support import close_pooled_runs, plain_run  # noqa: F401 (fixture)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def _dag(path: Path, dag_id: str) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(path))
    assert bag.import_errors == {}
    return bag.dags[dag_id]


def _states(dag_run: Any) -> dict[str, str]:
    return {f"{ti.task_id}[{ti.map_index}]": str(ti.state) for ti in dag_run.get_task_instances()}


def _xcom(dag_run: Any, task_id: str) -> Any:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = (
            session.query(XComModel)
            .filter_by(dag_id=dag_run.dag_id, run_id=dag_run.run_id, task_id=task_id, key="return_value")
            .one()
        )
        return row.value


def _checkpoint_keys(emulator: Any, sys_id: str) -> list[str]:
    run = plain_run(emulator, with_id=sys_id, mode="read-only")
    try:
        structure = run.get_structure()
        return sorted(k for k, v in structure.get("checkpoints", {}).items() if "file" in v)
    finally:
        run.stop()


def _connect(monkeypatch: pytest.MonkeyPatch, emulator: Any, tmp_path: Path, mode: str = "async") -> None:
    for key, value in emulator.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AIRFLOW_CONN_NEPTUNE_DEFAULT", emulator.airflow_conn_json(mode=mode))
    monkeypatch.setenv("NEPTUNE_DATA_DIRECTORY", str(tmp_path / ".neptune"))


def test_mapped_uploads_then_retention_in_airflow(
    neptune_emulator: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, airflow_db: Path
) -> None:
    _connect(monkeypatch, neptune_emulator, tmp_path)
    tag = f"dagtest-{uuid.uuid4().hex[:8]}"
    scores = [0.2, 0.9, 0.4, 0.7, 0.1]
    dag = _dag(
        REPO / "tests" / "dags" / "neptune_test_retention_pipeline.py", "neptune_test_retention_pipeline"
    )
    dag_run = dag.test(run_conf={"tag": tag, "workdir": str(tmp_path / "ckpt"), "scores": scores})
    assert set(_states(dag_run).values()) == {"success"}, _states(dag_run)
    run_id = _xcom(dag_run, "create_run")
    summary = _xcom(dag_run, "retention")
    assert summary["runs_scanned"] == 1
    assert summary["checkpoints_found"] == 5
    assert summary["checkpoints_deleted"] == 3
    assert summary["bytes_freed"] == sum(len(f"weights of epoch {s};".encode() * (s + 1)) for s in (0, 2, 4))
    assert _checkpoint_keys(neptune_emulator, run_id) == ["step_1", "step_3"]


def _stopped_run_with_checkpoints(emulator: Any, scores: list[float]) -> str:
    from neptune.types import File

    run = plain_run(emulator, mode="sync")
    for step, score in enumerate(scores):
        data = f"ckpt {step}".encode()
        run[f"checkpoints/step_{step}/file"].upload(File.from_content(data, extension="pt"))
        run[f"checkpoints/step_{step}"] = {
            "score": score,
            "step": float(step),
            "size": float(len(data)),
            "uploaded_at": datetime.now(UTC),
            "name": "model.pt",
            "sha256": hashlib.sha256(data).hexdigest(),
        }
    sys_id = str(run["sys/id"].fetch())
    run.stop()
    return sys_id


def test_shipped_cleanup_dag_dry_runs_first_then_deletes(
    neptune_emulator_factory: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, airflow_db: Path
) -> None:
    emulator = neptune_emulator_factory()
    _connect(monkeypatch, emulator, tmp_path)
    sys_id = _stopped_run_with_checkpoints(emulator, [0.5, 0.1, 0.9, 0.3, 0.8, 0.2])
    dag = _dag(REPO / "dags" / "neptune_retention_cleanup.py", "neptune_retention_cleanup")
    first_day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=2)

    first = dag.test(logical_date=first_day)
    assert set(_states(first).values()) == {"success"}, _states(first)
    dry = _xcom(first, "prune_checkpoints")
    assert dry["dry_run"] is True
    assert dry["checkpoints_to_delete"] == 2
    assert len(_checkpoint_keys(emulator, sys_id)) == 6

    second = dag.test(logical_date=first_day + timedelta(days=1))
    assert set(_states(second).values()) == {"success"}, _states(second)
    real = _xcom(second, "prune_checkpoints")
    assert real["dry_run"] is False
    assert real["checkpoints_deleted"] == 2
    assert _checkpoint_keys(emulator, sys_id) == ["step_0", "step_2", "step_4", "step_5"]
    POOL.close_all(seconds=30)  # while this test's emulator still runs
