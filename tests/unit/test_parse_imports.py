"""Parsing a DAG file that builds every operator and sensor must not import their worker-side helpers.

Those helpers (the worker-side ``core`` package, ``packaging``, the trigger, the hook, ``neptune``
itself at ~2 s) run only in ``execute``; importing them while parsing costs DAG-processor time on
every parse (benchmark 4). The lint rule that keeps it so (ruff TID253) is checked to bite, and the
parse-time requirement shortcut to agree with ``packaging``.
"""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_provider_neptune.core.environment_checks import normalize_requirements
from airflow_provider_neptune.operators.environment import (
    NeptuneValidateEnvironmentOperator,
    plainly_valid_requirements,
)

PROBE = """
import sys
import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG

before = set(sys.modules)
from airflow_provider_neptune.operators import (
    NeptuneArtifactRetentionOperator,
    NeptuneCreateRunOperator,
    NeptuneLogMetricsOperator,
    NeptuneStopRunOperator,
    NeptuneSyncOperator,
    NeptuneUploadArtifactOperator,
    NeptuneValidateEnvironmentOperator,
)
from airflow_provider_neptune.sensors import NeptuneMetricSensor, NeptuneRunSensor

RUN = "{{ ti.xcom_pull('create') }}"
with DAG("parse_imports", schedule=None, start_date=pendulum.datetime(2026, 1, 1), catchup=False) as dag:
    EmptyOperator(task_id="begin")
    NeptuneCreateRunOperator(task_id="create", name="train", tags=["t"])
    NeptuneLogMetricsOperator(task_id="log", run_id=RUN, metrics={"train/loss": [1.0, 0.5]})
    NeptuneUploadArtifactOperator(task_id="upload", run_id=RUN, path="/tmp/m.pt", score=0.5, step=1)
    NeptuneArtifactRetentionOperator(task_id="retain", keep_top_k=3, dry_run=True)
    NeptuneValidateEnvironmentOperator(
        task_id="check", requirements=["neptune>=1.14", "python>=3.11"], required_env=["A"]
    )
    NeptuneValidateEnvironmentOperator(task_id="check_map", requirements={"neptune": ">=1.14,<2"})
    NeptuneStopRunOperator(task_id="stop", run_id=RUN)
    NeptuneSyncOperator(task_id="sync", data_directory="/tmp/neptune-data")
    NeptuneMetricSensor(task_id="wait_metric", run_id=RUN, path="train/loss", condition="<", threshold=1.0)
    NeptuneRunSensor(task_id="wait_run", run_id=RUN, wait_for="field", field="eval/done")
print(len(dag.tasks))
print(" ".join(sorted(set(sys.modules) - before)))
"""

WORKER_SIDE = {
    "airflow_provider_neptune.core.run_conditions",
    "airflow_provider_neptune.triggers.neptune",
    "airflow_provider_neptune.hooks.neptune",
    "airflow_provider_neptune.core.metric_inputs",
    "airflow_provider_neptune.core.environment_checks",
    "airflow_provider_neptune.core.rendered_values",
    "airflow_provider_neptune.core.environment",
    "airflow_provider_neptune.core.fingerprints",
    "airflow_provider_neptune.core.metric_files",
    "airflow_provider_neptune.hooks.run_edits",
    "airflow_provider_neptune.core.checkpoint_records",
    "airflow_provider_neptune.core.checkpoint_store",
    "airflow_provider_neptune.core.retention_plan",
    "airflow_provider_neptune.core.retention_scan",
    "airflow_provider_neptune.core.checkpoint_files",
    "packaging.requirements",
    "packaging.specifiers",
    "neptune",
}


def test_building_every_operator_and_sensor_imports_no_worker_side_module() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    tasks, added = out.stdout.strip().splitlines()[-2:]
    assert int(tasks) == 11
    loaded = set(added.split())
    assert "airflow_provider_neptune.sensors.neptune" in loaded  # the probe did import the provider
    assert sorted(loaded & WORKER_SIDE) == []
    assert sorted(name for name in loaded if name.startswith("airflow_provider_neptune.core")) == []


IMPORT_ALL_PROBE = """
import importlib, sys
import airflow_provider_neptune as pkg
for kind in ("hooks", "operators", "sensors", "triggers"):
    for entry in pkg.get_provider_info()[kind]:
        for module in entry["python-modules"]:
            importlib.import_module(module)
for package in ("airflow_provider_neptune.operators", "airflow_provider_neptune.sensors"):
    mod = importlib.import_module(package)
    for name in mod.__all__:
        getattr(mod, name)
print(sorted(n for n in sys.modules if n == "neptune" or n.startswith("neptune.")))
"""


