"""Resolved, validated settings of one Neptune connection.

Each setting comes from, in order: the operator/hook argument, the Airflow connection, the
environment, a default. Everything is validated once, and an error names the setting, where it came
from and the bad value; the API token itself never appears in an error, a ``repr`` or a log line.

Defaults (see :data:`DEFAULTS`): mode ``async``; a shared budget of 20 requests/s kept in memory;
5 retries with a 0.5 s exponential-backoff base; 60 s per-request timeout; logging level unchanged.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

from airflow_provider_neptune.exceptions import NeptuneSettingsError

MODES = ("async", "sync", "offline", "read-only", "debug")
LOGGING_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
MODES_WITHOUT_SERVER = ("offline", "debug")

DEFAULTS: dict[str, Any] = {
    "mode": "async",
    "rate_limit_per_second": 20.0,
    "rate_limit_storage": "memory",
    "retry_count": 5,
    "retry_backoff": 0.5,
    "request_timeout": 60.0,
    "logging_level": None,
}

# Environment fallbacks (the neptune client itself reads only NEPTUNE_API_TOKEN, NEPTUNE_PROJECT,
# NEPTUNE_MODE and NEPTUNE_REQUEST_TIMEOUT of these).
ENV_VARS: dict[str, str] = {
    "api_token": "NEPTUNE_API_TOKEN",
    "project": "NEPTUNE_PROJECT",
    "mode": "NEPTUNE_MODE",
    "retry_count": "NEPTUNE_CONNECTION_RETRY_COUNT",
    "retry_backoff": "NEPTUNE_CONNECTION_BACKOFF",
    "logging_level": "NEPTUNE_LOGGING_LEVEL",
    "request_timeout": "NEPTUNE_REQUEST_TIMEOUT",
}

EXTRA_KEYS = (
    "project",
    "mode",
    "rate_limit_per_second",
    "rate_limit_storage",
    "retry_count",
    "retry_backoff",
    "request_timeout",
    "logging_level",
)

_PROJECT_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")
_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
MAX_RETRY_COUNT = 20


class ConnectionLike(Protocol):
    """The parts of an Airflow ``Connection`` the settings read."""

    password: str | None
    host: str | None

    @property
    def extra_dejson(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class NeptuneSettings:
    """Settings of one hook, resolved and validated; ``repr``/``str`` never show the API token."""

    conn_id: str | None
    api_token: str | None = field(repr=False)
    api_address: str | None
    api_url: str | None
    project: str | None
    mode: str
    rate_limit_per_second: float
    rate_limit_storage: str
    retry_count: int
    retry_backoff: float
    request_timeout: float
    logging_level: str | None

    @property
    def workspace(self) -> str | None:
        """The workspace part of ``project`` (the budget is per workspace and server)."""
        return self.project.split("/", 1)[0] if self.project else None

    @property
    def token_fingerprint(self) -> str:
        """A short, non-reversible digest of the token, to key caches without holding the token."""
        return hashlib.sha256((self.api_token or "").encode()).hexdigest()[:16]

    @property
    def budget_key(self) -> str:
        """Name of the shared request budget: one per server address and workspace."""
        raw = f"{self.api_address or ''}|{self.workspace or ''}"
        return "neptune-" + hashlib.sha256(raw.encode()).hexdigest()[:20]

    @property
    def origins(self) -> tuple[str, ...]:
        """The ``scheme://host:port`` origins this connection talks to (address and API URL)."""
        found: list[str] = []
        for address in (self.api_address, self.api_url):
            if address:
                origin = url_origin(address)
                if origin not in found:
                    found.append(origin)
        return tuple(found)

    @property
    def needs_server(self) -> bool:
        """True unless the mode keeps everything local (offline, debug)."""
        return self.mode not in MODES_WITHOUT_SERVER


def url_origin(address: str) -> str:
    """``scheme://host:port`` of an address, with the client's https default and default ports."""
    if "://" not in address:
        address = "https://" + address
    parts = urlsplit(address)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    port = parts.port or (443 if scheme == "https" else 80)
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


