"""The transport wrapper: budget, retries, counters and request log for registered origins only.

A small scripted HTTP server on loopback plays the Neptune server; requests go through the real
``requests`` stack with the wrapper installed.
"""

from __future__ import annotations

import base64
import json
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
from airflow_provider_neptune.hooks.settings import url_origin

SECRET = "tok-SECRET-123"


class Script:
    """What the stub answers, one entry per request: (status, headers[, body]) or "drop" or "cut"."""

    def __init__(self) -> None:
        self.answers: list[Any] = []
        self.bodies: list[bytes] = []
        self.headers: list[dict[str, str]] = []
        self.forever: Any = None  # answer every request with this once ``answers`` is empty
        self.lock = threading.Lock()

    def next(self) -> Any:
        with self.lock:
            if self.answers:
                return self.answers.pop(0)
            return self.forever or (200, {})


class Handler(BaseHTTPRequestHandler):
    script: Script

    def log_message(self, *args: Any) -> None:
        pass

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.script.bodies.append(body)
        self.script.headers.append(dict(self.headers))
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
        status, headers = answer[:2]
        payload = answer[2] if len(answer) > 2 else b'{"ok": true}'
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


def test_gives_up_after_retry_count_with_the_clients_connection_lost_error(stub: tuple[str, Script]) -> None:
    from neptune.common.exceptions import NeptuneConnectionLostException

    url, script = stub
    policy, sleeps = _register(url, retries=2)
    script.answers = [(502, {}), (502, {}), (502, {}), (200, {})]
    with pytest.raises(
        NeptuneConnectionLostException, match=r"failed after 3 tries \(last answer HTTP 502\)"
    ):
        requests.get(url + "/api/x", timeout=5)
    assert len(sleeps) == 2
    assert policy.counters.snapshot()["requests"] == 3
    assert len(script.answers) == 1  # the fourth answer was never asked for


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

    # A consumed generator cannot be sent again: one try, then the error the client does not retry.
    with pytest.raises(transport.retries_exhausted_class(), match="streamed body cannot be sent again"):
        requests.post(url + "/api/upload", data=chunks(), headers={"Content-Length": "3"}, timeout=5)
    assert sleeps == []
    assert script.answers == [(200, {})]


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
        with pytest.raises(transport.retries_exhausted_class(), match="failed after 3 tries") as failure:
            requests.get(url + "/api/x", timeout=5)
        assert isinstance(failure.value.__cause__, requests.exceptions.ConnectionError)
        assert len(sleeps) == 2
        assert policy.counters.snapshot()["errors"] == 3
    finally:
        transport.unregister([url])


def test_single_try_disables_retries(stub: tuple[str, Script]) -> None:
    url, script = stub
    _, sleeps = _register(url)
    script.answers = [(503, {}), (200, {})]
    with transport.single_try(), pytest.raises(transport.retries_exhausted_class(), match="after 1 try"):
        requests.get(url + "/api/x", timeout=5)
    assert sleeps == []
    assert script.answers == [(200, {})]


def test_every_try_takes_a_budget_permit(stub: tuple[str, Script]) -> None:
    url, script = stub
    budget = RequestBudget("neptune-transport-test", 0.01, "memory")  # one request per 100 s
    try:
        policy, _ = _register(url, budget=budget)
        policy.acquire_timeout = 0
        assert requests.get(url + "/api/a", timeout=5).status_code == 200
        with pytest.raises(transport.retries_exhausted_class(), match="no request permit") as refused:
            requests.get(url + "/api/b", timeout=5)
        assert isinstance(refused.value.__cause__, transport.RateBudgetExhausted)
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
        with pytest.raises(transport.retries_exhausted_class(), match="no request permit"):
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


# ------------------------------------------------------------------------- safety rules (issue 13)


def _other_origin(url: str) -> str:
    """The same stub under another origin (localhost, not 127.0.0.1): a server the token must not reach."""
    return url.replace("127.0.0.1", "localhost")


