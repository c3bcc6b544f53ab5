"""Read metric files: CSV and Parquet are streamed point by point, JSON is loaded whole (size-limited).

Every failure is a :class:`MetricFileError` (a ``MetricInputError``, hence a ``ValueError``) whose
message starts with the file and the place: ``<file> line L, column C ('name')`` for CSV,
``<file> line L, column C`` for JSON and ``<file> row R, column 'name'`` for Parquet (which has no
lines). Points come out as :data:`RawPoint` tuples with an opaque location that the reader turns
into such a prefix only when a point is reported, so a valid file costs no formatting.
"""

from __future__ import annotations

import contextlib
import csv
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from airflow_provider_neptune.exceptions import MetricFileError

MAX_LINE_BYTES = 16 * 1024 * 1024
"""Longest CSV line accepted; a longer one is an error instead of an unbounded read."""

MAX_JSON_BYTES = 64 * 1024 * 1024
"""Largest JSON metric file: JSON is parsed whole (about 3 to 6 times its size in memory)."""

MAX_JSON_DEPTH = 64
"""Deepest JSON nesting reported by position when Python's parser gives up (RecursionError)."""

PARQUET_BATCH_ROWS = 4096
"""Rows per Parquet record batch read at a time."""

INDEX_STEP: Any = object()
"""Marks a point without a step of its own: it gets its index in the series (or the given steps)."""

NO_TIMESTAMP: Any = object()
"""Marks a point without a timestamp of its own."""

RawPoint = tuple[str, Any, Any, Any, Any]
"""(series path, value, step or INDEX_STEP, timestamp or NO_TIMESTAMP, location)."""

_LONG_PATH_COLUMNS = ("path", "series")
_STEP_COLUMN = "step"
_TIMESTAMP_COLUMN = "timestamp"
_SNIPPET = 60


def snippet(value: Any) -> str:
    """``repr`` of a value cut to a readable length (a 400-digit number stays one line)."""
    text = repr(value)
    return text if len(text) <= _SNIPPET else text[: _SNIPPET - 3] + "..."


def open_binary(path: Path) -> IO[bytes]:
    """Open a metric file for reading, turning every OS error into one naming the file."""
    if path.is_dir():
        raise MetricFileError(str(path), "is a directory, not a file")
    if not path.exists():
        raise MetricFileError(str(path), "no such file")
    try:
        return path.open("rb")
    except OSError as exc:
        raise MetricFileError(str(path), f"cannot be read: {exc.strerror or exc}") from None


def _layout(names: list[str]) -> tuple[int | None, int | None, int | None, int | None]:
    """(path column, value column, step column, timestamp column) of a table; path None = wide."""
    index = {name: i for i, name in enumerate(names)}
    path_col = next((index[name] for name in _LONG_PATH_COLUMNS if name in index), None)
    value_col = index.get("value")
    if path_col is None or value_col is None:
        path_col = value_col = None
    return path_col, value_col, index.get(_STEP_COLUMN), index.get(_TIMESTAMP_COLUMN)


class TableFile:
    """A CSV or Parquet table in long (``path``, ``value``) or wide (one column per series) layout."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.names: list[str] = []
        self.path_col: int | None = None
        self.value_col: int | None = None
        self.step_col: int | None = None
        self.ts_col: int | None = None

    @property
    def has_steps(self) -> bool:
        """Whether the table has its own step column."""
        return self.step_col is not None

    @property
    def has_timestamps(self) -> bool:
        """Whether the table has its own timestamp column."""
        return self.ts_col is not None

    def _set_columns(self, names: list[str], where: Callable[[int], str]) -> None:
        self.names = names
        seen: dict[str, int] = {}
        for i, name in enumerate(names):
            if not name:
                raise MetricFileError(where(i), "empty column name")
            if name in seen:
                raise MetricFileError(
                    where(i), f"column {name!r} appears twice (columns {seen[name] + 1} and {i + 1})"
                )
            seen[name] = i
        self.path_col, self.value_col, self.step_col, self.ts_col = _layout(names)
        if self.path_col is None and not self.metric_columns():
            raise MetricFileError(str(self.path), f"no metric columns (columns: {names})")

    def metric_columns(self) -> list[int]:
        """Columns holding series in the wide layout."""
        skip = {self.step_col, self.ts_col}
        return [i for i in range(len(self.names)) if i not in skip]

    def points(self) -> Iterator[RawPoint]:
        """Every point of the file, in file order."""
        raise NotImplementedError

    def locate(self, location: Any, kind: str) -> str:
        """The file-and-place prefix of a point's value, step or timestamp cell."""
        raise NotImplementedError

    def _cell_column(self, value_col: int, kind: str) -> int:
        if kind == "step" and self.step_col is not None:
            return self.step_col
        if kind == "timestamp" and self.ts_col is not None:
            return self.ts_col
        return value_col


