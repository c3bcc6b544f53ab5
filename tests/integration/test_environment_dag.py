"""The check group run by Airflow (dag.test) against the emulator: run logging, failure report, no token.

Uses tests/dags/neptune_test_env_check.py (two queues; in dag.test both run in this process).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_neptune.core.environment import run_path, secrets_of
from airflow_provider_neptune.core.environment_checks import installed_version
from airflow_provider_neptune.hooks.neptune import NeptuneHook

pytestmark = pytest.mark.integration

DAG_FILE = Path(__file__).resolve().parents[1] / "dags" / "neptune_test_env_check.py"
DAG_ID = "neptune_test_env_check"
CHECKS = ("neptune_environment.check_default", "neptune_environment.check_gpu")
COMPARE = "neptune_environment.compare"


def run_dag(conf: dict[str, Any]) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(str(DAG_FILE))
    assert bag.import_errors == {}
    return bag.dags[DAG_ID].test(run_conf=conf)


def task_states(dag_run: Any) -> dict[str, str]:
    return {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}


def xcoms(dag_run: Any) -> dict[tuple[str, str], Any]:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(XComModel).filter_by(dag_id=DAG_ID, run_id=dag_run.run_id).all()
        return {(row.task_id, row.key): row.value for row in rows}


def task_logs(airflow_home: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in (airflow_home / "logs").rglob("*") if p.is_file())


@pytest.fixture
def connection(
    neptune_emulator: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, request: Any
) -> Iterator[Any]:
    mode = getattr(request, "param", "sync")
    monkeypatch.setenv("AIRFLOW_CONN_NEPTUNE_DEFAULT", neptune_emulator.airflow_conn_json(mode=mode))
    monkeypatch.setenv("NEPTUNE_DATA_DIRECTORY", str(tmp_path / ".neptune"))
    yield neptune_emulator
    # The tasks ran in this process: stop the run handles they left in the pool while the
    # connection still exists.
    hook = NeptuneHook()
    assert hook.settings.project == neptune_emulator.project  # resolve: close() needs the scope
    hook.close()


@pytest.mark.parametrize("connection", ["sync", "async"], indirect=True)
def test_group_succeeds_and_logs_every_fingerprint_to_the_run(
    connection: Any, airflow_db: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    hook = NeptuneHook()
    run_id = hook.create_run(name="environment check")
    dag_run = run_dag({"run_id": run_id, "required_env": ["NEPTUNE_API_TOKEN", "NEPTUNE_PROJECT"]})

    assert task_states(dag_run) == {CHECKS[0]: "success", CHECKS[1]: "success", COMPARE: "success"}
    stored = xcoms(dag_run)
    fingerprint = stored[(CHECKS[0], "fingerprint")]
    assert stored[(CHECKS[0], "return_value")] == fingerprint
    assert fingerprint["env_from_connection"] == ["NEPTUNE_API_TOKEN", "NEPTUNE_PROJECT"]
    summary = stored[(COMPARE, "return_value")]
    assert summary["versions"]["neptune"] == installed_version("neptune")
    host = fingerprint["hostname"]
    assert summary["workers"] == [f"default ({host})", f"gpu ({host})"]

    # Read back with the plain client: each worker's fingerprint is in the run.
    import neptune

    with neptune.init_run(
        with_id=run_id, project=connection.project, api_token=connection.api_token, mode="read-only"
    ) as run:
        for queue in ("default", "gpu"):
            path = run_path("environment", host, queue)
            assert run[f"{path}/versions/neptune"].fetch() == installed_version("neptune")
            assert run[f"{path}/queue"].fetch() == queue
            assert run[f"{path}/ok"].fetch() is True
            assert "NEPTUNE_API_TOKEN" in run[f"{path}/env_present"].fetch()

    logged = "".join(capfd.readouterr()) + task_logs(airflow_db)
    assert "Environment fingerprint of default" in logged
    text = logged + json.dumps({str(key): value for key, value in stored.items()}, default=str)
    for secret in secrets_of(connection.api_token):
        assert secret not in text


def test_failures_are_reported_at_once_and_stop_the_group(
    connection: Any, airflow_db: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    dag_run = run_dag(
        {"requirements": "neptune<1; python>=3.99", "required_env": ["APN_TEST_MISSING_VARIABLE"]}
    )

    assert str(dag_run.state) == "failed"
    assert task_states(dag_run) == {CHECKS[0]: "failed", CHECKS[1]: "failed", COMPARE: "failed"}
    stored = xcoms(dag_run)
    neptune_version = installed_version("neptune")
    expected = [
        f"package 'neptune': installed version {neptune_version} does not satisfy required '<1'",
        f"Python: installed version {installed_version('python')} does not satisfy required '>=3.99'",
        "required environment variable APN_TEST_MISSING_VARIABLE is not set",
    ]
    for check in CHECKS:
        assert stored[(check, "fingerprint")]["failed"] == expected
        assert (check, "return_value") not in stored
    logged = "".join(capfd.readouterr()) + task_logs(airflow_db)
    host = stored[(CHECKS[1], "fingerprint")]["hostname"]
    for line in expected:
        assert line in logged
    assert "Neptune environment check found 6 problem(s) across 2 worker(s)" in logged
    assert f"gpu ({host}) failed its checks: {expected[0]}" in logged
    text = logged + json.dumps({str(key): value for key, value in stored.items()}, default=str)
    for secret in secrets_of(connection.api_token):
        assert secret not in text
