"""Test-wide set-up: a throwaway AIRFLOW_HOME (SQLite) so tests never touch a real deployment."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

_BUNDLE = "airflow.dag_processing.bundles.local.LocalDagBundle"

# Must happen before anything imports airflow.
_AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="apn-airflow-home-"))
atexit.register(shutil.rmtree, _AIRFLOW_HOME, ignore_errors=True)  # leave nothing behind in /tmp
os.environ["AIRFLOW_HOME"] = str(_AIRFLOW_HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
_REPO = Path(__file__).resolve().parents[1]
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(_REPO / "dags")
# Two bundles: the shipped example DAGs and the DAGs written for tests (dag.test() needs a bundle).
os.environ["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"] = json.dumps(
    [
        {"name": "neptune_dags", "classpath": _BUNDLE, "kwargs": {"path": str(_REPO / "dags")}},
        {"name": "test_dags", "classpath": _BUNDLE, "kwargs": {"path": str(_REPO / "tests" / "dags")}},
    ]
)
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_AIRFLOW_HOME / 'airflow.db'}"
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")
for _name in list(os.environ):
    # A developer's own Neptune settings must not leak into tests.
    if _name.startswith("NEPTUNE_") or _name.startswith("AIRFLOW_CONN_NEPTUNE"):
        del os.environ[_name]


@pytest.fixture(scope="session")
def airflow_db() -> Path:
    """Create the Airflow metadata DB once per session (needed by dag.test())."""
    from airflow.utils import db

    db.initdb()
    return _AIRFLOW_HOME
