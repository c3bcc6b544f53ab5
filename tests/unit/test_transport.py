"""The transport wrapper: budget, retries, counters and request log for registered origins only.

A small scripted HTTP server on loopback plays the Neptune server; requests go through the real
``requests`` stack with the wrapper installed.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from airflow_provider_neptune.hooks import transport
from airflow_provider_neptune.hooks.limiter import RequestBudget
from airflow_provider_neptune.hooks.retry import RetryPolicy

SECRET = "tok-SECRET-123"


class Script:
    """What the stub answers, one entry per request: (status, headers) or "drop" or "cut"."""

    def __init__(self) -> None:
        self.answers: list[Any] = []
        self.bodies: list[bytes] = []
        self.lock = threading.Lock()

    def next(self) -> Any:
        with self.lock:
            return self.answers.pop(0) if self.answers else (200, {})


class Handler(BaseHTTPRequestHandler):
    script: Script

    def log_message(self, *args: Any) -> None:
        pass

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.script.bodies.append(body)
        answer = self.script.next()
        if answer == "drop":
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if answer == "cut":
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.wfile.write(b'{"partial": ')
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        status, headers = answer
        payload = b'{"ok": true}'
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = _answer
    do_POST = _answer


@pytest.fixture
def stub() -> Iterator[tuple[str, Script]]:
    script = Script()
    handler = type("ScriptedHandler", (Handler,), {"script": script})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield url, script
    finally:
        transport.unregister([url])
        server.shutdown()
        server.server_close()


def _register(
    url: str, retries: int = 3, budget: RequestBudget | None = None, **kw: Any
) -> tuple[transport.OriginPolicy, list[float]]:
    policy = transport.register(
        [url], budget=budget, retry=RetryPolicy(retries, 0.1), request_timeout=5, **kw
    )
    sleeps: list[float] = []
    policy.sleep = sleeps.append
    return policy, sleeps


def test_install_is_idempotent() -> None:
    transport.install()
    first = requests.adapters.HTTPAdapter.send
    transport.install()
    assert requests.adapters.HTTPAdapter.send is first
    assert transport.installed()


def test_unregistered_origin_is_untouched(stub: tuple[str, Script]) -> None:
    url, script = stub
    transport.install()
    script.answers = [(503, {})]
    assert requests.get(url + "/x", timeout=5).status_code == 503
    assert transport.policy_for_url(url) is None
    assert script.answers == []  # exactly one request


def test_5xx_is_retried_until_success_and_counted(stub: tuple[str, Script]) -> None:
    url, script = stub
    policy, sleeps = _register(url)
    script.answers = [(503, {}), (500, {}), (200, {})]
    response = requests.post(url + "/api/op", data=b"payload", timeout=5)
    assert response.status_code == 200
    assert script.bodies == [b"payload"] * 3  # the body was re-sent each time
    assert len(sleeps) == 2
    counts = policy.counters.snapshot()
    assert counts["requests"] == 3
    assert counts["retries"] == 2
    assert counts["bytes"] == 3 * len(b"payload")


def test_429_waits_the_whole_retry_after_and_is_logged(
    stub: tuple[str, Script], caplog: pytest.LogCaptureFixture
) -> None:
    url, script = stub
    policy, sleeps = _register(url)
    script.answers = [(429, {"Retry-After": "30"}), (200, {})]
    with caplog.at_level(logging.WARNING, logger="airflow_provider_neptune.http"):
        assert requests.get(url + "/api/x", timeout=5).status_code == 200
    assert sleeps == [30.0]  # the client itself would wait 3 s ("3" of "30")
    assert policy.counters.snapshot()["throttled"] == 1
    text = caplog.text
    assert "HTTP 429" in text
    assert "Retry-After 30" in text
    assert "retry 1 of 3" in text


def test_gives_up_and_returns_the_last_response(stub: tuple[str, Script]) -> None:
    url, script = stub
    policy, sleeps = _register(url, retries=2)
    script.answers = [(502, {}), (502, {}), (502, {}), (200, {})]
    assert requests.get(url + "/api/x", timeout=5).status_code == 502
    assert len(sleeps) == 2
    assert policy.counters.snapshot()["requests"] == 3


def test_auth_errors_are_not_retried_and_hint_at_the_token(
    stub: tuple[str, Script], caplog: pytest.LogCaptureFixture
) -> None:
    url, script = stub
    _, sleeps = _register(url)
    script.answers = [(401, {}), (200, {})]
    with caplog.at_level(logging.WARNING, logger="airflow_provider_neptune.http"):
        assert (
            requests.get(url + "/api/x", timeout=5, headers={"X-Neptune-Api-Token": SECRET}).status_code
            == 401
        )
    assert sleeps == []
    assert "check the API token" in caplog.text
    assert SECRET not in caplog.text


def test_not_found_is_not_retried(stub: tuple[str, Script]) -> None:
    url, script = stub
    _, sleeps = _register(url)
    script.answers = [(404, {}), (200, {})]
    assert requests.get(url + "/api/x", timeout=5).status_code == 404
    assert sleeps == []


def test_streamed_body_is_sent_once(stub: tuple[str, Script]) -> None:
    url, script = stub
    _, sleeps = _register(url)
    script.answers = [(503, {}), (200, {})]

    def chunks() -> Iterator[bytes]:
        yield b"abc"

    response = requests.post(url + "/api/upload", data=chunks(), headers={"Content-Length": "3"}, timeout=5)
    assert response.status_code == 503  # a consumed generator cannot be sent again
    assert sleeps == []


def test_dropped_connection_is_retried(stub: tuple[str, Script]) -> None:
    url, script = stub
    policy, sleeps = _register(url)
    script.answers = ["drop", "cut", (200, {})]
    response = requests.post(url + "/api/op", data=b"x", timeout=5)
    assert response.status_code == 200
    assert response.json() == {"ok": True}
    assert len(sleeps) == 2
    assert policy.counters.snapshot()["errors"] == 2


def test_refused_connection_is_retried_then_raised() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    policy, sleeps = _register(url, retries=2)
    try:
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(url + "/api/x", timeout=5)
        assert len(sleeps) == 2
        assert policy.counters.snapshot()["errors"] == 3
    finally:
        transport.unregister([url])


def test_single_try_disables_retries(stub: tuple[str, Script]) -> None:
    url, script = stub
    _, sleeps = _register(url)
    script.answers = [(503, {}), (200, {})]
    with transport.single_try():
        assert requests.get(url + "/api/x", timeout=5).status_code == 503
    assert sleeps == []


def test_every_try_takes_a_budget_permit(stub: tuple[str, Script]) -> None:
    url, script = stub
    budget = RequestBudget("neptune-transport-test", 0.01, "memory")  # one request per 100 s
    try:
        policy, _ = _register(url, budget=budget)
        policy.acquire_timeout = 0
        assert requests.get(url + "/api/a", timeout=5).status_code == 200
        with pytest.raises(transport.RateBudgetExhausted, match="no request permit"):
            requests.get(url + "/api/b", timeout=5)
        assert len(script.bodies) == 1  # the refused request never reached the server
    finally:
        budget.close()


@pytest.mark.parametrize(
    "path", ["/api/backend/swagger.json", "/auth/realms/neptune/protocol/openid-connect/token"]
)
def test_spec_documents_and_token_refresh_take_no_permit_but_are_retried(
    stub: tuple[str, Script], path: str
) -> None:
    url, script = stub
    budget = RequestBudget("neptune-transport-unbudgeted", 0.01, "memory")  # one request per 100 s
    try:
        policy, sleeps = _register(url, budget=budget)
        policy.acquire_timeout = 0
        assert requests.get(url + "/api/a", timeout=5).status_code == 200  # spends the only permit
        script.answers = [(503, {}), (200, {})]
        assert requests.post(url + path, data=b"x", timeout=5).status_code == 200
        assert len(sleeps) == 1
        assert policy.counters.snapshot()["retries"] == 1
        with pytest.raises(transport.RateBudgetExhausted):
            requests.get(url + "/api/backend/v1/swagger.json.bak", timeout=5)
        assert len(script.bodies) == 3
    finally:
        budget.close()


def test_debug_logs_each_request_with_status_but_never_the_token(
    stub: tuple[str, Script], caplog: pytest.LogCaptureFixture
) -> None:
    url, script = stub
    _register(url, log_requests=True)
    script.answers = [(200, {}), (404, {})]
    with caplog.at_level(logging.INFO, logger="airflow_provider_neptune.http"):
        requests.get(url + "/api/one?experimentId=1", timeout=5, headers={"X-Neptune-Api-Token": SECRET})
        requests.get(url + "/api/two", timeout=5, headers={"X-Neptune-Api-Token": SECRET})
    lines = [r.getMessage() for r in caplog.records if r.name == "airflow_provider_neptune.http"]
    assert any("GET /api/one?experimentId=1 -> 200" in line for line in lines)
    assert any("GET /api/two -> 404" in line for line in lines)
    assert SECRET not in caplog.text


def test_same_settings_share_one_policy(stub: tuple[str, Script]) -> None:
    url, _ = stub
    a = transport.register([url], budget=None, retry=RetryPolicy(2, 0.1), request_timeout=5)
    b = transport.register([url], budget=None, retry=RetryPolicy(2, 0.1), request_timeout=5)
    c = transport.register([url], budget=None, retry=RetryPolicy(4, 0.1), request_timeout=5)
    assert a is b
    assert c is not a
    assert transport.policy_for_url(url + "/any/path") is c


def test_timeout_is_capped() -> None:
    cap = transport._cap_timeout
    assert cap(None, 10) == (10, 10)
    assert cap(600, 10) == 10
    assert cap(3, 10) == 3
    assert cap((30, 600), 10) == (10, 10)
    assert cap((2, None), 10) == (2, 10)


def test_websocket_handshake_is_counted_but_takes_no_permit(stub: tuple[str, Script]) -> None:
    from neptune.common.websockets.websocket_client_adapter import WebsocketClientAdapter
    from websocket import WebSocketBadStatusException

    url, script = stub
    budget = RequestBudget("neptune-ws-test", 0.01, "memory")  # one request per 100 s
    try:
        policy, _ = _register(url, budget=budget)
        policy.acquire_timeout = 0
        budget.acquire(0)  # spend the only permit
        ws_url = "ws" + url[4:] + "/api/notifications/v1/runs/p/r/signal"
        # The stub speaks plain HTTP, so the handshake itself fails - but it was sent, not refused.
        with pytest.raises(WebSocketBadStatusException, match="Handshake status 200") as failure:
            WebsocketClientAdapter().connect(ws_url, {"access_token": "x"})
        assert not isinstance(failure.value, transport.RateBudgetExhausted)
        assert "no request permit" not in str(failure.value)
        assert len(script.bodies) == 1  # the handshake reached the server
        assert policy.counters.snapshot()["requests"] == 1
    finally:
        budget.close()


def _child_budget_pid(url: str, queue: Any) -> None:
    response = requests.get(url + "/api/forked", timeout=5)
    policy = transport.policy_for_url(url)
    assert policy is not None
    assert policy.budget is not None
    queue.put((response.status_code, policy.budget.pid))


def test_a_forked_process_uses_its_own_budget(stub: tuple[str, Script]) -> None:
    import multiprocessing
    import os

    from airflow_provider_neptune.hooks.limiter import close_budgets, get_budget

    url, _ = stub
    budget = get_budget("neptune-fork-test", 50, "memory")
    try:
        _register(url, budget=budget)
        ctx = multiprocessing.get_context("fork")
        queue = ctx.Queue()
        child = ctx.Process(target=_child_budget_pid, args=(url, queue))
        child.start()
        status, pid = queue.get(timeout=30)
        child.join(30)
        assert status == 200
        assert pid == child.pid != os.getpid()
        assert budget is not None
        assert budget.pid == os.getpid()
    finally:
        close_budgets()