def test_cross_origin_redirect_is_refused_and_not_followed(stub: tuple[str, Script]) -> None:
    url, script = stub
    _register(url)
    elsewhere = _other_origin(url) + "/collect"
    script.answers = [(302, {"Location": elsewhere}), (200, {})]
    with pytest.raises(transport.CrossOriginRedirectRefused, match="redirected GET /api/x") as refused:
        requests.get(url + "/api/x", headers={transport.TOKEN_HEADER: SECRET}, timeout=5)
    assert "not followed" in str(refused.value)
    assert len(script.headers) == 1  # the redirect target never got a request
    assert script.answers == [(200, {})]


def test_same_origin_redirect_is_followed(stub: tuple[str, Script]) -> None:
    url, script = stub
    _register(url)
    script.answers = [(307, {"Location": "/api/moved"}), (200, {})]
    assert requests.get(url + "/api/x", timeout=5).status_code == 200
    assert len(script.headers) == 2


@pytest.mark.parametrize(
    "api_url", ["http://evil.example:80\\@127.0.0.1", "http://neptune.example.com", "http://0x7f.1:5080"]
)
def test_announced_api_url_is_checked_before_the_client_can_use_it(
    stub: tuple[str, Script], api_url: str
) -> None:
    from airflow_provider_neptune.exceptions import NeptuneSettingsError

    url, script = stub
    _register(url)
    config = json.dumps({"apiUrl": api_url, "applicationUrl": url}).encode()
    script.answers = [(200, {"Content-Type": "application/json"}, config)]
    with pytest.raises(NeptuneSettingsError, match="apiUrl announced by the server") as refused:
        requests.get(url + "/api/backend/v1/clients/config", timeout=5)
    assert url_origin(url) in refused.value.field
    assert transport.policy_for_url(api_url) is None


def test_announced_loopback_api_url_is_routed_through_the_same_policy(stub: tuple[str, Script]) -> None:
    url, script = stub
    policy, _ = _register(url)
    announced = _other_origin(url)
    config = json.dumps({"apiUrl": announced, "applicationUrl": url}).encode()
    script.answers = [(200, {"Content-Type": "application/json"}, config), (503, {}), (200, {})]
    assert requests.get(url + "/api/backend/v1/clients/config", timeout=5).json()["apiUrl"] == announced
    assert transport.policy_for_url(announced + "/api/x") is policy
    try:
        assert requests.get(announced + "/api/x", timeout=5).status_code == 200  # retried by the policy
        assert policy.counters.snapshot()["retries"] == 1
    finally:
        transport.unregister([announced])


def test_the_token_never_goes_to_an_unregistered_origin(stub: tuple[str, Script]) -> None:
    url, script = stub
    transport.register([url], budget=None, retry=RetryPolicy(0, 0.1), request_timeout=5, api_token=SECRET)
    other = _other_origin(url)
    with pytest.raises(transport.TokenLeakRefused, match="refused to send") as refused:
        requests.get(other + "/api/x", headers={transport.TOKEN_HEADER: SECRET}, timeout=5)
    assert SECRET not in str(refused.value)
    assert script.headers == []
    # Other tokens and requests without a token pass through untouched.
    assert requests.get(other + "/x", headers={transport.TOKEN_HEADER: "another-token"}, timeout=5).ok
    assert requests.get(url + "/api/x", headers={transport.TOKEN_HEADER: SECRET}, timeout=5).ok
    assert len(script.headers) == 2


def test_oauthlib_accepts_plain_http_only_for_registered_loopback_origins(
    stub: tuple[str, Script], monkeypatch: pytest.MonkeyPatch
) -> None:
    from oauthlib.oauth2.rfc6749 import parameters
    from oauthlib.oauth2.rfc6749.clients import base
    from requests_oauthlib import oauth2_auth, oauth2_session

    monkeypatch.delenv("OAUTHLIB_INSECURE_TRANSPORT", raising=False)
    url, _ = stub
    _register(url)
    checks = [oauth2_session.is_secure_transport, oauth2_auth.is_secure_transport]
    checks += [base.is_secure_transport, parameters.is_secure_transport]
    for check in checks:
        assert check(url + "/auth/realms/neptune/protocol/openid-connect/token")
        assert check("https://neptune.example.com/token")
        assert not check("http://neptune.example.com/token")
        assert not check(_other_origin(url) + "/token")  # loopback, but not registered
        assert not check("http://127.0.0.1:1/token")
    transport.unregister([url])
    assert not oauth2_session.is_secure_transport(url + "/token")


