"""Load metric series from every input form NeptuneLogMetricsOperator accepts, and validate them.

Forms: a mapping ``{"train/loss": [0.9, 0.7]}`` (or ``{"train/loss": {"values": [...], "steps": [...],
"timestamps": [...]}}``), the same as JSON or Python-literal text (what a template renders to when
``render_template_as_native_obj`` is off), or a JSON / CSV / Parquet file. Tables are "long"
(columns ``path``, ``value`` and optional ``step``, ``timestamp``) or "wide" (optional ``step`` and
``timestamp`` columns plus one column per series; empty cells are absent points).
Validation happens before anything is sent: every bad point is reported with its series, index and
value, and for a file with its line (Parquet: row) and column. Inputs are MetricSources: a mapping or
JSON file is validated whole in memory; a CSV or Parquet file (metric_files) is validated in one
streaming pass and read again chunk by chunk while it is sent, so memory does not grow with its size.
"""

from __future__ import annotations

import ast
import json
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from airflow_provider_neptune.exceptions import MetricInputError
from airflow_provider_neptune.hooks.points import finite_floats, strictly_increasing
from airflow_provider_neptune.hooks.points import parse_number as _number  # the hook's rule, not a copy

MAX_REPORTED_PROBLEMS = 20
"""How many bad points an error message lists (the total count is always given)."""


@dataclass
class RawSeries:
    """One series as found in the input, before validation."""

    values: list[Any]
    steps: list[Any] | None = None
    timestamps: list[Any] | None = None


@dataclass
class MetricSeries:
    """One validated series: finite float values with strictly increasing steps."""

    path: str
    values: list[float]
    steps: list[float]
    timestamps: list[float] | None = None


@dataclass
class MetricBatch:
    """Every validated series, plus the points skipped as invalid (``skip_invalid=True``)."""

    series: dict[str, MetricSeries]
    invalid: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def points(self) -> int:
        """Number of valid points over all series."""
        return sum(len(series.values) for series in self.series.values())


def parse_structured(value: Any, what: str) -> Any:
    """Turn text a template rendered (JSON or a Python literal) back into data; pass data through."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if not text:
        raise MetricInputError(f"{what} rendered to an empty string")
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        snippet = text if len(text) <= 120 else text[:117] + "..."
        raise MetricInputError(
            f"{what} rendered to text that is neither JSON nor a Python literal: {snippet!r}"
        ) from None


def _as_list(value: Any, what: str) -> list[Any]:
    value = parse_structured(value, what)
    if hasattr(value, "tolist") and not isinstance(value, Sequence):  # numpy arrays, pandas series
        value = value.tolist()
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
        raise MetricInputError(f"{what} must be a list, got {type(value).__name__}: {value!r:.120}")
    return list(value)


def _per_series(value: Any, path: str, what: str) -> list[Any] | None:
    """Pick a series' steps or timestamps from one shared sequence or a per-series mapping."""
    if value is None:
        return None
    value = parse_structured(value, what)
    if isinstance(value, Mapping):
        return None if value.get(path) is None else _as_list(value[path], f"{what}[{path!r}]")
    return _as_list(value, what)


def _collect_one(path: Any, entry: Any, steps: Any, timestamps: Any) -> RawSeries:
    """One series of a metrics mapping, with its own or the shared steps and timestamps."""
    if not isinstance(path, str) or not path.strip() or path.startswith("/"):
        raise MetricInputError(f"series path {path!r} must be a non-empty string like 'train/loss'")
    if isinstance(entry, RawSeries):
        raw = RawSeries(list(entry.values), entry.steps, entry.timestamps)
    elif isinstance(entry, Mapping):
        if "values" not in entry:
            raise MetricInputError(f"series {path!r}: a mapping entry needs 'values' (and optional 'steps')")
        raw = RawSeries(
            _as_list(entry["values"], f"series {path!r} values"),
            None if entry.get("steps") is None else _as_list(entry["steps"], f"series {path!r} steps"),
            None
            if entry.get("timestamps") is None
            else _as_list(entry["timestamps"], f"series {path!r} timestamps"),
        )
    else:
        raw = RawSeries(_as_list(entry, f"series {path!r}"))
    if raw.steps is None:
        raw.steps = _per_series(steps, path, "steps")
    if raw.timestamps is None:
        raw.timestamps = _per_series(timestamps, path, "timestamps")
    for name, column in (("steps", raw.steps), ("timestamps", raw.timestamps)):
        if column is not None and len(column) != len(raw.values):
            raise MetricInputError(f"series {path!r}: {len(raw.values)} values but {len(column)} {name}")
    return raw


