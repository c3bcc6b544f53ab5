"""What the web pages read: the runs table (filter, sort, page), downsampled series, checkpoints.

Reads go through the storage's connection under its lock, like storage.py's own reads. The only
thing written is bookkeeping SQLite does itself: a trigger keeps a tombstone of every deleted
checkpoint field, so a run page can still list the checkpoints retention deleted (and what they were).
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_neptune.emulator import nql, search
from airflow_provider_neptune.emulator.fields import merged_fields, plain_value, shown_fields
from airflow_provider_neptune.emulator.storage import Attr, ProjectRow, RunRow, Storage

# Fields a checkpoint entry `<namespace>/<key>/` holds besides its file (see core/checkpoint_records).
CHECKPOINT_FIELDS = ("sha256", "score", "step", "size", "uploaded_at", "name", "keep")

_TOMBSTONES = """
CREATE TABLE IF NOT EXISTS web_tombstones (
    run_id TEXT NOT NULL, path TEXT NOT NULL, type TEXT NOT NULL, value TEXT NOT NULL,
    deleted_ms INTEGER NOT NULL, PRIMARY KEY (run_id, path));
CREATE TRIGGER IF NOT EXISTS web_tombstone_checkpoint_field AFTER DELETE ON attrs
WHEN {condition}
BEGIN
    INSERT OR REPLACE INTO web_tombstones (run_id, path, type, value, deleted_ms) VALUES (
        old.run_id, old.path, old.type, old.value,
        CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER));
END;
CREATE TRIGGER IF NOT EXISTS web_tombstone_run_deleted AFTER DELETE ON runs
BEGIN
    DELETE FROM web_tombstones WHERE run_id = old.id;
END;
""".format(condition=" OR ".join(f"old.path GLOB '*/*/{name}'" for name in CHECKPOINT_FIELDS))

# Columns every runs table shows, in order: (field path, header).
BASE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("sys/id", "id"),
    ("sys/name", "name"),
    ("sys/tags", "tags"),
    ("sys/state", "state"),
    ("sys/owner", "owner"),
    ("sys/creation_time", "created"),
    ("airflow/dag_id", "DAG"),
    ("airflow/dag_run_id", "DAG run"),
)
MAX_PAGE_SIZE = 500


@contextmanager
def _reading(storage: Storage) -> Iterator[sqlite3.Connection]:
    """The storage's connection, held under its lock (one connection serialises every access)."""
    with storage._lock:
        yield storage._db


def install_tombstones(storage: Storage) -> None:
    """Create the tombstone table and triggers (idempotent; run once when the web view starts)."""
    with _reading(storage) as db:
        db.executescript(_TOMBSTONES)


# ----- runs table -------------------------------------------------------------------------------
@dataclass(frozen=True)
class TableQuery:
    """What the runs table shows: NQL filter, tag/state filters, sort column, page, extra columns."""

    nql_text: str = ""
    tag: str = ""
    state: str = ""
    sort: str = "sys/creation_time"
    descending: bool = True
    page: int = 1
    size: int = 50
    columns: tuple[str, ...] = ()

    def query(self) -> nql.Query:
        """The NQL filter combined with the tag and state filters (raises NQLSyntaxError)."""
        parts: list[nql.Query] = []
        parsed = nql.parse(self.nql_text)
        if not isinstance(parsed, nql.Everything):
            parts.append(parsed)
        if self.tag:
            parts.append(nql.Condition("sys/tags", "stringSet", "CONTAINS", self.tag))
        if self.state:
            parts.append(nql.Condition("sys/state", "experimentState", "=", self.state))
        if not parts:
            return nql.Everything()
        return parts[0] if len(parts) == 1 else nql.And(tuple(parts))


@dataclass
class TablePage:
    """One page of the filtered, sorted runs table, with every field path seen (for the column picker)."""

    rows: list[tuple[RunRow, dict[str, Attr]]]
    matching: int
    total: int
    pages: int
    field_paths: list[str] = field(default_factory=list)