class CsvFile(TableFile):
    """A UTF-8 CSV file (BOM and CRLF accepted), read line by line so memory stays bounded."""

    def _where(self, line: int, column: int | None = None) -> str:
        if column is None:
            return f"{self.path} line {line}"
        name = self.names[column] if column < len(self.names) else ""
        return f"{self.path} line {line}, column {column + 1}" + (f" ({name!r})" if name else "")

    def _lines(self, handle: IO[bytes], counter: list[int]) -> Iterator[str]:
        while True:
            raw = handle.readline(MAX_LINE_BYTES + 1)
            if not raw:
                return
            counter[0] += 1
            number = counter[0]
            if len(raw) > MAX_LINE_BYTES:
                raise MetricFileError(
                    self._where(number), f"line longer than {MAX_LINE_BYTES} bytes (is this a CSV file?)"
                )
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                column = len(raw[: exc.start].decode("utf-8", "replace")) + 1
                raise MetricFileError(
                    f"{self.path} line {number}, column {column}",
                    f"not valid UTF-8 (byte 0x{raw[exc.start]:02x}); save the file as UTF-8",
                ) from None
            if number == 1 and text.startswith("\ufeff"):
                text = text[1:]
            yield text

    def _rows(self) -> Iterator[tuple[int, list[str]]]:
        """(line, fields) of every non-blank record; the first is the header."""
        counter = [0]
        with open_binary(self.path) as handle:
            reader = csv.reader(self._lines(handle, counter), strict=True)
            while True:
                try:
                    row = next(reader)
                except StopIteration:
                    return
                except csv.Error as exc:
                    raise MetricFileError(self._where(counter[0]), f"malformed CSV: {exc}") from None
                if row:
                    yield reader.line_num, row

    def points(self) -> Iterator[RawPoint]:
        """Every point of the file; structural errors (header, ragged rows) raise as they are met."""
        rows = self._rows()
        first = next(rows, None)
        if first is None:
            raise MetricFileError(str(self.path), "empty CSV file (no header row)")
        header_line, header = first
        self._set_columns([name.strip() for name in header], lambda col: self._where(header_line, col))
        width = len(self.names)
        any_row = False
        path_col, value_col = self.path_col, self.value_col
        step_col, ts_col = self.step_col, self.ts_col
        wide = self.metric_columns()
        for line, row in rows:
            if len(row) != width:
                raise MetricFileError(
                    self._where(line),
                    f"{len(row)} field(s) but the header (line {header_line}) has {width}",
                )
            any_row = True
            step = row[step_col] if step_col is not None else INDEX_STEP
            stamp = row[ts_col] if ts_col is not None else NO_TIMESTAMP
            if path_col is not None and value_col is not None:
                series = row[path_col].strip()
                if not series:
                    raise MetricFileError(
                        self._where(line, path_col), f"empty {self.names[path_col]!r} (the series path)"
                    )
                yield series, row[value_col], step, stamp, (line, value_col)
                continue
            for col in wide:
                cell = row[col]
                if cell and not cell.isspace():
                    yield self.names[col], cell, step, stamp, (line, col)
        if not any_row:
            raise MetricFileError(str(self.path), "has a header but no data rows")

    def locate(self, location: Any, kind: str) -> str:
        """``<file> line L, column C ('name')`` of the cell behind a value, step or timestamp."""
        line, value_col = location
        return self._where(line, self._cell_column(value_col, kind))


_NUMERIC_TYPES = ("int", "uint", "float", "double", "halffloat", "decimal", "null")
_TEXT_TYPES = ("string", "large_string", "string_view", "dictionary")


