"""Persistent state of the emulator: SQLite (stdlib sqlite3) for metadata plus a folder of blobs.

One connection guarded by one lock serialises every read and write, which is plenty for a test
server and keeps each request's operations atomic. Uploaded file contents live in `blobs/` under
random names; multipart parts live in `uploads/<id>/` until the upload finishes. The layout is
versioned (SCHEMA_VERSION, kept in `meta`) and migrated forward when an older directory is opened.
"""

from __future__ import annotations

import io
import json
import re
import secrets
import shutil
import sqlite3
import tarfile
import threading
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airflow_provider_neptune.emulator.clock import now_ms
from airflow_provider_neptune.emulator.errors import (
    DataDirectoryError,
    EmulatorError,
    MetadataError,
    OperationError,
    StoredButRejected,
)
from airflow_provider_neptune.emulator.operations import (
    READ_ONLY_SYS,
    apply_operation,
    blobs_of,
    check_type,
    normalize_sub_path,
    valid_path,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS projects (
    id TEXT PRIMARY KEY, workspace TEXT NOT NULL, name TEXT NOT NULL, key TEXT NOT NULL,
    next_seq INTEGER NOT NULL DEFAULT 1, created_ms INTEGER NOT NULL, UNIQUE (workspace, name));
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, project_id TEXT NOT NULL, seq INTEGER NOT NULL, short_id TEXT NOT NULL,
    type TEXT NOT NULL, custom_id TEXT, model_key TEXT, parent_id TEXT, owner TEXT NOT NULL,
    created_ms INTEGER NOT NULL, modified_ms INTEGER NOT NULL, ping_ms INTEGER NOT NULL,
    trashed INTEGER NOT NULL DEFAULT 0, UNIQUE (project_id, short_id));
CREATE INDEX IF NOT EXISTS runs_custom ON runs (project_id, custom_id);
CREATE TABLE IF NOT EXISTS attrs (
    run_id TEXT NOT NULL, path TEXT NOT NULL, type TEXT NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (run_id, path));
CREATE TABLE IF NOT EXISTS points (
    run_id TEXT NOT NULL, path TEXT NOT NULL, idx INTEGER NOT NULL, step REAL NOT NULL,
    value, ts_ms INTEGER NOT NULL, PRIMARY KEY (run_id, path, idx));
CREATE TABLE IF NOT EXISTS filesets (
    run_id TEXT NOT NULL, path TEXT NOT NULL, sub_path TEXT NOT NULL, blob TEXT NOT NULL,
    size INTEGER NOT NULL, mtime_ms INTEGER NOT NULL, PRIMARY KEY (run_id, path, sub_path));