def test_importing_provider_operators_and_sensors_does_not_load_neptune() -> None:
    out = subprocess.run(
        [sys.executable, "-c", IMPORT_ALL_PROBE], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


REPO = Path(__file__).resolve().parents[2]


RUFF_TID253 = [sys.executable, "-m", "ruff", "check", "--select", "TID253", "--output-format", "concise"]


def _tid253(path: str, source: str) -> list[str]:
    """The TID253 findings ruff reports for ``source`` as if it were the repository file ``path``."""
    out = subprocess.run(
        [*RUFF_TID253, "--stdin-filename", path, "-"],
        input=f'"""Probe."""\n\nfrom __future__ import annotations\n\n{source}\n',
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert out.returncode in (0, 1), out.stderr
    return [line for line in out.stdout.splitlines() if "TID253" in line]


@pytest.mark.parametrize(
    "source",
    [
        "from airflow_provider_neptune.core.metric_inputs import open_metric_source",
        "from airflow_provider_neptune.core import run_conditions",
        "import airflow_provider_neptune.core.sync",
        "import neptune",
        "from neptune.types import File",
    ],
)
@pytest.mark.parametrize(
    "path",
    [
        "airflow_provider_neptune/operators/probe.py",
        "airflow_provider_neptune/sensors/probe.py",
        "airflow_provider_neptune/triggers/probe.py",
        "airflow_provider_neptune/links.py",
        "airflow_provider_neptune/exceptions.py",
        "airflow_provider_neptune/__init__.py",
        "airflow_provider_neptune/hooks/probe.py",
    ],
)
def test_lint_bans_core_and_neptune_at_module_level_in_parse_time_modules(path: str, source: str) -> None:
    assert len(_tid253(path, source)) == 1


@pytest.mark.parametrize(
    ("path", "source"),
    [
        ("airflow_provider_neptune/operators/probe.py", "from ..core import environment"),
        ("airflow_provider_neptune/links.py", "from .core.environment import run_path"),
    ],
)
def test_lint_bans_relative_imports_of_core_too(path: str, source: str) -> None:
    assert len(_tid253(path, source)) == 1


@pytest.mark.parametrize(
    ("path", "source"),
    [
        # where tasks run: the worker-side package itself
        (
            "airflow_provider_neptune/core/probe.py",
            "from airflow_provider_neptune.core.sync import empty_left",
        ),
        ("airflow_provider_neptune/core/probe.py", "import neptune"),
        # inside a function (runs in execute) or for type checkers only
        (
            "airflow_provider_neptune/operators/probe.py",
            "def f() -> None:\n    from airflow_provider_neptune.core import sync\n\n    print(sync)",
        ),
        (
            "airflow_provider_neptune/operators/probe.py",
            "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n"
            "    from airflow_provider_neptune.core.sync import RecordingBackend",
        ),
    ],
)
def test_lint_allows_core_where_tasks_run(path: str, source: str) -> None:
    assert _tid253(path, source) == []


PLAIN = [
    "neptune",
    "neptune>=1.14",
    "numpy>=1.26,<2",
    "python>=3.11",
    "Python",
    "python_dateutil~=2.8",
    "a.b-c_d!=0.1,==1.0,<=3,>2",
    "  apache-airflow>=3.0  ",
    "neptune>=1.14; numpy<2",
    ["neptune>=1.14", "python==3.11.7"],
    ("x~=1.0",),
    {"neptune": ">=1.14,<2", "numpy": None, "pandas": "2.2.1", "torch": ""},
]

NOT_DECIDED_HERE = [
    "neptune >= 1.14",  # valid, but spaces are left to packaging
    "neptune[extra]>=1",
    "neptune>=1.14; python_version>'3'",
    "neptune==1.14.*",
    "neptune>=1.0rc1",
    "neptune>>1",
    "neptune~=1",
    "-neptune",
    "neptune>=",
    ["ok>=1", "bad>>1"],
    ["ok>=1", 3],
    {"neptune": ">>1"},
    {"neptune": 1.14},
    42,
]


@pytest.mark.parametrize("requirements", PLAIN, ids=str)
def test_plain_requirements_skip_packaging_and_packaging_agrees(requirements: object) -> None:
    assert plainly_valid_requirements(requirements)
    normalize_requirements(requirements)  # type: ignore[arg-type]


@pytest.mark.parametrize("requirements", NOT_DECIDED_HERE, ids=str)
def test_other_requirements_are_left_to_packaging(requirements: object) -> None:
    assert not plainly_valid_requirements(requirements)


def test_random_requirements_the_shortcut_accepts_are_valid_for_packaging() -> None:
    rng = random.Random(20261126)
    alphabet = "aZ9._-<>=!~,*+ ;0123"
    accepted = 0
    for _ in range(20000):
        text = "n" + "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        if plainly_valid_requirements(text):
            accepted += 1
            normalize_requirements(text)  # must not raise
        if plainly_valid_requirements({"n": text[1:]}):
            normalize_requirements({"n": text[1:]})
    assert accepted > 50  # the generator does reach the shortcut


def test_invalid_literal_requirement_still_fails_at_parse_time() -> None:
    with pytest.raises(ValueError, match="PEP 508"):
        NeptuneValidateEnvironmentOperator(task_id="t", requirements=["neptune[>=1"])
    with pytest.raises(ValueError, match="PEP 440"):
        NeptuneValidateEnvironmentOperator(task_id="t", requirements={"neptune": "~=1"})
