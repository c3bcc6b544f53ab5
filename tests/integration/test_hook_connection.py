"""test_connection(), server_info() and the DEBUG request log against the emulator."""

from __future__ import annotations

import json
import logging
import socket
import uuid
from typing import Any

import pytest

from airflow_provider_neptune.exceptions import NeptuneAuthError, NeptuneProjectNotFoundError
from airflow_provider_neptune.hooks.settings import decode_token, encode_token

pytestmark = pytest.mark.integration


def _token_with(emulator: Any, **changes: str) -> str:
    return encode_token({**decode_token(emulator.api_token), **changes})


def test_good_connection(neptune_hook_factory: Any, neptune_emulator: Any) -> None:
    ok, message = neptune_hook_factory(mode="async").test_connection()
    assert ok, message
    assert "token accepted" in message
    assert f"project {neptune_emulator.project} reachable" in message
    assert "round trip" in message
    assert neptune_emulator.api_token not in message


def test_bad_token(neptune_hook_factory: Any, neptune_emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = _token_with(neptune_emulator, api_key="not-the-key-" + uuid.uuid4().hex)
    conn = {"conn_type": "neptune", "password": bad, "extra": {"project": neptune_emulator.project}}
    monkeypatch.setenv("AIRFLOW_CONN_NEPTUNE_BAD", json.dumps(conn))
    from airflow_provider_neptune.hooks.neptune import NeptuneHook

    ok, message = NeptuneHook("neptune_bad").test_connection()
    assert not ok
    assert "rejected the API token" in message
    assert "neptune_bad" in message  # says which connection to fix
    assert bad not in message


def test_unknown_project(neptune_hook_factory: Any) -> None:
    hook = neptune_hook_factory(mode="sync", project="airflow/no-such-project")
    ok, message = hook.test_connection()
    assert not ok
    assert "'airflow/no-such-project' not found" in message
    with pytest.raises(NeptuneProjectNotFoundError, match="check the project name"):
        hook.create_run(custom_run_id="never-created")


def test_server_down(neptune_emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    token = _token_with(
        neptune_emulator, api_address=f"http://127.0.0.1:{port}", api_url=f"http://127.0.0.1:{port}"
    )
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    from airflow_provider_neptune.hooks.neptune import NeptuneHook

    hook = NeptuneHook("no_such_conn_here", api_token=token, project="airflow/sandbox")
    ok, message = hook.test_connection()
    assert not ok
    assert "neptune_conn_id" in message  # the connection id itself is wrong too
    monkeypatch.setenv("AIRFLOW_CONN_NEPTUNE_DOWN", json.dumps({"conn_type": "neptune", "password": token}))
    ok, message = NeptuneHook("neptune_down", project="airflow/sandbox").test_connection()
    assert not ok
    assert f"cannot reach the Neptune server at http://127.0.0.1:{port}" in message


def test_invalid_settings_fail_the_test_with_the_field(
    neptune_emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_NEPTUNE_DEFAULT", neptune_emulator.airflow_conn_json())
    from airflow_provider_neptune.hooks.neptune import NeptuneHook

    ok, message = NeptuneHook(mode="turbo").test_connection()
    assert not ok
    assert "mode" in message
    assert "'turbo'" in message


def test_server_info_reports_versions_time_and_round_trip(
    neptune_hook_factory: Any, neptune_emulator: Any
) -> None:
    info = neptune_hook_factory(mode="sync").server_info()
    assert info["api_url"] == neptune_emulator.url
    assert info["min_compatible_version"] is not None
    assert info["server_time"] is not None
    assert info["round_trip_seconds"] > 0
    assert info["client_version"].startswith("1.")


def test_auth_error_on_use_names_the_token(neptune_emulator: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = _token_with(neptune_emulator, api_key="wrong")
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    from airflow_provider_neptune.hooks.neptune import NeptuneHook

    hook = NeptuneHook(api_token=bad, project=neptune_emulator.project, mode="sync", retry_backoff=0.05)
    with pytest.raises(NeptuneAuthError, match="rejected the API token") as info:
        hook.create_run(custom_run_id="x")
    assert bad not in str(info.value)


def test_debug_level_logs_every_request_with_status_and_no_token(
    neptune_hook_factory: Any, neptune_emulator: Any, caplog: pytest.LogCaptureFixture
) -> None:
    hook = neptune_hook_factory(mode="sync", logging_level="DEBUG")
    before = hook.counters["requests"]
    with caplog.at_level(logging.INFO, logger="airflow_provider_neptune.http"):
        run_id = hook.create_run(custom_run_id="dbg-" + uuid.uuid4().hex[:10])
        hook.log_metrics(run_id, {"x": [1.0, 2.0]})
    lines = [r.getMessage() for r in caplog.records if r.name == "airflow_provider_neptune.http"]
    sent = hook.counters["requests"] - before
    assert sent > 5
    assert len(lines) == sent  # one line per request
    assert any("GET /api/backend/v1/projects/get" in line and "-> 200" in line for line in lines)
    assert any(
        "POST /api/leaderboard/v1/attributes/operations" in line and "-> 200" in line for line in lines
    )
    api_key = decode_token(neptune_emulator.api_token)["api_key"]
    assert neptune_emulator.api_token not in caplog.text
    assert api_key not in caplog.text
