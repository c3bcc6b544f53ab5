"""Neptune operators, imported lazily: importing one operator loads only its own module."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_neptune.operators.artifacts import (
        NeptuneArtifactRetentionOperator,
        NeptuneUploadArtifactOperator,
    )
    from airflow_provider_neptune.operators.base import NeptuneBaseOperator
    from airflow_provider_neptune.operators.environment import NeptuneValidateEnvironmentOperator
    from airflow_provider_neptune.operators.fingerprints import NeptuneCompareEnvironmentsOperator
    from airflow_provider_neptune.operators.metrics import NeptuneLogMetricsOperator
    from airflow_provider_neptune.operators.run import NeptuneCreateRunOperator, NeptuneStopRunOperator
    from airflow_provider_neptune.operators.sync import NeptuneSyncOperator

_MODULES: dict[str, str] = {
    "NeptuneBaseOperator": "base",
    "NeptuneCreateRunOperator": "run",
    "NeptuneStopRunOperator": "run",
    "NeptuneLogMetricsOperator": "metrics",
    "NeptuneUploadArtifactOperator": "artifacts",
    "NeptuneArtifactRetentionOperator": "artifacts",
    "NeptuneValidateEnvironmentOperator": "environment",
    "NeptuneCompareEnvironmentsOperator": "fingerprints",
    "NeptuneSyncOperator": "sync",
}

__all__ = [
    "NeptuneArtifactRetentionOperator",
    "NeptuneBaseOperator",
    "NeptuneCompareEnvironmentsOperator",
    "NeptuneCreateRunOperator",
    "NeptuneLogMetricsOperator",
    "NeptuneStopRunOperator",
    "NeptuneSyncOperator",
    "NeptuneUploadArtifactOperator",
    "NeptuneValidateEnvironmentOperator",
]


def __getattr__(name: str) -> Any:
    """Import the module that defines operator ``name`` on first access."""
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """List the operators alongside the module's own names."""
    return sorted(set(globals()) | set(__all__))
