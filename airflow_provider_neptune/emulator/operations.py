"""Applying executeOperations to the emulator's SQLite tables, with the real server's rules.

Assignments, series points (steps must strictly increase; a missing step is last + 1), string
sets, deletions and file-set file removal; each rejected operation yields an error text for the
response instead of failing the request.
"""

from __future__ import annotations

import json
import math
import sqlite3
from typing import Any

from airflow_provider_neptune.emulator.clock import MAX_MS, MIN_MS, iso_ms, now_ms
from airflow_provider_neptune.emulator.errors import OperationError, StoredButRejected

# sys/* fields the server owns: writes to them are rejected like on a real server.
READ_ONLY_SYS = frozenset(
    {
        "sys/id",
        "sys/state",
        "sys/owner",
        "sys/creation_time",
        "sys/modification_time",
        "sys/ping_time",
        "sys/running_time",
        "sys/monitoring_time",
        "sys/size",
        "sys/trashed",
        "sys/custom_run_id",
        "sys/model_id",
        "sys/visibility",
    }
)
# The only fields string-set operations may write: a real server refuses them anywhere else.
STRING_SET_PATHS = frozenset({"sys/tags", "sys/group_tags"})
STRING_SERIES_MAX = 1000
STRING_MAX = 16384


def valid_path(path: Any) -> bool:
    """A non-empty a/b/c path without empty segments."""
    return isinstance(path, str) and path != "" and all(part for part in path.split("/"))


def blobs_of(db: sqlite3.Connection, run_id: str, path: str | None) -> list[str]:
    """Blob names held by a run's File fields and file sets (all of them, or one field's)."""
    blobs: list[str] = []
    if path is None:
        rows = db.execute("SELECT value FROM attrs WHERE run_id=? AND type='file'", (run_id,)).fetchall()
        files = db.execute("SELECT blob FROM filesets WHERE run_id=?", (run_id,)).fetchall()
    else:
        rows = db.execute(
            "SELECT value FROM attrs WHERE run_id=? AND path=? AND type='file'", (run_id, path)
        ).fetchall()
        files = db.execute("SELECT blob FROM filesets WHERE run_id=? AND path=?", (run_id, path)).fetchall()
    blobs += [json.loads(r["value"])["blob"] for r in rows]
    blobs += [r["blob"] for r in files]
    return blobs


def normalize_sub_path(name: str) -> str:
    """A file-set member path without leading ./ or /, with no .. parts."""
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        return ""
    return "/".join(parts)


SERIES_OPERATIONS = ("logFloats", "logStrings", "logImages")


def operation_type_error(operations: list[Any]) -> str | None:
    """Why a batch must be refused as a whole (a series step or timestamp that is not a number), or None.

    A real server cannot even deserialise such a request, so it is refused as a whole, before
    anything is stored; the neptune client never sends one. Values it can read but refuses (a
    timestamp out of range, a sum that overflows) are per-operation errors instead.
    """
    for i, op in enumerate(operations):
        if not isinstance(op, dict):
            continue
        for name in SERIES_OPERATIONS:
            body = op.get(name)
            if not isinstance(body, dict):
                continue
            entries = body.get("entries")
            if entries is None:
                continue
            where = f"operations[{i}] ({str(op.get('path'))[:80]!r}).{name}.entries"
            if not isinstance(entries, list):
                return f"{where} must be a list"
            for j, entry in enumerate(entries):
                if not isinstance(entry, dict):
                    continue
                for key in ("step", "timestampMilliseconds"):
                    value = entry.get(key)
                    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
                        return f"{where}[{j}].{key} must be a number, got {value!r}"[:300]
    return None


def _milliseconds(value: Any, what: str) -> int:
    """A datetime in epoch milliseconds within years 1..9999 (what ISO text and the client can show)."""
    number = _number(value, what)
    if not MIN_MS <= number <= MAX_MS:
        raise OperationError(
            f"{what} {value!r} is out of range: a datetime must lie between {iso_ms(MIN_MS)} and "
            f"{iso_ms(MAX_MS)} ({MIN_MS}..{MAX_MS} ms)"
        )
    return int(number)


def _get(db: sqlite3.Connection, run_id: str, path: str) -> tuple[str, dict[str, Any]] | None:
    row = db.execute("SELECT type, value FROM attrs WHERE run_id=? AND path=?", (run_id, path)).fetchone()
    return (row["type"], json.loads(row["value"])) if row else None


def _put(db: sqlite3.Connection, run_id: str, path: str, kind: str, value: dict[str, Any]) -> None:
    db.execute(
        "INSERT OR REPLACE INTO attrs (run_id, path, type, value) VALUES (?, ?, ?, ?)",
        (run_id, path, kind, json.dumps(value)),
    )


