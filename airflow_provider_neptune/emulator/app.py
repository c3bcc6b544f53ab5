"""The emulator's ASGI application: routing, authentication, throttling, faults and control endpoints.

Request flow for `/api/...`: count it, let the Guard throttle or fail it (before anything is read
or stored, so a rejected request has no effect), check the token, read the body (JSON bodies up to
`max_body_bytes`, else 413; upload bodies streamed to disk), then run the operation's handler in a
worker thread. `/_emulator/*` (stats and fault control) is never throttled or faulted and needs the
API token unless the emulator runs `--open`; run pages are read-only (GET/HEAD) and need no token.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.websockets import WebSocket, WebSocketDisconnect

from airflow_provider_neptune.emulator.api import ApiSettings, Call, NeptuneApi, parse_json
from airflow_provider_neptune.emulator.auth import TokenIssuer, make_api_token
from airflow_provider_neptune.emulator.errors import BodyTooLarge, EmulatorError
from airflow_provider_neptune.emulator.limits import FailNext, Guard
from airflow_provider_neptune.emulator.pages import WebView
from airflow_provider_neptune.emulator.storage import Storage
from airflow_provider_neptune.emulator.swagger import ROUTES, SWAGGER_PATHS, RouteSpec, build_spec

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

log = logging.getLogger("airflow_provider_neptune.emulator")

# The token endpoint lives outside /api/, where a real deployment serves its identity provider.
OAUTH_REALM_PATH = "/auth/realms/neptune"
OAUTH_TOKEN_PATH = f"{OAUTH_REALM_PATH}/protocol/openid-connect/token"
# Operations authenticated with the API token itself rather than a bearer token.
API_TOKEN_OPERATIONS = frozenset({"getClientConfig", "exchangeApiToken"})
WEBSOCKET_PREFIX = "/api/notifications/v1/runs/"
# Operations whose body is raw file content: streamed to a file under the data dir, never held in memory.
UPLOAD_OPERATIONS = frozenset(
    {
        "fileAtomUpload",
        "fileSetFileUpload",
        "uploadFileSetAttributeTar",
        "fileAtomMultipartUploadPart",
        "fileSetFileMultipartUploadPart",
    }
)
# Largest JSON (non-upload) request body. The async client sends at most NEPTUNE_MAX_BATCH_SIZE_BYTES
# (100 MiB) of operations per request, plus the one operation that crosses it; 256 MiB leaves room.
DEFAULT_MAX_BODY_BYTES = 256 * 1024 * 1024


@dataclass
class EmulatorConfig:
    """Everything the CLI can set."""

    data_dir: Path
    projects: list[str] = field(default_factory=lambda: ["airflow/sandbox"])
    rate_limit: float | None = None
    fault_rate: float = 0.0
    seed: int | None = None
    latency_ms: float = 0.0
    state_timeout: float = 20.0
    multipart_threshold: int = 5 * 1024 * 1024
    multipart_chunk: int = 5 * 1024 * 1024
    owner: str = "emulator"
    api_key: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    open_control: bool = False


def error_body(status: int, message: str, error_type: str = "") -> dict[str, Any]:
    """A Neptune-style JSON error."""
    body: dict[str, Any] = {"code": status, "title": message, "message": message}
    if error_type:
        body["errorType"] = error_type
    return body


def error_response(
    status: int, message: str, error_type: str = "", headers: dict[str, str] | None = None
) -> Response:
    """A JSON error response."""
    return JSONResponse(error_body(status, message, error_type), status_code=status, headers=headers)


class EmulatorApp:
    """ASGI callable serving the Neptune API, the OAuth token endpoint, run pages and /_emulator/*."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.storage = Storage(config.data_dir, owner=config.owner)
        for project in config.projects:
            self.storage.ensure_project(project)
        if config.api_key:
            self.storage.meta_set("api_key", config.api_key)
        api_key = self.storage.meta_setdefault("api_key", lambda: secrets.token_urlsafe(24))
        secret = self.storage.meta_setdefault("jwt_secret", lambda: secrets.token_hex(32))
        self.issuer = TokenIssuer(secret.encode(), api_key, config.owner)
        self.guard = Guard(config.rate_limit, config.fault_rate, config.seed)
        self.guard.latency_ms = config.latency_ms
        self.api = NeptuneApi(
            self.storage,
            ApiSettings(
                state_timeout=config.state_timeout,
                multipart_threshold=config.multipart_threshold,
                multipart_chunk=config.multipart_chunk,
            ),
        )
        self.routes: dict[tuple[str, str], RouteSpec] = {(r.method, r.path): r for r in ROUTES}
        self.paths = {r.path for r in ROUTES}
        self.open_sockets = 0
        self.web = WebView(self.api)

    def api_token(self, api_address: str) -> str:
        """The API token clients use; it names `api_address` as the server."""
        return make_api_token(api_address, self.issuer.api_key)

    # ----- ASGI entry ---------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        method: str = scope["method"]
        if path.startswith("/_emulator/"):
            request = Request(scope, receive)
            if self.config.open_control or self._control_authorized(request):
                response = await self._control(request, path, method)
            else:
                response = error_response(
                    401,
                    "The emulator's control endpoints need its API token: send it as X-Neptune-Api-Token "
                    "(or Authorization: Bearer <token>), or start the emulator with --open",
                    "UNAUTHORIZED",
                )
            await response(scope, receive, send)
            return
        stats = self.guard.stats
        stats.requests_total += 1
        status_box: dict[str, int] = {}

        async def send_recording(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_box["status"] = int(message["status"])
            await send(message)

        try:
            await self._serve(scope, receive, send_recording, path, method)
        finally:
            status = status_box.get("status")
            self.guard.stats.requests_by_status[str(status) if status else "dropped"] += 1

    async def _serve(self, scope: Scope, receive: Receive, send: Send, path: str, method: str) -> None:
        stats = self.guard.stats
        if path in SWAGGER_PATHS.values():
            # Spec documents are exempt from throttling and faults: they are static, carry no run
            # data, and every client process downloads them while it builds its API clients, so
            # budgeting them would measure bravado's start-up rather than the client's API traffic.
            stats.requests_by_route["swagger"] += 1
            api = next(name for name, p in SWAGGER_PATHS.items() if p == path)
            await JSONResponse(build_spec(api))(scope, receive, send)
            return
        if path == OAUTH_TOKEN_PATH:
            stats.requests_by_route["oauthToken"] += 1
            response = await self._oauth_token(Request(scope, receive))
            await response(scope, receive, send)
            return
        if not path.startswith("/api/"):
            stats.requests_by_route["page"] += 1
            page = await run_in_threadpool(self._page, scope, path, method)
            await page(scope, receive, send)
            return

        route = self.routes.get((method, path))
        route_name = route.operation_id if route else f"{method} {path}"
        stats.requests_by_route[route_name] += 1
        decision = self.guard.decide(route_name, path)
        if self.guard.latency_ms > 0 and decision.fault != "drop":
            # Simulated server/network latency (does not block other requests).
            await asyncio.sleep(self.guard.latency_ms / 1000.0)
        if decision.kind == "throttle":
            response = error_response(
                429,
                "Too many requests: the workspace request budget is exhausted",
                "TOO_MANY_REQUESTS",
                headers={"Retry-After": str(decision.retry_after)},
            )
            await response(scope, receive, send)
            return
        if decision.kind == "fault":
            log.info("fault injected (%s) on %s %s", decision.fault, method, path)
            if decision.fault == "drop":
                await self._drop(receive, send)
                return
            await error_response(decision.status, f"Injected fault {decision.status} on {route_name}")(
                scope, receive, send
            )
            return
        if decision.kind == "fail_next":
            log.info("fail_next answers %s on %s %s", decision.status, method, path)
            await error_response(
                decision.status, f"Injected failure {decision.status} on {route_name}", "INJECTED"
            )(scope, receive, send)
            return
        if route is None:
            known = path in self.paths
            status = 405 if known else 404
            log.warning("unhandled request %s %s -> %s", method, path, status)
            what = "Method not allowed for" if known else "Unknown route"
            await error_response(status, f"{what}: {method} {path}", "UNKNOWN_ROUTE")(scope, receive, send)
            return
        request = Request(scope, receive)
        response = await self._call_operation(request, route)
        await response(scope, receive, send)

    async def _drop(self, receive: Receive, send: Send) -> None:
        """Break the connection without an answer (the client sees a connection error)."""
        cycle = getattr(receive, "__self__", None)
        transport = getattr(cycle, "transport", None)
        if transport is not None and hasattr(transport, "close"):
            transport.close()
            for _ in range(5):
                await asyncio.sleep(0)
            return
        # Fallback for servers that hide the transport: start a response, then abort it.
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"1024")]})
        raise ConnectionAbortedError("injected dropped connection")

    async def _call_operation(self, request: Request, route: RouteSpec) -> Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        if route.operation_id in API_TOKEN_OPERATIONS:
            if not self.issuer.check_api_key(headers.get("x-neptune-api-token")):
                return error_response(401, "Invalid API token", "API_TOKEN_INVALID")
        elif not self.issuer.check_bearer(headers.get("authorization")):
            return error_response(401, "Missing or invalid access token", "UNAUTHORIZED")
        if route.operation_id == "exchangeApiToken":
            pair = self.issuer.token_pair(self._issuer_url(request))
            return JSONResponse(
                {
                    "accessToken": pair["access_token"],
                    "refreshToken": pair["refresh_token"],
                    "username": "emulator",
                }
            )
        body_file = None
        try:
            if route.operation_id in UPLOAD_OPERATIONS:
                body = b""
                body_file = await self._stream_to_file(request)
            else:
                body = await self._read_body(request)
        except BodyTooLarge:
            return self._too_large()
        call = Call(
            method=request.method,
            path=request.url.path,
            query=parse_qs(request.url.query, keep_blank_values=True),
            headers=headers,
            body=body,
            base_url=str(request.base_url).rstrip("/"),
            body_file=body_file,
        )
        handler = getattr(self.api, route.operation_id)
        try:
            response: Response = await run_in_threadpool(handler, call)
        except EmulatorError as exc:
            if exc.status >= 500:
                log.error("%s failed: %s", route.operation_id, exc.message)
            return error_response(exc.status, exc.message, exc.error_type)
        except Exception as exc:
            log.exception("%s %s crashed", request.method, request.url.path)
            return error_response(500, f"Emulator error in {route.operation_id}: {exc}", "INTERNAL")
        finally:
            if body_file is not None:
                body_file.unlink(missing_ok=True)  # gone already when storage moved it into blobs/
        stats = self.guard.stats
        for name, value in call.counters.items():
            setattr(stats, name, getattr(stats, name) + value)
        return response

    async def _read_body(self, request: Request) -> bytes:
        """The request body, read chunk by chunk; BodyTooLarge as soon as it passes max_body_bytes."""
        limit = self.config.max_body_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise BodyTooLarge
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge
            chunks.append(chunk)
        return b"".join(chunks)

    async def _stream_to_file(self, request: Request) -> Path:
        """Write an upload body to a new file under the data dir (uploads are bounded by disk, not RAM)."""
        target = self.storage.incoming_file()
        try:
            with target.open("wb") as out:
                async for chunk in request.stream():
                    await run_in_threadpool(out.write, chunk)
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        return target

    def _too_large(self) -> Response:
        limit = self.config.max_body_bytes
        return error_response(
            413,
            f"Request body is larger than the emulator's limit of {limit} bytes (--max-body-bytes)",
            "PAYLOAD_TOO_LARGE",
        )

    def _control_authorized(self, request: Request) -> bool:
        """True when a control request carries the API token (X-Neptune-Api-Token or Bearer).

        Bearer accepts the API token itself (handy for curl) or an access token the emulator issued.
        """
        if self.issuer.check_api_key(request.headers.get("x-neptune-api-token")):
            return True
        authorization = request.headers.get("authorization") or ""
        if authorization.lower().startswith("bearer "):
            return self.issuer.check_api_key(authorization[7:].strip()) or self.issuer.check_bearer(
                authorization
            )
        return False

    def _issuer_url(self, request: Request) -> str:
        base = str(request.base_url).rstrip("/")
        return f"{base}{OAUTH_REALM_PATH}"

    async def _oauth_token_form(self, request: Request) -> dict[str, str]:
        body = (await self._read_body(request)).decode("utf-8", "replace")
        return {k: v[0] for k, v in parse_qs(body).items()}

    async def _oauth_token(self, request: Request) -> Response:
        """POST {iss}/protocol/openid-connect/token: a refresh grant returns a new token pair."""
        if request.method != "POST":
            return error_response(405, f"Method not allowed: {request.method} {request.url.path}")
        try:
            form = await self._oauth_token_form(request)
        except BodyTooLarge:
            return self._too_large()
        if form.get("grant_type") != "refresh_token" or not self.issuer.verify(
            form.get("refresh_token", ""), kind="Refresh"
        ):
            return JSONResponse({"error": "invalid_grant", "error_description": "Invalid refresh token"}, 400)
        return JSONResponse(self.issuer.token_pair(self._issuer_url(request)))

    # ----- websocket ----------------------------------------------------------------------------
    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The run's signal channel: held open while a client has the run, which marks it running.

        Not throttled or faulted: it is one long-lived connection per open run, not an API request,
        and refusing it would only make the client retry its handshake (and token refresh) in a loop.
        """
        websocket = WebSocket(scope, receive, send)
        path: str = scope["path"]
        parts = path[len(WEBSOCKET_PREFIX) :].split("/") if path.startswith(WEBSOCKET_PREFIX) else []
        if (
            len(parts) != 3
            or parts[2] != "signal"
            or not self.issuer.check_bearer(websocket.headers.get("authorization"))
        ):
            await websocket.close(code=1008)
            return
        run_id = parts[1]
        run = await run_in_threadpool(self.storage.find_run, run_id)
        if run is None:
            await websocket.close(code=1008)
            return
        await websocket.accept()
        self.storage.socket_opened(run_id)
        self.open_sockets += 1
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
        except WebSocketDisconnect:
            pass
        finally:
            self.open_sockets -= 1
            self.storage.socket_closed(run_id)

    # ----- pages --------------------------------------------------------------------------------
    def _page(self, scope: Scope, path: str, method: str) -> Response:
        if method not in ("GET", "HEAD"):
            return error_response(405, f"Method not allowed: {method} {path}")
        response = self.web.respond(path, scope.get("query_string", b"").decode("latin-1"))
        if response is not None:
            return response
        log.warning("unhandled request %s %s -> 404", method, path)
        return error_response(404, f"Unknown route: {method} {path}", "UNKNOWN_ROUTE")

    # ----- control ------------------------------------------------------------------------------
    async def _control_json(self, request: Request) -> Any:
        return parse_json(await self._read_body(request), "control body")

    async def _control(self, request: Request, path: str, method: str) -> Response:
        name = path[len("/_emulator/") :].strip("/")
        try:
            if name == "stats" and method == "GET":
                return JSONResponse(self.stats())
            if name == "health" and method == "GET":
                return JSONResponse({"ok": True})
            if name == "faults" and method == "POST":
                return JSONResponse(self.set_faults(await self._control_json(request)))
            if name == "faults" and method == "GET":
                return JSONResponse(self.fault_settings())
            if name == "reset_stats" and method == "POST":
                self.guard.reset_stats()
                return JSONResponse({"ok": True})
            if name == "projects" and method == "POST":
                body = await self._control_json(request)
                project = self.storage.ensure_project(str(body.get("project", "")))
                return JSONResponse({"project": project.qualified_name, "id": project.id, "key": project.key})
            if name == "projects" and method == "GET":
                return JSONResponse([p.qualified_name for p in self.storage.list_projects()])
        except BodyTooLarge:
            return self._too_large()
        except EmulatorError as exc:
            message = f"Bad request to {method} {path}: {exc.message}"
            return error_response(exc.status, message, exc.error_type)
        except (ValueError, TypeError, AttributeError, KeyError, OverflowError) as exc:
            return error_response(400, f"Bad request to {method} {path}: {exc}", "BAD_REQUEST")
        log.warning("unhandled request %s %s -> 404", method, path)
        return error_response(404, f"Unknown route: {method} {path}", "UNKNOWN_ROUTE")

    def fault_settings(self) -> dict[str, Any]:
        """Current throttle/fault settings."""
        return {
            "rate_limit": self.guard.rate_limit,
            "fault_rate": self.guard.fault_rate,
            "latency_ms": self.guard.latency_ms,
            "fail_next": [
                {"route": r.route, "status": r.status, "count": r.count} for r in self.guard.fail_next
            ],
        }

    def set_faults(self, body: Any) -> dict[str, Any]:
        """Apply a POST /_emulator/faults body: rate_limit, fault_rate, seed, fail_next (one or a list).

        Everything is validated before anything changes, so a refused body has no effect.
        """
        if not isinstance(body, dict):
            raise ValueError("expected a JSON object")
        rate_limit = body.get("rate_limit", self.guard.rate_limit)
        rate = _finite(rate_limit, "rate_limit") if rate_limit is not None else None
        fault_rate = (
            _finite(body["fault_rate"], "fault_rate")
            if body.get("fault_rate") is not None
            else self.guard.fault_rate
        )
        if not 0.0 <= fault_rate <= 1.0:
            raise ValueError("fault_rate must be between 0 and 1")
        seed = int(body["seed"]) if body.get("seed") is not None else None
        latency = _finite(body["latency_ms"], "latency_ms") if body.get("latency_ms") is not None else None
        if latency is not None and latency < 0:
            raise ValueError("latency_ms must not be negative")
        rules = body.get("fail_next")
        new_rules: list[FailNext] = []
        for rule in (rules if isinstance(rules, list) else [rules]) if rules is not None else []:
            if not isinstance(rule, dict) or "route" not in rule:
                raise ValueError("each fail_next rule must be an object with a route")
            status = int(rule.get("status", 500))
            if not 400 <= status <= 599:
                raise ValueError(f"fail_next status must be an HTTP error (400..599), got {status}")
            new_rules.append(
                FailNext(route=str(rule["route"]), status=status, count=int(rule.get("count", 1)))
            )
        self.guard.configure(rate_limit=rate, fault_rate=fault_rate)
        if seed is not None:
            self.guard.rng.seed(seed)
        if latency is not None:
            self.guard.latency_ms = latency
        if body.get("clear_fail_next"):
            self.guard.fail_next.clear()
        for new_rule in new_rules:
            self.guard.add_fail_next(new_rule)
        return self.fault_settings()

    def stats(self) -> dict[str, Any]:
        """The /_emulator/stats document."""
        out = self.guard.stats.as_dict()
        out.update(self.fault_settings())
        out["websockets_open"] = self.open_sockets
        # CPU time of the whole emulator process (every thread), at nanosecond resolution: benchmarks
        # divide its growth by the requests sent, which the 10 ms ticks of /proc cannot resolve.
        out["process_cpu_seconds"] = time.process_time()
        return out


def _finite(value: Any, name: str) -> float:
    """A control setting as a finite float (ValueError naming it otherwise)."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return number
