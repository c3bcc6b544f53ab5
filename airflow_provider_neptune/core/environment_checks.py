"""Pure checks behind NeptuneValidateEnvironmentOperator: versions, variables, disk, clock, server range.

Each check returns :class:`CheckResult` objects instead of raising, so the operator can report every
failure of a worker at once. Nothing here talks to Neptune or reads a variable's value.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

PYTHON = "python"
"""Pseudo package name under which the interpreter's version is checked and reported."""

PROVIDER_DISTRIBUTION = "airflow-provider-neptune"
NEPTUNE_DISTRIBUTION = "neptune"
AIRFLOW_DISTRIBUTION = "apache-airflow"
LEGACY_CLIENT_DISTRIBUTION = "neptune-client"

MB = 1024 * 1024
_PYTHON_REQUIREMENT = re.compile(r"^python\s*([<>=!~].*)?$", re.IGNORECASE)


@dataclass(frozen=True)
class CheckResult:
    """Outcome of one check: a stable name (e.g. ``package:neptune``), pass/fail and a readable message."""

    name: str
    ok: bool
    message: str
    retryable: bool = False
    """True when a later retry could pass (network, clock); False for versions, variables, disk."""

    def as_dict(self) -> dict[str, object]:
        """JSON-friendly form for XCom."""
        return {"name": self.name, "ok": self.ok, "message": self.message}


# --------------------------------------------------------------------------------------------------
# Package versions


def installed_version(name: str) -> str | None:
    """Installed version of a distribution (``python`` means the interpreter), or None if absent."""
    if name == PYTHON:
        return platform.python_version()
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _as_specifier(name: str, spec: str) -> str:
    """Validate a specifier string; a bare version such as ``1.14.0`` means ``==1.14.0``."""
    spec = spec.strip()
    if spec and spec[0].isdigit():
        spec = f"=={spec}"
    try:
        SpecifierSet(spec)
    except InvalidSpecifier as err:
        raise ValueError(f"requirement for {name!r}: {spec!r} is not a PEP 440 specifier") from err
    return spec


def normalize_requirements(
    requirements: Mapping[str, str | None] | Iterable[str] | str | None,
) -> dict[str, str]:
    """Turn user requirements into ``{distribution: specifier}``.

    Accepts a mapping (``{"neptune": ">=1.14,<2", "numpy": None}``), requirement strings
    (``["neptune>=1.14", "python>=3.11"]``) or one such string; ``None``/empty specifier means
    "record the version, require it to be installed". Invalid input raises ValueError naming it.
    """
    if requirements is None:
        return {}
    if isinstance(requirements, str):
        requirements = [part for part in requirements.replace(";", "\n").splitlines() if part.strip()]
    result: dict[str, str] = {}
    if isinstance(requirements, Mapping):
        for raw_name, spec in requirements.items():
            name = _canonical(str(raw_name))
            result[name] = _as_specifier(name, "" if spec is None else str(spec))
        return result
    for line in requirements:
        text = str(line).strip()
        python_req = _PYTHON_REQUIREMENT.match(text)
        if python_req:
            result[PYTHON] = _as_specifier(PYTHON, python_req.group(1) or "")
            continue
        try:
            req = Requirement(text)
        except InvalidRequirement as err:
            raise ValueError(f"requirement {text!r} is not a PEP 508 requirement: {err}") from err
        result[_canonical(req.name)] = str(req.specifier)
    return result


def _canonical(name: str) -> str:
    return PYTHON if name.strip().lower() == PYTHON else str(canonicalize_name(name.strip()))


