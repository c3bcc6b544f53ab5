"""Old import path of :class:`~airflow_provider_neptune.exceptions.MetricInputError`, kept for DAGs.

The metric input loading itself lives in :mod:`airflow_provider_neptune.core.metric_inputs`.
"""

from __future__ import annotations

from airflow_provider_neptune.exceptions import MetricFileError, MetricInputError

__all__ = ["MetricFileError", "MetricInputError"]