def _sizes(storage: Storage, project_id: str) -> dict[str, int]:
    """sys/size of every run of a project in two queries (instead of two per run)."""
    sizes: dict[str, int] = {}
    with _reading(storage) as db:
        for row in db.execute(
            "SELECT filesets.run_id, SUM(filesets.size) FROM filesets JOIN runs ON filesets.run_id = runs.id"
            " WHERE runs.project_id=? GROUP BY filesets.run_id",
            (project_id,),
        ):
            sizes[row[0]] = sizes.get(row[0], 0) + int(row[1] or 0)
        for row in db.execute(
            "SELECT attrs.run_id, SUM(json_extract(attrs.value, '$.size')) FROM attrs"
            " JOIN runs ON attrs.run_id = runs.id WHERE runs.project_id=? AND attrs.type='file'"
            " GROUP BY attrs.run_id",
            (project_id,),
        ):
            sizes[row[0]] = sizes.get(row[0], 0) + int(row[1] or 0)
    return sizes


def run_count(storage: Storage, project: ProjectRow) -> int:
    """How many runs (not models) a project holds."""
    return int(
        storage.rows("SELECT COUNT(*) FROM runs WHERE project_id=? AND type='run'", (project.id,))[0][0]
    )


def _fields(
    storage: Storage, runs: list[RunRow], paths: list[str], state_timeout: float, sizes: dict[str, int]
) -> list[tuple[RunRow, dict[str, Attr]]]:
    """(run, fields) as the API's runs table sees them, with only the stored fields at `paths` read."""
    stored: dict[str, list[Attr]] = {}
    for run_id, attr in storage.attributes_of_runs([r.id for r in runs], paths):
        stored.setdefault(run_id, []).append(attr)
    return [
        (
            run,
            merged_fields(
                run, stored.get(run.id, []), storage.run_state(run, state_timeout), sizes.get(run.id, 0)
            ),
        )
        for run in runs
    ]


def field_paths(storage: Storage, project: ProjectRow) -> list[str]:
    """Every field path the project's runs show (for the column picker), from the column catalog."""
    paths = {path for path, _ in storage.columns_of(project.id, ["run"])}
    for kind, has_custom, has_parent in storage.kinds_present(project.id, ["run"]):
        paths |= {a.path for a in shown_fields(kind, has_custom, has_parent)}
    return sorted(paths)


def sort_value(fields: dict[str, Attr], path: str) -> Any:
    """The value a column sorts by: series by their last value, tags joined, missing as None."""
    attr = fields.get(path)
    value = plain_value(attr) if attr else None
    if isinstance(value, list):
        value = ",".join(value)
    return value


def _order(rows: list[tuple[RunRow, dict[str, Attr]]], request: TableQuery) -> list[RunRow]:
    """Sort rows by the request's column; rows without it go last in either direction."""
    keyed = [(sort_value(fields, request.sort), run) for run, fields in rows]
    present = [k for k in keyed if k[0] is not None]
    missing = [run for value, run in keyed if value is None]
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v, _ in present)
    present.sort(
        key=lambda k: (k[0] if numeric else str(k[0]), k[1].created_ms, k[1].seq), reverse=request.descending
    )
    missing.sort(key=lambda r: (r.created_ms, r.seq), reverse=request.descending)
    return [run for _, run in present] + missing


