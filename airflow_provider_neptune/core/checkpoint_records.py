"""How a checkpoint is laid out in a run, and how checkpoints are ranked.

Each uploaded file becomes one *entry* ``<namespace>/<key>/`` holding the file and, beside it, the
fields retention decides on (score, step, size, sha256, upload time, keep mark) and the ``record``
marker, so nothing has to be downloaded to decide what to keep, and nothing but a whole record written
by the upload operator is ever touched. Pure code: no ``neptune`` import, unit-testable without a server.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import PurePath
from typing import Any, Literal

Direction = Literal["max", "min"]

FILE_FIELD = "file"
SCORE_FIELD = "score"
STEP_FIELD = "step"
SIZE_FIELD = "size"
SHA256_FIELD = "sha256"
UPLOADED_AT_FIELD = "uploaded_at"
NAME_FIELD = "name"
KEEP_FIELD = "keep"
RECORD_FIELD = "record"
RECORD_MARKER = "airflow-provider-neptune checkpoint v1"
"""Value of ``record``: written last by the upload operator, removed last by retention."""

# Deletion order: the bytes and the optional fields first, the required fields next, the ``record``
# marker last. An interrupted deletion therefore leaves an entry without file that still carries the
# marker: it is recognised as a remnant of this provider's record and finished by the next clean-up.
ENTRY_FIELDS_DELETE_ORDER: tuple[str, ...] = (
    FILE_FIELD,
    SCORE_FIELD,
    STEP_FIELD,
    KEEP_FIELD,
    SIZE_FIELD,
    UPLOADED_AT_FIELD,
    NAME_FIELD,
    SHA256_FIELD,
    RECORD_FIELD,
)
"""Every field of a checkpoint record, in deletion order; nothing else under the namespace is deleted."""

ALL_ENTRY_FIELDS = (1 << len(ENTRY_FIELDS_DELETE_ORDER)) - 1
"""``Checkpoint.fields`` when it is not known which record fields an entry holds: all of them."""


def field_bit(name: str) -> int:
    """The bit of record field ``name`` in ``Checkpoint.fields`` (its place in the deletion order)."""
    return 1 << ENTRY_FIELDS_DELETE_ORDER.index(name)


_SHA256 = re.compile(r"[0-9a-f]{64}")
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass(frozen=True)
class Checkpoint:
    """One checkpoint entry as recorded in a run (what retention and the upload gate look at)."""

    key: str
    sha256: str | None = None
    score: float | None = None
    step: float | None = None
    size: int = 0
    uploaded_at: datetime | None = None
    keep: bool = False
    has_file: bool = True
    fields: int = field(default=ALL_ENTRY_FIELDS, compare=False)
    """Which record fields the entry holds, one bit each (:func:`field_bit`): what a deletion removes."""


def validate_direction(direction: str) -> Direction:
    """Return ``direction`` if it is ``max`` or ``min``; raise ValueError naming the bad value otherwise."""
    if direction == "max":
        return "max"
    if direction == "min":
        return "min"
    raise ValueError(f"direction must be 'max' or 'min', got {direction!r}")


def validate_namespace(namespace: str) -> str:
    """Normalise a namespace (no leading/trailing slash) and refuse empty or ``sys`` namespaces."""
    cleaned = namespace.strip().strip("/")
    if not cleaned or any(not part for part in cleaned.split("/")):
        raise ValueError(f"namespace must be a non-empty path like 'checkpoints', got {namespace!r}")
    if cleaned.split("/")[0] in ("sys", "monitoring", "source_code"):
        raise ValueError(f"namespace {namespace!r} is reserved by Neptune; choose another one")
    return cleaned


def sanitize_key(text: str) -> str:
    """Make ``text`` a safe single path segment (letters, digits, ``_`` and ``-`` only)."""
    cleaned = _UNSAFE.sub("_", text).strip("_")
    if not cleaned:
        raise ValueError(f"cannot derive a checkpoint key from {text!r}")
    return cleaned


def format_step(step: float) -> str:
    """Render a step for a key: ``12`` for whole numbers, ``1_5`` for ``1.5``."""
    if float(step).is_integer():
        return str(int(step))
    return sanitize_key(repr(float(step)))


def entry_key(file_path: str, *, step: float | None, single_file: bool, name: str | None = None) -> str:
    """Where a file goes under the namespace.

    One file with a step goes to ``step_<n>`` (so a file overwritten every epoch still gets one entry
    per epoch); several files keep their file name, prefixed by the step when there is one; ``name``
    overrides the automatic part.
    """
    file_part = sanitize_key(PurePath(file_path).name)
    if name is not None:
        base = sanitize_key(name)
        return base if single_file else f"{base}_{file_part}"
    if step is not None:
        base = f"step_{format_step(step)}"
        return base if single_file else f"{base}_{file_part}"
    return file_part


def flatten(nested: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Turn the nested dict a namespace ``fetch()`` returns into ``{"a/b/c": value}``."""
    flat: dict[str, Any] = {}
    for key, value in nested.items():
        path = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            flat.update(flatten(value, path))
        else:
            flat[path] = value
    return flat


