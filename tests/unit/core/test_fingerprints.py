"""Comparing worker fingerprints, the compare task, the fan-out builder and the example DAG's shape."""

from __future__ import annotations

import importlib.util
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import DAG, TriggerRule
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_neptune.core.fingerprints import compare_fingerprints
from airflow_provider_neptune.operators.environment import (
    FINGERPRINT_XCOM_KEY,
    NeptuneValidateEnvironmentOperator,
)
from airflow_provider_neptune.operators.fingerprints import (
    NeptuneCompareEnvironmentsOperator,
    environment_check_group,
)

REPO = Path(__file__).resolve().parents[3]


def fp(worker: str, host: str, neptune: str | None = "1.14.0", **extra: Any) -> dict[str, Any]:
    versions = {"neptune": neptune, "apache-airflow": "3.3.2", "python": "3.11.7"}
    versions.update(extra.pop("versions", {}))
    base = {
        "worker": worker,
        "hostname": host,
        "mode": "async",
        "project": "airflow/sandbox",
        "versions": versions,
        "env_present": ["NEPTUNE_API_TOKEN", "NEPTUNE_PROJECT"],
        "failed": [],
    }
    base.update(extra)
    return base


def test_identical_fingerprints_have_no_differences() -> None:
    assert compare_fingerprints({"a": fp("default", "h1"), "b": fp("gpu", "h2")}) == []


def test_version_difference_names_both_workers_and_versions() -> None:
    problems = compare_fingerprints(
        {"a": fp("default", "host-a", "1.14.0"), "b": fp("gpu", "host-b", "1.13.0"), "c": fp("cpu", "host-c")}
    )
    assert problems == [
        "package 'neptune' differs between workers: "
        "1.13.0 on gpu (host-b); 1.14.0 on cpu (host-c), default (host-a)"
    ]
    nine = compare_fingerprints({"a": fp("default", "h1", "1.13.0"), "b": fp("gpu", "h2", "1.9.0")})
    assert nine == ["package 'neptune' differs between workers: 1.9.0 on gpu (h2); 1.13.0 on default (h1)"]


def test_missing_package_mode_project_and_env_differences() -> None:
    a = fp("default", "h1", versions={"numpy": "2.0.0"})
    b = fp("gpu", "h2", mode="offline", project="other/proj", env_present=["NEPTUNE_API_TOKEN"])
    problems = compare_fingerprints({"a": a, "b": b})
    assert problems == [
        "package 'numpy' differs between workers: 2.0.0 on default (h1); not installed on gpu (h2)",
        "client mode differs between workers: async on default (h1); offline on gpu (h2)",
        "Neptune project differs between workers: airflow/sandbox on default (h1); other/proj on gpu (h2)",
        "environment variable NEPTUNE_PROJECT is set on default (h1) but not on gpu (h2)",
    ]
    assert compare_fingerprints(
        {"a": a, "b": b}, ignore_packages=["NumPy"], compare_env=False, compare_mode=False
    ) == ["Neptune project differs between workers: airflow/sandbox on default (h1); other/proj on gpu (h2)"]


def test_missing_fingerprint_is_reported() -> None:
    problems = compare_fingerprints({"group.check_a": fp("a", "h"), "group.check_b": None})
    assert problems == ["no fingerprint from group.check_b: the check did not run or failed before reporting"]


class FakeTI:
    def __init__(self, xcom: dict[str, Any]) -> None:
        self.xcom = xcom

    def xcom_pull(self, task_ids: str, key: str) -> Any:
        assert key == FINGERPRINT_XCOM_KEY
        return self.xcom.get(task_ids)


def test_compare_task_passes_and_summarises() -> None:
    op = NeptuneCompareEnvironmentsOperator(task_id="compare", check_task_ids=["a", "b"])
    assert op.trigger_rule == TriggerRule.ALL_DONE
    summary = op.execute({"ti": FakeTI({"a": fp("default", "h1"), "b": fp("gpu", "h2")})})  # type: ignore[arg-type]
    assert summary == {
        "workers": ["default (h1)", "gpu (h2)"],
        "versions": {"neptune": "1.14.0", "apache-airflow": "3.3.2", "python": "3.11.7"},
    }