def check_type(db: sqlite3.Connection, run_id: str, path: str, kind: str) -> dict[str, Any] | None:
    """Refuse writes that clash with the field's type or with the namespace tree; return current state."""
    current = _get(db, run_id, path)
    if current is not None:
        if current[0] != kind:
            raise OperationError(
                f"Cannot perform operation on attribute {path} of type {current[0]} (expected {kind})"
            )
        return current[1]
    parts = path.split("/")
    for i in range(1, len(parts)):
        prefix = "/".join(parts[:i])
        if db.execute("SELECT 1 FROM attrs WHERE run_id=? AND path=?", (run_id, prefix)).fetchone():
            raise OperationError(f"Cannot create attribute {path}: {prefix} is a field, not a namespace")
    if db.execute(
        "SELECT 1 FROM attrs WHERE run_id=? AND substr(path, 1, ?)=? LIMIT 1",
        (run_id, len(path) + 1, path + "/"),
    ).fetchone():
        raise OperationError(f"Cannot create attribute {path}: it is a namespace")
    return None


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise OperationError(f"{what} must be a number, got {value!r}"[:300])
    try:
        number = float(value)
    except OverflowError:
        number = math.inf  # an integer beyond the range of a double
    if not math.isfinite(number):
        raise OperationError(f"{what} must be a finite double: NaN, Inf and larger numbers are not supported")
    return number


def _float_text(value: Any, path: str) -> Any:
    """A number sent as text (the legacy client sends parameters so) read as the server reads it."""
    if not isinstance(value, str):
        return value
    try:
        return float(value.strip())
    except ValueError:
        raise OperationError(f"{path}: value must be a number, got {value!r}"[:300]) from None


def apply_operation(db: sqlite3.Connection, run_id: str, op: Any, dropped: list[str]) -> int:
    """Apply one operation; returns the number of series points it stored."""
    if not isinstance(op, dict):
        raise OperationError(f"Malformed operation {op!r}")
    path = op.get("path")
    names = [k for k in op if k != "path"]
    if len(names) != 1:
        raise OperationError(f"Malformed operation on {path!r}: expected exactly one operation, got {names}")
    name = names[0]
    body = op[name] if isinstance(op[name], dict) else {}
    if not valid_path(path):
        raise OperationError(f"Invalid attribute path {path!r}")
    assert isinstance(path, str)
    if path in READ_ONLY_SYS:
        raise OperationError(f"Attribute {path} is read-only")

    assigns = {
        "assignFloat": "float",
        "assignInt": "int",
        "assignBool": "bool",
        "assignString": "string",
        "assignDatetime": "datetime",
    }
    if name in assigns:
        kind = assigns[name]
        check_type(db, run_id, path, kind)
        if kind == "datetime":
            value: Any = _milliseconds(body.get("valueMilliseconds"), f"{path}: valueMilliseconds")
        else:
            value = body.get("value")
            if kind == "float":
                value = _number(_float_text(value, path), "value")
            elif kind == "int":
                if isinstance(value, bool) or not isinstance(value, int):
                    raise OperationError(f"value must be an integer, got {value!r}"[:300])
                if not -(2**63) <= value < 2**63:
                    raise OperationError(f"{path}: value {value} does not fit a 64-bit integer")
            elif kind == "bool":
                if not isinstance(value, bool):
                    raise OperationError(f"value must be a boolean, got {value!r}")
            elif not isinstance(value, str):
                raise OperationError(f"value must be a string, got {value!r}")
            else:
                value = value[:STRING_MAX]
        _put(db, run_id, path, kind, {"v": value})
        return 0

    series = {"logFloats": "floatSeries", "logStrings": "stringSeries", "logImages": "imageSeries"}
    if name in series:
        return _log(db, run_id, path, series[name], body.get("entries") or [])

    clears = {
        "clearFloatSeries": "floatSeries",
        "clearStringSeries": "stringSeries",
        "clearImageSeries": "imageSeries",
    }
    if name in clears:
        state = check_type(db, run_id, path, clears[name]) or {}
        db.execute("DELETE FROM points WHERE run_id=? AND path=?", (run_id, path))
        keep = {k: state[k] for k in ("config",) if k in state}
        _put(db, run_id, path, clears[name], keep)
        return 0

    if name == "configFloatSeries":
        state = check_type(db, run_id, path, "floatSeries") or {}
        state["config"] = {k: body.get(k) for k in ("min", "max", "unit")}
        _put(db, run_id, path, "floatSeries", state)
        return 0

    if name in ("insertStrings", "addStrings", "removeStrings", "clearStringSet"):
        if path not in STRING_SET_PATHS:
            raise OperationError(
                f"{name} on {path}: string sets can only be written to "
                f"{' and '.join(sorted(STRING_SET_PATHS))}"
            )
        state = check_type(db, run_id, path, "stringSet") or {"v": []}
        values = set(state.get("v", []))
        incoming = body.get("values") or []
        if not isinstance(incoming, list) or not all(isinstance(v, str) for v in incoming):
            raise OperationError(f"{path}: string set values must be a list of strings")
        if name == "removeStrings":
            values -= set(incoming)
        elif name == "clearStringSet":
            values = set()
        else:
            values |= set(incoming)
        _put(db, run_id, path, "stringSet", {"v": sorted(values)})
        return 0

    if name == "deleteAttribute":
        dropped += blobs_of(db, run_id, path)
        db.execute("DELETE FROM attrs WHERE run_id=? AND path=?", (run_id, path))
        db.execute("DELETE FROM points WHERE run_id=? AND path=?", (run_id, path))
        db.execute("DELETE FROM filesets WHERE run_id=? AND path=?", (run_id, path))
        return 0

    if name == "deleteFiles":
        current = _get(db, run_id, path)
        if current is None:
            return 0
        if current[0] != "fileSet":
            raise OperationError(f"Cannot delete files from attribute {path} of type {current[0]}")
        file_paths = body.get("filePaths") or []
        if not isinstance(file_paths, list):
            raise OperationError(f"{path}: filePaths must be a list")
        for raw in file_paths:
            sub = normalize_sub_path(str(raw))
            rows = db.execute(
                "SELECT sub_path, blob FROM filesets WHERE run_id=? AND path=?"
                " AND (?='' OR sub_path=? OR substr(sub_path, 1, ?)=?)",
                (run_id, path, sub, sub, len(sub) + 1, sub + "/"),
            ).fetchall()
            for row in rows:
                dropped.append(row["blob"])
                db.execute(
                    "DELETE FROM filesets WHERE run_id=? AND path=? AND sub_path=?",
                    (run_id, path, row["sub_path"]),
                )
        return 0

    if name == "assignArtifact":
        artifact_hash = body.get("hash")
        if not isinstance(artifact_hash, str) or not artifact_hash:
            raise OperationError(f"{path}: assignArtifact needs a hash, got {artifact_hash!r}"[:300])
        known = db.execute(
            "SELECT 1 FROM artifacts a JOIN runs r ON r.project_id=a.project_id WHERE r.id=? AND a.hash=?",
            (run_id, artifact_hash),
        ).fetchone()
        if known is None:
            raise OperationError(f"{path}: artifact {artifact_hash[:80]} does not exist in this project")
        check_type(db, run_id, path, "artifact")
        _put(db, run_id, path, "artifact", {"v": artifact_hash})
        return 0

    if name in ("clearArtifact", "trackFilesToArtifact"):
        raise OperationError(f"{name}: this artifact operation is not supported by the Neptune emulator")
    raise OperationError(f"Unsupported operation {name} on {path}")


