"""Load metric series from every input form NeptuneLogMetricsOperator accepts, and validate them.

Forms: a mapping ``{"train/loss": [0.9, 0.7]}`` (or ``{"train/loss": {"values": [...], "steps": [...],
"timestamps": [...]}}``), the same as JSON or Python-literal text (what a template renders to when
``render_template_as_native_obj`` is off), or a JSON / CSV / Parquet file. Tables are "long"
(columns ``path``, ``value`` and optional ``step``, ``timestamp``) or "wide" (optional ``step`` and
``timestamp`` columns plus one column per series; empty cells are absent points).
Validation happens before anything is sent: every bad point is reported with its series, index and value.
"""

from __future__ import annotations

import ast
import csv
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

MAX_REPORTED_PROBLEMS = 20
"""How many bad points an error message lists (the total count is always given)."""

_LONG_PATH_COLUMNS = ("path", "series")
_STEP_COLUMN = "step"
_TIMESTAMP_COLUMN = "timestamp"


class MetricInputError(ValueError):
    """The metrics input cannot be logged as given; the message says where and why."""


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


def _blank(cell: Any) -> bool:
    return cell is None or (isinstance(cell, str) and not cell.strip())


def table_to_series(columns: Mapping[str, Sequence[Any]], source: str) -> dict[str, RawSeries]:
    """Turn a table (column name -> cells) in long or wide layout into raw series."""
    names = list(columns)
    path_column = next((name for name in _LONG_PATH_COLUMNS if name in columns), None)
    has_steps = _STEP_COLUMN in columns
    has_timestamps = _TIMESTAMP_COLUMN in columns
    series: dict[str, RawSeries] = {}
    if path_column is not None and "value" in columns:
        paths, values = columns[path_column], columns["value"]
        for row, path in enumerate(paths):
            if _blank(path):
                raise MetricInputError(f"{source}: row {row} has an empty {path_column!r}")
            entry = series.setdefault(
                str(path), RawSeries([], [] if has_steps else None, [] if has_timestamps else None)
            )
            entry.values.append(values[row])
            if entry.steps is not None:
                entry.steps.append(columns[_STEP_COLUMN][row])
            if entry.timestamps is not None:
                entry.timestamps.append(columns[_TIMESTAMP_COLUMN][row])
        return series
    for name in names:
        if name in (_STEP_COLUMN, _TIMESTAMP_COLUMN):
            continue
        entry = RawSeries([], [] if has_steps else None, [] if has_timestamps else None)
        for row, cell in enumerate(columns[name]):
            if _blank(cell):
                continue
            entry.values.append(cell)
            if entry.steps is not None:
                entry.steps.append(columns[_STEP_COLUMN][row])
            if entry.timestamps is not None:
                entry.timestamps.append(columns[_TIMESTAMP_COLUMN][row])
        series[name] = entry
    if not series:
        raise MetricInputError(f"{source}: no metric columns (columns: {names})")
    return series


def _read_csv(path: Path) -> dict[str, RawSeries]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames:
            raise MetricInputError(f"{path}: empty CSV file (no header row)")
        columns: dict[str, list[Any]] = {name: [] for name in reader.fieldnames}
        for row in reader:
            for name in reader.fieldnames:
                columns[name].append(row.get(name))
    return table_to_series(columns, str(path))


def _read_parquet(path: Path) -> dict[str, RawSeries]:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise MetricInputError(
            f"{path}: reading Parquet needs pyarrow (pip install 'airflow-provider-neptune[parquet]')"
        ) from exc
    table = pq.read_table(path)
    return table_to_series(table.to_pydict(), str(path))