def table_page(storage: Storage, project: ProjectRow, request: TableQuery, state_timeout: float) -> TablePage:
    """Filter, sort and page the project's runs (raises NQLSyntaxError for a bad filter).

    The filter runs in SQLite as far as search.narrowing compiles it; when it compiles exactly and the
    sort column is a runs column, counting, sorting and paging do too and only the page's fields are
    read. Otherwise the rest of the filter and the sort run in Python over the runs SQL let through,
    reading only the fields they name.
    """
    query = request.query()
    where = search.narrowing(query)
    base = "r.project_id = ? AND r.type = 'run'"
    args = (project.id, *where.args)
    direction = "DESC" if request.descending else "ASC"
    order = f"r.created_ms {direction}, r.seq {direction}, r.rowid"
    needed = sorted(search.paths_of(query) | {request.sort})
    sizes = _sizes(storage, project.id) if "sys/size" in needed else {}
    if where.exact and request.sort in search.SQL_SORT_COLUMNS:
        matching = int(
            storage.rows(f"SELECT COUNT(*) FROM runs AS r WHERE {base} AND ({where.sql})", args)[0][0]
        )
        pages = max(1, math.ceil(matching / request.size))
        page = min(max(request.page, 1), pages)
        chosen = [
            storage.run_row(row)
            for row in storage.rows(
                f"SELECT r.* FROM runs AS r WHERE {base} AND ({where.sql})"
                f" ORDER BY {search.SQL_SORT_COLUMNS[request.sort]} {direction}, {order} LIMIT ? OFFSET ?",
                (*args, request.size, (page - 1) * request.size),
            )
        ]
    elif where.exact and not request.sort.startswith("sys/"):
        # SQL decided the filter; sorting by a stored field reads only that field's value.
        keys = search.sort_keys(storage, f"{base} AND ({where.sql})", args, request.sort)
        matching = len(keys)
        pages = max(1, math.ceil(matching / request.size))
        page = min(max(request.page, 1), pages)
        ids = search.ordered_ids(keys, request.descending, web=True)
        chosen = storage.runs_by_id(ids[(page - 1) * request.size : page * request.size])
    else:
        runs = [
            storage.run_row(row)
            for row in storage.rows(
                f"SELECT r.* FROM runs AS r WHERE {base} AND ({where.sql})"
                " ORDER BY r.created_ms, r.seq, r.rowid",
                args,
            )
        ]
        rows = _fields(storage, runs, needed, state_timeout, sizes)
        if not where.exact:
            rows = [
                (run, fields)
                for run, fields in rows
                if nql.matches(query, {p: (a.type, plain_value(a)) for p, a in fields.items()})
            ]
        ordered = _order(rows, request)
        matching = len(ordered)
        pages = max(1, math.ceil(matching / request.size))
        page = min(max(request.page, 1), pages)
        chosen = ordered[(page - 1) * request.size : page * request.size]
    shown = sorted({path for path, _ in BASE_COLUMNS} | set(request.columns))
    if "sys/size" in shown and not sizes:
        sizes = _sizes(storage, project.id)
    return TablePage(
        rows=_fields(storage, chosen, shown, state_timeout, sizes),
        matching=matching,
        total=run_count(storage, project),
        pages=pages,
        field_paths=field_paths(storage, project),
    )


# ----- series -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Series:
    """A float series as drawn: every point, or per-bucket minimum and maximum when it is long."""

    path: str
    total: int
    steps: list[float]
    values: list[float]

    @property
    def downsampled(self) -> bool:
        """Whether fewer points are drawn than the series holds."""
        return len(self.steps) < self.total


def float_series(storage: Storage, run_id: str, path: str, buckets: int = 600) -> Series:
    """The points of a float series to draw: all of them up to 2*buckets, else min and max per bucket.

    Keeping each bucket's extremes (plus the first and last point) preserves spikes and the curve's
    envelope, so the chart looks like the full series while sending a bounded number of points.
    """
    with _reading(storage) as db:
        total = int(
            db.execute("SELECT COUNT(*) FROM points WHERE run_id=? AND path=?", (run_id, path)).fetchone()[0]
        )
        if total <= 2 * buckets:
            rows = db.execute(
                "SELECT idx, step, value FROM points WHERE run_id=? AND path=? ORDER BY idx", (run_id, path)
            ).fetchall()
        else:
            width = math.ceil(total / buckets)
            # SQLite takes the bare columns (idx, step) from the row holding the MIN/MAX value.
            rows = db.execute(
                "SELECT idx, step, MIN(value) FROM points WHERE run_id=? AND path=? GROUP BY idx / ?"
                " UNION ALL"
                " SELECT idx, step, MAX(value) FROM points WHERE run_id=? AND path=? GROUP BY idx / ?"
                " UNION ALL SELECT idx, step, value FROM points WHERE run_id=? AND path=? AND idx IN (0, ?)",
                (run_id, path, width, run_id, path, width, run_id, path, total - 1),
            ).fetchall()
    by_index: dict[int, tuple[float, float]] = {}
    for idx, step, value in rows:
        if isinstance(value, int | float):
            by_index[int(idx)] = (float(step), float(value))
    ordered = [by_index[i] for i in sorted(by_index)]
    return Series(path, total, [s for s, _ in ordered], [v for _, v in ordered])


