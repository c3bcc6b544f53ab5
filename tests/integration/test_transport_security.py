"""Issue 13 against the emulator with the real neptune client: bounded failing calls, OAuth over loopback
http without the process-wide switch, and no credentials in connection-test messages."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_neptune.exceptions import NeptuneConnectionError

pytestmark = pytest.mark.integration

#: Small settings so a failing call ends quickly; the bound below is computed from them.
RETRY_COUNT = 1
RETRY_BACKOFF = 0.05
REQUEST_TIMEOUT = 2.0
#: The README's constants: the longest backoff sleep and the longest Retry-After honoured.
MAX_BACKOFF = 30.0
MAX_RETRY_AFTER = 120.0


def failing_request_bound(
    retry_count: int, backoff: float, request_timeout: float, acquire: float, retry_after: float | None = None
) -> float:
    """The README's worst case of one failing request: every try waits for its permit, connects and
    reads up to the timeout; each retry sleeps the Retry-After (capped) or its longest backoff."""
    tries = (retry_count + 1) * (acquire + 2 * request_timeout)
    if retry_after is not None:
        return tries + retry_count * min(retry_after, MAX_RETRY_AFTER)
    return tries + sum(
        max(backoff / 10, min(MAX_BACKOFF, backoff * 2 ** (n - 1))) for n in range(1, retry_count + 1)
    )


def _ok_answers(stats: dict[str, Any]) -> int:
    return sum(
        count for status, count in stats["requests_by_status"].items() if status.startswith(("2", "3"))
    )


@pytest.fixture
def failing_server(neptune_emulator: Any) -> Iterator[Any]:
    """Every budgeted /api/ request answers 503 (without Retry-After) until the test ends."""
    neptune_emulator.set_faults(fail_next={"route": "/api/", "status": 503, "count": 1_000_000})
    yield neptune_emulator
    neptune_emulator.clear_faults()


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_failing_call_ends_within_the_documented_bound(
    neptune_hook_factory: Any, failing_server: Any, mode: str
) -> None:
    hook = neptune_hook_factory(
        mode=mode,
        retry_count=RETRY_COUNT,
        retry_backoff=RETRY_BACKOFF,
        request_timeout=REQUEST_TIMEOUT,
        rate_limit_per_second=0,  # no budget: the acquire term is 0
    )
    before = failing_server.stats()
    started = time.monotonic()
    with pytest.raises(NeptuneConnectionError, match="cannot reach the Neptune server"):
        hook.create_run(custom_run_id=f"bounded-{mode}-{uuid.uuid4().hex[:8]}")
    elapsed = time.monotonic() - started
    after = failing_server.stats()

    failed = after["requests_by_status"].get("503", 0) - before["requests_by_status"].get("503", 0)
    succeeded = _ok_answers(after) - _ok_answers(before)
    # Each failing request gets retry_count + 1 tries and no more (the client's own loop adds none);
    # create_run has two steps that reach the server: the run lookup (it falls back) and the open.
    failing_requests, extra = divmod(failed, RETRY_COUNT + 1)
    assert extra == 0
    assert 1 <= failing_requests <= 2
    one_try = failing_request_bound(0, RETRY_BACKOFF, REQUEST_TIMEOUT, 0.0)
    bound = succeeded * one_try + failing_requests * failing_request_bound(
        RETRY_COUNT, RETRY_BACKOFF, REQUEST_TIMEOUT, 0.0
    )
    assert elapsed <= bound, f"{elapsed:.1f} s > documented bound {bound:.1f} s"


def test_connection_test_fails_once_and_names_the_answer(
    neptune_hook_factory: Any, failing_server: Any
) -> None:
    hook = neptune_hook_factory(retry_count=RETRY_COUNT, retry_backoff=RETRY_BACKOFF, request_timeout=2)
    before = failing_server.stats()["requests_by_status"].get("503", 0)
    ok, message = hook.test_connection()
    assert not ok
    assert "failed after 1 try (last answer HTTP 503)" in message
    assert failing_server.stats()["requests_by_status"].get("503", 0) - before == 1


def test_oauth_over_loopback_http_needs_no_process_wide_switch(
    neptune_hook_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from oauthlib.oauth2.rfc6749.clients import base
    from requests_oauthlib import oauth2_session

    hook = neptune_hook_factory(mode="sync")
    monkeypatch.delenv("OAUTHLIB_INSECURE_TRANSPORT", raising=False)
    run_id = hook.create_run(custom_run_id=f"oauth-{uuid.uuid4().hex[:8]}")  # token exchange + refresh use
    assert run_id
    assert hook.fetch_field(run_id, "sys/custom_run_id") is not None
    assert "OAUTHLIB_INSECURE_TRANSPORT" not in os.environ
    for check in (oauth2_session.is_secure_transport, base.is_secure_transport):
        assert not check("http://neptune.example.com/auth/realms/neptune/protocol/openid-connect/token")
        assert not check("http://192.168.1.10:5080/token")


def test_connection_test_messages_never_show_the_budget_store_password(
    neptune_hook_factory: Any,
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    hook = neptune_hook_factory(rate_limit_storage=f"redis://:S3cretPW@127.0.0.1:{port}/0")
    ok, message = hook.test_connection()
    assert not ok
    assert "request budget store" in message
    assert "S3cretPW" not in message
    assert f"redis://***@127.0.0.1:{port}/0" in message