def is_loopback_host(host: str) -> bool:
    """True for localhost and loopback IPs (127.0.0.0/8, ::1)."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def decode_token(token: str) -> dict[str, Any]:
    """Decode a Neptune API token (base64 JSON); raises NeptuneSettingsError without echoing it."""
    try:
        decoded = json.loads(base64.b64decode(token.strip().encode(), validate=False).decode("utf-8"))
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise NeptuneSettingsError(
            "api_token", "<hidden>", "not a Neptune API token (base64-encoded JSON expected)"
        ) from exc
    if not isinstance(decoded, dict) or not decoded.get("api_address"):
        raise NeptuneSettingsError("api_token", "<hidden>", "the decoded token has no api_address")
    return decoded


def encode_token(payload: Mapping[str, Any]) -> str:
    """Encode a token payload the way the neptune client decodes it."""
    return base64.b64encode(json.dumps(dict(payload)).encode()).decode()


def check_address(name: str, address: str) -> None:
    """Accept https anywhere and plain http only on loopback addresses."""
    with_scheme = address if "://" in address else "https://" + address
    parts = urlsplit(with_scheme)
    try:
        host = parts.hostname
        _ = parts.port
    except ValueError as exc:
        raise NeptuneSettingsError(name, address, f"not a valid URL ({exc})") from exc
    if parts.scheme not in ("http", "https") or not host:
        raise NeptuneSettingsError(name, address, "must be an http(s) URL with a host")
    if parts.scheme == "http" and not is_loopback_host(host):
        raise NeptuneSettingsError(
            name, address, "plain http is allowed only for loopback addresses (127.0.0.0/8, ::1, localhost)"
        )


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _pick(
    name: str,
    argument: Any,
    extra: Mapping[str, Any],
    env: Mapping[str, str],
    conn_id: str | None,
) -> tuple[Any, str]:
    """First non-blank value and a description of its source, for error messages."""
    if not _blank(argument):
        return argument, "argument"
    for key in (name, f"extra__neptune__{name}"):
        if not _blank(extra.get(key)):
            return extra[key], f"connection {conn_id!r} extra"
    env_name = ENV_VARS.get(name)
    if env_name and not _blank(env.get(env_name)):
        return env[env_name], f"environment {env_name}"
    return DEFAULTS.get(name), "default"


def _number(name: str, value: Any, source: str, *, integer: bool = False) -> float:
    label = f"{name} ({source})"
    if isinstance(value, bool):
        raise NeptuneSettingsError(label, value, "must be a number, not a boolean")
    try:
        number = float(value.strip()) if isinstance(value, str) else float(value)
    except (TypeError, ValueError) as exc:
        raise NeptuneSettingsError(label, value, "must be a number") from exc
    if not math.isfinite(number):
        raise NeptuneSettingsError(label, value, "must be a finite number")
    if integer and number != int(number):
        raise NeptuneSettingsError(label, value, "must be a whole number")
    return number


def _check_storage(value: Any, source: str) -> str:
    label = f"rate_limit_storage ({source})"
    if not isinstance(value, str):
        raise NeptuneSettingsError(label, value, "must be 'memory', an absolute file path or redis://...")
    storage = value.strip()
    if storage.lower() == "memory":
        return "memory"
    if storage.lower().startswith(_REDIS_SCHEMES):
        parts = urlsplit(storage)
        if storage.lower().startswith("unix://"):
            if not parts.path:
                raise NeptuneSettingsError(label, value, "a unix:// Redis URL needs a socket path")
        elif not parts.hostname:
            raise NeptuneSettingsError(label, value, "a Redis URL needs a host, e.g. redis://host:6379/0")
        try:
            _ = parts.port
        except ValueError as exc:
            raise NeptuneSettingsError(label, value, f"invalid port ({exc})") from exc
        return storage
    if "://" in storage and not storage.startswith("file://"):
        raise NeptuneSettingsError(label, value, "unknown scheme; use 'memory', a file path or redis://")
    path = storage[len("file://") :] if storage.startswith("file://") else storage
    if not path.startswith("/"):
        raise NeptuneSettingsError(
            label, value, "a file-backed budget needs an absolute path (shared by all processes)"
        )
    if path.endswith("/"):
        raise NeptuneSettingsError(label, value, "must name a file, not a directory")
    return path


def resolve_settings(
    conn_id: str | None,
    connection: ConnectionLike | None,
    arguments: Mapping[str, Any],
    env: Mapping[str, str],
) -> NeptuneSettings:
    """Merge argument > connection > environment > default, then validate every field."""
    extra: Mapping[str, Any] = connection.extra_dejson if connection is not None else {}
    if not isinstance(extra, Mapping):
        raise NeptuneSettingsError(
            f"extra (connection {conn_id!r})", type(extra).__name__, "must be a JSON object"
        )

    # Token: argument > connection password > NEPTUNE_API_TOKEN.
    token: str | None = None
    if not _blank(arguments.get("api_token")):
        token = str(arguments["api_token"]).strip()
    elif connection is not None and not _blank(connection.password):
        token = str(connection.password).strip()
    elif not _blank(env.get("NEPTUNE_API_TOKEN")):
        token = env["NEPTUNE_API_TOKEN"].strip()

    mode_value, mode_source = _pick("mode", arguments.get("mode"), extra, env, conn_id)
    mode = str(mode_value).strip().lower()
    if mode not in MODES:
        raise NeptuneSettingsError(f"mode ({mode_source})", mode_value, f"must be one of {', '.join(MODES)}")

    api_address: str | None = None
    api_url: str | None = None
    if token is not None:
        payload = decode_token(token)
        host = connection.host if connection is not None else None
        if not _blank(host):
            # The connection's host overrides the address inside the token.
            assert host is not None
            check_address(f"host (connection {conn_id!r})", host.strip())
            payload = {**payload, "api_address": host.strip()}
            payload.pop("api_url", None)
            token = encode_token(payload)
        api_address = str(payload["api_address"])
        check_address("api_token api_address", api_address)
        if payload.get("api_url"):
            api_url = str(payload["api_url"])
            check_address("api_token api_url", api_url)
    elif mode not in MODES_WITHOUT_SERVER:
        raise NeptuneSettingsError(
            "api_token",
            None,
            f"no API token: set the password of connection {conn_id!r}, the api_token argument "
            f"or NEPTUNE_API_TOKEN (mode {mode!r} needs a server)",
        )

    project_value, project_source = _pick("project", arguments.get("project"), extra, env, conn_id)
    project: str | None = None
    if project_value is not None:
        project = str(project_value).strip()
        if not _PROJECT_RE.match(project):
            raise NeptuneSettingsError(
                f"project ({project_source})", project_value, "must be 'workspace/project'"
            )
    elif mode not in MODES_WITHOUT_SERVER:
        raise NeptuneSettingsError(
            "project",
            None,
            f"no project: set 'project' in connection {conn_id!r} extra, the project argument "
            "or NEPTUNE_PROJECT",
        )

    rate_value, rate_source = _pick(
        "rate_limit_per_second", arguments.get("rate_limit_per_second"), extra, env, conn_id
    )
    rate = _number("rate_limit_per_second", rate_value, rate_source)
    if rate < 0:
        raise NeptuneSettingsError(
            f"rate_limit_per_second ({rate_source})", rate_value, "must be >= 0 (0 disables the limiter)"
        )

    storage_value, storage_source = _pick(
        "rate_limit_storage", arguments.get("rate_limit_storage"), extra, env, conn_id
    )
    storage = _check_storage(storage_value, storage_source)

    count_value, count_source = _pick("retry_count", arguments.get("retry_count"), extra, env, conn_id)
    retry_count = _number("retry_count", count_value, count_source, integer=True)
    if not 0 <= retry_count <= MAX_RETRY_COUNT:
        raise NeptuneSettingsError(
            f"retry_count ({count_source})", count_value, f"must be between 0 and {MAX_RETRY_COUNT}"
        )

    backoff_value, backoff_source = _pick(
        "retry_backoff", arguments.get("retry_backoff"), extra, env, conn_id
    )
    retry_backoff = _number("retry_backoff", backoff_value, backoff_source)
    if not 0 < retry_backoff <= 60:
        raise NeptuneSettingsError(
            f"retry_backoff ({backoff_source})", backoff_value, "must be > 0 and <= 60 seconds"
        )

    timeout_value, timeout_source = _pick(
        "request_timeout", arguments.get("request_timeout"), extra, env, conn_id
    )
    request_timeout = _number("request_timeout", timeout_value, timeout_source)
    if not 0 < request_timeout <= 3600:
        raise NeptuneSettingsError(
            f"request_timeout ({timeout_source})", timeout_value, "must be > 0 and <= 3600 seconds"
        )

    level_value, level_source = _pick("logging_level", arguments.get("logging_level"), extra, env, conn_id)
    level: str | None = None
    if level_value is not None:
        level = str(level_value).strip().upper()
        if level not in LOGGING_LEVELS:
            raise NeptuneSettingsError(
                f"logging_level ({level_source})", level_value, f"must be one of {', '.join(LOGGING_LEVELS)}"
            )

    return NeptuneSettings(
        conn_id=conn_id,
        api_token=token,
        api_address=api_address,
        api_url=api_url,
        project=project,
        mode=mode,
        rate_limit_per_second=rate,
        rate_limit_storage=storage,
        retry_count=int(retry_count),
        retry_backoff=retry_backoff,
        request_timeout=request_timeout,
        logging_level=level,
    )