def collect_series(
    metrics: Any,
    steps: Any = None,
    timestamps: Any = None,
    *,
    where: Callable[[str], str] | None = None,
) -> dict[str, RawSeries]:
    """Normalise a metrics mapping (or loaded file) plus shared/per-series steps and timestamps.

    ``where(path)``, when given, prefixes an error about one series with its place in a file.
    """
    metrics = parse_structured(metrics, "metrics")
    if not isinstance(metrics, Mapping):
        raise MetricInputError(
            "metrics must be a mapping of series path to values, "
            f"got {type(metrics).__name__}: {metrics!r:.120}"
        )
    if not metrics:
        raise MetricInputError("metrics is empty: nothing to log")
    series: dict[str, RawSeries] = {}
    for path, entry in metrics.items():
        try:
            series[path] = _collect_one(path, entry, steps, timestamps)
        except MetricInputError as exc:
            if where is None or not isinstance(path, str):
                raise
            raise MetricInputError(f"{where(path)}: {exc}") from None
    with_timestamps = [path for path, raw in series.items() if raw.timestamps is not None]
    if with_timestamps and len(with_timestamps) != len(series):
        missing = sorted(set(series) - set(with_timestamps))
        raise MetricInputError(f"timestamps given for some series but not for {missing}")
    return series


def _timestamp(value: Any) -> float | None:
    if isinstance(value, datetime):
        return value.timestamp()
    number = _number(value)
    if number is None and isinstance(value, str):
        try:
            return datetime.fromisoformat(value.strip()).timestamp()
        except ValueError:
            return None
    return number


@dataclass
class Problem:
    """One invalid point: its series and index, where it came from, which cell, and why."""

    path: str
    index: int
    location: Any
    kind: str  # "value", "step" or "timestamp"
    text: str


Locator = Callable[[list[Problem]], list[str]]
"""Turns problems into place prefixes (file, line, column); one call for all, so JSON walks once."""


def render_problems(problems: list[Problem], locate: Locator | None) -> list[str]:
    """The problem lines of an error message, each prefixed with its place in the file if known."""
    places = locate(problems) if locate is not None and problems else [""] * len(problems)
    return [
        f"{place + ': ' if place else ''}series {p.path!r} index {p.index}: {p.text}"
        for place, p in zip(places, problems, strict=True)
    ]