CREATE TABLE IF NOT EXISTS uploads (
    id TEXT PRIMARY KEY, run_id TEXT NOT NULL, path TEXT NOT NULL, target TEXT NOT NULL,
    ext TEXT, sub_path TEXT, total INTEGER NOT NULL, created_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS downloads (
    id TEXT PRIMARY KEY, run_id TEXT NOT NULL, path TEXT NOT NULL, created_ms INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS artifacts (
    project_id TEXT NOT NULL, hash TEXT NOT NULL, size INTEGER, files TEXT,
    PRIMARY KEY (project_id, hash));
"""

# The version of the layout below; a data directory records the one it was written with in `meta`.
SCHEMA_VERSION = 2
SCHEMA_VERSION_KEY = "schema_version"

# Version 2: what searches need to stay flat as a project grows. Indexes for the runs table's order,
# model versions and "runs having field X"; the members of every string set (sys/tags) by value; and a
# catalog of the (path, type) columns each project's runs have ever had (searchLeaderboardAttributes).
# Triggers keep both up to date whoever writes `attrs`; the catalog may hold columns whose last field
# was deleted, so readers confirm an entry before they show it.
SCHEMA_V2 = """
CREATE INDEX IF NOT EXISTS runs_order ON runs (project_id, created_ms, seq);
CREATE INDEX IF NOT EXISTS runs_parent ON runs (parent_id);
CREATE INDEX IF NOT EXISTS runs_kind ON runs (project_id, type, custom_id);
CREATE INDEX IF NOT EXISTS runs_trashed ON runs (project_id, type, trashed);
CREATE INDEX IF NOT EXISTS attrs_path ON attrs (path, type);
CREATE TABLE IF NOT EXISTS set_members (
    run_id TEXT NOT NULL, path TEXT NOT NULL, member TEXT NOT NULL, PRIMARY KEY (run_id, path, member));
CREATE INDEX IF NOT EXISTS set_members_member ON set_members (path, member);
CREATE TABLE IF NOT EXISTS columns_seen (
    project_id TEXT NOT NULL, run_type TEXT NOT NULL, path TEXT NOT NULL, type TEXT NOT NULL,
    PRIMARY KEY (project_id, run_type, path, type));
CREATE TRIGGER IF NOT EXISTS attrs_index_insert AFTER INSERT ON attrs
BEGIN
    DELETE FROM set_members WHERE run_id = NEW.run_id AND path = NEW.path;
    INSERT OR IGNORE INTO set_members (run_id, path, member)
        SELECT NEW.run_id, NEW.path, j.value
        FROM json_each(CASE WHEN NEW.type = 'stringSet' THEN NEW.value ELSE '{}' END, '$.v') AS j;
    INSERT OR IGNORE INTO columns_seen (project_id, run_type, path, type)
        SELECT project_id, type, NEW.path, NEW.type FROM runs WHERE id = NEW.run_id;
END;
CREATE TRIGGER IF NOT EXISTS attrs_index_update AFTER UPDATE ON attrs
BEGIN
    DELETE FROM set_members WHERE run_id = OLD.run_id AND path = OLD.path;
    INSERT OR IGNORE INTO set_members (run_id, path, member)
        SELECT NEW.run_id, NEW.path, j.value
        FROM json_each(CASE WHEN NEW.type = 'stringSet' THEN NEW.value ELSE '{}' END, '$.v') AS j;
    INSERT OR IGNORE INTO columns_seen (project_id, run_type, path, type)
        SELECT project_id, type, NEW.path, NEW.type FROM runs WHERE id = NEW.run_id;
END;
CREATE TRIGGER IF NOT EXISTS attrs_index_delete AFTER DELETE ON attrs WHEN OLD.type = 'stringSet'
BEGIN
    DELETE FROM set_members WHERE run_id = OLD.run_id AND path = OLD.path;
END;
"""

# Fixed planner statistics (sqlite_stat1: rows, then rows per distinct value of each index prefix) for
# a large project, so SQLite picks the selective index (custom id, tag member) over one that merely
# avoids a sort, whatever the data holds yet. Measured statistics (ANALYZE) would describe a store
# while it is still small and steer the same searches to full scans once it has grown.
PLANNER_STATS: dict[str, tuple[str, str]] = {
    "sqlite_autoindex_runs_1": ("runs", "100000 1"),
    "sqlite_autoindex_runs_2": ("runs", "100000 10000 1"),
    "runs_custom": ("runs", "100000 10000 1"),
    "runs_kind": ("runs", "100000 10000 10000 1"),
    "runs_order": ("runs", "100000 10000 1 1"),
    "runs_trashed": ("runs", "100000 10000 10000 10000"),
    "runs_parent": ("runs", "100000 100"),
    "sqlite_autoindex_attrs_1": ("attrs", "2000000 20 1"),
    "attrs_path": ("attrs", "2000000 10000 10000"),
    "sqlite_autoindex_points_1": ("points", "10000000 1000 100 1"),
    "sqlite_autoindex_set_members_1": ("set_members", "200000 2 1 1"),
    "set_members_member": ("set_members", "200000 100000 10"),
    "sqlite_autoindex_columns_seen_1": ("columns_seen", "10000 1000 500 1 1"),
}

# Fills version 2's tables from what a version 1 data directory already holds.
MIGRATE_V1_TO_V2 = """
INSERT OR IGNORE INTO set_members (run_id, path, member)
    SELECT a.run_id, a.path, j.value FROM attrs AS a, json_each(a.value, '$.v') AS j
    WHERE a.type = 'stringSet';
INSERT OR IGNORE INTO columns_seen (project_id, run_type, path, type)
    SELECT DISTINCT r.project_id, r.type, a.path, a.type FROM attrs AS a JOIN runs AS r ON r.id = a.run_id;
"""


@dataclass(frozen=True)
class ProjectRow:
    """A project: UUID, workspace, name and the key that prefixes short ids (SAN-12)."""

    id: str
    workspace: str
    name: str
    key: str

    @property
    def qualified_name(self) -> str:
        """workspace/name."""
        return f"{self.workspace}/{self.name}"


@dataclass(frozen=True)
class RunRow:
    """A run (or model / model version): identities, owner, timestamps and trash flag."""

    id: str
    project_id: str
    seq: int
    short_id: str
    type: str
    custom_id: str | None
    model_key: str | None
    parent_id: str | None
    owner: str
    created_ms: int
    modified_ms: int
    ping_ms: int
    trashed: bool


@dataclass(frozen=True)
class Attr:
    """A stored field: path, Neptune attribute type and its JSON state."""

    path: str
    type: str
    value: dict[str, Any]


def _statements(script: str) -> list[str]:
    """The statements of a script, split where sqlite3 says one is complete (triggers hold `;`)."""
    out: list[str] = []
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            out.append(pending.strip())
            pending = ""
    if pending.strip():
        raise ValueError(f"incomplete SQL statement: {pending.strip()[:80]}")
    return out


def project_key_for(name: str, taken: set[str]) -> str:
    """A short upper-case key for a project name (sandbox -> SAN), unique among `taken`."""
    letters = re.sub(r"[^A-Za-z0-9]", "", name).upper() or "PRJ"
    base = letters[:3]
    key = base
    n = 2
    while key in taken:
        key = f"{base}{n}"
        n += 1
    return key


class Storage:
    """SQLite + blob store holding projects, runs, fields, series points and files."""

    def __init__(self, root: Path, owner: str = "emulator") -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.blobs = self.root / "blobs"
        self.blobs.mkdir(exist_ok=True)
        self.uploads_dir = self.root / "uploads"
        self.uploads_dir.mkdir(exist_ok=True)
        # Request bodies of upload routes are streamed here, then moved into blobs/ (same file system).
        self.incoming_dir = self.root / "incoming"
        self.incoming_dir.mkdir(exist_ok=True)
        self.owner = owner
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            str(self.root / "emulator.sqlite3"), check_same_thread=False, isolation_level=None
        )
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._migrate()
        self._live_sockets: dict[str, int] = {}
        self._closed_ms: dict[str, int] = {}

    def _migrate(self) -> None:
        """Bring the data directory's layout to SCHEMA_VERSION (a directory without a version is 1)."""
        with self._tx() as db:
            row = db.execute("SELECT value FROM meta WHERE key=?", (SCHEMA_VERSION_KEY,)).fetchone()
            version = int(row["value"]) if row else 1
            if version > SCHEMA_VERSION:
                raise DataDirectoryError(
                    f"data directory {self.root} was written by a newer emulator (schema version {version},"
                    f" this one knows up to {SCHEMA_VERSION}); use that version or a fresh directory"
                )
            # The layout's tables, indexes and triggers (all IF NOT EXISTS), then the data moves.
            for statement in _statements(SCHEMA_V2):
                db.execute(statement)
            if version < 2:
                for statement in _statements(MIGRATE_V1_TO_V2):
                    db.execute(statement)
            db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                (SCHEMA_VERSION_KEY, str(SCHEMA_VERSION)),
            )
            self._set_planner_stats(db)
        # Statistics written by hand take effect once SQLite reloads them.
        self._db.execute("ANALYZE sqlite_schema")

    @staticmethod
    def _set_planner_stats(db: sqlite3.Connection) -> None:
        """Write PLANNER_STATS into sqlite_stat1 (created empty by analysing a table that has no index)."""
        if not db.execute("SELECT 1 FROM sqlite_schema WHERE name = 'sqlite_stat1'").fetchone():
            db.execute("ANALYZE meta")
        for index, (table, stat) in PLANNER_STATS.items():
            db.execute("DELETE FROM sqlite_stat1 WHERE idx = ?", (index,))
            db.execute("INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES (?, ?, ?)", (table, index, stat))

    @property
    def schema_version(self) -> int:
        """The layout version of the open data directory."""
        return int(self.meta(SCHEMA_VERSION_KEY) or 1)

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # ----- meta ---------------------------------------------------------------------------------
    def meta(self, key: str, default: str | None = None) -> str | None:
        """Read a persisted setting."""
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row["value"] if row else default

    def meta_set(self, key: str, value: str) -> None:
        """Store a persisted setting."""
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def meta_setdefault(self, key: str, make: Any) -> str:
        """Return a persisted setting, storing make() first when it is missing."""
        with self._tx() as db:
            row = db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
            if row:
                return str(row["value"])
            value = str(make())
            db.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (key, value))
            return value

    # ----- projects -----------------------------------------------------------------------------
    def ensure_project(self, qualified_name: str) -> ProjectRow:
        """Create workspace/name if it does not exist yet and return it."""
        if not re.fullmatch(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", qualified_name):
            raise ValueError(f"project must look like workspace/name, got {qualified_name!r}")
        workspace, name = qualified_name.split("/")
        with self._tx() as db:
            row = db.execute(
                "SELECT * FROM projects WHERE workspace=? AND name=?", (workspace, name)
            ).fetchone()
            if row is None:
                taken = {r["key"] for r in db.execute("SELECT key FROM projects")}
                row = self._insert_project(db, workspace, name, project_key_for(name, taken))
        return self._project(row)

    def _insert_project(self, db: sqlite3.Connection, workspace: str, name: str, key: str) -> sqlite3.Row:
        """Insert a project and its metadata container (init_project reads and writes its fields)."""
        ts = now_ms()
        project_id = str(uuid.uuid4())
        db.execute(
            "INSERT INTO projects (id, workspace, name, key, created_ms) VALUES (?, ?, ?, ?, ?)",
            (project_id, workspace, name, key, ts),
        )
        db.execute(
            "INSERT INTO runs (id, project_id, seq, short_id, type, owner, created_ms, modified_ms,"
            " ping_ms) VALUES (?, ?, 0, ?, 'project', ?, ?, ?, ?)",
            (project_id, project_id, key, self.owner, ts, ts, ts),
        )
        row: sqlite3.Row = db.execute("SELECT * FROM projects WHERE id=?", (project_id,)).fetchone()
        return row

    def create_project(self, workspace: str, name: str, key: str | None) -> ProjectRow:
        """Create workspace/name (management createProject); 409 naming the clashing field otherwise.

        The error type is the field that is not unique ("name" or "projectKey"); keys are unique
        server-wide, as short ids must stay unambiguous.
        """
        with self._tx() as db:
            if db.execute(
                "SELECT 1 FROM projects WHERE workspace=? AND name=?", (workspace, name)
            ).fetchone():
                raise EmulatorError(409, f"Project {workspace}/{name} already exists", "name")
            taken = {r["key"] for r in db.execute("SELECT key FROM projects")}
            if key is not None and key in taken:
                raise EmulatorError(409, f"Project key {key} is already taken", "projectKey")
            row = self._insert_project(db, workspace, name, key or project_key_for(name, taken))
        return self._project(row)

    def delete_project(self, project_id: str) -> None:
        """Delete a project with all its runs, fields and files."""
        doomed = [r["id"] for r in self._db_rows("SELECT id FROM runs WHERE project_id=?", (project_id,))]
        self.delete_runs(doomed)
        with self._tx() as db:
            db.execute("DELETE FROM projects WHERE id=?", (project_id,))

    def _db_rows(self, sql: str, args: tuple[Any, ...]) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def put_attribute(self, run_id: str, attr: Attr) -> None:
        """Store a field the server itself writes (source_code/git from a run's creation)."""
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO attrs (run_id, path, type, value) VALUES (?, ?, ?, ?)",
                (run_id, attr.path, attr.type, json.dumps(attr.value)),
            )

    @staticmethod
    def _project(row: sqlite3.Row) -> ProjectRow:
        return ProjectRow(id=row["id"], workspace=row["workspace"], name=row["name"], key=row["key"])

    def find_project(self, identifier: str) -> ProjectRow | None:
        """A project by UUID or workspace/name."""
        with self._lock:
            row = self._db.execute("SELECT * FROM projects WHERE id=?", (identifier,)).fetchone()
            if row is None and "/" in identifier:
                workspace, _, name = identifier.partition("/")
                row = self._db.execute(
                    "SELECT * FROM projects WHERE workspace=? AND name=?", (workspace, name)
                ).fetchone()
        return self._project(row) if row else None

    def list_projects(self) -> list[ProjectRow]:
        """Every project, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM projects ORDER BY created_ms").fetchall()
        return [self._project(r) for r in rows]

    # ----- runs ---------------------------------------------------------------------------------
    @staticmethod
    def _run(row: sqlite3.Row) -> RunRow:
        return RunRow(
            id=row["id"],
            project_id=row["project_id"],
            seq=row["seq"],
            short_id=row["short_id"],
            type=row["type"],
            custom_id=row["custom_id"],
            model_key=row["model_key"],
            parent_id=row["parent_id"],
            owner=row["owner"],
            created_ms=row["created_ms"],
            modified_ms=row["modified_ms"],
            ping_ms=row["ping_ms"],
            trashed=bool(row["trashed"]),
        )

    def create_run(
        self,
        project: ProjectRow,
        *,
        kind: str = "run",
        custom_id: str | None = None,
        model_key: str | None = None,
        parent_id: str | None = None,
    ) -> tuple[RunRow, bool]:
        """Create a run (or return the one with the same custom id): (row, created?)."""
        with self._tx() as db:
            if custom_id:
                row = db.execute(
                    "SELECT * FROM runs WHERE project_id=? AND custom_id=? AND type=? ORDER BY seq LIMIT 1",
                    (project.id, custom_id, kind),
                ).fetchone()
                if row is not None:
                    return self._run(row), False
            if kind == "model":
                if not model_key or not re.fullmatch(r"[A-Z0-9]{1,10}", model_key):
                    raise EmulatorError(422, f"Invalid model key {model_key!r}", "INCORRECT_IDENTIFIER")
                short_id = f"{project.key}-{model_key}"
                if db.execute(
                    "SELECT 1 FROM runs WHERE project_id=? AND short_id=?", (project.id, short_id)
                ).fetchone():
                    raise EmulatorError(409, f"Model {short_id} already exists", "MODEL_KEY_COLLISION")
                seq = 0
            elif kind == "modelVersion":
                parent = db.execute("SELECT * FROM runs WHERE id=?", (parent_id,)).fetchone()
                if parent is None or parent["type"] != "model":
                    raise EmulatorError(404, f"Model {parent_id} not found", "EXPERIMENT_NOT_FOUND")
                seq = db.execute(
                    "SELECT COALESCE(MAX(seq), 0) + 1 FROM runs WHERE parent_id=?", (parent_id,)
                ).fetchone()[0]
                short_id = f"{parent['short_id']}-{seq}"
            else:
                seq = db.execute("SELECT next_seq FROM projects WHERE id=?", (project.id,)).fetchone()[0]
                db.execute("UPDATE projects SET next_seq=? WHERE id=?", (seq + 1, project.id))
                short_id = f"{project.key}-{seq}"
            ts = now_ms()
            run_id = str(uuid.uuid4())
            db.execute(
                "INSERT INTO runs (id, project_id, seq, short_id, type, custom_id, model_key, parent_id,"
                " owner, created_ms, modified_ms, ping_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    project.id,
                    seq,
                    short_id,
                    kind,
                    custom_id,
                    model_key,
                    parent_id,
                    self.owner,
                    ts,
                    ts,
                    ts,
                ),
            )
            row = db.execute("SELECT * FROM runs WHERE id=?", (run_id,)).fetchone()
        return self._run(row), True

    def find_run(self, identifier: str) -> RunRow | None:
        """A run by UUID or by workspace/project/SHORT-ID."""
        with self._lock:
            row = self._db.execute("SELECT * FROM runs WHERE id=?", (identifier,)).fetchone()
            if row is None and identifier.count("/") == 2:
                workspace, name, short_id = identifier.split("/")
                row = self._db.execute(
                    "SELECT runs.* FROM runs JOIN projects ON runs.project_id = projects.id"
                    " WHERE projects.workspace=? AND projects.name=? AND runs.short_id=?",
                    (workspace, name, short_id),
                ).fetchone()
        return self._run(row) if row else None

    def runs_of(self, project_id: str, kinds: list[str] | None = None) -> list[RunRow]:
        """All runs of a project (optionally of some types), oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM runs WHERE project_id=? ORDER BY created_ms, seq", (project_id,)
            ).fetchall()
        runs = [self._run(r) for r in rows]
        return [r for r in runs if (r.type in kinds if kinds else r.type != "project")]

    def ping(self, run_id: str) -> None:
        """Record that a client holding the run is alive."""
        with self._tx() as db:
            db.execute("UPDATE runs SET ping_ms=? WHERE id=?", (now_ms(), run_id))

    def set_trashed(self, run_ids: list[str], trashed: bool) -> None:
        """Move runs to or out of the trash."""
        with self._tx() as db:
            db.executemany("UPDATE runs SET trashed=? WHERE id=?", [(int(trashed), rid) for rid in run_ids])

    def delete_runs(self, run_ids: list[str]) -> None:
        """Delete runs for good, with their fields and blobs."""
        blobs: list[str] = []
        with self._tx() as db:
            for rid in run_ids:
                blobs += blobs_of(db, rid, None)
                for table in ("attrs", "points", "filesets", "uploads", "downloads"):
                    db.execute(f"DELETE FROM {table} WHERE run_id=?", (rid,))
                db.execute("DELETE FROM runs WHERE id=? OR parent_id=?", (rid, rid))
        self._drop_blobs(blobs)

    # ----- websocket liveness -------------------------------------------------------------------
    def socket_opened(self, run_id: str) -> None:
        """A client opened the run's signal websocket (it holds the run open)."""
        with self._lock:
            self._live_sockets[run_id] = self._live_sockets.get(run_id, 0) + 1

    def socket_closed(self, run_id: str) -> None:
        """A client closed the run's websocket (neptune does so in stop())."""
        with self._lock:
            left = self._live_sockets.get(run_id, 1) - 1
            if left <= 0:
                self._live_sockets.pop(run_id, None)
                self._closed_ms[run_id] = now_ms()
            else:
                self._live_sockets[run_id] = left

    def run_state(self, run: RunRow, state_timeout_s: float) -> str:
        """'running' while a client holds the run (open websocket or recent ping), else 'idle'."""
        with self._lock:
            if self._live_sockets.get(run.id, 0) > 0:
                return "running"
            closed = self._closed_ms.get(run.id)
        if closed is not None and run.ping_ms <= closed:
            return "idle"
        return "running" if now_ms() - run.ping_ms < state_timeout_s * 1000 else "idle"

    # ----- attributes ---------------------------------------------------------------------------
    def attributes(self, run_id: str) -> list[Attr]:
        """Every stored field of a run."""
        with self._lock:
            rows = self._db.execute(
                "SELECT path, type, value FROM attrs WHERE run_id=? ORDER BY path", (run_id,)
            ).fetchall()
        return [Attr(r["path"], r["type"], json.loads(r["value"])) for r in rows]

    def attributes_of_project(self, project_id: str) -> dict[str, list[Attr]]:
        """Stored fields of every run of a project, by run id."""
        out: dict[str, list[Attr]] = {}
        with self._lock:
            rows = self._db.execute(
                "SELECT attrs.run_id, attrs.path, attrs.type, attrs.value FROM attrs"
                " JOIN runs ON attrs.run_id = runs.id WHERE runs.project_id=? ORDER BY attrs.path",
                (project_id,),
            ).fetchall()
        for row in rows:
            out.setdefault(row["run_id"], []).append(Attr(row["path"], row["type"], json.loads(row["value"])))
        return out

    def attributes_of_runs(
        self, run_ids: list[str], paths: list[str] | None = None
    ) -> list[tuple[str, Attr]]:
        """(run id, field) for the stored fields of some runs, only those at `paths` when given, by path."""
        out: list[tuple[str, Attr]] = []
        path_sql = f" AND path IN ({', '.join('?' * len(paths))})" if paths else ""
        for start in range(0, len(run_ids), 500):
            chunk = run_ids[start : start + 500]
            rows = self.rows(
                f"SELECT run_id, path, type, value FROM attrs WHERE run_id IN ({', '.join('?' * len(chunk))})"
                f"{path_sql} ORDER BY path",
                (*chunk, *(paths or ())),
            )
            out += [(r["run_id"], Attr(r["path"], r["type"], json.loads(r["value"]))) for r in rows]
        return out

    def runs_by_id(self, run_ids: list[str]) -> list[RunRow]:
        """Runs by UUID, in the order given (unknown ids left out)."""
        found: dict[str, RunRow] = {}
        for start in range(0, len(run_ids), 500):
            chunk = run_ids[start : start + 500]
            for row in self.rows(
                f"SELECT * FROM runs WHERE id IN ({', '.join('?' * len(chunk))})", tuple(chunk)
            ):
                found[row["id"]] = self._run(row)
        return [found[i] for i in run_ids if i in found]

    def kinds_present(self, project_id: str, kinds: list[str]) -> list[tuple[str, bool, bool]]:
        """(kind, any with a custom id?, any with a parent?) for each of `kinds` the project has a run of."""
        out: list[tuple[str, bool, bool]] = []
        with self._lock:
            for kind in kinds:
                if not self._db.execute(
                    "SELECT 1 FROM runs WHERE project_id=? AND type=? LIMIT 1", (project_id, kind)
                ).fetchone():
                    continue
                custom = self._db.execute(
                    "SELECT 1 FROM runs WHERE project_id=? AND type=? AND custom_id > '' LIMIT 1",
                    (project_id, kind),
                ).fetchone()
                # Only a model version shows its parent (sys/model_id); other kinds need no look.
                parent = (
                    kind == "modelVersion"
                    and self._db.execute(
                        "SELECT 1 FROM runs WHERE project_id=? AND type=? AND parent_id IS NOT NULL LIMIT 1",
                        (project_id, kind),
                    ).fetchone()
                )
                out.append((kind, custom is not None, bool(parent)))
        return out

    def columns_of(self, project_id: str, kinds: list[str], contains: str = "") -> list[tuple[str, str]]:
        """(path, type) of the stored fields of runs of `kinds` in a project, paths containing `contains`.

        Read from the columns_seen catalog; each entry is confirmed by one stored field still having it.
        """
        rows = self.rows(
            "SELECT DISTINCT c.path, c.type FROM columns_seen AS c WHERE c.project_id = ?"
            f" AND c.run_type IN ({', '.join('?' * len(kinds))}) AND instr(c.path, ?) > 0"
            " AND EXISTS (SELECT 1 FROM attrs AS a JOIN runs AS r ON r.id = a.run_id WHERE a.path = c.path"
            " AND a.type = c.type AND r.project_id = c.project_id AND r.type = c.run_type)",
            (project_id, *kinds, contains),
        )
        return [(r["path"], r["type"]) for r in rows]

    def rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        """Rows of a read-only query, run under the storage's lock."""
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def run_row(self, row: sqlite3.Row) -> RunRow:
        """A RunRow from a `SELECT *` row of the runs table."""
        return self._run(row)

    def attribute(self, run_id: str, path: str) -> Attr | None:
        """One stored field."""
        with self._lock:
            row = self._db.execute(
                "SELECT path, type, value FROM attrs WHERE run_id=? AND path=?", (run_id, path)
            ).fetchone()
        return Attr(row["path"], row["type"], json.loads(row["value"])) if row else None

    def series_values(self, run_id: str, path: str, offset: int, limit: int) -> tuple[int, list[sqlite3.Row]]:
        """(total count, points[offset:offset+limit]) of a series, in step order.

        A series' ``idx`` runs 0..count-1 (points are only appended, and a series is only cleared whole),
        so both the count and the page are primary-key lookups: a read deep into a long series costs
        what a read of its first page does.
        """
        return self._series_page(run_id, path, offset, limit, sqlite3.Row)

    def series_tuples(
        self, run_id: str, path: str, offset: int, limit: int
    ) -> tuple[int, list[tuple[Any, ...]]]:
        """:meth:`series_values` as plain (ts_ms, step, value) tuples: half the cost of Rows."""
        return self._series_page(run_id, path, offset, limit, None)

    def _series_page(
        self, run_id: str, path: str, offset: int, limit: int, row_factory: Any
    ) -> tuple[int, list[Any]]:
        with self._lock:
            total = self._db.execute(
                "SELECT COALESCE(MAX(idx) + 1, 0) FROM points WHERE run_id=? AND path=?", (run_id, path)
            ).fetchone()[0]
            start = max(offset, 0)
            cursor = self._db.cursor()
            cursor.row_factory = row_factory
            rows = cursor.execute(
                "SELECT ts_ms, step, value FROM points WHERE run_id=? AND path=? AND idx >= ? AND idx < ?"
                " ORDER BY idx",
                (run_id, path, start, start + max(limit, 0)),
            ).fetchall()
        return int(total), rows

    def fileset_entries(self, run_id: str, path: str) -> list[sqlite3.Row]:
        """Files of a file set, by sub-path."""
        with self._lock:
            return self._db.execute(
                "SELECT sub_path, blob, size, mtime_ms FROM filesets WHERE run_id=? AND path=?"
                " ORDER BY sub_path",
                (run_id, path),
            ).fetchall()

    def blob_path(self, blob: str) -> Path:
        """Where a blob's bytes are on disk."""
        return self.blobs / blob

    def run_size(self, run_id: str) -> int:
        """Bytes of files stored for a run (sys/size)."""
        with self._lock:
            files = self._db.execute(
                "SELECT COALESCE(SUM(size), 0) FROM filesets WHERE run_id=?", (run_id,)
            ).fetchone()[0]
            atoms = self._db.execute(
                "SELECT value FROM attrs WHERE run_id=? AND type='file'", (run_id,)
            ).fetchall()
        return int(files) + sum(int(json.loads(r["value"]).get("size", 0)) for r in atoms)

    def stored_bytes(self, project_ids: list[str]) -> int:
        """Bytes of files stored for the runs (not project containers) of some projects, in SQL.

        The sum of run_size over those runs, without a query per run.
        """
        marks = ", ".join("?" * len(project_ids))
        runs = f"SELECT id FROM runs WHERE project_id IN ({marks}) AND type <> 'project'"
        with self._lock:
            files = self._db.execute(
                f"SELECT COALESCE(SUM(size), 0) FROM filesets WHERE run_id IN ({runs})", tuple(project_ids)
            ).fetchone()[0]
            atoms = self._db.execute(
                f"SELECT value FROM attrs WHERE type = 'file' AND run_id IN ({runs})", tuple(project_ids)
            ).fetchall()
        return int(files) + sum(int(json.loads(r["value"]).get("size", 0)) for r in atoms)

    # ----- writes -------------------------------------------------------------------------------
    def execute_operations(self, run: RunRow, operations: list[Any]) -> tuple[list[str], int, int]:
        """Apply operations in order in one transaction: (errors, operations applied, points stored)."""
        errors: list[str] = []
        applied = 0
        points = 0
        dropped: list[str] = []
        with self._tx() as db:
            for op in operations:
                try:
                    points += apply_operation(db, run.id, op, dropped)
                    applied += 1
                except StoredButRejected as exc:
                    points += exc.stored
                    applied += 1
                    errors.append(str(exc))
                except OperationError as exc:
                    errors.append(str(exc))
            if applied:
                db.execute("UPDATE runs SET modified_ms=? WHERE id=?", (now_ms(), run.id))
        self._drop_blobs(dropped)
        return errors, applied, points

    def store_blob(self, data: bytes | Path) -> str:
        """Keep bytes (or move a file of incoming data) as a new blob and return its name."""
        name = uuid.uuid4().hex
        if isinstance(data, Path):
            data.replace(self.blobs / name)
            return name
        tmp = self.blobs / f".{name}.tmp"
        tmp.write_bytes(data)
        tmp.replace(self.blobs / name)
        return name

    def incoming_file(self) -> Path:
        """A fresh path under incoming/ for a streamed request body."""
        return self.incoming_dir / uuid.uuid4().hex

    @staticmethod
    def _size(data: bytes | Path) -> int:
        return data.stat().st_size if isinstance(data, Path) else len(data)

    def _drop_blobs(self, blobs: list[str]) -> None:
        for blob in blobs:
            (self.blobs / blob).unlink(missing_ok=True)

    def set_file(self, run: RunRow, path: str, ext: str, data: bytes | Path) -> None:
        """Store a File field's content (bytes, or a file that is moved in), replacing an older one."""
        self._check_writable(path)
        size = self._size(data)
        blob = self.store_blob(data)
        name = path.rsplit("/", 1)[-1]
        value = {"blob": blob, "name": name, "ext": ext or "", "size": size}
        old: list[str] = []
        try:
            with self._tx() as db:
                check_type(db, run.id, path, "file")
                old = blobs_of(db, run.id, path)
                db.execute(
                    "INSERT OR REPLACE INTO attrs (run_id, path, type, value) VALUES (?, ?, 'file', ?)",
                    (run.id, path, json.dumps(value)),
                )
                db.execute("UPDATE runs SET modified_ms=? WHERE id=?", (now_ms(), run.id))
        except OperationError as exc:
            self._drop_blobs([blob])
            raise MetadataError(str(exc)) from exc
        self._drop_blobs(old)

    def add_fileset_files(self, run: RunRow, path: str, files: dict[str, bytes | Path], reset: bool) -> None:
        """Add files (bytes, or files that are moved in) to a FileSet field, optionally emptying it first."""
        self._check_writable(path)
        sizes = {sub: self._size(data) for sub, data in files.items()}
        stored = {sub: self.store_blob(data) for sub, data in files.items()}
        old: list[str] = []
        try:
            with self._tx() as db:
                check_type(db, run.id, path, "fileSet")
                db.execute(
                    "INSERT OR IGNORE INTO attrs (run_id, path, type, value) VALUES (?, ?, 'fileSet', '{}')",
                    (run.id, path),
                )
                if reset:
                    old += blobs_of(db, run.id, path)
                    db.execute("DELETE FROM filesets WHERE run_id=? AND path=?", (run.id, path))
                ts = now_ms()
                for sub, blob in stored.items():
                    prev = db.execute(
                        "SELECT blob FROM filesets WHERE run_id=? AND path=? AND sub_path=?",
                        (run.id, path, sub),
                    ).fetchone()
                    if prev:
                        old.append(prev["blob"])
                    db.execute(
                        "INSERT OR REPLACE INTO filesets (run_id, path, sub_path, blob, size, mtime_ms)"
                        " VALUES (?, ?, ?, ?, ?, ?)",
                        (run.id, path, sub, blob, sizes[sub], ts),
                    )
                db.execute("UPDATE runs SET modified_ms=? WHERE id=?", (ts, run.id))
        except OperationError as exc:
            self._drop_blobs(list(stored.values()))
            raise MetadataError(str(exc)) from exc
        self._drop_blobs(old)

    def add_fileset_tar(self, run: RunRow, path: str, data: bytes | Path, reset: bool) -> None:
        """Unpack a tar.gz upload (bytes or a file) into a FileSet field, member by member to disk."""
        files: dict[str, bytes | Path] = {}
        try:
            with (
                tarfile.open(name=data, mode="r:*")
                if isinstance(data, Path)
                else tarfile.open(fileobj=io.BytesIO(data), mode="r:*")
            ) as archive:
                for member in archive:
                    if not member.isfile():
                        continue
                    sub = normalize_sub_path(member.name)
                    handle = archive.extractfile(member)
                    if sub and handle is not None:
                        target = files.get(sub)
                        if not isinstance(target, Path):
                            target = self.incoming_file()
                            files[sub] = target
                        with target.open("wb") as out:
                            shutil.copyfileobj(handle, out)
        except (tarfile.TarError, EOFError, OSError) as exc:
            self._discard(files.values())
            raise EmulatorError(400, f"Invalid tar.gz upload: {exc}") from exc
        try:
            self.add_fileset_files(run, path, files, reset)
        finally:
            self._discard(files.values())

    @staticmethod
    def _discard(files: Any) -> None:
        """Delete incoming files that were not moved into blobs/."""
        for item in files:
            if isinstance(item, Path):
                item.unlink(missing_ok=True)

    @staticmethod
    def _check_writable(path: str) -> None:
        if not valid_path(path):
            raise MetadataError(f"Invalid attribute path {path!r}")
        if path in READ_ONLY_SYS:
            raise MetadataError(f"Attribute {path} is read-only")

    # ----- multipart uploads --------------------------------------------------------------------
    def start_upload(
        self, run: RunRow, path: str, target: str, ext: str | None, sub_path: str | None, total: int
    ) -> str:
        """Begin a multipart upload and return its id."""
        self._check_writable(path)
        upload_id = secrets.token_hex(12)
        (self.uploads_dir / upload_id).mkdir()
        with self._tx() as db:
            db.execute(
                "INSERT INTO uploads (id, run_id, path, target, ext, sub_path, total, created_ms)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (upload_id, run.id, path, target, ext, sub_path, total, now_ms()),
            )
        return upload_id

    def upload(self, upload_id: str) -> sqlite3.Row | None:
        """An unfinished multipart upload."""
        with self._lock:
            return self._db.execute("SELECT * FROM uploads WHERE id=?", (upload_id,)).fetchone()

    def store_part(self, upload_id: str, start: int, data: bytes | Path) -> None:
        """Keep one part (bytes, or a file that is moved in) of a multipart upload, named by its offset."""
        target = self.uploads_dir / upload_id / f"{start:020d}"
        if isinstance(data, Path):
            data.replace(target)
        else:
            target.write_bytes(data)

    def finish_upload(self, upload_id: str) -> None:
        """Join the parts of a multipart upload and store them in the field."""
        up = self.upload(upload_id)
        if up is None:
            raise EmulatorError(404, f"Upload {upload_id} not found")
        folder = self.uploads_dir / upload_id
        joined = self.incoming_file()
        try:
            # Parts are joined on disk, never in memory: a file may be far larger than RAM allows.
            with joined.open("wb") as out:
                for part in sorted(folder.iterdir()):
                    if int(part.name) != out.tell():
                        raise EmulatorError(400, "Length of stream does not match given range")
                    with part.open("rb") as src:
                        shutil.copyfileobj(src, out)
                length = out.tell()
            if length != up["total"]:
                raise EmulatorError(400, "Length of stream does not match given range")
            run = self.find_run(up["run_id"])
            if run is None:
                raise EmulatorError(404, "Run not found", "EXPERIMENT_NOT_FOUND")
            if up["target"] == "file":
                self.set_file(run, up["path"], up["ext"] or "", joined)
            else:
                self.add_fileset_files(run, up["path"], {up["sub_path"]: joined}, reset=False)
        finally:
            joined.unlink(missing_ok=True)
        with self._tx() as db:
            db.execute("DELETE FROM uploads WHERE id=?", (upload_id,))
        shutil.rmtree(folder, ignore_errors=True)

    # ----- file set downloads -------------------------------------------------------------------
    def prepare_download(self, run_id: str, path: str) -> str:
        """Register a file-set zip download and return its id."""
        download_id = secrets.token_hex(12)
        with self._tx() as db:
            db.execute(
                "INSERT INTO downloads (id, run_id, path, created_ms) VALUES (?, ?, ?, ?)",
                (download_id, run_id, path, now_ms()),
            )
        return download_id

    def download(self, download_id: str) -> sqlite3.Row | None:
        """A prepared download."""
        with self._lock:
            return self._db.execute("SELECT * FROM downloads WHERE id=?", (download_id,)).fetchone()

    def fileset_zip(self, run_id: str, path: str) -> bytes:
        """The files of a FileSet field as a zip archive laid out as the real server writes it.

        Besides the files it holds a root entry `/` and an entry for every folder (`from/`,
        `from/heart/`), each ahead of what it contains.
        """
        entries = self.fileset_entries(run_id, path)
        folders = {"/"}
        for entry in entries:
            parts = entry["sub_path"].split("/")[:-1]
            folders.update("/".join(parts[: i + 1]) + "/" for i in range(len(parts)))
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
            for folder in sorted(folders, key=lambda name: (name != "/", name)):
                info = zipfile.ZipInfo(folder)
                info.external_attr = (0o40755 << 16) | 0x10  # a directory, as `unzip` expects
                archive.writestr(info, b"")
            for entry in entries:
                archive.write(self.blob_path(entry["blob"]), arcname=entry["sub_path"])
        return buf.getvalue()

    # ----- artifacts ----------------------------------------------------------------------------
    def artifact(self, project_id: str, artifact_hash: str) -> sqlite3.Row | None:
        """An artifact of a project (`files` is NULL until its file list was sent)."""
        with self._lock:
            return self._db.execute(
                "SELECT hash, size, files FROM artifacts WHERE project_id=? AND hash=?",
                (project_id, artifact_hash),
            ).fetchone()

    def create_artifact(self, project_id: str, artifact_hash: str, size: int | None) -> sqlite3.Row:
        """Register an artifact by hash (kept as it is when it already exists) and return it."""
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO artifacts (project_id, hash, size, files) VALUES (?, ?, ?, NULL)",
                (project_id, artifact_hash, size),
            )
            return db.execute(
                "SELECT hash, size, files FROM artifacts WHERE project_id=? AND hash=?",
                (project_id, artifact_hash),
            ).fetchone()

    def set_artifact_files(
        self, project_id: str, artifact_hash: str, files: list[dict[str, Any]], size: int | None
    ) -> None:
        """Store the file list (and size) of an artifact, creating it when it is new."""
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO artifacts (project_id, hash, size, files) VALUES (?, ?, ?, ?)",
                (project_id, artifact_hash, size, json.dumps(files)),
            )
