"""Runs-table searches answered in SQL (search.py) give what the reference NQL evaluator gives.

Each query goes through the searchLeaderboardEntries / searchLeaderboardAttributes routes over HTTP
(Starlette's TestClient); the expected runs come from nql.matches over every run's full fields, the
evaluation the emulator used for every search before queries moved into SQLite.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from airflow_provider_neptune.emulator import nql, search
from airflow_provider_neptune.emulator.app import EmulatorApp
from airflow_provider_neptune.emulator.fields import plain_value
from airflow_provider_neptune.emulator.storage import RunRow
from tests.helpers.emulator_queries import QUERIES

BASE = "http://127.0.0.1:5050"
LB = "/api/leaderboard/v1/leaderboard"


@pytest.fixture
def app(search_app: EmulatorApp) -> EmulatorApp:
    return search_app


@pytest.fixture
def runs(search_runs: list[RunRow]) -> list[RunRow]:
    return search_runs


@pytest.fixture
def client(app: EmulatorApp) -> Iterator[TestClient]:
    with TestClient(app, base_url=BASE, raise_server_exceptions=True) as test_client:
        token = app.api_token(BASE)
        answer = test_client.get(
            "/api/backend/v1/authorization/oauth-token", headers={"X-Neptune-Api-Token": token}
        )
        test_client.headers["Authorization"] = f"Bearer {answer.json()['accessToken']}"
        yield test_client


def _reference(app: EmulatorApp, query_text: str, kinds: list[str]) -> list[RunRow]:
    """Runs matching the query by nql.matches over all their fields, sorted by sys/id."""
    project = app.storage.find_project("ws/proj")
    assert project is not None
    query = nql.parse(query_text)
    out = []
    for run in app.storage.runs_of(project.id, kinds or None):
        fields = app.api.fields_of(run)
        if nql.matches(query, {p: (a.type, plain_value(a)) for p, a in fields.items()}):
            out.append(run)
    return sorted(out, key=lambda r: r.short_id)


def _search(client: TestClient, query_text: str, kinds: list[str], **params: Any) -> dict[str, Any]:
    body = {"query": {"query": query_text}, "sorting": {"sortBy": {"name": "sys/id"}, "dir": "ascending"}}
    body.update(params)
    answer = client.post(
        f"{LB}/entries/search", params={"projectIdentifier": "ws/proj", "type": kinds}, json=body
    )
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


KINDS = [[], ["run"], ["run", "project"], ["model", "modelVersion"], ["project"]]


@pytest.mark.parametrize("query_text", QUERIES)
def test_search_matches_the_reference_evaluator(
    app: EmulatorApp, client: TestClient, runs: list[RunRow], query_text: str
) -> None:
    for kinds in KINDS:
        expected = _reference(app, query_text, kinds)
        result = _search(client, query_text, kinds)
        assert [e["experimentId"] for e in result["entries"]] == [r.id for r in expected], (query_text, kinds)
        assert result["matchingItemCount"] == len(expected), (query_text, kinds)


def test_client_queries_compile_to_exact_sql() -> None:
    """The queries the hook and the client send are answered by SQL alone (no per-run Python)."""
    for text in (
        '((`sys/custom_run_id`:string = "c-1") AND (`sys/trashed`:bool = false))',
        '((`sys/id`:string = "PRO-1") AND (`sys/trashed`:bool = false))',
        '((`sys/tags`:stringSet CONTAINS "a") AND (`sys/trashed`:bool = false))',
        '(`sys/creation_time`:datetime < "2026-01-01T00:00:00.000Z")',
    ):
        assert search.narrowing(nql.parse(text)).exact, text
    assert not search.narrowing(nql.parse('sys/state = "idle"')).exact


@pytest.mark.parametrize(
    ("sort_by", "descending"),
    [("sys/id", True), ("sys/creation_time", False), ("acc", True), ("sys/name", False)],
)
def test_search_sorts_and_pages_like_the_reference(
    app: EmulatorApp, client: TestClient, runs: list[RunRow], sort_by: str, descending: bool
) -> None:
    expected = _reference(app, "sys/trashed = false", ["run"])
    fields = {r.id: app.api.fields_of(r) for r in expected}

    def key(run: RunRow) -> Any:
        attr = fields[run.id].get(sort_by)
        return plain_value(attr) if attr else None

    present = sorted((r for r in expected if key(r) is not None), key=lambda r: (key(r), r.created_ms, r.seq))
    if descending:
        present.reverse()
    ordered = present + [r for r in expected if key(r) is None]
    seen: list[str] = []
    for offset in range(0, len(ordered), 2):
        result = _search(
            client,
            "sys/trashed = false",
            ["run"],
            sorting={"sortBy": {"name": sort_by}, "dir": "descending" if descending else "ascending"},
            pagination={"offset": offset, "limit": 2},
            attributeFilters=[{"path": "sys/id"}, {"path": sort_by}],
        )
        assert result["matchingItemCount"] == len(ordered)
        seen += [e["experimentId"] for e in result["entries"]]
        for entry in result["entries"]:
            assert {a["name"] for a in entry["attributes"]} <= {"sys/id", sort_by}
    assert seen == [r.id for r in ordered]


def test_attribute_columns_match_every_runs_fields(
    app: EmulatorApp, client: TestClient, runs: list[RunRow]
) -> None:
    project = app.storage.find_project("ws/proj")
    assert project is not None
    # A field deleted from its only run leaves no column behind.
    errors, _, _ = app.storage.execute_operations(runs[4], [{"path": "note", "deleteAttribute": {}}])
    assert errors == []
    errors, _, _ = app.storage.execute_operations(runs[4], [{"path": "gone/x", "assignInt": {"value": 1}}])
    assert errors == []
    errors, _, _ = app.storage.execute_operations(runs[4], [{"path": "gone/x", "deleteAttribute": {}}])
    assert errors == []
    for kinds in KINDS:
        for text in ("", "sys/", "note", "acc", "gone"):
            expected = set()
            for run in app.storage.runs_of(project.id, kinds or None):
                expected |= {(a.path, a.type) for a in app.api.fields_of(run).values() if text in a.path}
            answer = client.post(
                f"{LB}/attributes/search",
                params={"projectIdentifier": "ws/proj", "type": kinds, "search": text},
            )
            assert answer.status_code == 200, answer.text
            got = {(e["name"], e["type"]) for e in answer.json()["entries"]}
            from airflow_provider_neptune.emulator.api import SYSTEM_COLUMNS

            expected |= {c for c in SYSTEM_COLUMNS if text in c[0]}
            assert got == expected, (kinds, text)
