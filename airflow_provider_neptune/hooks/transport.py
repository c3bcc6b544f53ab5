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

Safety rules for registered origins (see the README's Security section):

* a redirect to an origin outside the policy's own (checked) origins is refused, so no
  token-bearing request follows a 3xx elsewhere (:class:`CrossOriginRedirectRefused`);
* the ``apiUrl`` a server announces in its client config, and the OAuth issuer (``iss``) of the
  access token it hands out (where the client sends the refresh token), are checked with the same
  address rule as the configured address before the client may use them, then routed through the
  same policy;
* a request carrying a registered connection's API token to an unregistered origin is refused;
* oauthlib accepts plain http only for registered loopback origins (a narrow patch of its
  ``is_secure_transport``, never the process-wide ``OAUTHLIB_INSECURE_TRANSPORT``).

Bounded calls: once the policy's tries are used up on a retryable failure, the request raises
:func:`retries_exhausted_class` (a ``NeptuneConnectionLostException``), which the client's own
``with_api_exceptions_handler`` loop does not retry, so ``retry_count`` and ``request_timeout`` bound
a failing call (formula in the README); the async client's background thread still reconnects.

The client's one request outside ``requests`` - the websocket handshake for run signals, which
reconnects with its own jittered backoff while a run is open - is counted and logged (the neptune
websocket adapter's ``connect`` is wrapped once) but takes no permit: like the spec documents it is
not an API call the server's request limit counts, and its retries are the client's own.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from tenacity import RetryCallState

from airflow_provider_neptune.hooks import answers
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
from airflow_provider_neptune.hooks.settings import check_address, is_loopback_host, redact_url, url_origin

log = logging.getLogger("airflow_provider_neptune.http")

_INSTALL_LOCK = threading.Lock()
_ORIGINAL_SEND_ATTR = "_neptune_provider_original_send"
_ORIGINAL_WS_ATTR = "_neptune_provider_original_connect"
_REGISTRY: dict[str, OriginPolicy] = {}
_REGISTRY_LOCK = threading.Lock()
_LOCAL = threading.local()
_ORIGINAL_SECURE_ATTR = "_neptune_provider_original_is_secure_transport"
#: Modules that bound oauthlib's ``is_secure_transport`` by name on import (client side only).
OAUTHLIB_MODULES = (
    "oauthlib.oauth2",
    "oauthlib.oauth2.rfc6749.utils",
    "oauthlib.oauth2.rfc6749.parameters",
    "oauthlib.oauth2.rfc6749.clients.base",
    "requests_oauthlib.oauth2_session",
    "requests_oauthlib.oauth2_auth",
)
TOKEN_HEADER = "X-Neptune-Api-Token"
#: Path ending of the client-config document whose ``apiUrl`` the client then sends its token to.
CLIENT_CONFIG_SUFFIX = "/clients/config"
#: Path ending of the API-token exchange; the access token's ``iss`` is where the client refreshes it.
TOKEN_EXCHANGE_SUFFIX = "/authorization/oauth-token"

COUNTER_NAMES = ("requests", "throttled", "retries", "points", "bytes", "errors")


class RateBudgetExhausted(requests.exceptions.ConnectionError):
    """No permit from the shared budget in time; reported as a lost connection (the async client retries)."""


class CrossOriginRedirectRefused(requests.exceptions.RequestException):
    """A registered server redirected to another origin; not followed, so the token stays where checked."""


class TokenLeakRefused(requests.exceptions.RequestException):
    """A request carried a registered connection's API token to an origin that was never checked."""


_EXHAUSTED_CLASS: type[Exception] | None = None
_EXHAUSTED_LOCK = threading.Lock()


def retries_exhausted_class() -> type[Exception]:
    """The error of a registered request whose tries are used up: a ``NeptuneConnectionLostException``.

    A subclass of the client's own "connection lost" error, so its ``with_api_exceptions_handler``
    (which retries bravado/requests errors for 60 s) passes it straight up and the async thread's
    reconnect loop still treats it as a lost connection. Created on first use: ``neptune`` is not
    imported when this module is.
    """
    global _EXHAUSTED_CLASS
    with _EXHAUSTED_LOCK:
        if _EXHAUSTED_CLASS is None:
            from neptune.common.exceptions import NeptuneConnectionLostException

            class RequestRetriesExhausted(NeptuneConnectionLostException):
                """A request to a registered Neptune server still failed after every try of the policy."""

                def __init__(self, message: str, cause: Exception) -> None:
                    super().__init__(cause)
                    self.args = (message,)

                def __str__(self) -> str:
                    return str(self.args[0])

            RequestRetriesExhausted.__qualname__ = RequestRetriesExhausted.__name__
            RequestRetriesExhausted.__module__ = __name__
            _EXHAUSTED_CLASS = RequestRetriesExhausted
        return _EXHAUSTED_CLASS


def _exhausted(message: str, cause: Exception) -> Exception:
    error_class: Any = retries_exhausted_class()
    error: Exception = error_class(message, cause)
    return error


def token_digest(token: str) -> str:
    """A non-reversible digest of an API token, to recognise it in a request without keeping it."""
    return hashlib.sha256(token.encode()).hexdigest()


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
    return redact_url(f"{request.method} {target}")


def _tries(count: int) -> str:
    return f"{count} {'try' if count == 1 else 'tries'}"


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
        #: Digests of the API tokens of the connections using this policy (see :func:`token_digest`).
        self.token_digests: set[str] = set()

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
        log.log(self.request_log_level, "WS %s (websocket handshake)", redact_url(urlsplit(url).path))

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

        again = answers.reused(request)
        if again is not None:  # the same client config fetched moments ago: no request
            log.log(self.request_log_level, "HTTP %s -> %s reused (no request)", what, again.status_code)
            return again
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
            self._check_redirect(request, response, what)
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
            path = urlsplit(request.url or "").path.rstrip("/")
            if status == 200 and path.endswith(CLIENT_CONFIG_SUFFIX):
                self._check_client_config(response)
            elif status == 200 and path.endswith(TOKEN_EXCHANGE_SUFFIX):
                self._check_token_issuer(response)
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
                reason = redact_url(f"{type(exc).__name__}: {exc}")
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
        tries = [0]
        inner = attempt

        def counted_attempt() -> requests.Response:
            tries[0] += 1
            return inner()

        try:
            response: requests.Response = retrying(counted_attempt)
        except (
            requests.exceptions.ConnectionError,
            requests.exceptions.Timeout,
            requests.exceptions.ChunkedEncodingError,
        ) as exc:
            raise _exhausted(
                redact_url(
                    f"Neptune request {what} to {self.origin} failed after {_tries(tries[0])} "
                    f"({type(exc).__name__}: {exc})"
                ),
                exc,
            ) from exc
        if is_retryable_status(response.status_code):
            status = response.status_code
            response.close()
            cause = requests.exceptions.HTTPError(f"HTTP {status}", response=response)
            raise _exhausted(
                f"Neptune request {what} to {self.origin} failed after {_tries(tries[0])} (last answer HTTP "
                f"{status}{'' if body.resendable else '; the streamed body cannot be sent again'})",
                cause,
            ) from cause
        if not stream:
            answers.remember(request, response)
        return response

    def owns(self, url: str) -> bool:
        """True when ``url``'s origin is routed through this very policy (one of its checked origins)."""
        return policy_for_url(url) is self

    def _check_redirect(
        self, request: requests.PreparedRequest, response: requests.Response, what: str
    ) -> None:
        """Refuse a redirect leaving this policy's origins: requests would resend the token header there."""
        if not response.is_redirect:
            return
        target = urljoin(request.url or "", response.headers.get("location", ""))
        if self.owns(target):
            return
        response.close()
        try:
            where = url_origin(target)
        except ValueError:
            where = "an unparsable address"
        raise CrossOriginRedirectRefused(
            redact_url(
                f"Neptune server {self.origin} redirected {what} (HTTP {response.status_code}) to {where}; "
                "not followed, so the API token is sent only to the checked server address"
            ),
            request=request,
        )

    def _check_client_config(self, response: requests.Response) -> None:
        """Check the ``apiUrl`` the server announces (the client sends its token there) and route it here."""
        try:
            config = response.json()
        except ValueError:
            return  # not JSON: the client fails on it itself
        api_url = config.get("apiUrl") if isinstance(config, dict) else None
        if api_url:
            add_origin(self, str(api_url), announced_by=self.origin)

    def _check_token_issuer(self, response: requests.Response) -> None:
        """Check where the client sends the refresh token (the access token's ``iss``); route it here."""
        try:
            access = response.json().get("accessToken") or ""
            payload = access.split(".")[1]
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            issuer = claims.get("iss") if isinstance(claims, dict) else None
        except (ValueError, AttributeError, IndexError, TypeError):
            return  # not a JWT: the client fails on it itself
        if issuer:
            add_origin(self, str(issuer), announced_by=self.origin, what="OAuth issuer (iss)")


def _patched_send(
    self: HTTPAdapter, request: requests.PreparedRequest, *args: Any, **kwargs: Any
) -> requests.Response:
    original = getattr(HTTPAdapter, _ORIGINAL_SEND_ATTR)
    policy = policy_for_url(request.url or "")
    if policy is None:
        _refuse_token_leak(request)
        return original(self, request, *args, **kwargs)
    # requests passes stream, timeout, verify, cert, proxies; normalise positionals to keywords.
    names = ("stream", "timeout", "verify", "cert", "proxies")
    kwargs.update(dict(zip(names, args, strict=False)))

    def send_once(req: requests.PreparedRequest, **kw: Any) -> requests.Response:
        return original(self, req, **kw)

    return policy.send(send_once, request, **kwargs)


def _refuse_token_leak(request: requests.PreparedRequest) -> None:
    """Refuse sending a registered connection's API token to an origin no policy checked."""
    token = request.headers.get(TOKEN_HEADER)
    if not token or not _REGISTRY:
        return
    digest = token_digest(token if isinstance(token, str) else token.decode("latin-1"))
    with _REGISTRY_LOCK:
        policies = list(_REGISTRY.values())
    if any(digest in policy.token_digests for policy in policies):
        try:
            where = url_origin(request.url or "")
        except ValueError:
            where = "an unparsable address"
        raise TokenLeakRefused(
            f"refused to send a Neptune connection's API token to {where}: not one of the connection's "
            "checked server addresses",
            request=request,
        )


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
        _install_oauthlib_check()


def is_registered_loopback_http(uri: str) -> bool:
    """True for a plain-http URI on a loopback host whose origin a hook registered (checked)."""
    try:
        origin = url_origin(uri)
    except ValueError:
        return False
    if not origin.startswith("http://") or origin not in _REGISTRY:
        return False
    return is_loopback_host(origin[len("http://") :].rsplit(":", 1)[0])


def _install_oauthlib_check() -> None:
    """Let oauthlib accept plain http for registered loopback origins only (the emulator).

    oauthlib refuses http unless ``OAUTHLIB_INSECURE_TRANSPORT`` is set, and that variable makes it
    accept http everywhere, for every thread. Instead every client-side module that bound
    ``is_secure_transport`` gets a wrapper: the original verdict, or True for a registered loopback
    http origin. The wrapper only reads the registry (a dict lookup, atomic under the GIL) and
    changes no shared state, so it is thread-safe and cannot leak to other origins or threads.
    """
    import importlib

    utils = importlib.import_module("oauthlib.oauth2.rfc6749.utils")
    original = getattr(utils, _ORIGINAL_SECURE_ATTR, None) or utils.is_secure_transport

    def is_secure_transport(uri: str) -> bool:
        return bool(original(uri)) or is_registered_loopback_http(uri)

    setattr(is_secure_transport, _ORIGINAL_SECURE_ATTR, original)
    for name in OAUTHLIB_MODULES:
        module = importlib.import_module(name)
        current = getattr(module, "is_secure_transport", None)
        if current is original:
            vars(module)["is_secure_transport"] = is_secure_transport
    setattr(utils, _ORIGINAL_SECURE_ATTR, original)


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
    api_token: str | None = None,
) -> OriginPolicy:
    """Route requests to these origins through one policy; installs the wrapper if needed.

    ``api_token`` (kept only as a digest) is the token of the connection using these origins: a
    request carrying it to any unregistered origin is refused.

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
                if api_token:
                    policy.token_digests.add(token_digest(api_token))
                for key in keys:
                    _REGISTRY[key] = policy
                return policy
        if existing:
            log.info("Neptune transport: new budget/retry settings for %s replace the previous ones", keys)
            for policy in existing:
                candidate.token_digests |= policy.token_digests
        if api_token:
            candidate.token_digests.add(token_digest(api_token))
        for key in keys:
            _REGISTRY[key] = candidate
        return candidate


def add_origin(
    policy: OriginPolicy, address: str, *, announced_by: str | None = None, what: str = "apiUrl"
) -> None:
    """Also route another origin (e.g. the API URL announced by the server) through a policy.

    The address must pass the same rule as a configured one (https, or http on loopback; nothing
    parsers could read two ways); otherwise NeptuneSettingsError is raised and nothing is routed.
    """
    name = f"{what} announced by the server at {announced_by}" if announced_by else f"announced {what}"
    check_address(name, address)
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
