"""DAG files import the provider at parse time: that must not import ``neptune`` (~2 s)."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
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
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