def test_compare_task_fails_with_own_failures_and_differences() -> None:
    op = NeptuneCompareEnvironmentsOperator(task_id="compare", check_task_ids=["a", "b", "c"])
    xcom = {
        "a": fp("default", "h1"),
        "b": fp("gpu", "h2", "1.13.0", failed=["required environment variable X is not set"]),
    }
    with pytest.raises(AirflowFailException) as err:
        op.execute({"ti": FakeTI(xcom)})  # type: ignore[arg-type]
    assert str(err.value).splitlines() == [
        "Neptune environment check found 3 problem(s) across 3 worker(s):",
        "  - gpu (h2) failed its checks: required environment variable X is not set",
        "  - no fingerprint from c: the check did not run or failed before reporting",
        "  - package 'neptune' differs between workers: 1.13.0 on gpu (h2); 1.14.0 on default (h1)",
    ]


def test_group_per_queue() -> None:
    with DAG("env_group_queues", schedule=None) as dag:
        group = environment_check_group(
            queues=["default", "gpu/a100"], required_env=["NEPTUNE_PROJECT"], pool="neptune_api", retries=2
        )
    assert group.group_id == "neptune_environment"
    checks = [
        dag.get_task("neptune_environment.check_default"),
        dag.get_task("neptune_environment.check_gpu_a100"),
    ]
    compare = dag.get_task("neptune_environment.compare")
    assert [c.queue for c in checks] == ["default", "gpu/a100"]
    assert all(isinstance(c, NeptuneValidateEnvironmentOperator) for c in checks)
    assert [c.worker_label for c in checks] == ["default", "gpu/a100"]  # type: ignore[attr-defined]
    assert all(c.required_env == ["NEPTUNE_PROJECT"] for c in checks)  # type: ignore[attr-defined]
    assert {c.pool for c in (*checks, compare)} == {"neptune_api"}
    assert compare.retries == 2
    assert isinstance(compare, NeptuneCompareEnvironmentsOperator)
    assert compare.check_task_ids == [c.task_id for c in checks]
    assert compare.upstream_task_ids == {c.task_id for c in checks}
    assert compare.trigger_rule == TriggerRule.ALL_DONE


def test_group_per_pool() -> None:
    with DAG("env_group_pools", schedule=None) as dag:
        environment_check_group(pools=["pool_a", "pool_b"], group_id="env")
    assert [dag.get_task(f"env.check_pool_{x}").pool for x in "ab"] == ["pool_a", "pool_b"]
    assert dag.get_task("env.check_pool_a").worker_label == "pool_a"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "needs either queues or pools"),
        ({"queues": ["a"], "pools": ["b"]}, "needs either queues or pools"),
        ({"queues": ["gpu/a", "gpu:a"]}, "must be distinct"),
        ({"queues": ["a"], "worker_label": "x"}, "set per task"),
        ({"pools": ["a"], "pool": "x"}, "set per task"),
    ],
)
def test_group_rejects_bad_arguments(kwargs: dict[str, Any], message: str) -> None:
    with DAG("env_group_bad", schedule=None), pytest.raises(ValueError, match=message):
        environment_check_group(**kwargs)


def _load_example_dag(monkeypatch: pytest.MonkeyPatch, queues: str | None) -> Any:
    if queues is None:
        monkeypatch.delenv("NEPTUNE_ENV_CHECK_QUEUES", raising=False)
    else:
        monkeypatch.setenv("NEPTUNE_ENV_CHECK_QUEUES", queues)
    spec = importlib.util.spec_from_file_location(
        "example_env_dag", REPO / "dags" / "neptune_environment_check.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the example must load without warnings
        spec.loader.exec_module(module)
    return module


def test_example_dag_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    before = set(sys.modules)
    module = _load_example_dag(monkeypatch, None)
    assert not any(m == "neptune" or m.startswith("neptune.") for m in set(sys.modules) - before)
    dag = module.neptune_environment_check()
    assert dag.dag_id == "neptune_environment_check"
    assert dag.doc_md
    assert "NEPTUNE_ENV_CHECK_QUEUES" in dag.doc_md
    assert sorted(dag.task_ids) == [
        "neptune_environment.check_default",
        "neptune_environment.check_training",
        "neptune_environment.compare",
    ]
    for task in dag.tasks:
        assert task.owner == "ml-platform"
        assert task.pool == "neptune_api"
        assert task.retries == 1
    assert dag.get_task("neptune_environment.check_training").queue == "training"


def test_example_dag_queues_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    dag = _load_example_dag(monkeypatch, " default , gpu,,cpu ").neptune_environment_check()
    assert {t.queue for t in dag.tasks if t.task_id != "neptune_environment.compare"} == {
        "default",
        "gpu",
        "cpu",
    }