class ParquetFile(TableFile):
    """A Parquet file, read a record batch at a time (pyarrow ``iter_batches``)."""

    def _open(self) -> Any:
        try:
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise MetricFileError(
                str(self.path),
                "reading Parquet needs pyarrow (pip install 'airflow-provider-neptune[parquet]')",
            ) from exc
        open_binary(self.path).close()  # the same errors as the other formats for a missing/unreadable path
        try:
            # pre_buffer (pyarrow's default) would read every row group iter_batches asks for up
            # front: the whole file in memory.
            return pq.ParquetFile(self.path, pre_buffer=False)
        except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ... for a bad file
            raise MetricFileError(str(self.path), f"not a readable Parquet file: {exc}") from None

    def _check_types(self, schema: Any) -> None:
        def kind(col: int) -> str:
            return str(schema.field(col).type)

        def allowed(col: int, families: tuple[str, ...]) -> bool:
            return kind(col).startswith(families)

        checks: list[tuple[int, tuple[str, ...], str]] = []
        if self.path_col is not None and self.value_col is not None:
            checks.append((self.path_col, (*_TEXT_TYPES, "int", "uint"), "series paths"))
            checks.append((self.value_col, (*_NUMERIC_TYPES, *_TEXT_TYPES), "metric values"))
        else:
            checks += [
                (col, (*_NUMERIC_TYPES, *_TEXT_TYPES), "metric values") for col in self.metric_columns()
            ]
        if self.step_col is not None:
            checks.append((self.step_col, (*_NUMERIC_TYPES, *_TEXT_TYPES), "steps"))
        if self.ts_col is not None:
            checks.append((self.ts_col, (*_NUMERIC_TYPES, *_TEXT_TYPES, "timestamp"), "timestamps"))
        for col, families, what in checks:
            if not allowed(col, families):
                raise MetricFileError(
                    f"{self.path}, column {self.names[col]!r}",
                    f"has type {kind(col)}, which cannot hold {what}",
                )

    def points(self) -> Iterator[RawPoint]:
        """Every point, one record batch in memory at a time."""
        handle = self._open()
        schema = handle.schema_arrow
        self._set_columns(list(schema.names), lambda col: f"{self.path}, column {col + 1}")
        self._check_types(schema)
        path_col, value_col = self.path_col, self.value_col
        step_col, ts_col = self.step_col, self.ts_col
        wide = self.metric_columns()
        row = 0
        try:
            # One thread: decoding columns in parallel only multiplies the memory held at once.
            for batch in handle.iter_batches(batch_size=PARQUET_BATCH_ROWS, use_threads=False):
                columns = [batch.column(i).to_pylist() for i in range(batch.num_columns)]
                for i in range(batch.num_rows):
                    row += 1
                    step = columns[step_col][i] if step_col is not None else INDEX_STEP
                    stamp = columns[ts_col][i] if ts_col is not None else NO_TIMESTAMP
                    if path_col is not None and value_col is not None:
                        series = columns[path_col][i]
                        if series is None or not str(series).strip():
                            raise MetricFileError(
                                f"{self.path} row {row}, column {self.names[path_col]!r}",
                                "empty series path",
                            )
                        yield str(series), columns[value_col][i], step, stamp, (row, value_col)
                        continue
                    for col in wide:
                        cell = columns[col][i]
                        if cell is not None and not (isinstance(cell, str) and not cell.strip()):
                            yield self.names[col], cell, step, stamp, (row, col)
        except OSError as exc:  # pyarrow's ArrowException is an OSError for corrupt pages
            raise MetricFileError(f"{self.path} row {row + 1}", f"cannot be read: {exc}") from None
        if row == 0:
            raise MetricFileError(str(self.path), "has no data rows")

    def locate(self, location: Any, kind: str) -> str:
        """``<file> row R, column 'name'`` of the cell behind a value, step or timestamp."""
        row, value_col = location
        return f"{self.path} row {row}, column {self.names[self._cell_column(value_col, kind)]!r}"


# ------------------------------------------------------------------ JSON


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else type(value).__name__


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


_WS = re.compile(r"[ \t\n\r]*")
# The C string scanner json itself uses (typeshed does not list it).
scanstring: Callable[[str, int], tuple[str, int]] = json.decoder.scanstring  # type: ignore[attr-defined]
_NESTING = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')
_LONG_INTEGER = re.compile(r"\d{4000,}")