def _as_float(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_complete_record(record: Mapping[str, Any]) -> bool:
    """Whether the fields of one entry form a whole record as the upload operator writes it.

    Required, with their types: ``sha256`` (64 lowercase hex digits), ``size`` (a number >= 0),
    ``uploaded_at`` (a datetime) and ``name`` (a non-empty string); ``score`` and ``step`` are numbers
    and ``keep`` is True when present; ``record`` is the marker when present (records written before
    the marker existed have none). The file itself is not required: see :func:`recognise_record`.
    """
    marker = record.get(RECORD_FIELD, RECORD_MARKER)
    sha = record.get(SHA256_FIELD)
    size = record.get(SIZE_FIELD)
    name = record.get(NAME_FIELD)
    size_ok = (
        isinstance(size, int | float) and not isinstance(size, bool) and math.isfinite(size) and size >= 0
    )
    return (
        marker == RECORD_MARKER
        and isinstance(sha, str)
        and _SHA256.fullmatch(sha) is not None
        and size_ok
        and isinstance(record.get(UPLOADED_AT_FIELD), datetime)
        and isinstance(name, str)
        and bool(name)
        and all(_is_number(record[f]) for f in (SCORE_FIELD, STEP_FIELD) if f in record)
        and record.get(KEEP_FIELD, True) is True
    )


def recognise_record(record: Mapping[str, Any], has_file: bool) -> bool:
    """Whether retention and the upload gate may treat this entry as one of this provider's records.

    A complete record (with or without its file: retention deletes the file first) is recognised;
    so is an entry without file still carrying the ``record`` marker, the remnant of an interrupted
    deletion. Anything else, e.g. a user's own ``sha256`` and ``name`` next to a ``comment``, is not.
    """
    if is_complete_record(record):
        return True
    return not has_file and record.get(RECORD_FIELD) == RECORD_MARKER


def checkpoints_from_fields(
    values: Mapping[str, Any], file_paths: Collection[str], namespace: str
) -> list[Checkpoint]:
    """Collect the checkpoint records of one run from its flat field values.

    ``values`` maps full field paths to values (files excluded); ``file_paths`` lists the File fields
    present. Only entries :func:`recognise_record` accepts are reported, so nothing else under the
    namespace is ever ranked or deleted.
    """
    prefix = namespace + "/"
    fields: dict[str, dict[str, Any]] = {}
    for path, value in values.items():
        if not path.startswith(prefix):
            continue
        parts = path[len(prefix) :].split("/")
        if len(parts) == 2:
            fields.setdefault(parts[0], {})[parts[1]] = value
    files = {
        path[len(prefix) :].split("/")[0]
        for path in file_paths
        if path.startswith(prefix) and path[len(prefix) :].split("/")[1:] == [FILE_FIELD]
    }
    entries = []
    for key, record in sorted(fields.items()):
        if not recognise_record(record, key in files):
            continue
        sha = record.get(SHA256_FIELD)
        uploaded = record.get(UPLOADED_AT_FIELD)
        size = _as_float(record.get(SIZE_FIELD))
        present = sum(field_bit(name) for name in ENTRY_FIELDS_DELETE_ORDER if name in record)
        entries.append(
            Checkpoint(
                key=sys.intern(key),
                sha256=sha if isinstance(sha, str) else None,
                score=_as_float(record.get(SCORE_FIELD)),
                step=_as_float(record.get(STEP_FIELD)),
                size=int(size) if size is not None and size > 0 else 0,
                uploaded_at=uploaded if isinstance(uploaded, datetime) else None,
                keep=record.get(KEEP_FIELD) is True,
                has_file=key in files,
                fields=present | (field_bit(FILE_FIELD) if key in files else 0),
            )
        )
    return entries


def _time_rank(checkpoint: Checkpoint) -> float:
    return checkpoint.uploaded_at.timestamp() if checkpoint.uploaded_at is not None else float("-inf")


def ranked_by_score(checkpoints: Iterable[Checkpoint], direction: Direction) -> list[Checkpoint]:
    """Scored checkpoints best first; ties go to the earlier one (the first to reach that score)."""
    sign = -1.0 if direction == "max" else 1.0
    scored = [c for c in checkpoints if c.score is not None]
    return sorted(
        scored,
        key=lambda c: (
            sign * (c.score if c.score is not None else 0.0),
            c.step if c.step is not None else float("inf"),
            _time_rank(c),
            c.key,
        ),
    )


def final_checkpoint(checkpoints: Sequence[Checkpoint]) -> Checkpoint | None:
    """The last checkpoint: highest step, then latest upload time, then key."""
    if not checkpoints:
        return None
    return max(
        checkpoints,
        key=lambda c: (c.step is not None, c.step if c.step is not None else 0.0, _time_rank(c), c.key),
    )


def is_better(score: float, other: float, direction: Direction) -> bool:
    """True if ``score`` is strictly better than ``other`` in ``direction``."""
    return score > other if direction == "max" else score < other


def gate_upload(
    existing: Iterable[Checkpoint], score: float, keep_top_k: int, direction: Direction, *, key: str
) -> tuple[bool, str]:
    """Decide whether a checkpoint with ``score`` is among the best ``keep_top_k`` so far.

    Compared with the run's scored checkpoints that still hold a file (other than ``key`` itself); a
    tie with the k-th best is not better, so it is not uploaded. Returns (upload?, reason).
    """
    others = [c.score for c in existing if c.key != key and c.has_file and c.score is not None]
    at_least_as_good = sum(1 for other in others if not is_better(score, other, direction))
    if at_least_as_good < keep_top_k:
        return True, f"score {score:g} is #{at_least_as_good + 1} of the best {keep_top_k} ({direction})"
    return False, (
        f"score {score:g} is not among the best {keep_top_k} so far ({direction}); "
        f"{at_least_as_good} checkpoint(s) score at least as well"
    )
