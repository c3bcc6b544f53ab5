"""Worker-side environment validation: run every check, build the worker's fingerprint, log it to a run.

Usable outside Airflow (a worker image's smoke test); NeptuneValidateEnvironmentOperator is its thin
Airflow wrapper and :mod:`.fingerprints` compares the fingerprints of several workers.
"""

from __future__ import annotations

import ast
import base64
import binascii
import json
import logging
import os
import platform
import re
import socket
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_provider_neptune.core.environment_checks import (
    LEGACY_CLIENT_DISTRIBUTION,
    NEPTUNE_DISTRIBUTION,
    PYTHON,
    CheckResult,
    check_client_conflict,
    check_clock_skew,
    check_data_directory,
    check_env,
    check_requirements,
    check_round_trip,
    check_server_client_range,
    default_requirements,
    installed_version,
    neptune_data_directory,
    normalize_requirements,
    present_env_names,
    provider_dependencies,
)
from airflow_provider_neptune.exceptions import NeptuneEnvironmentError, NeptuneEnvironmentMismatchError

if TYPE_CHECKING:
    from airflow_provider_neptune.hooks.neptune import NeptuneHook

log = logging.getLogger(__name__)

TOKEN_VARIABLE = "NEPTUNE_API_TOKEN"
PROJECT_VARIABLE = "NEPTUNE_PROJECT"
_REPORTED_VARIABLE_PREFIXES = ("NEPTUNE_",)
_REPORTED_VARIABLES = ("OAUTHLIB_INSECURE_TRANSPORT",)
_MASK = "***"
_PATH_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class EnvironmentReport:
    """Everything one validation produced: the fingerprint for XCom and each check's result."""

    fingerprint: dict[str, Any]
    results: list[CheckResult] = field(default_factory=list)

    @property
    def failures(self) -> list[CheckResult]:
        """The failed checks, in the order they ran."""
        return [result for result in self.results if not result.ok]

    def error(self, worker: str) -> NeptuneEnvironmentError | None:
        """One exception listing every failure (None when all passed)."""
        failures = self.failures
        if not failures:
            return None
        lines = "\n".join(f"  - {result.message}" for result in failures)
        message = f"Neptune environment check failed on {worker}: {len(failures)} problem(s):\n{lines}"
        if any(result.retryable for result in failures):
            return NeptuneEnvironmentError(message, failures)
        return NeptuneEnvironmentMismatchError(message, failures)


def secrets_of(token: str | None) -> list[str]:
    """The strings that must never be shown: the token and the API key decoded from it."""
    if not token:
        return []
    secrets = [token]
    try:
        payload = json.loads(base64.b64decode(token.encode(), validate=False).decode())
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return secrets
    key = payload.get("api_key") if isinstance(payload, dict) else None
    if isinstance(key, str) and len(key) >= 4:
        secrets.append(key)
    return secrets


def scrub(value: Any, secrets: Iterable[str]) -> Any:
    """Replace every secret inside strings of a JSON-like value with ``***`` (longest first)."""
    ordered = sorted({s for s in secrets if s}, key=len, reverse=True)
    if not ordered:
        return value
    if isinstance(value, str):
        for secret in ordered:
            value = value.replace(secret, _MASK)
        return value
    if isinstance(value, Mapping):
        return {scrub(k, ordered): scrub(v, ordered) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(v, ordered) for v in value]
    return value


def variable_names(value: Iterable[str] | str | None) -> list[str]:
    """Names from a list, or from a rendered template: ``"['A', 'B']"``, ``'["A"]'`` or ``"A, B"``."""
    if value is None:
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                parsed = ast.literal_eval(text)
            except (ValueError, SyntaxError) as err:
                raise ValueError(f"required_env {value!r} is not a list of variable names") from err
            return [str(name).strip() for name in parsed if str(name).strip()]
        return [name for name in re.split(r"[,\s]+", text) if name]
    return [str(name).strip() for name in value if str(name).strip()]


