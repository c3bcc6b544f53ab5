"""Progress lines in the task log: one at each tenth of the points logged, never more."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

_PROGRESS_STEPS = 10


def progress_logger(log: logging.Logger | Any, total: int, label: str) -> Callable[[int, int], None]:
    """Return a callback ``(done, total)`` that logs at each tenth of the way (once per tenth)."""
    logged = {"tenth": 0}

    def report(done: int, total_points: int = total) -> None:
        if total_points <= 0:
            return
        tenth = min(_PROGRESS_STEPS, done * _PROGRESS_STEPS // total_points)
        if tenth > logged["tenth"]:
            logged["tenth"] = tenth
            log.info("%s: %d/%d points (%d%%)", label, done, total_points, 100 * done // total_points)

    return report


def offset_progress(
    report: Callable[[int, int], None], before: int, total: int
) -> Callable[[int, int], None]:
    """A hook progress callback for one chunk that reports against the whole input's total."""

    def progress(done: int, _chunk_total: int) -> None:
        report(before + done, total)

    return progress
