"""In-process tests of the emulator's ASGI app: specs, auth, control endpoints, errors, faults."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from swagger_spec_validator.validator20 import validate_spec

from airflow_provider_neptune.emulator import NeptuneEmulator
from airflow_provider_neptune.emulator.app import OAUTH_TOKEN_PATH, EmulatorApp, EmulatorConfig
from airflow_provider_neptune.emulator.swagger import ROUTES, build_spec

LB = "/api/leaderboard/v1"


@pytest.fixture
def app(tmp_path: Path) -> Iterator[EmulatorApp]:
    emulator = EmulatorApp(EmulatorConfig(data_dir=tmp_path, projects=["ws/proj"]))
    yield emulator
    emulator.storage.close()


@pytest.fixture
def client(app: EmulatorApp) -> Iterator[TestClient]:
    with TestClient(app, base_url="http://127.0.0.1:5050", raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture
def control(app: EmulatorApp) -> Iterator[TestClient]:
    """A client of the same app that sends the API token, as the control endpoints require."""
    headers = {"X-Neptune-Api-Token": app.api_token("http://127.0.0.1:5050")}
    with TestClient(
        app, base_url="http://127.0.0.1:5050", raise_server_exceptions=False, headers=headers
    ) as test_client:
        yield test_client


def _bearer(app: EmulatorApp, client: TestClient) -> dict[str, str]:
    token = app.api_token("http://127.0.0.1:5050")
    response = client.get("/api/backend/v1/authorization/oauth-token", headers={"X-Neptune-Api-Token": token})
    assert response.status_code == 200
    return {"Authorization": f"Bearer {response.json()['accessToken']}"}


@pytest.mark.parametrize("api", ["backend", "leaderboard", "artifacts"])
def test_served_specs_are_valid_swagger(client: TestClient, api: str) -> None:
    spec = client.get(f"/api/{api}/swagger.json").json()
    assert spec == json.loads(json.dumps(build_spec(api)))
    validate_spec(spec)


def test_operation_ids_are_unique_and_have_handlers(app: EmulatorApp) -> None:
    ids = [r.operation_id for r in ROUTES]
    assert len(ids) == len(set(ids))
    for route in ROUTES:
        if route.operation_id != "exchangeApiToken":
            assert callable(getattr(app.api, route.operation_id))


def test_token_exchange_refresh_and_rejection(app: EmulatorApp, client: TestClient) -> None:
    assert client.get("/api/backend/v1/clients/config").status_code == 401
    bad = client.get("/api/backend/v1/authorization/oauth-token", headers={"X-Neptune-Api-Token": "bm9wZQ=="})
    assert bad.status_code == 401
    token = app.api_token("http://127.0.0.1:5050")
    config = client.get("/api/backend/v1/clients/config", headers={"X-Neptune-Api-Token": token}).json()
    assert config["apiUrl"] == "http://127.0.0.1:5050"
    assert config["multiPartUpload"]["maxSinglePartSize"] == 5 * 1024 * 1024
    pair = client.get(
        "/api/backend/v1/authorization/oauth-token", headers={"X-Neptune-Api-Token": token}
    ).json()
    claims = app.issuer.verify(pair["refreshToken"], kind="Refresh")
    assert claims is not None
    assert claims["iss"] == "http://127.0.0.1:5050/auth/realms/neptune"
    refreshed = client.post(
        OAUTH_TOKEN_PATH, data={"grant_type": "refresh_token", "refresh_token": pair["refreshToken"]}
    )
    assert refreshed.status_code == 200
    assert app.issuer.check_bearer(f"Bearer {refreshed.json()['access_token']}")
    denied = client.post(OAUTH_TOKEN_PATH, data={"grant_type": "refresh_token", "refresh_token": "x.y.z"})
    assert denied.status_code == 400
    assert client.get(f"{LB}/experiments?experimentId=x").status_code == 401


def test_unknown_routes_name_method_and_path(client: TestClient, control: TestClient) -> None:
    missing = client.post("/api/leaderboard/v1/teleport", json={})
    assert missing.status_code == 404
    assert "POST /api/leaderboard/v1/teleport" in missing.json()["title"]
    wrong_method = client.delete(f"{LB}/experiments")
    assert wrong_method.status_code == 405
    assert "DELETE /api/leaderboard/v1/experiments" in wrong_method.json()["title"]
    unknown = control.get("/_emulator/nothing")
    assert unknown.status_code == 404
    assert "GET /_emulator/nothing" in unknown.json()["title"]
    stats = control.get("/_emulator/stats").json()
    assert stats["requests_by_route"]["POST /api/leaderboard/v1/teleport"] == 1
    assert stats["requests_by_status"]["404"] == 1


def test_control_endpoints(client: TestClient, control: TestClient) -> None:
    body = {
        "rate_limit": 3,
        "fault_rate": 0.25,
        "latency_ms": 5,
        "fail_next": {"route": "ping", "status": 409, "count": 2},
    }
    settings = control.post("/_emulator/faults", json=body).json()
    assert settings == {
        "rate_limit": 3.0,
        "fault_rate": 0.25,
        "latency_ms": 5.0,
        "fail_next": [{"route": "ping", "status": 409, "count": 2}],
    }
    assert control.post("/_emulator/faults", json={"latency_ms": -1}).status_code == 400
    assert control.post("/_emulator/faults", json={"fault_rate": 2}).status_code == 400
    cleared = control.post(
        "/_emulator/faults",
        json={"rate_limit": None, "fault_rate": 0, "clear_fail_next": True, "latency_ms": 0},
    )
    assert cleared.json() == {"rate_limit": None, "fault_rate": 0.0, "latency_ms": 0.0, "fail_next": []}
    client.get("/api/backend/v1/clients/config")
    assert control.get("/_emulator/stats").json()["requests_total"] == 1
    control.post("/_emulator/reset_stats")
    stats = control.get("/_emulator/stats").json()
    assert stats["requests_total"] == 0
    assert stats["requests_per_second"] == []
    created = control.post("/_emulator/projects", json={"project": "ws/other"}).json()
    assert created["project"] == "ws/other"
    assert control.get("/_emulator/projects").json() == ["ws/proj", "ws/other"]


def test_throttle_answers_429_before_auth_and_spares_specs(client: TestClient, control: TestClient) -> None:
    control.post("/_emulator/faults", json={"rate_limit": 2})
    codes = [client.get("/api/backend/v1/clients/config").status_code for _ in range(4)]
    assert codes == [401, 401, 429, 429]
    throttled = client.get("/api/backend/v1/clients/config")
    assert throttled.headers["Retry-After"] == "1"
    assert all(client.get("/api/backend/swagger.json").status_code == 200 for _ in range(5))
    assert control.get("/_emulator/stats").json()["throttled_total"] == 3


def test_faulted_and_failed_requests_change_nothing(
    app: EmulatorApp, client: TestClient, control: TestClient
) -> None:
    headers = _bearer(app, client)
    project = client.get("/api/backend/v1/projects/get?projectIdentifier=ws/proj", headers=headers).json()
    created = client.post(f"{LB}/experiments", json={"projectIdentifier": project["id"]}, headers=headers)
    run_id = created.json()["id"]
    assert created.json()["shortId"] == "PRO-1"
    ops = [{"path": "x", "assignFloat": {"value": 1.0}}]
    control.post("/_emulator/faults", json={"fail_next": {"route": "executeOperations", "status": 400}})
    assert (
        client.post(
            f"{LB}/attributes/operations?experimentId={run_id}", json=ops, headers=headers
        ).status_code
        == 400
    )
    control.post("/_emulator/faults", json={"fault_rate": 1.0, "seed": 1})
    for _ in range(3):  # seed 1 draws 500 then 503 then 503: no dropped connection in-process
        faulted = client.post(f"{LB}/attributes/operations?experimentId={run_id}", json=ops, headers=headers)
        assert faulted.status_code in (500, 503)
    control.post("/_emulator/faults", json={"fault_rate": 0.0})
    assert app.storage.attribute(run_id, "x") is None
    stats = control.get("/_emulator/stats").json()
    assert stats["faults_injected_total"] == 3
    assert stats["fail_next_total"] == 1
    assert stats["operations_total"] == 0
    ok = client.post(f"{LB}/attributes/operations?experimentId={run_id}", json=ops, headers=headers)
    assert ok.json() == []
    # An upload the data model refuses is reported in the body (status 200), not as a failed request.
    upload = f"{LB}/attributes/storage/file/upload?experimentIdentifier={run_id}&attribute=x&ext=bin"
    refused = client.post(upload, content=b"data", headers=headers)
    assert refused.status_code == 200
    assert "type float" in refused.json()["errors"][0]["errorDescription"]
    assert app.storage.attribute(run_id, "x") is not None
    assert control.get("/_emulator/stats").json()["operations_total"] == 1


def test_emulator_helpers_build_env_and_connection() -> None:
    emulator = NeptuneEmulator(
        projects=("team/a", "team/b"), rate_limit=7, seed=3, state_timeout=5, latency_ms=20
    )
    emulator.api_token = "TOKEN"
    command = emulator.command()
    assert command[1:3] == ["-m", "airflow_provider_neptune.emulator"]
    expected = {
        "--rate-limit": "7",
        "--seed": "3",
        "--state-timeout": "5",
        "--port": "0",
        "--latency-ms": "20",
    }
    for flag, value in expected.items():
        assert command[command.index(flag) + 1] == value
    assert command.count("--project") == 2
    assert emulator.env() == {
        "NEPTUNE_API_TOKEN": "TOKEN",
        "NEPTUNE_PROJECT": "team/a",
        "OAUTHLIB_INSECURE_TRANSPORT": "1",
    }
    conn = json.loads(emulator.airflow_conn_json(mode="sync"))
    assert conn == {
        "conn_type": "neptune",
        "password": "TOKEN",
        "extra": {"project": "team/a", "mode": "sync"},
    }


def test_plugin_imports_neither_airflow_nor_neptune() -> None:
    code = (
        "import sys, airflow_provider_neptune.emulator.pytest_plugin, airflow_provider_neptune.emulator;"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('airflow', 'neptune')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"


def test_stats_report_the_process_cpu_time_spent_on_requests(client: TestClient, control: TestClient) -> None:
    first = control.get("/_emulator/stats").json()
    before = first["process_cpu_seconds"]
    assert isinstance(before, float)
    assert before > 0
    for _ in range(20):
        client.get("/api/backend/v1/clients/config")  # answered (401 without a token) all the same
    second = control.get("/_emulator/stats").json()
    assert second["requests_total"] == first["requests_total"] + 20
    assert second["process_cpu_seconds"] > before


def _float_series_run(
    app: EmulatorApp, client: TestClient, values: list[float]
) -> tuple[dict[str, str], Any]:
    """Auth headers and a new run holding series ``m``: value i at step i/4, timestamp 1000+i ms."""
    headers = _bearer(app, client)
    run = app.storage.create_run(app.storage.ensure_project("ws/proj"))[0]
    entries = [
        {"step": float(i) / 4, "value": v, "timestampMilliseconds": 1000 + i} for i, v in enumerate(values)
    ]
    errors, _, _ = app.storage.execute_operations(run, [{"path": "m", "logFloats": {"entries": entries}}])
    assert errors == []
    return headers, run


def test_a_float_series_page_is_the_json_a_generic_encoder_writes(
    app: EmulatorApp, client: TestClient
) -> None:
    # The route writes its JSON by hand; it must be byte for byte what json.dumps makes of the points.
    tricky = [0.1, 1 / 3, 1e22, 1e-300, -0.0, 2.0**53, -1.7e308, 5e-324, 123456789.125]
    headers, run = _float_series_run(app, client, tricky)
    response = client.get(
        f"{LB}/attributes/series/float?experimentId={run.id}&attribute=m&offset=1", headers=headers
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    expected = {
        "totalItemCount": len(tricky),
        "values": [
            {"timestampMillis": 1000 + i, "step": float(i) / 4, "value": v}
            for i, v in enumerate(tricky)
            if i >= 1
        ],
    }
    assert response.content == json.dumps(expected, separators=(",", ":")).encode()
    assert [p["value"] for p in response.json()["values"]] == tricky[1:]


def test_a_float_series_page_with_values_an_older_version_stored_sends_them_as_null(
    app: EmulatorApp, client: TestClient
) -> None:
    # Older versions could store NULL or Inf; the page must stay valid JSON and keep the finite points.
    headers, run = _float_series_run(app, client, [0.0, 0.5, 1.0, 1.5])
    with app.storage._lock:
        app.storage._db.execute("UPDATE points SET value = NULL WHERE run_id = ? AND idx = 1", (run.id,))
        app.storage._db.execute("UPDATE points SET value = 9e999 WHERE run_id = ? AND idx = 2", (run.id,))
    response = client.get(f"{LB}/attributes/series/float?experimentId={run.id}&attribute=m", headers=headers)
    assert response.status_code == 200, response.text
    answer = json.loads(response.content, parse_constant=lambda name: pytest.fail(f"{name} in the page"))
    assert answer["totalItemCount"] == 4
    assert [(p["step"], p["value"]) for p in answer["values"]] == [
        (0.0, 0.0),
        (0.25, None),
        (0.5, None),
        (0.75, 1.5),
    ]