def _reported_names(required_env: Iterable[str], environ: Mapping[str, str]) -> list[str]:
    """Variable names worth comparing across workers: the required ones and the client's own."""
    names = set(required_env) | set(_REPORTED_VARIABLES)
    names |= {name for name in environ if name.startswith(_REPORTED_VARIABLE_PREFIXES)}
    return present_env_names(names, environ)


def collect_environment(
    *,
    requirements: Mapping[str, str | None] | Iterable[str] | str | None = None,
    include_default_requirements: bool = True,
    required_env: Iterable[str] = (),
    hook: NeptuneHook | None = None,
    check_connection: bool = True,
    min_free_disk_mb: float = 0.0,
    max_clock_skew_seconds: float | None = 30.0,
    max_round_trip_seconds: float | None = None,
    data_directory: str | os.PathLike[str] | None = None,
    hostname: str | None = None,
    worker: str | None = None,
    queue: str | None = None,
    pool: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> EnvironmentReport:
    """Run every check on this process and build its fingerprint; never raises for a failed check.

    ``hook`` supplies the connection (token and project count as present variables; with
    ``check_connection`` also token, project, round trip, server client range and clock). Without a
    hook only local checks run. Usable outside Airflow, e.g. in a worker image's smoke test.
    """

    env = dict(os.environ if environ is None else environ)
    required = list(dict.fromkeys(required_env))
    wanted = {**(default_requirements() if include_default_requirements else {})}
    wanted.update(normalize_requirements(requirements))
    recorded = set(wanted) | set(provider_dependencies()) | {LEGACY_CLIENT_DISTRIBUTION}
    versions = {name: installed_version(name) for name in sorted(recorded)}
    if versions.get(LEGACY_CLIENT_DISTRIBUTION) is None:
        versions.pop(LEGACY_CLIENT_DISTRIBUTION)

    results: list[CheckResult] = []
    results += check_requirements(wanted, versions)
    results += check_client_conflict(versions)

    secrets = secrets_of(env.get(TOKEN_VARIABLE))
    from_connection: list[str] = []
    mode = env.get("NEPTUNE_MODE") or "async"
    project: str | None = env.get(PROJECT_VARIABLE) or None
    settings_error: str | None = None
    if hook is not None:
        try:
            settings = hook.settings
        except Exception as err:  # a bad connection is a failed check, not a crash
            settings_error = f"Neptune connection settings are invalid: {err}"
        else:
            secrets += secrets_of(settings.api_token)
            mode, project = settings.mode or mode, settings.project or project
            if settings.api_token:
                from_connection.append(TOKEN_VARIABLE)
            if settings.project:
                from_connection.append(PROJECT_VARIABLE)
    results += check_env(required, env, from_connection)

    data_dir = Path(data_directory) if data_directory else neptune_data_directory(env)
    disk_result, free_mb = check_data_directory(data_dir, min_free_disk_mb)
    results.append(disk_result)

    server: dict[str, Any] = {}
    if hook is not None and check_connection:
        if settings_error is not None:
            results.append(CheckResult("connection", False, settings_error, retryable=True))
        else:
            results += _check_server(hook, versions, max_clock_skew_seconds, max_round_trip_seconds, server)

    results = [
        CheckResult(r.name, r.ok, scrub(r.message, secrets), r.retryable) if secrets else r for r in results
    ]
    host = hostname or socket.getfqdn()
    fingerprint: dict[str, Any] = {
        "worker": worker or queue or host,
        "hostname": host,
        "queue": queue,
        "pool": pool,
        "mode": mode,
        "project": project,
        "python": versions.get(PYTHON) or platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
        "env_present": sorted(set(_reported_names(required, env)) | set(from_connection)),
        "env_from_connection": sorted(from_connection),
        "data_directory": str(data_dir),
        "free_disk_mb": None if free_mb is None else round(free_mb, 1),
        "server": server,
        "checks": [r.as_dict() for r in results],
        "failed": [r.message for r in results if not r.ok],
        "checked_at": datetime.now(UTC).isoformat(),
    }
    return EnvironmentReport(fingerprint=scrub(fingerprint, secrets), results=results)


def _check_server(
    hook: NeptuneHook,
    versions: Mapping[str, str | None],
    max_clock_skew_seconds: float | None,
    max_round_trip_seconds: float | None,
    server: dict[str, Any],
) -> list[CheckResult]:
    """Connection, server-supported client versions, round trip and clock; fills ``server``."""

    try:
        ok, message = hook.test_connection()
    except Exception as err:
        ok, message = False, f"{type(err).__name__}: {err}"
    if not ok:
        return [CheckResult("connection", False, f"Neptune connection failed: {message}", retryable=True)]
    results = [CheckResult("connection", True, f"Neptune connection works: {message}")]
    sent_at = time.time()
    try:
        info = hook.server_info()
    except Exception as err:
        return [
            *results,
            CheckResult(
                "server_info", False, f"cannot read the server's client config: {err}", retryable=True
            ),
        ]
    received_at = time.time()
    server_time = info.get("server_time")
    rtt = info.get("round_trip_seconds")
    server.update(
        {
            "api_url": info.get("api_url"),
            "min_compatible_version": _text(info.get("min_compatible_version")),
            "max_compatible_version": _text(info.get("max_compatible_version")),
            "min_recommended_version": _text(info.get("min_recommended_version")),
            "round_trip_seconds": None if rtt is None else round(float(rtt), 4),
            "server_time": server_time.isoformat() if isinstance(server_time, datetime) else None,
        }
    )
    results.append(
        check_server_client_range(
            versions.get(NEPTUNE_DISTRIBUTION),
            server["min_compatible_version"],
            server["max_compatible_version"],
            server["min_recommended_version"],
        )
    )
    results.append(check_round_trip(server["round_trip_seconds"], max_round_trip_seconds))
    if max_clock_skew_seconds is not None:
        skew_result, offset = check_clock_skew(
            server_time if isinstance(server_time, datetime) else None,
            sent_at,
            received_at,
            max_clock_skew_seconds,
        )
        server["clock_offset_seconds"] = None if offset is None else round(offset, 2)
        results.append(skew_result)
    return results


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def run_fields(fingerprint: Mapping[str, Any]) -> dict[str, Any]:
    """The fingerprint as Neptune fields: nested namespaces of strings and numbers (no lists/None)."""

    def convert(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {str(k): convert(v) for k, v in value.items() if v is not None}
        if isinstance(value, list | tuple):
            return ", ".join(str(v) for v in value)
        if isinstance(value, bool | int | float | str):
            return value
        return str(value)

    fields = {k: v for k, v in fingerprint.items() if k not in ("checks",)}
    fields["versions"] = {
        k: (v if v is not None else "not installed") for k, v in fingerprint["versions"].items()
    }
    fields["ok"] = not fingerprint["failed"]
    fields["failed"] = "\n".join(fingerprint["failed"])
    return dict(convert(fields))


def run_path(namespace: str, hostname: str, worker: str) -> str:
    """Where a fingerprint is stored in the run: ``<namespace>/<hostname>/<worker>``, path-safe."""
    parts = [namespace.strip("/")] + [_PATH_UNSAFE.sub("_", part) or "_" for part in (hostname, worker)]
    return "/".join(parts)


def log_to_run(
    hook: NeptuneHook, run_id: str, namespace: str, fingerprint: Mapping[str, Any], timeout: float
) -> CheckResult:
    """Store the fingerprint in the run and confirm delivery; a failure becomes a failed check."""
    path = run_path(namespace, fingerprint["hostname"], str(fingerprint["worker"]))
    try:
        with hook.get_run(run_id=run_id) as run:
            run[path] = run_fields(fingerprint)
            hook.wait_for_delivery(run, timeout=timeout)
    except Exception as err:
        secrets = secrets_of(os.environ.get(TOKEN_VARIABLE))
        try:
            secrets += secrets_of(hook.settings.api_token)
        except Exception:
            log.debug("settings unavailable while scrubbing a run-logging error")
        return CheckResult(
            "run_log",
            False,
            scrub(f"could not log the fingerprint to run {run_id} at {path}: {err}", secrets),
            retryable=True,
        )
    return CheckResult("run_log", True, f"fingerprint logged to run {run_id} at {path}")
