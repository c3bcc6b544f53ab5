"""Neptune sensors: wait for a metric to meet a threshold, or for a run to exist / stop / get a field."""

from __future__ import annotations

from airflow_provider_neptune.sensors.neptune import NeptuneMetricSensor, NeptuneRunSensor

__all__ = ["NeptuneMetricSensor", "NeptuneRunSensor"]
