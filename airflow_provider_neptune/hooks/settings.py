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
from airflow_provider_neptune.hooks.redaction import redact_url

__all__ = [
    "NeptuneSettings",
    "check_address",
    "is_loopback_host",
    "redact_url",
    "resolve_settings",
    "url_origin",
]

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


def _parse(address: str) -> Any:
    """Parse an address the way the transport does (urllib3's ``parse_url``, which requests uses)."""
    from urllib3.util import parse_url

    return parse_url(address if "://" in address else "https://" + address)


def url_origin(address: str) -> str:
    """``scheme://host:port`` of an address, with the client's https default and default ports.

    Parsed with urllib3's ``parse_url``, the parser of the connection ``requests`` opens, so an origin
    names the host a request really goes to. Raises ValueError for an address it cannot parse.
    """
    try:
        parts = _parse(address)
    except Exception as exc:  # urllib3's LocationParseError and friends
        raise ValueError(f"cannot parse {redact_url(address)!r}: {type(exc).__name__}") from exc
    scheme = (parts.scheme or "https").lower()
    host = (parts.host or "").lower()
    port = parts.port or (443 if scheme == "https" else 80)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}"


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback IP literals written in full (127.0.0.0/8, ::1).

    Deliberately narrow: ``localhost.``, ``*.localhost`` and short or numeric IPv4 forms (``127.1``,
    ``0x7f.1``, ``2130706433``) are not accepted, since a resolver may send them elsewhere or the
    transport may read them differently.
    """
    host = host.lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if host == "localhost":
        return True
    if not re.fullmatch(r"[0-9.]+|[0-9a-f:]+", host) or (
        "." in host and not re.fullmatch(r"\d{1,3}(\.\d{1,3}){3}", host)
    ):
        return False
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


#: Characters never accepted in an API address: whitespace and controls, backslash (parsers disagree
#: on it), and percent signs in the host part (an encoded ``/`` or ``@`` hides the real host).
_FORBIDDEN_IN_ADDRESS = re.compile(r"[\x00-\x20\x7f\\]")


def check_address(name: str, address: str) -> None:
    """Accept https anywhere and plain http only on loopback; refuse anything parsers could read two ways.

    The address is parsed with urllib3's ``parse_url`` (what ``requests`` connects to) and must agree
    with ``urlsplit``; user-info, backslashes, whitespace, control characters, ``%`` in the host and
    ports outside 1-65535, queries and fragments are refused. The same rule applies to the token's
    addresses, the connection host and every address a server announces (its client config's ``apiUrl``).
    """
    shown = redact_url(address)

    def refuse(reason: str) -> NeptuneSettingsError:
        return NeptuneSettingsError(name, shown, reason)

    if not isinstance(address, str) or not address:
        raise refuse("must be a non-empty http(s) URL")
    if _FORBIDDEN_IN_ADDRESS.search(address) or not address.isascii():
        raise refuse(
            "contains whitespace, a control character, a backslash or a non-ASCII character "
            "(write an internationalised host in its xn-- form)"
        )
    with_scheme = address if "://" in address else "https://" + address
    scheme_text = with_scheme.split("://", 1)[0]
    if scheme_text.lower() not in ("http", "https"):
        raise refuse("must be an http(s) URL with a host")
    if "?" in address or "#" in address:
        raise refuse("must not contain a query (?) or fragment (#); paths are appended to it")
    authority = with_scheme.split("://", 1)[1].split("/", 1)[0]
    if "@" in authority:
        raise refuse("must not contain user-info (user:password@); the API token authenticates")
    if "%" in authority:
        raise refuse("must not contain percent-encoded characters in the host")
    try:
        parts = _parse(address)
        split = urlsplit(with_scheme)
        split_host, split_port = split.hostname, split.port
    except Exception as exc:
        raise refuse(f"not a valid URL ({type(exc).__name__}; ports must be 1-65535)") from exc
    host = (parts.host or "").lower()
    if not host:
        raise refuse("must be an http(s) URL with a host")
    if parts.port is not None and not 1 <= parts.port <= 65535:
        raise refuse("port must be between 1 and 65535")
    if parts.auth or host.strip("[]") != (split_host or "") or parts.port != split_port:
        raise refuse("is read differently by URL parsers; write it as scheme://host[:port][/path]")
    if scheme_text.lower() == "http" and not is_loopback_host(host):
        raise refuse(
            "plain http is allowed only for loopback addresses (127.0.0.0/8 written in full, [::1], "
            "localhost); use https"
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
    shown = redact_url(value) if isinstance(value, str) else value
    if not isinstance(value, str):
        raise NeptuneSettingsError(label, shown, "must be 'memory', an absolute file path or redis://...")
    storage = value.strip()
    if storage.lower() == "memory":
        return "memory"
    if storage.lower().startswith(_REDIS_SCHEMES):
        parts = urlsplit(storage)
        if storage.lower().startswith("unix://"):
            if not parts.path:
                raise NeptuneSettingsError(label, shown, "a unix:// Redis URL needs a socket path")
        elif not parts.hostname:
            raise NeptuneSettingsError(label, shown, "a Redis URL needs a host, e.g. redis://host:6379/0")
        try:
            _ = parts.port
        except ValueError as exc:
            raise NeptuneSettingsError(label, shown, "invalid port (must be a number, 1-65535)") from exc
        return storage
    if "://" in storage and not storage.startswith("file://"):
        raise NeptuneSettingsError(label, shown, "unknown scheme; use 'memory', a file path or redis://")
    path = storage[len("file://") :] if storage.startswith("file://") else storage
    if not path.startswith("/"):
        raise NeptuneSettingsError(
            label, shown, "a file-backed budget needs an absolute path (shared by all processes)"
        )
    if path.endswith("/"):
        raise NeptuneSettingsError(label, shown, "must name a file, not a directory")
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
