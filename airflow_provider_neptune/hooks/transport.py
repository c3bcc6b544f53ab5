"""Every HTTP request of the neptune client to a registered server passes through here.

Why the transport layer: the neptune client builds its own ``requests`` sessions (bravado for the
API, an OAuth2 session for token refresh, plain sessions for file uploads) and sends from the
caller's thread *and* from its async background thread. The one place all of them meet is
``requests.adapters.HTTPAdapter.send``. A process-wide wrapper is installed there once
(idempotently); it acts only on requests whose origin (``scheme://host:port``) a hook registered,
and passes every other request through untouched. For a registered origin each try:

1. takes a permit from the shared request budget (:mod:`.limiter`) - bootstrap, operations,
   uploads, reads, pings alike - except for the API description documents (``*/swagger.json``)
   and the OAuth token refresh, which a Neptune server serves outside its API request limit
   (static files and the identity provider); spending permits on them would leave the budget
   unused while every process starts (see :func:`counts_against_budget`);
2. caps the request timeout at ``request_timeout``;
3. is retried by the one tenacity policy (:mod:`.retry`) on connection errors, timeouts, 408,
   429 and 5xx, honouring the whole Retry-After - only when the body can be sent again;
4. is counted (requests, 429s, retries, bytes) and, at DEBUG level, logged with its status and
   duration. Headers are never logged, so the ``X-Neptune-Api-Token`` header never appears.

The client's one request outside ``requests`` - the websocket handshake for run signals, which
reconnects with its own jittered backoff while a run is open - is counted and logged (the neptune
websocket adapter's ``connect`` is wrapped once) but takes no permit: like the spec documents it is
not an API call the server's request limit counts, and its retries are the client's own.
"""

from __future__ import annotations

import io
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from tenacity import RetryCallState

from airflow_provider_neptune.hooks.limiter import (
    DEFAULT_ACQUIRE_TIMEOUT,
    BudgetTimeout,
    RequestBudget,
    get_budget,
)
from airflow_provider_neptune.hooks.retry import (
    AUTH_STATUSES,
    RetryPolicy,
    build_retrying,
    is_retryable_status,
    parse_retry_after,
)
from airflow_provider_neptune.hooks.settings import url_origin

log = logging.getLogger("airflow_provider_neptune.http")

_INSTALL_LOCK = threading.Lock()
_ORIGINAL_SEND_ATTR = "_neptune_provider_original_send"
_ORIGINAL_WS_ATTR = "_neptune_provider_original_connect"
_REGISTRY: dict[str, OriginPolicy] = {}
_REGISTRY_LOCK = threading.Lock()
_LOCAL = threading.local()

COUNTER_NAMES = ("requests", "throttled", "retries", "points", "bytes", "errors")


class RateBudgetExhausted(requests.exceptions.ConnectionError):
    """No permit from the shared budget in time; a ConnectionError so the client retries it later."""


@dataclass
class Counters:
    """Thread-safe request counters of one origin policy."""

    values: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COUNTER_NAMES, 0))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, **amounts: int) -> None:
        """Add to one or more counters."""
        with self.lock:
            for name, amount in amounts.items():
                self.values[name] = self.values.get(name, 0) + amount

    def snapshot(self) -> dict[str, int]:
        """A copy of the current values."""
        with self.lock:
            return dict(self.values)


def _cap_timeout(timeout: Any, cap: float) -> Any:
    if timeout is None:
        return (cap, cap)
    if isinstance(timeout, tuple) and len(timeout) == 2:
        connect, read = timeout
        return (cap if connect is None else min(connect, cap), cap if read is None else min(read, cap))
    if isinstance(timeout, int | float):
        return min(float(timeout), cap)
    return timeout


def _body_size(body: Any) -> int:
    if body is None:
        return 0
    if isinstance(body, bytes | bytearray):
        return len(body)
    if isinstance(body, str):
        return len(body.encode())
    try:
        return max(0, int(getattr(body, "len", 0)))
    except (TypeError, ValueError):
        return 0


