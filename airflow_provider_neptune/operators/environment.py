"""NeptuneValidateEnvironmentOperator: fail early, on the worker itself, when its Neptune set-up is off.

A worker with another ``neptune`` version, a missing variable, a full disk or a skewed clock loses
metrics silently; this task runs every check, reports all failures at once and returns a fingerprint
of the worker (versions, variable names, hostname, mode) that
:mod:`airflow_provider_neptune.operators.fingerprints` compares across workers.
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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowFailException

from airflow_provider_neptune.exceptions import NeptuneProviderError

if TYPE_CHECKING:
    from airflow_provider_neptune.core.environment_checks import CheckResult
    from airflow_provider_neptune.hooks.neptune import NeptuneHook

# environment_checks (and through it `packaging`) is imported inside the functions that run the
# checks, on the worker: a DAG file that only builds the operator does not pay for it at parse time.

log = logging.getLogger(__name__)

FINGERPRINT_XCOM_KEY = "fingerprint"
"""XCom key under which the fingerprint is pushed even when the task then fails."""

TOKEN_VARIABLE = "NEPTUNE_API_TOKEN"
PROJECT_VARIABLE = "NEPTUNE_PROJECT"
_REPORTED_VARIABLE_PREFIXES = ("NEPTUNE_",)
_REPORTED_VARIABLES = ("OAUTHLIB_INSECURE_TRANSPORT",)
_MASK = "***"
_PATH_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")

# Requirements packaging certainly accepts: a distribution name, then comparisons with plain release
# versions and no spaces (``neptune>=1.14,<2``). The operator's parse-time check passes these without
# importing packaging; anything else goes through normalize_requirements, which names the problem.
_PLAIN_CLAUSE = r"(?:(?:==|!=|<=|>=|<|>)[0-9]+(?:\.[0-9]+)*|~=[0-9]+(?:\.[0-9]+)+)"
_PLAIN_SPECIFIER = re.compile(rf"(?:{_PLAIN_CLAUSE}(?:,{_PLAIN_CLAUSE})*)?")
_PLAIN_REQUIREMENT = re.compile(rf"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?{_PLAIN_SPECIFIER.pattern}")


class NeptuneEnvironmentError(NeptuneProviderError):
    """Some checks failed, at least one of which may pass on retry (connection, clock, latency)."""

    def __init__(self, message: str, failures: Sequence[CheckResult]) -> None:
        super().__init__(message)
        self.failures = list(failures)


class NeptuneEnvironmentMismatchError(NeptuneEnvironmentError, AirflowFailException):
    """Only deterministic checks failed (versions, variables, disk): retrying the task cannot help."""


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


def plainly_valid_requirements(requirements: object) -> bool:
    """Tell whether ``requirements`` certainly pass ``normalize_requirements`` (no packaging needed).

    True only for the simple forms (``"numpy>=1.26,<2"``, ``{"neptune": "1.14.0"}``, ``None`` as
    specifier); False means "not decided here", not "invalid".
    """
    if isinstance(requirements, Mapping):
        for name, spec in requirements.items():
            if not isinstance(name, str) or not (spec is None or isinstance(spec, str)):
                return False
            text = (spec or "").strip()
            if text and text[0].isdigit():
                text = f"=={text}"
            if not _PLAIN_SPECIFIER.fullmatch(text):
                return False
        return True
    if isinstance(requirements, str):
        lines: list[object] = [p for p in requirements.replace(";", "\n").splitlines() if p.strip()]
    elif isinstance(requirements, list | tuple):
        lines = list(requirements)
    else:
        return False
    return all(isinstance(line, str) and _PLAIN_REQUIREMENT.fullmatch(line.strip()) for line in lines)


def _reported_names(required_env: Iterable[str], environ: Mapping[str, str]) -> list[str]:
    """Variable names worth comparing across workers: the required ones and the client's own."""
    from airflow_provider_neptune.core.environment_checks import present_env_names

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
    from airflow_provider_neptune.core.environment_checks import (
        LEGACY_CLIENT_DISTRIBUTION,
        PYTHON,
        CheckResult,
        check_client_conflict,
        check_data_directory,
        check_env,
        check_requirements,
        default_requirements,
        installed_version,
        neptune_data_directory,
        normalize_requirements,
        provider_dependencies,
    )

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
    from airflow_provider_neptune.core.environment_checks import (
        NEPTUNE_DISTRIBUTION,
        CheckResult,
        check_clock_skew,
        check_round_trip,
        check_server_client_range,
    )

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