class PointValidator:
    """Checks points one at a time, keeping each series' last step, so a file can be read in chunks.

    Rules: a finite numeric value, a finite step strictly above the series' previous valid step
    (the point's index in its series when it has none), a valid timestamp when there are
    timestamps. ``external_steps(path)`` / ``external_timestamps(path)`` give steps and timestamps
    from the operator's arguments for inputs that have none of their own.
    """

    def __init__(
        self,
        *,
        external_steps: Callable[[str], list[Any] | None] | None = None,
        external_timestamps: Callable[[str], list[Any] | None] | None = None,
    ) -> None:
        from airflow_provider_neptune.core.metric_files import INDEX_STEP, NO_TIMESTAMP, snippet

        self._snippet = snippet  # imported once here: an import per point cost a third of check()
        self._index_step = INDEX_STEP
        self._no_timestamp = NO_TIMESTAMP
        self._external_steps = external_steps
        self._external_timestamps = external_timestamps
        self._ext_cache: dict[tuple[str, str], list[Any] | None] = {}
        self.previous: dict[str, float] = {}
        self.next_index: dict[str, int] = {}
        self.with_timestamps: set[str] = set()
        self.valid: dict[str, int] = {}
        self.invalid = 0
        self.problems: list[Problem] = []

    def _external(self, what: str, path: str) -> list[Any] | None:
        key = (what, path)
        if key not in self._ext_cache:
            source = self._external_steps if what == "steps" else self._external_timestamps
            self._ext_cache[key] = source(path) if source is not None else None
        return self._ext_cache[key]

    def _bad(self, path: str, index: int, location: Any, kind: str, text: str) -> None:
        self.invalid += 1
        if len(self.problems) < MAX_REPORTED_PROBLEMS:
            self.problems.append(Problem(path, index, location, kind, text))

    def check(
        self, path: str, value: Any, step_raw: Any, stamp_raw: Any, location: Any = None
    ) -> tuple[float, float, float | None] | None:
        """The point as (value, step, timestamp) floats, or None (and a recorded problem) if invalid."""
        snippet = self._snippet
        index = self.next_index.get(path, 0)
        self.next_index[path] = index + 1
        if step_raw is self._index_step:
            given = self._external("steps", path)
            step_raw = index if given is None else (given[index] if index < len(given) else None)
        if stamp_raw is self._no_timestamp:
            given = self._external("timestamps", path)
            stamp_raw = (
                self._no_timestamp if given is None else (given[index] if index < len(given) else None)
            )
        if stamp_raw is not self._no_timestamp:
            self.with_timestamps.add(path)
        number = _number(value)
        if number is None:
            big = isinstance(value, int) and not isinstance(value, bool)
            reason = "is too large for a float" if big else "is not numeric"
            self._bad(path, index, location, "value", f"value {snippet(value)} {reason}")
            return None
        if not math.isfinite(number):
            self._bad(path, index, location, "value", f"value {snippet(value)} is not finite")
            return None
        step = _number(step_raw)
        if step is None or not math.isfinite(step):
            self._bad(
                path,
                index,
                location,
                "step",
                f"step {snippet(step_raw)} is not a finite number (value {snippet(value)})",
            )
            return None
        previous = self.previous.get(path)
        if previous is not None and step <= previous:
            self._bad(
                path,
                index,
                location,
                "step",
                f"step {snippet(step_raw)} is not greater than the previous step {previous:g} "
                f"(value {snippet(value)}); steps must strictly increase",
            )
            return None
        stamp: float | None = None
        if stamp_raw is not self._no_timestamp:
            stamp = _timestamp(stamp_raw)
            if stamp is None or not math.isfinite(stamp):
                self._bad(
                    path,
                    index,
                    location,
                    "timestamp",
                    f"timestamp {snippet(stamp_raw)} is not valid (value {snippet(value)})",
                )
                return None
        self.previous[path] = step
        self.valid[path] = self.valid.get(path, 0) + 1
        return number, step, stamp

    def finish(self, source: str) -> None:
        """Check what only the whole input tells: given steps/timestamps match each series' length."""
        for (what, path), given in self._ext_cache.items():
            count = self.next_index.get(path, 0)
            if given is not None and len(given) != count:
                raise MetricInputError(f"{source}: series {path!r}: {count} values but {len(given)} {what}")
        if self.with_timestamps and len(self.with_timestamps) != len(self.next_index):
            missing = sorted(set(self.next_index) - self.with_timestamps)
            raise MetricInputError(f"{source}: timestamps given for some series but not for {missing}")

    def error(self, where: str, locate: Locator | None) -> MetricInputError:
        """The error listing the (first) invalid points."""
        lines = render_problems(self.problems, locate)
        shown = "\n  ".join(lines)
        more = self.invalid - len(lines)
        tail = f"\n  ... and {more} more" if more > 0 else ""
        return MetricInputError(
            f"{self.invalid} invalid metric point(s){where}; nothing was sent "
            f"(set skip_invalid=True to skip them):\n  {shown}{tail}"
        )


class _ChunkBuilder:
    """Collects validated points per series until a chunk is full."""

    def __init__(self) -> None:
        self.series: dict[str, MetricSeries] = {}
        self.points = 0

    def add(self, path: str, point: tuple[float, float, float | None]) -> None:
        value, step, stamp = point
        entry = self.series.get(path)
        if entry is None:
            entry = self.series[path] = MetricSeries(path, [], [], [] if stamp is not None else None)
        entry.values.append(value)
        entry.steps.append(step)
        if entry.timestamps is not None and stamp is not None:
            entry.timestamps.append(stamp)
        self.points += 1

    def take(self) -> MetricBatch:
        batch = MetricBatch(series=self.series)
        self.series, self.points = {}, 0
        return batch


def _plain_series(raw: RawSeries) -> tuple[list[float], list[float]] | None:
    """(values, steps) of a series that passes every rule of :class:`PointValidator`, checked in
    whole-list passes; None when it has timestamps or anything but finite plain numbers in strictly
    increasing steps (then the point-by-point check names each bad point)."""
    if raw.timestamps is not None:
        return None
    values = finite_floats(raw.values)
    if values is None:
        return None
    if raw.steps is None:
        return values, [float(index) for index in range(len(values))]
    steps = finite_floats(raw.steps)
    if steps is None or len(steps) != len(values) or not strictly_increasing(steps):
        return None
    return values, steps


