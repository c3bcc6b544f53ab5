"""The web view's runs table (queries.table_page, filtered and sorted in SQLite as far as it can) shows
the runs, order and counts the reference evaluation gives: nql.matches over every run's full fields,
rows with the sort column first (sorted by it, ties by creation), rows without it last."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_neptune.emulator import nql
from airflow_provider_neptune.emulator.app import EmulatorApp
from airflow_provider_neptune.emulator.fields import plain_value
from airflow_provider_neptune.emulator.storage import RunRow
from airflow_provider_neptune.emulator.web import queries
from tests.helpers.emulator_queries import QUERIES


def _reference(app: EmulatorApp, query_text: str, sort: str, descending: bool) -> list[str]:
    project = app.storage.find_project("ws/proj")
    assert project is not None
    query = nql.parse(query_text)
    matched = []
    for run in app.storage.runs_of(project.id, ["run"]):
        fields = app.api.fields_of(run)
        if nql.matches(query, {p: (a.type, plain_value(a)) for p, a in fields.items()}):
            matched.append((run, fields))

    def value(fields: dict[str, Any]) -> Any:
        attr = fields.get(sort)
        got = plain_value(attr) if attr else None
        return ",".join(got) if isinstance(got, list) else got

    present = [(value(f), r) for r, f in matched if value(f) is not None]
    missing = sorted((r for r, f in matched if value(f) is None), key=lambda r: (r.created_ms, r.seq))
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v, _ in present)
    present.sort(key=lambda k: (k[0] if numeric else str(k[0]), k[1].created_ms, k[1].seq))
    if descending:
        present.reverse()
        missing.reverse()
    return [r.id for _, r in present] + [r.id for r in missing]


@pytest.mark.parametrize("query_text", QUERIES)
def test_table_pages_match_the_reference(
    search_app: EmulatorApp, search_runs: list[RunRow], query_text: str
) -> None:
    app = search_app
    project = app.storage.find_project("ws/proj")
    assert project is not None
    for sort in ("sys/id", "sys/creation_time", "acc", "sys/name"):
        for descending in (True, False):
            expected = _reference(app, query_text, sort, descending)
            seen: list[str] = []
            for page in range(1, 5):
                request = queries.TableQuery(
                    nql_text=query_text, sort=sort, descending=descending, page=page, size=2, columns=("acc",)
                )
                result = queries.table_page(app.storage, project, request, 0.0)
                assert result.matching == len(expected), (query_text, sort)
                assert result.total == 5
                if page <= result.pages:
                    seen += [run.id for run, _ in result.rows]
            assert seen == expected, (query_text, sort, descending)
    paths = queries.field_paths(app.storage, project)
    assert {"acc", "note", "sys/custom_run_id", "sys/tags", "sys/group_tags", "sys/state"} <= set(paths)
    assert "info/note" not in paths  # the project container's own field is not a run column
