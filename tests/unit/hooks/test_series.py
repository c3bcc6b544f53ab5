"""The page search of the hook's series reader, against an in-memory series (the server is not the point)."""

from __future__ import annotations

import math
import random
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_provider_neptune.hooks.series import READ_PAGE, SeriesReader


class _Backend:
    """get_float_series_values over a list of (step, value), as the server pages them (by index)."""

    def __init__(self, points: list[tuple[float, float]], cap: int | None = None) -> None:
        self.points = points
        self.cap = cap  # a server that serves at most this many points per answer

    def get_float_series_values(self, _id: str, _type: Any, _path: Any, offset: int, limit: int) -> Any:
        page = self.points[offset : offset + min(limit, self.cap or limit)]
        return SimpleNamespace(
            totalItemCount=len(self.points),
            values=[SimpleNamespace(step=s, value=v, timestampMillis=0) for s, v in page],
        )


def _reader(points: list[tuple[float, float]], cap: int | None = None) -> SeriesReader:
    return SeriesReader(SimpleNamespace(_backend=_Backend(points, cap), _id="run"), "m")


@pytest.mark.parametrize("seed", range(40))
def test_between_returns_exactly_the_points_in_the_step_range_with_few_reads(seed: int) -> None:
    rng = random.Random(seed)
    size = rng.choice(
        [0, 1, READ_PAGE - 1, READ_PAGE, READ_PAGE + 1, READ_PAGE * 5 // 2, READ_PAGE * 7 + 321]
    )
    steps = sorted(rng.sample(range(size * 3 + 1), size))
    points = [(float(s), rng.random()) for s in steps]
    low = float(rng.randint(-5, size * 3 + 5))
    high = low + rng.choice([0, 1, 10, 1500, 10**6])
    reader = _reader(points)
    assert reader.between(low, high) == [p for p in points if low <= p[0] <= high]
    pages = max(1, math.ceil(size / READ_PAGE))
    inside = sum(1 for p in points if low <= p[0] <= high)
    # first and last page, a binary search over the rest, then the pages holding the range
    assert reader.requests <= 2 + math.ceil(math.log2(pages + 1)) + math.ceil(inside / READ_PAGE) + 1


def test_after_count_and_last_step() -> None:
    size = 2 * READ_PAGE + 345
    points = [(float(s), float(s) / 2) for s in range(size)]
    reader = _reader(points)
    assert reader.after(READ_PAGE) == points[READ_PAGE:]
    assert reader.requests == 2
    assert reader.count() == size
    assert reader.last_step() == float(size - 1)
    assert _reader([]).last_step() is None
    assert _reader([]).after(0) == []


@pytest.mark.parametrize("seed", range(10))
def test_a_server_serving_smaller_pages_than_asked_loses_no_points(seed: int) -> None:
    """A page is filled with further reads when the server answers fewer points than asked for."""
    rng = random.Random(seed)
    size = rng.choice([READ_PAGE + 7, 3 * READ_PAGE + 1])
    points = [(float(s * 2), rng.random()) for s in range(size)]
    low = float(rng.randint(0, size * 2))
    high = low + rng.choice([0, 5, READ_PAGE, 10**6])
    assert _reader(points, cap=999).between(low, high) == [p for p in points if low <= p[0] <= high]
    assert _reader(points, cap=999).after(5) == points[5:]
    assert _reader(points, cap=999).last_step() == points[-1][0]
