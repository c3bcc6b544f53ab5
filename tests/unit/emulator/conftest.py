"""Shared runs-table data for the search tests: an emulator app with varied runs (the NQL queries the
tests run over them are in tests/helpers/emulator_queries.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_neptune.emulator.app import EmulatorApp, EmulatorConfig
from airflow_provider_neptune.emulator.storage import RunRow


@pytest.fixture
def search_app(tmp_path: Path) -> Iterator[EmulatorApp]:
    """An emulator app (in-process) with the project ws/proj; runs read as idle once not held."""
    emulator = EmulatorApp(EmulatorConfig(data_dir=tmp_path, projects=["ws/proj"], state_timeout=0.0))
    yield emulator
    emulator.storage.close()


def _run(app: EmulatorApp, ops: list[dict[str, Any]], **kwargs: Any) -> RunRow:
    project = app.storage.find_project("ws/proj")
    assert project is not None
    run, _ = app.storage.create_run(project, **kwargs)
    errors, _, _ = app.storage.execute_operations(run, ops)
    assert errors == []
    return run


@pytest.fixture
def search_runs(search_app: EmulatorApp) -> list[RunRow]:
    """Runs with and without custom ids, tags, a trashed one, numbers, a model and its version."""
    made = [
        _run(
            search_app,
            [
                {"path": "sys/name", "assignString": {"value": "first"}},
                {"path": "sys/tags", "insertStrings": {"values": ["a", "b"]}},
                {"path": "acc", "assignFloat": {"value": 0.9}},
            ],
            custom_id="c-1",
        ),
        _run(
            search_app,
            [
                {"path": "sys/tags", "insertStrings": {"values": ["b"]}},
                {"path": "acc", "assignInt": {"value": 10}},
                {"path": "note", "assignDatetime": {"valueMilliseconds": 5}},
            ],
            custom_id="c-2",
        ),
        _run(
            search_app,
            [
                {"path": "acc", "assignFloat": {"value": 0.1}},
                {"path": "note", "assignString": {"value": "x"}},
            ],
        ),
        _run(
            search_app,
            [
                {"path": "sys/group_tags", "insertStrings": {"values": ["g"]}},
                {
                    "path": "acc",
                    "logFloats": {"entries": [{"value": 0.7, "step": 1.0, "timestampMilliseconds": 1}]},
                },
                {"path": "note", "assignBool": {"value": True}},
            ],
            custom_id="c-3",
        ),
        _run(
            search_app,
            [
                {"path": "note", "assignString": {"value": "5"}},
                {"path": "acc", "assignBool": {"value": True}},
            ],
        ),
    ]
    search_app.storage.set_trashed([made[1].id], True)
    # A tag removed again must no longer match.
    errors, _, _ = search_app.storage.execute_operations(
        made[3], [{"path": "sys/tags", "insertStrings": {"values": ["gone"]}}]
    )
    assert errors == []
    errors, _, _ = search_app.storage.execute_operations(
        made[3], [{"path": "sys/tags", "removeStrings": {"values": ["gone"]}}]
    )
    assert errors == []
    model = _run(
        search_app, [{"path": "sys/tags", "insertStrings": {"values": ["a"]}}], kind="model", model_key="MOD"
    )
    version = _run(search_app, [], kind="modelVersion", parent_id=model.id)
    project = search_app.storage.find_project("ws/proj")
    assert project is not None
    container = search_app.storage.find_run(project.id)
    assert container is not None
    errors, _, _ = search_app.storage.execute_operations(
        container, [{"path": "info/note", "assignString": {"value": "p"}}]
    )
    assert errors == []
    return [*made, model, version]