def validate_series(
    series: Mapping[str, RawSeries],
    *,
    skip_invalid: bool = False,
    locate: Locator | None = None,
    where: str = "",
) -> MetricBatch:
    """Check every point (finite numeric value, finite strictly increasing step, valid timestamp).

    Raises :class:`MetricInputError` naming each bad point, unless ``skip_invalid``: then bad points
    are dropped and counted. Without steps, a series' point at index i gets step i (a skipped point
    does not shift the steps after it, so a retry maps every value to the same step).
    """
    from airflow_provider_neptune.core.metric_files import INDEX_STEP, NO_TIMESTAMP

    validator = PointValidator()
    result: dict[str, MetricSeries] = {}
    for path, raw in series.items():
        plain = _plain_series(raw)
        if plain is not None:
            result[path] = MetricSeries(path, *plain)
            continue
        clean = MetricSeries(path, [], [], [] if raw.timestamps is not None else None)
        for index, value in enumerate(raw.values):
            step = raw.steps[index] if raw.steps is not None else INDEX_STEP
            stamp = raw.timestamps[index] if raw.timestamps is not None else NO_TIMESTAMP
            point = validator.check(path, value, step, stamp)
            if point is None:
                continue
            clean.values.append(point[0])
            clean.steps.append(point[1])
            if clean.timestamps is not None and point[2] is not None:
                clean.timestamps.append(point[2])
        result[path] = clean
    if validator.invalid and not skip_invalid:
        raise validator.error(where, locate)
    return MetricBatch(
        series=result, invalid=validator.invalid, problems=render_problems(validator.problems, locate)
    )


@dataclass
class MetricScan:
    """What a whole input holds, found before anything is sent."""

    points: int
    invalid: int
    problems: list[str]
    series: int


class MetricSource:
    """Validated metric points of one input, delivered in chunks of bounded size."""

    description = "metrics"
    from_file = False

    def scan(self) -> MetricScan:
        """Validate the whole input; raises MetricInputError (unless skip_invalid) before any chunk."""
        raise NotImplementedError

    def chunks(self, chunk_points: int) -> Iterator[MetricBatch]:
        """The valid points in chunks of about ``chunk_points`` points (series order kept)."""
        raise NotImplementedError


class BatchSource(MetricSource):
    """An input held in memory whole: a mapping, rendered text, or a JSON file."""

    def __init__(self, batch: MetricBatch, description: str = "metrics", *, from_file: bool = False) -> None:
        self.batch = batch
        self.description = description
        self.from_file = from_file

    def scan(self) -> MetricScan:
        """The batch was validated when it was built."""
        return MetricScan(
            points=self.batch.points,
            invalid=self.batch.invalid,
            problems=list(self.batch.problems),
            series=sum(1 for s in self.batch.series.values() if s.values),
        )

    def chunks(self, chunk_points: int) -> Iterator[MetricBatch]:
        """Slices of the batch; a series longer than a chunk is split over several."""
        builder = _ChunkBuilder()
        for path, item in self.batch.series.items():
            start = 0
            while start < len(item.values):
                end = min(len(item.values), start + max(1, chunk_points - builder.points))
                builder.series[path] = MetricSeries(
                    path,
                    item.values[start:end],
                    item.steps[start:end],
                    item.timestamps[start:end] if item.timestamps is not None else None,
                )
                builder.points += end - start
                start = end
                if builder.points >= chunk_points:
                    yield builder.take()
        if builder.points:
            yield builder.take()