def default_requirements() -> dict[str, str]:
    """What this provider itself declares: its ``neptune`` and ``apache-airflow`` ranges and Python.

    The provider's own version is recorded without a constraint. Read from the installed
    distribution's metadata, so the check matches what pip resolved against.
    """
    result: dict[str, str] = {NEPTUNE_DISTRIBUTION: "", AIRFLOW_DISTRIBUTION: "", PYTHON: ""}
    try:
        dist = importlib.metadata.distribution(PROVIDER_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return result
    result[PROVIDER_DISTRIBUTION] = ""
    for req in _runtime_requirements(dist):
        name = _canonical(req.name)
        if name in (NEPTUNE_DISTRIBUTION, AIRFLOW_DISTRIBUTION):
            result[name] = str(req.specifier)
    result[PYTHON] = dist.metadata["Requires-Python"] or ""
    return result


def provider_dependencies() -> list[str]:
    """Canonical names of the provider's runtime dependencies (recorded in fingerprints)."""
    try:
        dist = importlib.metadata.distribution(PROVIDER_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return []
    return sorted({_canonical(req.name) for req in _runtime_requirements(dist)})


def _runtime_requirements(dist: importlib.metadata.Distribution) -> list[Requirement]:
    env = {key: str(value) for key, value in default_environment().items()}
    env["extra"] = ""
    reqs = []
    for line in dist.requires or []:
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate(env):
            reqs.append(req)
    return reqs


def check_requirements(
    requirements: Mapping[str, str], versions: Mapping[str, str | None]
) -> list[CheckResult]:
    """Check each ``{name: specifier}`` against ``versions`` (``{name: installed or None}``).

    Pre-release and post-release installs are judged by their number (``1.14.0.post2`` satisfies
    ``>=1.14``; ``3.4.0rc1`` satisfies ``>=3``): the question is whether what is installed is in
    range, not whether pip would pick it.
    """
    results = []
    for name, spec in requirements.items():
        check = f"package:{name}"
        installed = versions.get(name)
        shown = f"{spec!r}" if spec else "any version"
        label = "Python" if name == PYTHON else f"package {name!r}"
        if installed is None:
            results.append(CheckResult(check, False, f"{label} is not installed (required: {shown})"))
            continue
        if not spec:
            results.append(CheckResult(check, True, f"{label} {installed} is installed"))
            continue
        try:
            parsed = Version(installed)
        except InvalidVersion:
            results.append(
                CheckResult(
                    check,
                    False,
                    f"{label} has version {installed!r}, which is not PEP 440, "
                    f"so it cannot be checked against required {shown}",
                )
            )
            continue
        if SpecifierSet(spec).contains(parsed, prereleases=True):
            results.append(CheckResult(check, True, f"{label} {installed} satisfies {shown}"))
        else:
            results.append(
                CheckResult(
                    check, False, f"{label}: installed version {installed} does not satisfy required {shown}"
                )
            )
    return results


def check_client_conflict(versions: Mapping[str, str | None]) -> list[CheckResult]:
    """``neptune`` next to the legacy ``neptune-client`` distribution makes ``import neptune`` fail."""
    neptune, legacy = versions.get(NEPTUNE_DISTRIBUTION), versions.get(LEGACY_CLIENT_DISTRIBUTION)
    if neptune is not None and legacy is not None:
        return [
            CheckResult(
                "package:neptune-client",
                False,
                f"both 'neptune' {neptune} and the legacy 'neptune-client' {legacy} are installed; "
                "the neptune client refuses to start: uninstall both, then install only 'neptune'",
            )
        ]
    return []


def check_server_client_range(
    installed: str | None,
    min_compatible: str | None,
    max_compatible: str | None,
    min_recommended: str | None = None,
) -> CheckResult:
    """Would the server accept this ``neptune`` version? Mirrors the client's own start-up check.

    Like the client, the upper bound is compared with the installed version's patch set to 0
    (``1.14.3`` passes ``max 1.14.0``); below ``min_recommended`` passes with a note.
    """
    name = "server:client_version"
    bounds = ", ".join(
        f"{label} {value}"
        for label, value in (
            ("min compatible", min_compatible),
            ("max compatible", max_compatible),
            ("min recommended", min_recommended),
        )
        if value
    )
    if not bounds:
        return CheckResult(name, True, "server reports no supported client versions")
    if installed is None:
        return CheckResult(name, False, f"package 'neptune' is not installed (server supports {bounds})")
    try:
        version = Version(installed)
        patch0 = Version(f"{version.major}.{version.minor}.0")
        low = Version(min_compatible) if min_compatible else None
        high = Version(max_compatible) if max_compatible else None
        recommended = Version(min_recommended) if min_recommended else None
    except InvalidVersion as err:
        return CheckResult(name, False, f"cannot compare neptune {installed} with server's {bounds}: {err}")
    if low is not None and version < low:
        return CheckResult(
            name,
            False,
            f"package 'neptune': installed version {installed} is older than the server's {bounds}",
        )
    if high is not None and patch0 > high:
        return CheckResult(
            name,
            False,
            f"package 'neptune': installed version {installed} is newer than the server's {bounds}",
        )
    if recommended is not None and version < recommended:
        return CheckResult(
            name, True, f"neptune {installed} is accepted but deprecated by the server ({bounds})"
        )
    return CheckResult(name, True, f"neptune {installed} is accepted by the server ({bounds})")


# --------------------------------------------------------------------------------------------------
# Environment variables (names only: values are never read into messages)


def check_env(
    required: Iterable[str], environ: Mapping[str, str], provided_by_connection: Iterable[str] = ()
) -> list[CheckResult]:
    """Each required variable must be set and non-empty, or be supplied by the Airflow connection.

    ``provided_by_connection`` names variables whose value the connection already carries (e.g.
    ``NEPTUNE_API_TOKEN`` when the connection has a password). Messages carry names, never values.
    """
    from_conn = set(provided_by_connection)
    results = []
    for name in required:
        check = f"env:{name}"
        if name in environ and environ[name] != "":
            results.append(CheckResult(check, True, f"environment variable {name} is set"))
        elif name in from_conn:
            results.append(
                CheckResult(check, True, f"environment variable {name} is provided by the connection")
            )
        elif name in environ:
            results.append(CheckResult(check, False, f"environment variable {name} is set but empty"))
        else:
            results.append(CheckResult(check, False, f"required environment variable {name} is not set"))
    return results


def present_env_names(names: Iterable[str], environ: Mapping[str, str]) -> list[str]:
    """Sorted names among ``names`` that are set to a non-empty value (values are not returned)."""
    return sorted({name for name in names if environ.get(name)})


# --------------------------------------------------------------------------------------------------
# Data directory


def neptune_data_directory(environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> Path:
    """Where the client keeps its async/offline queues: ``NEPTUNE_DATA_DIRECTORY`` or ``./.neptune``.

    The client uses the value as given, relative to the working directory; so does this.
    """
    env = os.environ if environ is None else environ
    raw = env.get("NEPTUNE_DATA_DIRECTORY") or ".neptune"
    path = Path(raw).expanduser()
    return path if path.is_absolute() else (cwd or Path.cwd()) / path


def check_data_directory(path: Path, min_free_mb: float = 0.0) -> tuple[CheckResult, float | None]:
    """The directory (or the ancestor the client would create it under) accepts a file and has space.

    Writes and removes one small probe file, because permission bits do not tell the truth for root,
    ACLs or read-only mounts. Returns the result and the free space in MiB (None if unknown).
    """
    name = "data_directory"
    existing = path
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        return (
            CheckResult(
                name, False, f"data directory {path} cannot be created: {existing} is not a directory"
            ),
            None,
        )
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".neptune-probe-") as probe:
            probe.write(b"probe")
            probe.flush()
    except OSError as err:
        reason = err.strerror or type(err).__name__
        return CheckResult(name, False, f"data directory {path} is not writable ({existing}: {reason})"), None
    free_mb = shutil.disk_usage(existing).free / MB
    if free_mb < min_free_mb:
        return (
            CheckResult(
                name,
                False,
                f"data directory {path} has {free_mb:.1f} MiB free, "
                f"less than the required {min_free_mb:g} MiB",
            ),
            free_mb,
        )
    return CheckResult(name, True, f"data directory {path} is writable with {free_mb:.1f} MiB free"), free_mb


# --------------------------------------------------------------------------------------------------
# Clock and round trip


def skew_bounds(server_time: datetime, sent_at: float, received_at: float) -> tuple[float, float]:
    """Interval (seconds) that must contain local-minus-server clock offset, given one HTTP exchange.

    The server stamped its ``Date`` (whole seconds, truncated) at some local instant between
    ``sent_at`` and ``received_at`` (local epoch seconds), so its true time then lay in
    ``[Date, Date + 1)``.
    """
    if server_time.tzinfo is None:
        server_time = server_time.replace(tzinfo=UTC)
    stamp = server_time.timestamp()
    return sent_at - (stamp + 1.0), received_at - stamp


def check_clock_skew(
    server_time: datetime | None, sent_at: float, received_at: float, max_skew_seconds: float
) -> tuple[CheckResult, float | None]:
    """Fail only when the offset is certainly beyond the bound (its smallest possible size exceeds it).

    Returns the result and the midpoint estimate of local-minus-server seconds (None if unknown).
    """
    name = "clock_skew"
    if server_time is None:
        return CheckResult(name, True, "server did not report its time; clock skew not checked"), None
    low, high = skew_bounds(server_time, sent_at, received_at)
    estimate = (low + high) / 2
    smallest = 0.0 if low <= 0.0 <= high else min(abs(low), abs(high))
    if smallest > max_skew_seconds:
        direction = "ahead of" if estimate > 0 else "behind"
        return (
            CheckResult(
                name,
                False,
                f"local clock is {abs(estimate):.1f} s {direction} the server (at least {smallest:.1f} s), "
                f"more than the allowed {max_skew_seconds:g} s",
                retryable=True,
            ),
            estimate,
        )
    margin = (high - low) / 2
    return (
        CheckResult(name, True, f"clock offset from the server is {estimate:+.1f} s (±{margin:.1f} s)"),
        estimate,
    )


def check_round_trip(round_trip_seconds: float | None, max_round_trip_seconds: float | None) -> CheckResult:
    """Optional latency bound on one round trip to the server's API."""
    name = "round_trip"
    if round_trip_seconds is None:
        return CheckResult(name, True, "round-trip time not measured")
    if max_round_trip_seconds is not None and round_trip_seconds > max_round_trip_seconds:
        return CheckResult(
            name,
            False,
            f"round trip to the server took {round_trip_seconds:.3f} s, "
            f"more than the allowed {max_round_trip_seconds:g} s",
            retryable=True,
        )
    return CheckResult(name, True, f"round trip to the server took {round_trip_seconds:.3f} s")