def test_the_hook_never_sets_oauthlib_insecure_transport(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from airflow_provider_neptune.hooks.neptune import NeptuneHook
    from airflow_provider_neptune.hooks.settings import encode_token

    monkeypatch.delenv("OAUTHLIB_INSECURE_TRANSPORT", raising=False)
    token = encode_token({"api_address": "http://127.0.0.1:5999", "api_key": SECRET})
    hook = NeptuneHook("no_such_conn_oauth", api_token=token, project="ws/p", rate_limit_per_second=0)
    monkeypatch.setattr(hook, "get_connection", lambda conn_id: None)
    try:
        assert hook.register_transport() is not None
        assert "OAUTHLIB_INSECURE_TRANSPORT" not in os.environ
    finally:
        transport.unregister(["http://127.0.0.1:5999"])


def test_the_clients_own_retry_loop_does_not_multiply_the_tries(stub: tuple[str, Script]) -> None:
    """The client retries 5xx for 60 s on its own; a registered request gives up after retry_count."""
    from neptune.common.backends.utils import with_api_exceptions_handler
    from neptune.common.exceptions import NeptuneConnectionLostException

    url, script = stub
    _register(url, retries=1)
    script.forever = (503, {})

    @with_api_exceptions_handler
    def call() -> requests.Response:
        response = requests.get(url + "/api/x", timeout=5)
        response.raise_for_status()
        return response

    with pytest.raises(NeptuneConnectionLostException, match="failed after 2 tries"):
        call()
    assert len(script.headers) == 2  # retry_count + 1, not the client's 60 s of retries on top


def test_request_log_masks_credentials_in_urls(
    stub: tuple[str, Script], caplog: pytest.LogCaptureFixture
) -> None:
    url, script = stub
    _register(url, log_requests=True)
    script.answers = [(503, {}), (200, {})]
    with caplog.at_level(logging.INFO, logger="airflow_provider_neptune.http"):
        requests.get(url + "/api/x?password=Pw0rd&api_key=K3y&run=1", timeout=5)
    assert "run=1" in caplog.text
    assert "Pw0rd" not in caplog.text
    assert "K3y" not in caplog.text


def _access_token(issuer: str) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part({'alg': 'none'})}.{part({'iss': issuer, 'exp': 2_000_000_000})}.sig"


def test_oauth_issuer_outside_the_address_rule_is_refused(stub: tuple[str, Script]) -> None:
    from airflow_provider_neptune.exceptions import NeptuneSettingsError

    url, script = stub
    _register(url)
    body = json.dumps({"accessToken": _access_token("http://idp.evil.example/realms/x"), "refreshToken": "r"})
    script.answers = [(200, {"Content-Type": "application/json"}, body.encode())]
    with pytest.raises(NeptuneSettingsError, match=r"OAuth issuer \(iss\) announced by the server"):
        requests.get(url + "/api/backend/v1/authorization/oauth-token", timeout=5)
    assert transport.policy_for_url("http://idp.evil.example/realms/x") is None


def test_oauth_issuer_on_the_same_server_is_accepted(stub: tuple[str, Script]) -> None:
    url, script = stub
    policy, _ = _register(url)
    body = json.dumps({"accessToken": _access_token(url + "/auth/realms/neptune"), "refreshToken": "r"})
    script.answers = [(200, {"Content-Type": "application/json"}, body.encode())]
    assert requests.get(url + "/api/backend/v1/authorization/oauth-token", timeout=5).ok
    assert transport.policy_for_url(url + "/auth/realms/neptune/protocol/openid-connect/token") is policy
