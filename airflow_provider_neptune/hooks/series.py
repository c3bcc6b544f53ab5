"""Float series read through a run handle's backend (client internals): paged points and last steps.

The ``neptune`` client has no public call for a page of a series or for every series' last step at
once; these functions use its backend directly. ``neptune`` is imported inside them only.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import msgspec

#: Points asked for per series read: the most getFloatSeriesValues serves in one answer (the emulator
#: caps ``limit`` at 10,000; the client itself asks for 1,000). A server answering fewer points than
#: asked is asked again for the rest, so a page always holds ``READ_PAGE`` points unless the series ends.
READ_PAGE = 10_000


class SeriesReader:
    """Points of one float series read through a run handle, ``READ_PAGE`` per request, pages cached.

    Series points are stored in step order, so a step range is found by a binary search over pages.
    ``requests`` counts the reads made, ``total`` is the series' point count at the last read.
    """

    def __init__(self, run: Any, path: str) -> None:
        self.run = run
        self.path = path
        self.total: int | None = None
        self.requests = 0
        self._pages: dict[int, list[tuple[float, float]]] = {}

    def read(self, offset: int, limit: int = READ_PAGE) -> list[tuple[float, float]]:
        """(step, value) points ``offset..offset+limit-1``; none when the series does not exist."""
        points: list[tuple[float, float]] = []
        while True:
            page = self._fetch(offset + len(points), limit - len(points))
            points.extend(page)
            if not page or len(points) >= limit or offset + len(points) >= (self.total or 0):
                return points

    def _fetch(self, offset: int, limit: int) -> list[tuple[float, float]]:
        """One getFloatSeriesValues request (counted in ``requests``)."""
        self.requests += 1
        page = raw_page(self.run, self.path, offset, limit)
        if page is None:  # anything unexpected: the client's own call, with its errors and retries
            page = client_page(self.run, self.path, offset, limit)
        self.total = page[0]
        return page[1]

    def count(self) -> int:
        """How many points the series holds (one small read)."""
        self.read(0, 1)
        return self.total or 0

    def _page(self, number: int) -> list[tuple[float, float]]:
        if number not in self._pages:
            self._pages[number] = self.read(number * READ_PAGE)
        return self._pages[number]

    def between(self, low: float, high: float) -> list[tuple[float, float]]:
        """Points with ``low <= step <= high``: the first page, then the last, then a binary search."""
        if not self._page(0):
            return []
        pages = math.ceil((self.total or 0) / READ_PAGE)

        def reaches(number: int) -> bool:  # the page holds a step >= low (an empty page: past the end)
            page = self._page(number)
            return not page or page[-1][0] >= low

        first = 0
        if not reaches(0):
            tail = self._page(pages - 1) if pages > 1 else []
            if not tail or tail[-1][0] < low:
                return []
            lo, hi = 1, pages - 1
            if tail[0][0] <= low:
                lo = hi  # a resume after a kill overlaps the tail: found without a search
            while lo < hi:
                mid = (lo + hi) // 2
                if reaches(mid):
                    hi = mid
                else:
                    lo = mid + 1
            first = lo
        found: list[tuple[float, float]] = []
        for number in range(first, max(pages, first + 1)):
            page = self._page(number)
            found.extend(point for point in page if low <= point[0] <= high)
            if not page or page[-1][0] >= high:
                break
        return found

    def last_step(self) -> float | None:
        """The series' last step, from the pages read so far or one more read."""
        total = self.total if self.total is not None else self.count()
        number = (total - 1) // READ_PAGE
        page = self._pages.get(number) if total else None
        if page and number * READ_PAGE + len(page) == total:
            return page[-1][0]
        tail = self.read(total - 1, 1) if total else []
        return tail[-1][0] if tail else None

    def after(self, offset: int) -> list[tuple[float, float]]:
        """Every point from index ``offset`` to the end."""
        found: list[tuple[float, float]] = []
        while True:
            page = self.read(offset)
            found.extend(page)
            offset += len(page)
            if not page or offset >= (self.total or 0):
                return found


Page = tuple[int, list[tuple[float, float]]]
"""(the series' point count, the (step, value) points asked for); (0, []) when the series does not exist."""


def client_page(run: Any, path: str, offset: int, limit: int) -> Page:
    """A page through the client's backend (its models, its exceptions, its retry loop)."""
    from neptune.exceptions import FetchAttributeNotFoundException
    from neptune.internal.container_type import ContainerType
    from neptune.internal.utils.paths import parse_path

    try:
        page = run._backend.get_float_series_values(
            run._id, ContainerType.RUN, parse_path(path), offset, limit
        )
    except FetchAttributeNotFoundException:
        return 0, []
    return int(page.totalItemCount), [(float(p.step), float(p.value)) for p in page.values]


