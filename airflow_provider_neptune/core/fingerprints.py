"""Compare environment fingerprints of several workers: one readable line per difference.

The fingerprints come from :func:`airflow_provider_neptune.core.environment.collect_environment`;
NeptuneCompareEnvironmentsOperator is the Airflow wrapper.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from packaging.version import InvalidVersion, Version

_MISSING = "not installed"


def worker_name(key: str, fingerprint: Mapping[str, Any] | None) -> str:
    """How a worker is named in messages: its label (queue or pool) and hostname."""
    if not fingerprint:
        return key
    return f"{fingerprint.get('worker') or key} ({fingerprint.get('hostname') or 'unknown host'})"


def _grouped(values: Mapping[str, str]) -> str:
    """``"1.13.0 on a (h1); 1.14.0 on b (h2), c (h3)"``: workers grouped by value, oldest first."""
    by_value: dict[str, list[str]] = {}
    for worker, value in values.items():
        by_value.setdefault(value, []).append(worker)
    ordered = sorted(by_value.items(), key=lambda item: _version_key(item[0]))
    return "; ".join(f"{value} on {', '.join(sorted(workers))}" for value, workers in ordered)


def _version_key(value: str) -> tuple[int, Version, str]:
    """Sort versions by PEP 440 order (``1.9`` before ``1.13``), anything else after, by text."""
    try:
        return (0, Version(value), value)
    except InvalidVersion:
        return (1, Version("0"), value)


def compare_fingerprints(
    fingerprints: Mapping[str, Mapping[str, Any] | None],
    *,
    ignore_packages: Iterable[str] = (),
    compare_env: bool = True,
    compare_mode: bool = True,
) -> list[str]:
    """Differences between workers' fingerprints, one readable line each; empty when consistent.

    ``fingerprints`` maps a key (task id) to a fingerprint, or to None when that check did not
    report. Compared: every package version any worker recorded (absent counts as "not installed"),
    Python, client mode and project, and which environment variables are set (names only).
    """
    ignored = {name.lower() for name in ignore_packages}
    present = {worker_name(key, fp): fp for key, fp in fingerprints.items() if fp}
    problems = [
        f"no fingerprint from {key}: the check did not run or failed before reporting"
        for key, fp in fingerprints.items()
        if not fp
    ]
    if len(present) < 2:
        return problems

    packages = sorted({name for fp in present.values() for name in fp.get("versions", {})} - ignored)
    for package in packages:
        values = {w: str(fp.get("versions", {}).get(package) or _MISSING) for w, fp in present.items()}
        if len(set(values.values())) > 1:
            problems.append(f"package {package!r} differs between workers: {_grouped(values)}")

    scalar_fields = [("project", "Neptune project")]
    if compare_mode:
        scalar_fields.insert(0, ("mode", "client mode"))
    for key, label in scalar_fields:
        values = {w: str(fp.get(key)) for w, fp in present.items()}
        if len(set(values.values())) > 1:
            problems.append(f"{label} differs between workers: {_grouped(values)}")

    if compare_env:
        names = sorted({name for fp in present.values() for name in fp.get("env_present", [])})
        for name in names:
            missing = sorted(w for w, fp in present.items() if name not in fp.get("env_present", []))
            if missing:
                having = sorted(set(present) - set(missing))
                problems.append(
                    f"environment variable {name} is set on {', '.join(having)} "
                    f"but not on {', '.join(missing)}"
                )
    return problems