class JsonFile:
    """A JSON object ``{"path": [values] | {"values": [...], "steps": [...], ...}}``, loaded whole.

    Positions are not kept while parsing (that would multiply the memory); when something is
    reported, one walk over the text with the C scanner finds the line and column of each point.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._text: str | None = None

    def _where(self, text: str, offset: int) -> str:
        line = text.count("\n", 0, offset) + 1
        column = offset - text.rfind("\n", 0, offset)
        return f"{self.path} line {line}, column {column}"

    def _read_text(self) -> str:
        with open_binary(self.path) as handle:
            size = self.path.stat().st_size
            if size > MAX_JSON_BYTES:
                raise MetricFileError(
                    str(self.path),
                    f"{size} bytes, more than the {MAX_JSON_BYTES}-byte limit for JSON metric files "
                    "(JSON is parsed whole; write large metric files as CSV or Parquet, which are streamed)",
                )
            data = handle.read()
        if data.startswith(b"\xef\xbb\xbf"):
            data = data[3:]
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            start = data.rfind(b"\n", 0, exc.start) + 1
            line = data.count(b"\n", 0, exc.start) + 1
            column = len(data[start : exc.start].decode("utf-8", "replace")) + 1
            raise MetricFileError(
                f"{self.path} line {line}, column {column}", f"not valid UTF-8 (byte 0x{data[exc.start]:02x})"
            ) from None

    def load(self) -> dict[str, Any]:
        """The parsed object; every syntax or shape problem raises naming line and column."""
        text = self._read_text()
        try:
            value = json.loads(text, object_pairs_hook=_no_duplicates)
        except json.JSONDecodeError as exc:
            raise MetricFileError(
                f"{self.path} line {exc.lineno}, column {exc.colno}", f"not valid JSON: {exc.msg}"
            ) from None
        except RecursionError:
            raise MetricFileError(
                self._where(text, self._too_deep(text)), f"JSON nested more than {MAX_JSON_DEPTH} levels deep"
            ) from None
        except _DuplicateKey as dup:
            raise MetricFileError(
                self._where(text, self._duplicate_at(text, dup.key)), f"key {dup.key!r} appears twice"
            ) from None
        except ValueError as exc:  # an integer beyond Python's digit limit for int()
            match = _LONG_INTEGER.search(text)
            where = self._where(text, match.start()) if match else str(self.path)
            raise MetricFileError(where, f"not valid JSON: {exc}") from None
        if not isinstance(value, dict):
            start = _WS.match(text, 0)
            offset = start.end() if start else 0
            raise MetricFileError(
                self._where(text, offset),
                f"the top-level JSON value is {_json_kind(value)}; expected an object mapping series "
                'paths to values, e.g. {"train/loss": [0.9, 0.7]}',
            )
        self._text = text
        return value

    def release(self) -> None:
        """Drop the text kept for locating problems."""
        self._text = None

    @staticmethod
    def _too_deep(text: str) -> int:
        depth = 0
        for match in _NESTING.finditer(text):
            token = match.group()
            if token in "[{":
                depth += 1
                if depth > MAX_JSON_DEPTH:
                    return match.start()
            elif token in "]}":
                depth -= 1
        return 0

    @staticmethod
    def _duplicate_at(text: str, key: str) -> int:
        seen: set[tuple[int, str]] = set()
        depth = 0
        for match in _NESTING.finditer(text):
            token = match.group()
            if token in "[{":
                depth += 1
            elif token in "]}":
                depth -= 1
            else:
                after = _WS.match(text, match.end())
                if after is None or not text.startswith(":", after.end()):
                    continue
                name = json.loads(token)
                if name == key and (depth, name) in seen:
                    return match.start()
                seen.add((depth, name))
        return 0

    def locate_all(self, wanted: list[tuple[str, str, int]]) -> dict[tuple[str, str, int], str]:
        """Line and column of each (series, field, index); field '' is the series entry itself."""
        text = self._text
        if text is None:
            return {}
        scan: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
        want = set(wanted)
        found: dict[tuple[str, str, int], str] = {}

        def skip(i: int) -> int:
            match = _WS.match(text, i)
            return match.end() if match else i

        def walk_array(series: str, field: str, i: int) -> int:
            i, index = skip(i + 1), 0
            while text[i] != "]":
                if (series, field, index) in want:
                    found[(series, field, index)] = self._where(text, i)
                _, i = scan(text, i)
                i = skip(i)
                if text[i] == ",":
                    i = skip(i + 1)
                index += 1
            return i + 1

        def walk_object(i: int, member: Callable[[str, int], int]) -> int:
            i = skip(i + 1)
            while text[i] != "}":
                key, i = scanstring(text, i + 1)
                i = skip(skip(i) + 1)
                i = skip(member(key, i))
                if text[i] == ",":
                    i = skip(i + 1)
            return i + 1

        def entry_member(series: str) -> Callable[[str, int], int]:
            def member(key: str, i: int) -> int:
                if key in ("values", "steps", "timestamps") and text[i] == "[":
                    return walk_array(series, key, i)
                return int(scan(text, i)[1])

            return member

        def series_member(key: str, i: int) -> int:
            if (key, "", 0) in want:
                found[(key, "", 0)] = self._where(text, i)
            if text[i] == "[":
                return walk_array(key, "values", i)
            if text[i] == "{":
                return walk_object(i, entry_member(key))
            return int(scan(text, i)[1])

        # The text parsed once already; a surprise here only costs the positions.
        with contextlib.suppress(IndexError, ValueError, StopIteration, RecursionError):
            walk_object(skip(0), series_member)
        return found
