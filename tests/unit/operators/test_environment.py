"""NeptuneValidateEnvironmentOperator with a stand-in hook: all failures at once, XCom, run log, secrets."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_neptune.core.environment import (
    collect_environment,
    run_fields,
    run_path,
    scrub,
    secrets_of,
    variable_names,
)
from airflow_provider_neptune.exceptions import NeptuneEnvironmentError, NeptuneEnvironmentMismatchError
from airflow_provider_neptune.operators.environment import (
    FINGERPRINT_XCOM_KEY,
    NeptuneValidateEnvironmentOperator,
)

API_KEY = "k3y-that-must-stay-hidden"
TOKEN = base64.b64encode(
    json.dumps(
        {"api_address": "http://127.0.0.1:1", "api_url": "http://127.0.0.1:1", "api_key": API_KEY}
    ).encode()
).decode()


class FakeHook:
    """Only the hook surface the operator uses; the real hook is exercised in the integration tests."""

    def __init__(
        self,
        *,
        connection: tuple[bool, str] = (True, "token accepted, project airflow/sandbox reachable"),
        server_time: datetime | None = None,
        bounds: tuple[str | None, str | None] = (None, None),
        settings_error: Exception | None = None,
        run_error: Exception | None = None,
    ) -> None:
        self._connection = connection
        self._server_time = server_time
        self._bounds = bounds
        self._settings_error = settings_error
        self._run_error = run_error
        self.runs: dict[str, dict[str, Any]] = {}
        self.delivered: list[float] = []

    @property
    def settings(self) -> SimpleNamespace:
        if self._settings_error is not None:
            raise self._settings_error
        return SimpleNamespace(api_token=TOKEN, project="airflow/sandbox", mode="sync")

    def test_connection(self) -> tuple[bool, str]:
        return self._connection

    def server_info(self) -> dict[str, Any]:
        return {
            "api_url": "http://127.0.0.1:1",
            "min_compatible_version": self._bounds[0],
            "max_compatible_version": self._bounds[1],
            "min_recommended_version": None,
            "server_time": self._server_time or datetime.now(UTC),
            "round_trip_seconds": 0.002,
        }

    @contextmanager
    def get_run(self, run_id: str) -> Iterator[dict[str, Any]]:
        if self._run_error is not None:
            raise self._run_error
        yield self.runs.setdefault(run_id, {})

    def wait_for_delivery(self, run: dict[str, Any], *, timeout: float) -> None:
        self.delivered.append(timeout)

    def close(self) -> None:
        """The operator closes its hook once done (NeptuneBaseOperator's close policy)."""


class FakeTI:
    def __init__(self, hostname: str = "worker-1.example") -> None:
        self.hostname = hostname
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = json.loads(json.dumps(value))  # what a JSON XCom backend would store


def make_operator(hook: FakeHook, tmp_path: Path, **kwargs: Any) -> NeptuneValidateEnvironmentOperator:
    kwargs.setdefault("data_directory", str(tmp_path / ".neptune"))
    op = NeptuneValidateEnvironmentOperator(task_id="check_env", queue="gpu", **kwargs)
    op.__dict__["hook"] = hook  # the cached property
    return op


@pytest.fixture(autouse=True)
def _token_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEPTUNE_API_TOKEN", TOKEN)


def test_secrets_include_decoded_api_key_and_scrub_nested_values() -> None:
    assert secrets_of(TOKEN) == [TOKEN, API_KEY]
    assert secrets_of("not-base64!") == ["not-base64!"]
    assert secrets_of(None) == []
    value = {"a": [f"x {TOKEN} y", {"b": f"key={API_KEY}"}], "n": 3}
    assert scrub(value, secrets_of(TOKEN)) == {"a": ["x *** y", {"b": "key=***"}], "n": 3}


def test_success_returns_and_pushes_fingerprint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hook = FakeHook(bounds=("1.0.0", "1.99.0"))
    op = make_operator(
        hook, tmp_path, required_env=["NEPTUNE_API_TOKEN", "NEPTUNE_PROJECT"], min_free_disk_mb=1
    )
    ti = FakeTI()
    fingerprint = op.execute({"ti": ti})  # type: ignore[arg-type]
    logged = "".join(capsys.readouterr())  # the task logger (structlog) writes to the console here
    assert ti.xcom[FINGERPRINT_XCOM_KEY] == json.loads(json.dumps(fingerprint))
    assert fingerprint["worker"] == "gpu"
    assert fingerprint["hostname"] == "worker-1.example"
    assert fingerprint["queue"] == "gpu"
    assert fingerprint["mode"] == "sync"
    assert fingerprint["failed"] == []
    assert {"neptune", "apache-airflow", "airflow-provider-neptune", "python"} <= set(fingerprint["versions"])
    assert {"NEPTUNE_API_TOKEN", "NEPTUNE_PROJECT"} <= set(fingerprint["env_present"])
    assert fingerprint["env_from_connection"] == ["NEPTUNE_API_TOKEN", "NEPTUNE_PROJECT"]
    assert fingerprint["server"]["min_compatible_version"] == "1.0.0"
    assert fingerprint["server"]["round_trip_seconds"] == 0.002
    assert abs(fingerprint["server"]["clock_offset_seconds"]) < 2
    names = [c["name"] for c in fingerprint["checks"]]
    assert {
        "connection",
        "server:client_version",
        "clock_skew",
        "data_directory",
        "env:NEPTUNE_PROJECT",
    } <= set(names)
    assert "PASS Neptune connection works" in logged
    assert "Environment fingerprint of gpu" in logged
    everything = logged + json.dumps(ti.xcom)
    assert TOKEN not in everything
    assert API_KEY not in everything


def test_every_failure_is_listed_at_once_and_not_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.delenv("NEPTUNE_API_TOKEN")
    hook = FakeHook(bounds=("9.0.0", None))
    op = make_operator(
        hook,
        tmp_path,
        requirements={"neptune": "<1.0", "definitely-not-installed": ">=1"},
        required_env=["SOME_MISSING_VARIABLE"],
        data_directory=str(blocker / ".neptune"),
    )
    ti = FakeTI()
    with pytest.raises(NeptuneEnvironmentMismatchError) as err:
        op.execute({"ti": ti})  # type: ignore[arg-type]
    assert isinstance(err.value, AirflowFailException)  # a retry cannot fix versions
    text = str(err.value)
    assert "Neptune environment check failed on gpu (worker-1.example): 5 problem(s)" in text
    for fragment in (
        "package 'neptune': installed version 1.14.0.post2 does not satisfy required '<1.0'",
        "package 'definitely-not-installed' is not installed (required: '>=1')",
        "required environment variable SOME_MISSING_VARIABLE is not set",
        f"{blocker} is not a directory",
        "installed version 1.14.0.post2 is older than the server's min compatible 9.0.0",
    ):
        assert fragment in text
    assert len(err.value.failures) == 5
    assert ti.xcom[FINGERPRINT_XCOM_KEY]["failed"] == [f.message for f in err.value.failures]


def test_clock_skew_and_connection_failures_are_retryable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    skewed = FakeHook(server_time=datetime.now(UTC) - timedelta(minutes=10))
    with pytest.raises(NeptuneEnvironmentError) as err:
        make_operator(skewed, tmp_path, max_clock_skew_seconds=30).execute({"ti": FakeTI()})  # type: ignore[arg-type]
    assert not isinstance(err.value, AirflowFailException)
    assert "s ahead of the server" in str(err.value)
    assert "more than the allowed 30 s" in str(err.value)

    refused = FakeHook(connection=(False, f"401 Unauthorized for token {TOKEN} (key {API_KEY})"))
    ti = FakeTI()
    with pytest.raises(NeptuneEnvironmentError) as err:
        make_operator(refused, tmp_path).execute({"ti": ti})  # type: ignore[arg-type]
    assert "Neptune connection failed: 401 Unauthorized for token *** (key ***)" in str(err.value)
    everything = "".join(capsys.readouterr()) + json.dumps(ti.xcom) + str(err.value)
    assert "401 Unauthorized" in everything
    assert TOKEN not in everything
    assert API_KEY not in everything


def test_bad_settings_are_a_failed_check_not_a_crash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NEPTUNE_API_TOKEN")
    hook = FakeHook(settings_error=ValueError("no API token: set the connection password"))
    report = collect_environment(hook=hook, required_env=["NEPTUNE_API_TOKEN"], data_directory=tmp_path)
    messages = [f.message for f in report.failures]
    assert messages == [
        "required environment variable NEPTUNE_API_TOKEN is not set",
        "Neptune connection settings are invalid: no API token: set the connection password",
    ]
    # Without the connection check the settings error only means "not provided by the connection".
    local = collect_environment(hook=hook, check_connection=False, data_directory=tmp_path)
    assert local.failures == []


def test_fingerprint_logged_to_the_run_under_host_and_worker(tmp_path: Path) -> None:
    hook = FakeHook()
    op = make_operator(hook, tmp_path, run_id="SAN-7", log_timeout=12.0)
    fingerprint = op.execute({"ti": FakeTI("gpu-node.internal:8793")})  # type: ignore[arg-type]
    stored = hook.runs["SAN-7"]["environment/gpu-node.internal_8793/gpu"]
    assert stored["versions"]["neptune"] == fingerprint["versions"]["neptune"]
    assert stored["ok"] is True
    assert stored["failed"] == ""
    assert isinstance(stored["env_present"], str)
    assert hook.delivered == [12.0]
    assert {"name": "run_log", "ok": True, "message": fingerprint["checks"][-1]["message"]} == fingerprint[
        "checks"
    ][-1]


@pytest.mark.parametrize("run_id", ["", "None", None])
def test_no_run_id_means_no_run_logging(tmp_path: Path, run_id: str | None) -> None:
    hook = FakeHook()
    make_operator(hook, tmp_path, run_id=run_id).execute({"ti": FakeTI()})  # type: ignore[arg-type]
    assert hook.runs == {}


def test_run_logging_failure_fails_the_task_naming_the_run(tmp_path: Path) -> None:
    hook = FakeHook(run_error=RuntimeError(f"run not found (token {TOKEN})"))
    with pytest.raises(NeptuneEnvironmentError) as err:
        make_operator(hook, tmp_path, run_id="SAN-404").execute({"ti": FakeTI()})  # type: ignore[arg-type]
    assert "could not log the fingerprint to run SAN-404 at environment/worker-1.example/gpu" in str(
        err.value
    )
    assert TOKEN not in str(err.value)


def test_run_fields_have_no_lists_or_none() -> None:
    fields = run_fields(
        {
            "worker": "w",
            "versions": {"neptune": "1.14.0", "gone": None},
            "env_present": ["A", "B"],
            "server": {"api_url": None, "round_trip_seconds": 0.1},
            "failed": ["x", "y"],
            "checks": [{"name": "n"}],
        }
    )
    assert fields == {
        "worker": "w",
        "versions": {"neptune": "1.14.0", "gone": "not installed"},
        "env_present": "A, B",
        "server": {"round_trip_seconds": 0.1},
        "failed": "x\ny",
        "ok": False,
    }
    assert run_path("environment/", "a b/c", "q:1") == "environment/a_b_c/q_1"


def test_malformed_literal_requirement_fails_at_parse_time() -> None:
    with pytest.raises(ValueError, match="'>>1' is not a PEP 440 specifier"):
        NeptuneValidateEnvironmentOperator(task_id="t", requirements={"neptune": ">>1"})
    templated = NeptuneValidateEnvironmentOperator(task_id="t", requirements="{{ params.reqs }}")
    assert "requirements" in templated.template_fields


def test_required_env_from_rendered_templates() -> None:
    assert variable_names(["A", " B ", ""]) == ["A", "B"]
    assert variable_names("['A', 'B']") == ["A", "B"]
    assert variable_names('["A"]') == ["A"]
    assert variable_names("A, B C") == ["A", "B", "C"]
    assert variable_names("") == []
    assert variable_names(None) == []
    with pytest.raises(ValueError, match="not a list of variable names"):
        variable_names("[A")