class TableSource(MetricSource):
    """A CSV or Parquet file, read twice as a stream: once to validate, once to send in chunks."""

    def __init__(self, table: Any, steps: Any, timestamps: Any, *, skip_invalid: bool) -> None:
        self.table = table
        self.description = str(table.path)
        self.from_file = True
        self.steps = steps
        self.timestamps = timestamps
        self.skip_invalid = skip_invalid

    def _validator(self) -> PointValidator:
        steps = parse_structured(self.steps, "steps") if self.steps is not None else None
        stamps = parse_structured(self.timestamps, "timestamps") if self.timestamps is not None else None
        return PointValidator(
            external_steps=(lambda path: _per_series(steps, path, "steps")) if steps is not None else None,
            external_timestamps=(lambda path: _per_series(stamps, path, "timestamps"))
            if stamps is not None
            else None,
        )

    def _locate(self, problems: list[Problem]) -> list[str]:
        return [self.table.locate(p.location, p.kind) for p in problems]

    def scan(self) -> MetricScan:
        """One pass over the file: structure errors raise at once, bad points are collected."""
        validator = self._validator()
        for path, value, step, stamp, location in self.table.points():
            validator.check(path, value, step, stamp, location)
        validator.finish(self.description)
        if validator.invalid and not self.skip_invalid:
            raise validator.error(f" in {self.description}", self._locate)
        return MetricScan(
            points=sum(validator.valid.values()),
            invalid=validator.invalid,
            problems=render_problems(validator.problems, self._locate),
            series=len(validator.valid),
        )

    def chunks(self, chunk_points: int) -> Iterator[MetricBatch]:
        """A second pass, validating again (the same rules give the same points) and chunking."""
        validator = self._validator()
        builder = _ChunkBuilder()
        for path, value, step, stamp, location in self.table.points():
            point = validator.check(path, value, step, stamp, location)
            if point is None:
                if not self.skip_invalid:
                    raise MetricInputError(
                        f"{self.description} changed while it was being logged: "
                        + render_problems(validator.problems, self._locate)[0]
                    )
                continue
            builder.add(path, point)
            if builder.points >= chunk_points:
                yield builder.take()
        if builder.points:
            yield builder.take()


def open_metric_source(
    metrics: Any = None,
    metrics_path: str | Path | None = None,
    steps: Any = None,
    timestamps: Any = None,
    *,
    skip_invalid: bool = False,
) -> MetricSource:
    """The input as a MetricSource: a mapping or JSON file validated now, CSV/Parquet streamed later."""
    from airflow_provider_neptune.core.metric_files import CsvFile, JsonFile, ParquetFile

    if (metrics is None) == (metrics_path is None or metrics_path == ""):
        raise MetricInputError("give exactly one of metrics or metrics_path")
    if metrics is not None:
        return BatchSource(
            validate_series(collect_series(metrics, steps, timestamps), skip_invalid=skip_invalid)
        )
    path = Path(str(metrics_path))
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return TableSource(CsvFile(path), steps, timestamps, skip_invalid=skip_invalid)
    if suffix in (".parquet", ".pq"):
        return TableSource(ParquetFile(path), steps, timestamps, skip_invalid=skip_invalid)
    if suffix != ".json":
        raise MetricInputError(f"{path}: unknown metrics file type {suffix!r} (use .json, .csv or .parquet)")
    document = JsonFile(path)
    data = document.load()

    def entry_place(series: str) -> str:
        return document.locate_all([(series, "", 0)]).get((series, "", 0), str(path))

    def locate(problems: list[Problem]) -> list[str]:
        fields = {"value": "values", "step": "steps", "timestamp": "timestamps"}
        wanted = [(p.path, fields[p.kind], p.index) for p in problems]
        wanted += [(p.path, "values", p.index) for p in problems]
        found = document.locate_all(wanted)
        return [
            found.get((p.path, fields[p.kind], p.index))
            or found.get((p.path, "values", p.index))
            or str(path)
            for p in problems
        ]

    try:
        series = collect_series(data, steps, timestamps, where=entry_place)
        del data
        batch = validate_series(series, skip_invalid=skip_invalid, locate=locate, where=f" in {path}")
    finally:
        document.release()
    return BatchSource(batch, description=str(path), from_file=True)


def load_metrics(
    metrics: Any = None,
    metrics_path: str | Path | None = None,
    steps: Any = None,
    timestamps: Any = None,
    *,
    skip_invalid: bool = False,
) -> MetricBatch:
    """Load from ``metrics`` (data or rendered text) or ``metrics_path`` (a file), validated, whole."""
    source = open_metric_source(metrics, metrics_path, steps, timestamps, skip_invalid=skip_invalid)
    scan = source.scan()
    merged: dict[str, MetricSeries] = {}
    for chunk in source.chunks(1_000_000):
        for path, item in chunk.series.items():
            entry = merged.setdefault(
                path, MetricSeries(path, [], [], [] if item.timestamps is not None else None)
            )
            entry.values += item.values
            entry.steps += item.steps
            if entry.timestamps is not None and item.timestamps is not None:
                entry.timestamps += item.timestamps
    if isinstance(source, BatchSource):
        merged = {path: merged.get(path, item) for path, item in source.batch.series.items()}
    return MetricBatch(series=merged, invalid=scan.invalid, problems=scan.problems)
