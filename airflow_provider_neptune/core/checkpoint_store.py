"""Checkpoint entries read and written through a ``neptune`` run handle, and the edits that delete them.

The neptune-facing half of checkpoint handling (the pure half is :mod:`.checkpoint_records`): reading
a run's entries, uploading one, parsing a runs-table row, and the field edits a clean-up sends by run
id (:mod:`airflow_provider_neptune.hooks.run_edits`). Runs and rows come from :class:`NeptuneHook`, so
every request passes the hook's shared budget and retry policy. ``neptune`` is imported inside
functions only.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from airflow_provider_neptune.core.checkpoint_records import (
    ENTRY_FIELDS_DELETE_ORDER,
    FILE_FIELD,
    KEEP_FIELD,
    NAME_FIELD,
    RECORD_FIELD,
    RECORD_MARKER,
    SCORE_FIELD,
    SHA256_FIELD,
    SIZE_FIELD,
    STEP_FIELD,
    UPLOADED_AT_FIELD,
    Checkpoint,
    Direction,
    checkpoints_from_fields,
    field_bit,
    flatten,
    gate_upload,
)

log = logging.getLogger(__name__)

CHUNK = 1024 * 1024


def file_digest(path: str | Path) -> tuple[str, int]:
    """sha256 (hex) and size in bytes of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


class HashingReader(io.RawIOBase):
    """A read-only stream over a file that hashes exactly the bytes handed out.

    The client copies a stream into its own per-run upload folder when the file is assigned, so the
    digest of what it copied is known right away and can be compared with the one recorded.
    """

    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self._handle = open(path, "rb")  # noqa: SIM115 - closed in close()
        self._digest = hashlib.sha256()
        self.bytes_read = 0

    def readable(self) -> bool:
        """Always readable."""
        return True

    def readinto(self, buffer: Any) -> int:
        """Fill ``buffer`` from the file and add those bytes to the digest."""
        data = self._handle.read(len(buffer))
        count = len(data)
        buffer[:count] = data
        self._digest.update(data)
        self.bytes_read += count
        return count

    def hexdigest(self) -> str:
        """sha256 of the bytes read so far."""
        return self._digest.hexdigest()

    def close(self) -> None:
        """Close the underlying file."""
        self._handle.close()
        super().close()


def file_extension(path: str | Path) -> str:
    """The extension Neptune stores with the file (``pt`` for ``model.pt``; ``bin`` when none)."""
    suffix = Path(path).suffix.lstrip(".")
    return suffix or "bin"


def read_run_entries(run: Any, namespace: str) -> list[Checkpoint]:
    """The checkpoint entries the server holds for ``run`` under ``namespace``.

    Refreshes the handle's view of the run first (``run.sync()``: a pooled handle may be older than
    uploads another task made), then reads every field value of the namespace in one request.
    """
    run.sync()
    if not run.exists(namespace):
        return []
    values = flatten(run[namespace].fetch(), namespace)
    keys = {path[len(namespace) + 1 :].split("/")[0] for path in values}
    files = [
        f"{namespace}/{key}/{FILE_FIELD}" for key in keys if run.exists(f"{namespace}/{key}/{FILE_FIELD}")
    ]
    return checkpoints_from_fields(values, files, namespace)


def upload_entry(
    run: Any,
    namespace: str,
    key: str,
    source: Path,
    *,
    sha256: str,
    size: int,
    score: float | None,
    step: float | None,
    keep: bool,
    stash: bool,
    previous: Checkpoint | None,
) -> None:
    """Queue the file and its fields under ``<namespace>/<key>``.

    With ``stash`` the bytes are copied now into the client's own upload folder of this run (under the
    Neptune data directory), so the upload no longer depends on ``source``: offline data survives the
    file's deletion until ``neptune sync``, and async uploads cannot pick up a file rewritten later.
    The client removes that copy itself once uploaded. The copy is hashed while written and must match
    ``sha256``. The ``record`` marker is assigned last: only then is the entry a complete record that
    retention may touch (an interrupted upload leaves an entry retention ignores).
    """
    from neptune.types import File

    base = f"{namespace}/{key}"
    if stash:
        reader = HashingReader(source)
        try:
            run[f"{base}/{FILE_FIELD}"].upload(File.from_stream(reader, extension=file_extension(source)))
        finally:
            reader.close()
        if reader.hexdigest() != sha256 or reader.bytes_read != size:
            raise RuntimeError(
                f"{source} changed while it was being stashed for upload "
                f"(sha256 {sha256[:12]}... before, {reader.hexdigest()[:12]}... after); not recording it"
            )
    else:
        run[f"{base}/{FILE_FIELD}"].upload(File.from_path(str(source), extension=file_extension(source)))

    fields: dict[str, Any] = {
        SCORE_FIELD: score,
        STEP_FIELD: step,
        # Neptune integers are 32-bit; a checkpoint can be larger than 2 GiB, so the size is a float.
        SIZE_FIELD: float(size),
        UPLOADED_AT_FIELD: datetime.now(UTC),
        NAME_FIELD: source.name,
        KEEP_FIELD: True if keep else None,
    }
    for name, value in fields.items():
        path = f"{base}/{name}"
        if value is None:
            # A re-upload to the same place must not inherit a stale score, step or keep mark.
            if previous is not None and run.exists(path):
                run.pop(path)
            continue
        run[path] = value
    run[f"{base}/{SHA256_FIELD}"] = sha256
    run[f"{base}/{RECORD_FIELD}"] = RECORD_MARKER


class InfoLog(Protocol):
    """Where progress goes: a logger (the task's) with ``info``."""

    def info(self, event: Any, *args: Any, **kw: Any) -> Any:
        """Log ``event % args`` at INFO."""


