"""Every SQL statement the routes the client and the provider use send is answered through an index:
none scans the runs, fields, points or tag tables whole (EXPLAIN QUERY PLAN of each statement traced
while the route runs). A full scan there is what makes a route's cost grow with the data stored."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from starlette.testclient import TestClient

from airflow_provider_neptune.emulator.app import EmulatorApp
from airflow_provider_neptune.emulator.storage import RunRow

BASE = "http://127.0.0.1:5050"
LB = "/api/leaderboard/v1"
# The big tables, and the aliases the emulator's queries give them.
SCANNED_NAMES = ("runs", "attrs", "points", "set_members", "filesets", "columns_seen", "r", "a", "c")


@pytest.fixture
def client(search_app: EmulatorApp) -> Iterator[TestClient]:
    with TestClient(search_app, base_url=BASE, raise_server_exceptions=True) as test_client:
        answer = test_client.get(
            "/api/backend/v1/authorization/oauth-token",
            headers={"X-Neptune-Api-Token": search_app.api_token(BASE)},
        )
        test_client.headers["Authorization"] = f"Bearer {answer.json()['accessToken']}"
        yield test_client


def _search(query: str, sort_by: str, columns: list[str]) -> tuple[str, str, bytes]:
    body = {
        "query": {"query": query},
        "sorting": {"dir": "descending", "sortBy": {"name": sort_by}},
        "pagination": {"limit": 100, "offset": 0},
        "attributeFilters": [{"path": c} for c in columns],
    }
    path = f"{LB}/leaderboard/entries/search?" + urlencode({"projectIdentifier": "ws/proj", "type": "run"})
    return "POST", path, json.dumps(body).encode()


def _requests(run: RunRow) -> dict[str, tuple[str, str, bytes | None]]:
    ops = [
        {"path": "live/x", "assignFloat": {"value": 1.0}},
        {
            "path": "live/s",
            "logFloats": {"entries": [{"value": 1.0, "step": 1.0, "timestampMilliseconds": 1}]},
        },
    ]
    return {
        "search by custom id": _search(
            '((`sys/custom_run_id`:string = "c-1") AND (`sys/trashed`:bool = false))',
            "sys/id",
            ["sys/id", "sys/custom_run_id", "sys/name"],
        ),
        "search by tag": _search(
            '((`sys/tags`:stringSet CONTAINS "a") AND (`sys/trashed`:bool = false))',
            "sys/creation_time",
            ["acc"],
        ),
        "search by sys/id": _search('(`sys/id`:string = "PRO-1")', "sys/creation_time", ["sys/id"]),
        "column types": (
            "POST",
            f"{LB}/leaderboard/attributes/search?"
            + urlencode({"projectIdentifier": "ws/proj", "type": "run", "search": "sys/creation_time"}),
            b"{}",
        ),
        "createExperiment": (
            "POST",
            f"{LB}/experiments",
            json.dumps({"projectIdentifier": "ws/proj", "type": "run", "customId": "c-new"}).encode(),
        ),
        "getExperimentAttributes": ("GET", f"{LB}/attributes?" + urlencode({"experimentId": run.id}), None),
        "executeOperations": (
            "POST",
            f"{LB}/attributes/operations?" + urlencode({"experimentId": run.id}),
            json.dumps(ops).encode(),
        ),
        "getFloatSeriesValues": (
            "GET",
            f"{LB}/attributes/series/float?"
            + urlencode({"experimentId": run.id, "attribute": "live/s", "limit": 100, "offset": 0}),
            None,
        ),
        "fileAtomUpload": (
            "POST",
            f"{LB}/attributes/storage/file/upload?"
            + urlencode({"experimentIdentifier": run.id, "attribute": "files/f", "ext": "bin"}),
            b"data",
        ),
    }


def _scans(app: EmulatorApp, statement: str) -> list[str]:
    """Plan lines of a traced statement that read a big table whole, or every run of the project.

    `SEARCH r USING INDEX ... (project_id=? AND type=?)` is a scan too (unless it stops at the first
    row): it visits every run of the project, so such a route's cost grows with the project.
    """
    plan: list[Any] = app.storage.rows(f"EXPLAIN QUERY PLAN {statement}")
    bad = []
    for *_, line in plan:
        words = line.split()
        if line.startswith("SCAN ") and words[1] in SCANNED_NAMES:
            bad.append(line)
        elif line.startswith("SEARCH ") and words[1] in ("runs", "r") and "(" in line:
            columns = {
                term.split("=")[0].split(">")[0].strip()
                for term in line[line.index("(") + 1 : -1].split(" AND ")
            }
            # An existence check (LIMIT 1) stops at the first run it finds.
            if columns <= {"project_id", "type"} and not statement.rstrip().endswith("LIMIT 1"):
                bad.append(line)
    return bad


def test_no_route_scans_a_big_table(
    search_app: EmulatorApp, search_runs: list[RunRow], client: TestClient
) -> None:
    run = search_runs[0]
    for label, (method, path, body) in _requests(run).items():
        traced: list[str] = []
        search_app.storage._db.set_trace_callback(traced.append)
        try:
            answer = client.request(method, path, content=body)
        finally:
            search_app.storage._db.set_trace_callback(None)
        assert answer.status_code == 200, (label, answer.text)
        statements = [
            s for s in traced if s.split(None, 1)[0].upper() in ("SELECT", "UPDATE", "DELETE", "INSERT")
        ]
        assert statements, label
        for statement in statements:
            assert _scans(search_app, statement) == [], (label, statement)
