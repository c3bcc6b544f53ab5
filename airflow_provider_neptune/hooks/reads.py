"""Reads of a Neptune hook: a float series' points, a field's current value, series' last steps.

Each opens (or reuses) a read-only pooled handle; the series reads go through client internals
(:mod:`.series`) because the client has no public paged read.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from airflow_provider_neptune.hooks import delivery
from airflow_provider_neptune.hooks.runs import RunHandles
from airflow_provider_neptune.hooks.series import all_points


class SeriesReads(RunHandles):
    """Series points, field values and last steps of a run, read through a read-only handle."""

    def fetch_series(self, run_id: str, path: str) -> list[tuple[float, float]]:
        """All (step, value) points of a float series; empty when it does not exist."""
        with self.get_run(run_id, mode="read-only") as run, self._translate_errors("Reading a series"):
            return all_points(run, path)

    def fetch_field(self, run_id: str, path: str) -> Any:
        """Current value of a field (last value for a series, dict for a namespace); None when missing.

        A pooled handle's field list is refreshed first (one request), unless this call opened it.
        """
        started = time.monotonic()
        with self.get_run(run_id, mode="read-only") as run, self._translate_errors("Reading a field"):
            if delivery.tracker_of(run).opened_at < started:
                run.sync(wait=False)
            if not run.exists(path):
                return None
            handler = run[path]
            attribute = run.get_attribute(path)
            target = attribute if attribute is not None else handler
            if hasattr(target, "fetch"):
                return target.fetch()
            if hasattr(target, "fetch_last"):
                return target.fetch_last()
            return None

    def last_steps(self, run_id: str, paths: Iterable[str]) -> dict[str, float | None]:
        """The server's last step of each float series (None when the series has no points)."""
        with self.get_run(run_id, mode="read-only") as run:
            return self._last_steps_on(run, list(paths))