@dataclass
class UploadOutcome:
    """What :func:`upload_checkpoints` did: entries queued, entries skipped (with why), as XCom rows."""

    uploaded: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    queued: list[Checkpoint] = field(default_factory=list)


def upload_checkpoints(
    run: Any,
    namespace: str,
    sources: Sequence[tuple[str, Path]],
    existing: Mapping[str, Checkpoint],
    *,
    score: float | None,
    step: float | None,
    keep: bool,
    stash: bool,
    gate: tuple[int, Direction] | None,
    task_log: InfoLog,
) -> UploadOutcome:
    """Queue ``(key, file)`` uploads into ``run`` under ``namespace``, skipping what need not go.

    ``gate`` (``(keep_top_k, direction)``) sends nothing unless ``score`` is among the best so far of
    the run's other entries (``existing``, read before); an entry already holding the same sha256 and
    its file is skipped, so a task retry does not send the same bytes again. Logs to ``task_log``.
    """
    outcome = UploadOutcome()
    reason = ""
    if gate is not None and score is not None:
        keys = {key for key, _ in sources}
        others = [c for c in existing.values() if c.key not in keys]
        send, reason = gate_upload(others, score, gate[0], gate[1], key="")
        if not send:
            task_log.info("Not uploading %s: %s", ", ".join(str(f) for _, f in sources), reason)
            outcome.skipped.extend({"key": k, "file": str(f), "reason": reason} for k, f in sources)
            return outcome
    for key, source in sources:
        sha256, size = file_digest(source)
        previous = existing.get(key)
        if previous is not None and previous.sha256 == sha256 and previous.has_file:
            why = "already uploaded (same sha256 at the same place)"
            task_log.info("Skipping %s -> %s/%s: %s", source, namespace, key, why)
            outcome.skipped.append({"key": key, "file": str(source), "reason": why})
            continue
        upload_entry(
            run,
            namespace,
            key,
            source,
            sha256=sha256,
            size=size,
            score=score,
            step=step,
            keep=keep,
            stash=stash,
            previous=previous,
        )
        outcome.uploaded.append(
            {"key": key, "file": str(source), "size": size, "sha256": sha256, "score": score, "step": step}
        )
        outcome.queued.append(Checkpoint(key=key, sha256=sha256, score=score, step=step, size=size))
        task_log.info(
            "Queued %s -> %s/%s (%d bytes, sha256 %s...)%s",
            source,
            namespace,
            key,
            size,
            sha256[:12],
            f"; {reason}" if reason else "",
        )
    return outcome


def deletion_edits(namespace: str, entries: Iterable[tuple[str, int]]) -> list[tuple[str, str | None]]:
    """The field edits deleting each ``(key, fields)`` entry: per entry the file first, the marker last.

    ``fields`` is the entry's :attr:`Checkpoint.fields` bitmask: only record fields the entry holds are
    deleted, so nothing else a user stored under the namespace (or beside a record) is touched. A record
    written before the marker existed gets the marker first, so a server that applies the edits one by
    one and stops half-way leaves a remnant the next clean-up still recognises. ``(path, None)`` deletes
    a field, ``(path, text)`` assigns a string (see :mod:`airflow_provider_neptune.hooks.run_edits`).
    """
    edits: list[tuple[str, str | None]] = []
    record_bit = field_bit(RECORD_FIELD)
    for key, fields in entries:
        base = f"{namespace}/{key}"
        present = fields
        if not fields & record_bit and fields & field_bit(SHA256_FIELD):
            edits.append((f"{base}/{RECORD_FIELD}", RECORD_MARKER))
            present |= record_bit
        edits.extend(
            (f"{base}/{name}", None) for name in ENTRY_FIELDS_DELETE_ORDER if present & field_bit(name)
        )
    return edits


def table_row_fields(row: Any) -> tuple[str, dict[str, Any], set[str]]:
    """(sys/id, {path: value}, {paths of File fields}) of one runs-table row.

    ``row`` is a ``fetch_runs_table`` ``TableEntry`` or a search page's ``LeaderboardEntry`` (which
    :meth:`RunEditor.runs <airflow_provider_neptune.hooks.run_edits.RunEditor.runs>` yields, with
    datetimes still as text: they are parsed here). Neither offers a public listing of its fields; like
    the client's own ``to_pandas`` this reads the entry's attribute list.
    """
    from neptune.internal.backends.api_model import AttributeType
    from neptune.internal.utils.iso_dates import parse_iso_date

    values: dict[str, Any] = {}
    files: set[str] = set()
    listed = getattr(row, "attributes", None)
    attributes: Iterable[Any] = listed if listed is not None else getattr(row, "_attributes", ())
    for attribute in attributes:
        if attribute.type == AttributeType.FILE:
            files.add(attribute.path)
            continue
        if attribute.type in (AttributeType.FLOAT_SERIES, AttributeType.STRING_SERIES):
            values[attribute.path] = attribute.properties.get("last")
        elif attribute.type == AttributeType.STRING_SET:
            values[attribute.path] = set(attribute.properties.get("values") or ())
        elif attribute.type == AttributeType.DATETIME and isinstance(attribute.properties.get("value"), str):
            values[attribute.path] = parse_iso_date(attribute.properties["value"])
        else:
            values[attribute.path] = attribute.properties.get("value")
    run_id = values.get("sys/id") or internal_id(row)
    return str(run_id), values, files


def internal_id(row: Any) -> str:
    """The run's internal id (the container id ``executeOperations`` takes) of a runs-table row."""
    return str(getattr(row, "id", None) or getattr(row, "_id", ""))


def created_at(values: Mapping[str, Any]) -> datetime | None:
    """The run's creation time from its table fields, as an aware datetime."""
    value = values.get("sys/creation_time")
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
    return None