def string_tail(storage: Storage, run_id: str, path: str, count: int = 5) -> list[tuple[float, str]]:
    """The last `count` entries of a string series as (step, text), oldest first."""
    with _reading(storage) as db:
        rows = db.execute(
            "SELECT step, value FROM points WHERE run_id=? AND path=? ORDER BY idx DESC LIMIT ?",
            (run_id, path, count),
        ).fetchall()
    return [(float(step), str(value)) for step, value in reversed(rows)]


# ----- checkpoints ------------------------------------------------------------------------------
@dataclass(frozen=True)
class CheckpointView:
    """One checkpoint entry of a run as the run page lists it."""

    namespace: str
    key: str
    step: float | None
    score: float | None
    size: int | None
    sha256: str
    uploaded_ms: int | None
    marked_keep: bool
    status: str  # "kept", "deleted" (by retention) or "file missing" (a deletion was interrupted)
    file_path: str | None  # the File field to download, when it still exists

    @property
    def entry(self) -> str:
        """`<namespace>/<key>`."""
        return f"{self.namespace}/{self.key}"


def _entry_of(path: str) -> tuple[str, str, str] | None:
    parts = path.split("/")
    if len(parts) < 3 or parts[-1] not in CHECKPOINT_FIELDS:
        return None
    return "/".join(parts[:-2]), parts[-2], parts[-1]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def checkpoints(storage: Storage, run_id: str, fields: dict[str, Attr]) -> list[CheckpointView]:
    """Checkpoint entries (those with a sha256 field): live ones, then ones retention deleted."""
    live: dict[tuple[str, str], dict[str, Any]] = {}
    for path, attr in fields.items():
        found = _entry_of(path)
        if found:
            live.setdefault(found[:2], {})[found[2]] = attr.value.get("v")
    with _reading(storage) as db:
        rows = db.execute(
            "SELECT path, value, deleted_ms FROM web_tombstones WHERE run_id=?", (run_id,)
        ).fetchall()
    dead: dict[tuple[str, str], dict[str, Any]] = {}
    for path, value, _deleted_ms in rows:
        found = _entry_of(path)
        if found is None or "sha256" in live.get(found[:2], {}):
            continue  # not a checkpoint field, or the entry was uploaded again since
        dead.setdefault(found[:2], {})[found[2]] = json.loads(value).get("v")
    out: list[CheckpointView] = []
    for deleted, entries in ((False, live), (True, dead)):
        for (namespace, key), record in entries.items():
            sha = record.get("sha256")
            if not isinstance(sha, str) or not sha:
                continue
            file_path = f"{namespace}/{key}/file"
            has_file = not deleted and fields.get(file_path) is not None
            size = _number(record.get("size"))
            uploaded = record.get("uploaded_at")
            out.append(
                CheckpointView(
                    namespace=namespace,
                    key=key,
                    step=_number(record.get("step")),
                    score=_number(record.get("score")),
                    size=int(size) if size is not None else None,
                    sha256=sha,
                    uploaded_ms=int(uploaded) if isinstance(uploaded, int | float) else None,
                    marked_keep=record.get("keep") is True,
                    status="deleted" if deleted else ("kept" if has_file else "file missing"),
                    file_path=file_path if has_file else None,
                )
            )
    out.sort(key=lambda c: (c.namespace, c.step if c.step is not None else math.inf, c.key))
    return out
