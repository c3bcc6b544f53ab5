"""Connection, server and clock checks through the real NeptuneHook against the emulator."""

from __future__ import annotations

import base64
import json
import socket
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_neptune.core.environment import collect_environment, secrets_of
from airflow_provider_neptune.hooks.neptune import NeptuneHook

pytestmark = pytest.mark.integration


def token_for(address: str, api_key: str) -> str:
    payload = {"api_address": address, "api_url": address, "api_key": api_key}
    return base64.b64encode(json.dumps(payload).encode()).decode()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def connection(neptune_emulator: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("AIRFLOW_CONN_NEPTUNE_DEFAULT", neptune_emulator.airflow_conn_json(mode="sync"))
    return neptune_emulator


def everything(report: Any) -> str:
    return json.dumps(report.fingerprint) + "\n".join(r.message for r in report.results)


def test_good_connection_passes_every_server_check(connection: Any, tmp_path: Path) -> None:
    hook = NeptuneHook()
    report = collect_environment(
        hook=hook, required_env=["NEPTUNE_API_TOKEN", "NEPTUNE_PROJECT"], data_directory=tmp_path, worker="w"
    )
    assert report.failures == [], [f.message for f in report.failures]
    names = {r.name: r for r in report.results}
    assert names["connection"].message.startswith("Neptune connection works: Connected to")
    assert "clock offset from the server is" in names["clock_skew"].message
    server = report.fingerprint["server"]
    assert server["server_time"] is not None  # the emulator sends an HTTP Date header
    assert abs(server["clock_offset_seconds"]) <= 2
    assert server["round_trip_seconds"] > 0
    assert report.fingerprint["project"] == connection.project
    assert report.fingerprint["mode"] == "sync"
    for secret in secrets_of(connection.api_token):
        assert secret not in everything(report)


def test_rejected_token_fails_without_showing_it(connection: Any, tmp_path: Path) -> None:
    wrong = token_for(connection.url, "wrong-key-0123456789")
    report = collect_environment(hook=NeptuneHook(api_token=wrong), data_directory=tmp_path)
    [failure] = report.failures
    assert failure.name == "connection"
    assert failure.retryable
    assert failure.message.startswith("Neptune connection failed:")
    assert "token" in failure.message
    for secret in secrets_of(wrong) + secrets_of(connection.api_token):
        assert secret not in everything(report)


def test_unknown_project_fails_naming_it(connection: Any, tmp_path: Path) -> None:
    report = collect_environment(hook=NeptuneHook(project="airflow/no-such-project"), data_directory=tmp_path)
    [failure] = report.failures
    assert failure.name == "connection"
    assert "airflow/no-such-project" in failure.message


def test_server_down_is_a_failed_check(connection: Any, tmp_path: Path) -> None:
    down = token_for(f"http://127.0.0.1:{free_port()}", "any-key-0123456789")
    report = collect_environment(hook=NeptuneHook(api_token=down, retry_count=1), data_directory=tmp_path)
    [failure] = report.failures
    assert failure.name == "connection"
    assert "cannot reach the Neptune server" in failure.message