class NeptuneValidateEnvironmentOperator(BaseOperator):
    """Check this worker's Neptune environment; return its fingerprint; fail listing every problem.

    Checks installed versions (``neptune``, ``apache-airflow``, this provider, Python and any named
    package) against PEP 440 specifiers, required environment variables (names only), the connection
    (token, project, round trip, the server's supported client versions), the client's data
    directory (writable, free space) and clock skew against the server's ``Date``. The fingerprint is
    pushed to XCom under ``fingerprint`` even on failure, and is the task's return value on success.

    :param requirements: extra or overriding requirements: ``{"numpy": ">=1.26", "neptune": "==1.14.*"}``
        or ``["numpy>=1.26", "python>=3.11"]``; ``None`` as specifier only requires the package.
    :param required_env: names of environment variables that must be set (``NEPTUNE_API_TOKEN`` and
        ``NEPTUNE_PROJECT`` also count as set when the connection supplies them): a list, or a string
        rendered from a template (``"A, B"`` or a list literal). Values never reach logs or XCom.
    :param check_connection: also check the connection, server client range, round trip and clock.
    :param min_free_disk_mb: free space the data directory must have (the async queue lives there).
    :param run_id: when set, the fingerprint is also logged to this run under
        ``<run_namespace>/<hostname>/<worker>``. Empty string means no run.
    :param max_clock_skew_seconds: allowed local-vs-server clock offset; ``None`` skips the check.
    :param max_round_trip_seconds: optional bound on one round trip to the server.
    :param data_directory: overrides the client's data directory (``NEPTUNE_DATA_DIRECTORY`` or
        ``./.neptune``) for the disk check.
    :param include_default_requirements: check the provider's declared ``neptune``, ``apache-airflow``
        and Python ranges too.
    :param worker_label: how this worker is named in comparisons (default: the task's queue).
    :param run_namespace: namespace in the run for fingerprints.
    :param log_timeout: seconds to wait for the fingerprint to reach the run.
    :param neptune_conn_id: Airflow connection id.
    :param project: Neptune project (``workspace/project``), overriding the connection.
    """

    template_fields: Sequence[str] = ("requirements", "required_env", "run_id", "data_directory", "project")
    ui_color = "#e3f2fd"

    def __init__(
        self,
        *,
        requirements: Mapping[str, str | None] | Sequence[str] | str | None = None,
        required_env: Sequence[str] | str = (),
        check_connection: bool = True,
        min_free_disk_mb: float = 0.0,
        run_id: str | None = None,
        max_clock_skew_seconds: float | None = 30.0,
        max_round_trip_seconds: float | None = None,
        data_directory: str | None = None,
        include_default_requirements: bool = True,
        worker_label: str | None = None,
        run_namespace: str = "environment",
        log_timeout: float = 60.0,
        neptune_conn_id: str = "neptune_default",
        project: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.requirements = requirements
        self.required_env = required_env
        self.check_connection = check_connection
        self.min_free_disk_mb = min_free_disk_mb
        self.run_id = run_id
        self.max_clock_skew_seconds = max_clock_skew_seconds
        self.max_round_trip_seconds = max_round_trip_seconds
        self.data_directory = data_directory
        self.include_default_requirements = include_default_requirements
        self.worker_label = worker_label
        self.run_namespace = run_namespace
        self.log_timeout = log_timeout
        self.neptune_conn_id = neptune_conn_id
        self.project = project
        # Fail at parse time on a malformed literal requirement; templated ones are checked at run time.
        if requirements and "{{" not in str(requirements) and not plainly_valid_requirements(requirements):
            from airflow_provider_neptune.core.environment_checks import normalize_requirements

            normalize_requirements(requirements)

    @cached_property
    def hook(self) -> NeptuneHook:
        """The Neptune hook for this task's connection (created on first use, on the worker)."""
        from airflow_provider_neptune.hooks.neptune import NeptuneHook

        return NeptuneHook(self.neptune_conn_id, project=self.project or None)

    def execute(self, context: Context) -> dict[str, Any]:
        """Run the checks, push the fingerprint, log it to the run if asked, fail on any problem."""
        ti = context["ti"]
        hostname = getattr(ti, "hostname", None) or socket.getfqdn()
        worker = self.worker_label or self.queue
        report = collect_environment(
            requirements=self.requirements,
            include_default_requirements=self.include_default_requirements,
            required_env=variable_names(self.required_env),
            hook=self.hook,
            check_connection=self.check_connection,
            min_free_disk_mb=float(self.min_free_disk_mb or 0.0),
            max_clock_skew_seconds=self.max_clock_skew_seconds,
            max_round_trip_seconds=self.max_round_trip_seconds,
            data_directory=self.data_directory or None,
            hostname=hostname,
            worker=worker,
            queue=self.queue,
            pool=self.pool,
        )
        run_id = (self.run_id or "").strip()
        if run_id and run_id != "None":
            report.results.append(self._log_to_run(run_id, report.fingerprint))
            report.fingerprint["failed"] = [r.message for r in report.failures]
            report.fingerprint["checks"] = [r.as_dict() for r in report.results]
        for result in report.results:
            self.log.log(
                logging.INFO if result.ok else logging.ERROR,
                "%s %s",
                "PASS" if result.ok else "FAIL",
                result.message,
            )
        self.log.info(
            "Environment fingerprint of %s: %s",
            worker,
            json.dumps(report.fingerprint, sort_keys=True, default=str),
        )
        ti.xcom_push(key=FINGERPRINT_XCOM_KEY, value=report.fingerprint)
        error = report.error(f"{worker} ({hostname})")
        if error is not None:
            raise error
        return report.fingerprint

    def _log_to_run(self, run_id: str, fingerprint: Mapping[str, Any]) -> CheckResult:
        """Store the fingerprint in the run and confirm delivery; a failure becomes a failed check."""
        from airflow_provider_neptune.core.environment_checks import CheckResult

        path = run_path(self.run_namespace, fingerprint["hostname"], str(fingerprint["worker"]))
        try:
            with self.hook.get_run(run_id=run_id) as run:
                run[path] = run_fields(fingerprint)
                self.hook.wait_for_delivery(run, timeout=self.log_timeout)
        except Exception as err:
            secrets = secrets_of(os.environ.get(TOKEN_VARIABLE))
            try:
                secrets += secrets_of(self.hook.settings.api_token)
            except Exception:
                log.debug("settings unavailable while scrubbing a run-logging error")
            return CheckResult(
                "run_log",
                False,
                scrub(f"could not log the fingerprint to run {run_id} at {path}: {err}", secrets),
                retryable=True,
            )
        return CheckResult("run_log", True, f"fingerprint logged to run {run_id} at {path}")