class _Body:
    """Whether and how a request body can be sent again."""

    def __init__(self, body: Any) -> None:
        self.body = body
        self.position: int | None = None
        self.resendable = body is None or isinstance(body, bytes | bytearray | str)
        if not self.resendable and isinstance(body, io.IOBase) and body.seekable():
            try:
                self.position = body.tell()
                self.resendable = True
            except (OSError, ValueError):
                self.resendable = False

    def rewind(self) -> None:
        if self.position is not None:
            self.body.seek(self.position)


#: Path endings of requests that a Neptune server does not count against its API request limit.
UNBUDGETED_PATH_SUFFIXES = ("/swagger.json", "/protocol/openid-connect/token")


def counts_against_budget(request: requests.PreparedRequest) -> bool:
    """False for API description documents and OAuth token refreshes (served outside the API limit).

    They still get the retry policy, timeout cap and counters; only the permit is skipped.
    """
    path = urlsplit(request.url or "").path.rstrip("/")
    return not path.endswith(UNBUDGETED_PATH_SUFFIXES)


def _describe(request: requests.PreparedRequest) -> str:
    parts = urlsplit(request.url or "")
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    return f"{request.method} {target}"


class OriginPolicy:
    """Budget, retry policy, timeout and counters applied to one server origin."""

    def __init__(
        self,
        origin: str,
        *,
        budget: RequestBudget | None,
        retry: RetryPolicy,
        request_timeout: float,
        log_requests: bool = False,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.origin = origin
        self.log_requests = log_requests
        self.budget = budget
        self.retry = retry
        self.request_timeout = request_timeout
        self.counters = Counters()
        self.sleep = sleep
        self.acquire_timeout = DEFAULT_ACQUIRE_TIMEOUT
        self.last_date_header: str | None = None

    @property
    def request_log_level(self) -> int:
        """INFO when the connection asked for DEBUG (so the lines reach the task log), else DEBUG."""
        return logging.INFO if self.log_requests else logging.DEBUG

    def _own_budget(self) -> None:
        """After a fork, switch to this process's budget (same key, rate and store, own connections)."""
        if self.budget is not None and self.budget.pid != os.getpid():
            self.budget = get_budget(self.budget.key, self.budget.rate_per_second, self.budget.storage)

    def before_websocket(self, url: str) -> None:
        """Count and log a websocket handshake (no permit: outside the API limit; the client retries it)."""
        self.counters.add(requests=1)
        log.log(self.request_log_level, "WS %s (websocket handshake)", urlsplit(url).path)

    def signature(self) -> tuple[Any, ...]:
        """What makes two registrations equal (same budget, retries and timeout)."""
        return (id(self.budget), self.retry, self.request_timeout)

    def send(
        self, send_once: Callable[..., requests.Response], request: requests.PreparedRequest, **kwargs: Any
    ) -> requests.Response:
        """Send with budget, timeout cap, retries, counters and debug log."""
        kwargs["timeout"] = _cap_timeout(kwargs.get("timeout"), self.request_timeout)
        stream = bool(kwargs.get("stream"))
        body = _Body(request.body)
        size = _body_size(request.body)
        what = _describe(request)
        budgeted = counts_against_budget(request)

        self._own_budget()

        def attempt() -> requests.Response:
            if self.budget is not None and budgeted:
                try:
                    self.budget.acquire(self.acquire_timeout)
                except BudgetTimeout as exc:
                    raise RateBudgetExhausted(str(exc), request=request) from exc
            body.rewind()
            started = time.monotonic()
            try:
                response = send_once(request, **kwargs)
                if not stream:
                    _ = response.content  # read now, so a connection dropped mid-body is retried here
            except Exception as exc:
                self.counters.add(requests=1, bytes=size, errors=1)
                log.log(
                    self.request_log_level,
                    "HTTP %s -> %s after %.3f s",
                    what,
                    type(exc).__name__,
                    time.monotonic() - started,
                )
                raise
            elapsed = time.monotonic() - started
            self.counters.add(requests=1, bytes=size)
            date = response.headers.get("Date")
            if date:
                self.last_date_header = date
            status = response.status_code
            if status == 429:
                self.counters.add(throttled=1)
                log.warning(
                    "Neptune server throttled %s: HTTP 429, Retry-After %s",
                    what,
                    response.headers.get("Retry-After", "not given"),
                )
            elif status in AUTH_STATUSES:
                log.warning(
                    "Neptune server refused %s: HTTP %s - check the API token in the connection "
                    "and that it may access the project",
                    what,
                    status,
                )
            log.log(
                self.request_log_level, "HTTP %s -> %s in %.3f s (%d bytes sent)", what, status, elapsed, size
            )
            return response

        def retry_on_result(response: requests.Response) -> bool:
            return body.resendable and is_retryable_status(response.status_code)

        def retry_on_exception(exc: BaseException) -> bool:
            if isinstance(exc, requests.exceptions.SSLError | RateBudgetExhausted):
                return False
            retryable = isinstance(
                exc,
                requests.exceptions.ConnectionError
                | requests.exceptions.Timeout
                | requests.exceptions.ChunkedEncodingError,
            )
            return retryable and body.resendable

        def retry_after_of(response: requests.Response) -> float | None:
            return parse_retry_after(response.headers.get("Retry-After"))

        def before_sleep(state: RetryCallState) -> None:
            self.counters.add(retries=1)
            outcome = state.outcome
            assert outcome is not None
            if outcome.failed:
                exc = outcome.exception()
                reason = f"{type(exc).__name__}: {exc}"
            else:
                response = outcome.result()
                reason = f"HTTP {response.status_code}"
                retry_after = response.headers.get("Retry-After")
                if retry_after:
                    reason += f", Retry-After {retry_after}"
                response.close()
            wait = state.next_action.sleep if state.next_action is not None else 0.0
            log.warning(
                "Neptune request %s failed (%s); retry %d of %d in %.2f s",
                what,
                reason,
                state.attempt_number,
                self.retry.retry_count,
                wait,
            )

        retrying = build_retrying(
            RetryPolicy(0, self.retry.backoff) if getattr(_LOCAL, "single_try", False) else self.retry,
            retry_on_result=retry_on_result,
            retry_on_exception=retry_on_exception,
            retry_after_of=retry_after_of,
            before_sleep=before_sleep,
            sleep=self.sleep,
        )
        response: requests.Response = retrying(attempt)
        return response


def _patched_send(
    self: HTTPAdapter, request: requests.PreparedRequest, *args: Any, **kwargs: Any
) -> requests.Response:
    original = getattr(HTTPAdapter, _ORIGINAL_SEND_ATTR)
    policy = policy_for_url(request.url or "")
    if policy is None:
        return original(self, request, *args, **kwargs)
    # requests passes stream, timeout, verify, cert, proxies; normalise positionals to keywords.
    names = ("stream", "timeout", "verify", "cert", "proxies")
    kwargs.update(dict(zip(names, args, strict=False)))

    def send_once(req: requests.PreparedRequest, **kw: Any) -> requests.Response:
        return original(self, req, **kw)

    return policy.send(send_once, request, **kwargs)


def _websocket_origin(url: str) -> str:
    return "http" + url[2:] if url.startswith("ws") else url


def _install_websocket_wrapper() -> None:
    try:
        from neptune.common.websockets.websocket_client_adapter import WebsocketClientAdapter
    except ImportError:  # pragma: no cover - neptune is a dependency
        return
    if getattr(WebsocketClientAdapter, _ORIGINAL_WS_ATTR, None) is not None:
        return
    original = WebsocketClientAdapter.connect

    def connect(self: Any, url: str, token: Any, proxies: Any = None) -> Any:
        policy = policy_for_url(_websocket_origin(url))
        if policy is not None:
            policy.before_websocket(url)
        return original(self, url, token, proxies)

    setattr(WebsocketClientAdapter, _ORIGINAL_WS_ATTR, original)
    WebsocketClientAdapter.connect = connect  # type: ignore[method-assign]


def install() -> None:
    """Wrap ``HTTPAdapter.send`` (and the client's websocket connect) once per process; idempotent."""
    with _INSTALL_LOCK:
        if getattr(HTTPAdapter, _ORIGINAL_SEND_ATTR, None) is None:
            setattr(HTTPAdapter, _ORIGINAL_SEND_ATTR, HTTPAdapter.send)
            HTTPAdapter.send = _patched_send  # type: ignore[method-assign]
        _install_websocket_wrapper()


def installed() -> bool:
    """Whether the wrapper is in place."""
    return getattr(HTTPAdapter, _ORIGINAL_SEND_ATTR, None) is not None


def uninstall() -> None:
    """Restore the original ``HTTPAdapter.send`` (tests)."""
    with _INSTALL_LOCK:
        original = getattr(HTTPAdapter, _ORIGINAL_SEND_ATTR, None)
        if original is not None:
            HTTPAdapter.send = original  # type: ignore[method-assign]
            delattr(HTTPAdapter, _ORIGINAL_SEND_ATTR)


def register(
    origins: tuple[str, ...] | list[str],
    *,
    budget: RequestBudget | None,
    retry: RetryPolicy,
    request_timeout: float,
    log_requests: bool = False,
) -> OriginPolicy:
    """Route requests to these origins through one policy; installs the wrapper if needed.

    Registering the same settings again returns the existing policy (and its counters). Within
    one process one server origin has one policy: registering different settings for it replaces
    the policy (logged), because a request does not say which workspace it is for.
    """
    install()
    keys = [url_origin(o) for o in origins]
    with _REGISTRY_LOCK:
        existing = [_REGISTRY[k] for k in keys if k in _REGISTRY]
        candidate = OriginPolicy(
            keys[0], budget=budget, retry=retry, request_timeout=request_timeout, log_requests=log_requests
        )
        for policy in existing:
            if policy.signature() == candidate.signature():
                policy.log_requests = policy.log_requests or log_requests
                for key in keys:
                    _REGISTRY[key] = policy
                return policy
        if existing:
            log.info("Neptune transport: new budget/retry settings for %s replace the previous ones", keys)
        for key in keys:
            _REGISTRY[key] = candidate
        return candidate


def add_origin(policy: OriginPolicy, address: str) -> None:
    """Also route another origin (e.g. the API URL announced by the server) through a policy."""
    with _REGISTRY_LOCK:
        _REGISTRY.setdefault(url_origin(address), policy)


def policy_for_url(url: str) -> OriginPolicy | None:
    """The policy for a request URL, or None when its origin is not registered."""
    if not _REGISTRY:
        return None
    try:
        key = url_origin(url)
    except ValueError:
        return None
    return _REGISTRY.get(key)


def unregister(origins: tuple[str, ...] | list[str]) -> None:
    """Stop routing these origins through any policy."""
    with _REGISTRY_LOCK:
        for origin in origins:
            _REGISTRY.pop(url_origin(origin), None)


def unregister_all() -> None:
    """Forget every registered origin (tests)."""
    with _REGISTRY_LOCK:
        _REGISTRY.clear()


@contextmanager
def single_try() -> Iterator[None]:
    """Within this block (this thread only), registered requests are sent once, without retries."""
    previous = getattr(_LOCAL, "single_try", False)
    _LOCAL.single_try = True
    try:
        yield
    finally:
        _LOCAL.single_try = previous