class _Point(msgspec.Struct):
    """A point of a getFloatSeriesValues answer; other fields (timestampMillis) are skipped."""

    step: float
    value: float


class _FloatSeriesPage(msgspec.Struct):
    """A getFloatSeriesValues answer."""

    totalItemCount: int
    values: list[_Point]


#: Decodes a page straight into typed points: a quarter of the time of json.loads and a dict per point.
_PAGE_DECODER = msgspec.json.Decoder(_FloatSeriesPage)


def raw_page(run: Any, path: str, offset: int, limit: int) -> Page | None:
    """The same request through the client's authenticated session, its JSON decoded directly.

    The client's response models cost about as much as the server's work for a 10,000-point page;
    the read-back of every point sent reads many such pages. None for anything but a 200 with the
    expected fields or a 404 (then :func:`client_page` asks again and raises the client's errors).
    A value the server sends as null (not a finite float) fails the decoding too.
    """
    try:
        from neptune.internal.backends.hosted_client import DEFAULT_REQUEST_KWARGS

        client = run._backend.leaderboard_client
        http = client.swagger_spec.http_client
        options: Any = DEFAULT_REQUEST_KWARGS["_request_options"]
        request = http.authenticated_request(
            {
                "method": "GET",
                "url": client.swagger_spec.api_url.rstrip("/")
                + client.api.getFloatSeriesValues.operation.path_name,
                "params": {"experimentId": run._id, "attribute": path, "limit": limit, "offset": offset},
                "headers": {str(k): str(v) for k, v in (options.get("headers") or {}).items()},
            }
        )
        response = http.session.send(
            http.session.prepare_request(request), timeout=(options["connect_timeout"], options["timeout"])
        )
    except Exception:
        return None
    if response.status_code == 404:
        return 0, []
    if response.status_code != 200:
        return None
    try:
        answer = _PAGE_DECODER.decode(response.content)
    except msgspec.DecodeError:
        return None
    return answer.totalItemCount, [(point.step, point.value) for point in answer.values]


def all_points(run: Any, path: str) -> list[tuple[float, float]]:
    """Every (step, value) point of a float series; empty when it does not exist."""
    return SeriesReader(run, path).after(0)


def listed_series(answer: Any) -> dict[str, float | None] | None:
    """Float series -> last step (None when the server gave none) from a run's attribute list.

    ``answer`` is the decoded JSON of getExperimentAttributes; None when it is not such a list.
    """
    attributes = answer.get("attributes") if isinstance(answer, dict) else None
    if not isinstance(attributes, list):
        return None
    found: dict[str, float | None] = {}
    for attribute in attributes:
        if isinstance(attribute, dict) and attribute.get("type") == "floatSeries":
            properties = attribute.get("floatSeriesProperties")
            last_step = properties.get("lastStep") if isinstance(properties, dict) else None
            found[str(attribute.get("name"))] = float(last_step) if last_step is not None else None
    return found


def last_steps_on(
    run: Any, paths: Iterable[str], listed: dict[str, float | None] | None = None
) -> dict[str, float | None]:
    """Last step per float series, read from the server through a run handle (None: no points).

    One request for all series: the run's attribute list carries ``floatSeriesProperties.lastStep``
    (``listed``: that list already read, see :func:`listed_series`; then no request). A series
    without it there (an older server) is read point-wise: its count, then its last point.
    """
    from neptune.common.backends.utils import with_api_exceptions_handler
    from neptune.internal.backends.hosted_client import DEFAULT_REQUEST_KWARGS

    wanted = list(paths)
    result: dict[str, float | None] = {}
    if not wanted:
        return result

    @with_api_exceptions_handler
    def attributes() -> Any:
        api = run._backend.leaderboard_client.api
        return api.getExperimentAttributes(experimentId=run._id, **DEFAULT_REQUEST_KWARGS).response().result

    if listed is None:
        listed = {}
        for attribute in getattr(attributes(), "attributes", None) or []:
            if getattr(attribute, "type", None) == "floatSeries":
                properties = getattr(attribute, "floatSeriesProperties", None)
                last_step = getattr(properties, "lastStep", None) if properties is not None else None
                listed[attribute.name] = float(last_step) if last_step is not None else None
    for path in wanted:
        if path not in listed:
            result[path] = None
            continue
        last_step = listed[path]
        result[path] = last_step if last_step is not None else last_step_by_points(run, path)
    return result


def last_step_by_points(run: Any, path: str) -> float | None:
    """The last step of one series from its points (two small reads)."""
    reader = SeriesReader(run, path)
    total = reader.count()
    return reader.last_step() if total else None
