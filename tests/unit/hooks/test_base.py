"""The hook's base: transport registration is an explicit call, and importing the hooks wires nothing."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from airflow_provider_neptune.hooks import transport
from airflow_provider_neptune.hooks.settings import encode_token

ADDRESS = "http://127.0.0.1:5998"


def test_policy_is_none_until_register_transport_and_then_shared(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_neptune.hooks.neptune import NeptuneHook

    token = encode_token({"api_address": ADDRESS, "api_key": "k" * 40})
    hook = NeptuneHook("no_such_conn_base", api_token=token, project="ws/p", rate_limit_per_second=0)
    monkeypatch.setattr(hook, "get_connection", lambda conn_id: None)
    try:
        assert hook.policy is None
        assert transport.policy_for_url(ADDRESS + "/api/x") is None  # reading settings registered nothing
        policy = hook.register_transport()
        assert policy is not None
        assert hook.policy is policy
        assert hook.register_transport() is policy  # idempotent
        assert transport.policy_for_url(ADDRESS + "/api/x") is policy
    finally:
        transport.unregister([ADDRESS])


def test_offline_hook_without_a_server_registers_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_neptune.hooks.neptune import NeptuneHook

    monkeypatch.delenv("NEPTUNE_API_TOKEN", raising=False)
    hook = NeptuneHook("no_such_conn_base2", project="ws/p", mode="offline")
    monkeypatch.setattr(hook, "get_connection", lambda conn_id: None)
    assert hook.register_transport() is None
    assert hook.counters == dict.fromkeys(("requests", "throttled", "retries", "points", "bytes"), 0)


def test_the_shared_pool_drains_handles_without_importing_the_hook() -> None:
    """The pool gets its drain function where it is built, not from a module imported later."""
    code = textwrap.dedent(
        """
        import sys
        from airflow_provider_neptune.hooks.run_pool import POOL
        from airflow_provider_neptune.hooks.delivery import prepare_stop
        assert "airflow_provider_neptune.hooks.neptune" not in sys.modules
        assert POOL.drain is prepare_stop, POOL.drain
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    ("value", "ok"),
    [(" 2.5 ", True), (7, True), (b"1.5", False), (True, False), ("nan", False), (10**400, False)],
)
def test_metric_inputs_and_the_hook_accept_the_same_values(value: object, ok: bool) -> None:
    from airflow_provider_neptune.core.metric_files import NO_TIMESTAMP
    from airflow_provider_neptune.core.metric_inputs import PointValidator
    from airflow_provider_neptune.hooks.points import as_float_list

    accepted_by_inputs = PointValidator().check("s", value, 0.0, NO_TIMESTAMP) is not None
    try:
        as_float_list("s", "value", [value])
        accepted_by_hook = True
    except ValueError:
        accepted_by_hook = False
    assert (accepted_by_inputs, accepted_by_hook) == (ok, ok)