def _log(db: sqlite3.Connection, run_id: str, path: str, kind: str, entries: list[Any]) -> int:
    """Append series points: every entry is checked first, so a refused operation stores nothing.

    Points whose step is not above the last one are skipped and reported (the others are kept), as a
    real server does; a malformed value, a timestamp out of range or a float series whose sum would
    overflow a double refuses the whole operation (its aggregates must stay readable).
    """
    state = check_type(db, run_id, path, kind) or {}
    last_step = state.get("lastStep")
    count = int(state.get("count", 0))
    rows: list[tuple[str, str, int, float, Any, int]] = []
    first_bad: float | None = None
    for entry in entries:
        if not isinstance(entry, dict):
            raise OperationError(f"Malformed series entry {entry!r}"[:300])
        step_raw = entry.get("step")
        if step_raw is None:
            step = 0.0 if last_step is None else float(last_step) + 1.0
        else:
            step = _number(step_raw, f"{path}: step")
        if last_step is not None and step <= float(last_step):
            if first_bad is None:
                first_bad = step
            continue
        raw = entry.get("value")
        if kind == "floatSeries":
            value: Any = _number(raw, f"{path}: value")
            total = float(state.get("sum", 0.0)) + value
            if not math.isfinite(total):
                raise OperationError(
                    f"{path}: the sum of the series' values would overflow a double at step {step} "
                    f"(value {value!r}); the operation was refused and nothing of it was stored"
                )
            state["min"] = value if state.get("min") is None else min(state["min"], value)
            state["max"] = value if state.get("max") is None else max(state["max"], value)
            state["sum"] = total
        elif kind == "stringSeries":
            if not isinstance(raw, str):
                raise OperationError(f"value must be a string, got {raw!r}"[:300])
            value = raw[:STRING_SERIES_MAX]
        else:
            value = json.dumps(raw)
        ts_raw = entry.get("timestampMilliseconds")
        ts = _milliseconds(ts_raw, f"{path}: timestampMilliseconds") if ts_raw else now_ms()
        rows.append((run_id, path, count + len(rows), step, value, ts))
        last_step = step
        state["last"] = value if kind != "imageSeries" else None
        state["lastStep"] = step
    db.executemany(
        "INSERT INTO points (run_id, path, idx, step, value, ts_ms) VALUES (?, ?, ?, ?, ?, ?)", rows
    )
    state["count"] = count + len(rows)
    _put(db, run_id, path, kind, state)
    if first_bad is not None:
        # The valid points of this operation are kept; the rejected ones are reported.
        raise StoredButRejected(
            f"X-coordinates (step) must be strictly increasing for series attribute: {path}. "
            f"Invalid point: {first_bad}",
            len(rows),
        )
    return len(rows)