def load_metrics_file(path: str | Path) -> Any:
    """Read a metrics file; the format follows the suffix (.json, .csv, .parquet / .pq)."""
    file = Path(path)
    if not file.is_file():
        raise MetricInputError(f"metrics_path {str(path)!r} is not a file")
    suffix = file.suffix.lower()
    if suffix == ".json":
        try:
            return json.loads(file.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise MetricInputError(f"{file}: not valid JSON: {exc}") from None
    if suffix == ".csv":
        return _read_csv(file)
    if suffix in (".parquet", ".pq"):
        return _read_parquet(file)
    raise MetricInputError(f"{file}: unknown metrics file type {suffix!r} (use .json, .csv or .parquet)")


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


def collect_series(metrics: Any, steps: Any = None, timestamps: Any = None) -> dict[str, RawSeries]:
    """Normalise a metrics mapping (or loaded file) plus shared/per-series steps and timestamps."""
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
        if not isinstance(path, str) or not path.strip() or path.startswith("/"):
            raise MetricInputError(f"series path {path!r} must be a non-empty string like 'train/loss'")
        if isinstance(entry, RawSeries):
            raw = RawSeries(list(entry.values), entry.steps, entry.timestamps)
        elif isinstance(entry, Mapping):
            if "values" not in entry:
                raise MetricInputError(
                    f"series {path!r}: a mapping entry needs 'values' (and optional 'steps')"
                )
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
        series[path] = raw
    with_timestamps = [path for path, raw in series.items() if raw.timestamps is not None]
    if with_timestamps and len(with_timestamps) != len(series):
        missing = sorted(set(series) - set(with_timestamps))
        raise MetricInputError(f"timestamps given for some series but not for {missing}")
    return series


def _number(value: Any) -> float | None:
    """Return ``value`` as a float if it is a real number or numeric text, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    try:
        return float(value) if hasattr(value, "__float__") else None
    except (TypeError, ValueError):
        return None


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


def validate_series(series: Mapping[str, RawSeries], *, skip_invalid: bool = False) -> MetricBatch:
    """Check every point (finite numeric value, finite strictly increasing step, valid timestamp).

    Raises :class:`MetricInputError` naming each bad point, unless ``skip_invalid``: then bad points
    are dropped and counted. Without steps, a series' point at index i gets step i (a skipped point
    does not shift the steps after it, so a retry maps every value to the same step).
    """
    problems: list[str] = []
    result: dict[str, MetricSeries] = {}
    for path, raw in series.items():
        clean = MetricSeries(path, [], [], [] if raw.timestamps is not None else None)
        previous: float | None = None
        for index, value in enumerate(raw.values):
            where = f"series {path!r} index {index}"
            number = _number(value)
            if number is None:
                problems.append(f"{where}: value {value!r} is not numeric")
                continue
            if not math.isfinite(number):
                problems.append(f"{where}: value {value!r} is not finite")
                continue
            step_raw = raw.steps[index] if raw.steps is not None else index
            step = _number(step_raw)
            if step is None or not math.isfinite(step):
                problems.append(f"{where}: step {step_raw!r} is not a finite number (value {value!r})")
                continue
            if previous is not None and step <= previous:
                problems.append(
                    f"{where}: step {step_raw!r} is not greater than the previous step {previous:g} "
                    f"(value {value!r}); steps must strictly increase"
                )
                continue
            if raw.timestamps is not None and clean.timestamps is not None:
                stamp = _timestamp(raw.timestamps[index])
                if stamp is None or not math.isfinite(stamp):
                    problems.append(
                        f"{where}: timestamp {raw.timestamps[index]!r} is not valid (value {value!r})"
                    )
                    continue
                clean.timestamps.append(stamp)
            clean.values.append(number)
            clean.steps.append(step)
            previous = step
        result[path] = clean
    if problems and not skip_invalid:
        shown = "\n  ".join(problems[:MAX_REPORTED_PROBLEMS])
        more = len(problems) - MAX_REPORTED_PROBLEMS
        tail = f"\n  ... and {more} more" if more > 0 else ""
        raise MetricInputError(
            f"{len(problems)} invalid metric point(s); nothing was sent "
            f"(set skip_invalid=True to skip them):\n  {shown}{tail}"
        )
    return MetricBatch(series=result, invalid=len(problems), problems=problems)


def load_metrics(
    metrics: Any = None,
    metrics_path: str | Path | None = None,
    steps: Any = None,
    timestamps: Any = None,
    *,
    skip_invalid: bool = False,
) -> MetricBatch:
    """Load from ``metrics`` (data or rendered text) or ``metrics_path`` (a file), then validate."""
    if (metrics is None) == (metrics_path is None or metrics_path == ""):
        raise MetricInputError("give exactly one of metrics or metrics_path")
    source = load_metrics_file(str(metrics_path)) if metrics is None else metrics
    return validate_series(collect_series(source, steps, timestamps), skip_invalid=skip_invalid)
