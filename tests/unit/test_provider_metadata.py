"""Provider metadata: Airflow finds the provider through its entry point and sees the neptune form."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from importlib.metadata import entry_points

import airflow_provider_neptune


def test_entry_point_resolves_to_get_provider_info() -> None:
    eps = [ep for ep in entry_points(group="apache_airflow_provider") if ep.value.startswith("airflow_prov")]
    assert [ep.value for ep in eps] == ["airflow_provider_neptune:get_provider_info"]
    assert eps[0].load() is airflow_provider_neptune.get_provider_info


def test_every_listed_module_and_class_imports() -> None:
    info = airflow_provider_neptune.get_provider_info()
    kinds = ("hooks", "operators", "sensors", "triggers")
    modules = [m for kind in kinds for entry in info[kind] for m in entry["python-modules"]]
    for module in modules:
        importlib.import_module(module)
    dotted = [c["hook-class-name"] for c in info["connection-types"]] + info["extra-links"]
    for path in dotted:
        module, _, name = path.rpartition(".")
        assert hasattr(importlib.import_module(module), name), path


def test_connection_fields_match_hook_settings() -> None:
    conn = airflow_provider_neptune.get_provider_info()["connection-types"][0]
    assert conn["connection-type"] == "neptune"
    assert set(conn["conn-fields"]) == {
        "project",
        "mode",
        "rate_limit_per_second",
        "rate_limit_storage",
        "retry_count",
        "retry_backoff",
        "request_timeout",
        "logging_level",
    }
    assert conn["ui-field-behaviour"]["relabeling"]["password"] == "API token"


def _cli_json(*args: str) -> list[dict[str, str]]:
    """Run an ``airflow`` CLI command with JSON output; the JSON is its last line (logs may precede it)."""
    out = subprocess.run(
        [sys.executable, "-m", "airflow", *args, "--output", "json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_airflow_cli_lists_provider_and_hook() -> None:
    names = {p["package_name"] for p in _cli_json("providers", "list")}
    assert "airflow-provider-neptune" in names
    neptune = [h for h in _cli_json("providers", "hooks") if h["connection_type"] == "neptune"]
    assert len(neptune) == 1
    assert neptune[0]["class"].endswith("NeptuneHook")
