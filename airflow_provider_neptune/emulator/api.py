"""Handlers of the Neptune API operations (one method per operationId), run in worker threads.

Each handler gets a parsed `Call` and returns a Starlette response; request-level errors are raised
as `EmulatorError` and turned into Neptune-style JSON error bodies by the app.
"""

from __future__ import annotations

import base64
import functools
import itertools
import json
import logging
import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

from starlette.responses import FileResponse, Response
from starlette.responses import JSONResponse as _StarletteJSONResponse

from airflow_provider_neptune.emulator import nql, search
from airflow_provider_neptune.emulator.artifacts import (
    ARTIFACT_API_VERSION,
    artifact_size,
    merge_files,
    validate_files,
)
from airflow_provider_neptune.emulator.artifacts import artifact_hash as artifact_hash_of
from airflow_provider_neptune.emulator.clock import iso_ms
from airflow_provider_neptune.emulator.errors import EmulatorError, MetadataError, NQLSyntaxError
from airflow_provider_neptune.emulator.fields import (
    attribute_dto,
    merged_fields,
    plain_value,
    project_fields,
    properties,
    shown_fields,
)
from airflow_provider_neptune.emulator.management import ManagementApi
from airflow_provider_neptune.emulator.operations import normalize_sub_path, operation_type_error
from airflow_provider_neptune.emulator.storage import (
    Attr,
    ProjectRow,
    RunRow,
    Storage,
)

MIN_CLIENT_VERSION = "1.0.0"
MAX_CLIENT_VERSION = "1.999.0"
# Every kind of metadata container a project holds (a project itself is one too).
RUN_KINDS = ("run", "model", "modelVersion", "project")
SYSTEM_COLUMNS = (
    ("sys/creation_time", "datetime"),
    ("sys/modification_time", "datetime"),
    ("sys/ping_time", "datetime"),
    ("sys/id", "string"),
    ("sys/name", "string"),
    ("sys/owner", "string"),
    ("sys/description", "string"),
    ("sys/state", "experimentState"),
    ("sys/tags", "stringSet"),
    ("sys/trashed", "bool"),
    ("sys/failed", "bool"),
    ("sys/size", "float"),
    ("sys/running_time", "float"),
    ("sys/monitoring_time", "int"),
)
# Nominal storage quota reported by workspaceStatus (the emulator enforces none).
STORAGE_LIMIT = 100 * 1024**3
# Integers the API takes (offsets, limits, lengths) must fit SQLite's signed 64-bit INTEGER.
INT64_MAX = 2**63 - 1

log = logging.getLogger("airflow_provider_neptune.emulator")


def _finite_only(value: Any) -> Any:
    """A copy of a JSON document with every non-finite float replaced by null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_only(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_only(v) for v in value]
    return value


class JSONResponse(_StarletteJSONResponse):
    """A JSON response that never fails on inf/NaN: they are sent as null (and logged).

    The emulator refuses non-finite input, so this only guards data stored by older versions; a read
    must never turn into a 500 because of what a run holds.
    """

    def render(self, content: Any) -> bytes:
        """Strict JSON; inf/NaN are sent as null and text that is not valid Unicode is \\u-escaped."""
        try:
            return super().render(content)
        except ValueError:  # non-finite numbers, or a lone surrogate UTF-8 cannot encode
            log.warning("a response held non-finite numbers or invalid Unicode; sent as null / escaped")
            return json.dumps(_finite_only(content), allow_nan=False, separators=(",", ":")).encode("ascii")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is outside the range of a double")
    return value


# A surrogate code unit written as a \\u escape or as (invalid) UTF-8 bytes: only then can a string
# hold an unpaired surrogate, which is not Unicode and could never be encoded back to UTF-8.
_SURROGATE_HINT = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")


def _has_lone_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return True
        return False
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_lone_surrogate(v) for v in value)
    return False


def parse_json(body: bytes, what: str = "body") -> Any:
    """Strict JSON (no NaN/Infinity, no numbers beyond a double, valid Unicode); 400 otherwise."""
    try:
        value = json.loads(body or b"null", parse_constant=_refuse_constant, parse_float=_finite_float)
        if _SURROGATE_HINT.search(body) and _has_lone_surrogate(value):
            raise ValueError("a string holds an unpaired surrogate, which is not valid Unicode")
        return value
    except RecursionError as exc:
        raise EmulatorError(400, f"Malformed JSON {what}: nested too deeply", "BAD_REQUEST") from exc
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError and the refusals above
        raise EmulatorError(400, f"Malformed JSON {what}: {exc}", "BAD_REQUEST") from exc


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _expect(value: Any, kinds: type | tuple[type, ...], where: str, wanted: str) -> Any:
    """`value` when it is one of `kinds` (bool never counts as a number); 400 naming `where` otherwise."""
    if isinstance(value, kinds) and not (isinstance(value, bool) and bool not in _as_tuple(kinds)):
        return value
    shown = repr(value) if not isinstance(value, dict | list) else _type_name(value)
    raise EmulatorError(400, f"{where} must be {wanted}, got {shown[:80]}", "BAD_REQUEST")


def _as_tuple(kinds: type | tuple[type, ...]) -> tuple[type, ...]:
    return kinds if isinstance(kinds, tuple) else (kinds,)


def _optional_object(params: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    """params[key] as an object ({} when absent or null); 400 when it is something else."""
    value = params.get(key)
    if value is None:
        return {}
    result: dict[str, Any] = _expect(value, dict, f"{where}.{key}", "an object")
    return result


def _count(value: Any, where: str, default: int) -> int:
    """A non-negative integer that fits 64 bits (default when null); 400 otherwise."""
    if value is None:
        return default
    number = _expect(value, int, where, "an integer")
    if not 0 <= number <= INT64_MAX:
        raise EmulatorError(400, f"{where} must be between 0 and {INT64_MAX}, got {number}", "BAD_REQUEST")
    return int(number)


@dataclass
class Call:
    """One parsed HTTP request handed to a handler."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    base_url: str
    counters: Counter[str] = field(default_factory=Counter)
    # Upload routes get their body streamed to this file instead of `body` (see app.UPLOAD_OPERATIONS).
    body_file: Path | None = None

    def arg(self, name: str, default: str | None = None) -> str | None:
        """First value of a query parameter."""
        values = self.query.get(name)
        return values[0] if values else default

    def need(self, name: str) -> str:
        """A required query parameter (400 when missing)."""
        value = self.arg(name)
        if value is None or value == "":
            raise EmulatorError(400, f"Missing query parameter {name!r}")
        return value

    def int_arg(self, name: str, default: int) -> int:
        """An integer query parameter that fits 64 bits (400 otherwise)."""
        value = self.arg(name)
        try:
            number = int(value) if value not in (None, "") else default
        except ValueError as exc:
            raise EmulatorError(
                400, f"Query parameter {name!r} must be an integer, got {str(value)[:40]!r}", "BAD_REQUEST"
            ) from exc
        if not -INT64_MAX <= number <= INT64_MAX:
            raise EmulatorError(
                400, f"Query parameter {name!r} is out of range: {str(value)[:40]}", "BAD_REQUEST"
            )
        return number

    def json(self) -> Any:
        """The JSON body (strict: 400 for malformed, non-finite or too deeply nested JSON)."""
        return parse_json(self.body)

    def upload_size(self) -> int:
        """Bytes of an upload body."""
        return self.body_file.stat().st_size if self.body_file is not None else len(self.body)


@dataclass(frozen=True)
class ApiSettings:
    """Behaviour knobs of the API (from the CLI)."""

    state_timeout: float = 20.0
    multipart_threshold: int = 5 * 1024 * 1024
    multipart_chunk: int = 5 * 1024 * 1024


def _reports_metadata_errors(handler: Callable[..., Response]) -> Callable[..., Response]:
    """Answer a refused upload with 200 and an `errors` list (the client logs it and drops the file)."""

    @functools.wraps(handler)
    def wrapper(self: Any, call: Call, *args: Any) -> Response:
        try:
            return handler(self, call, *args)
        except MetadataError as exc:
            return JSONResponse({"errors": [{"errorDescription": exc.message}], "uploadId": None})

    return wrapper


def _not_found(what: str, error_type: str = "") -> EmulatorError:
    return EmulatorError(404, f"{what} not found", error_type)


# getExperimentAttributes' systemAttributes: key -> field (the legacy client reads these).
SYSTEM_ATTRIBUTES = {
    "shortId": "sys/id",
    "name": "sys/name",
    "description": "sys/description",
    "owner": "sys/owner",
    "hostname": "sys/hostname",
    "creationTime": "sys/creation_time",
    "modificationTime": "sys/modification_time",
    "pingTime": "sys/ping_time",
    "runningTime": "sys/running_time",
    "size": "sys/size",
    "tags": "sys/tags",
    "state": "sys/state",
    "trashed": "sys/trashed",
    "failed": "sys/failed",
}


class NeptuneApi(ManagementApi):
    """The emulator's implementation of the backend, leaderboard and management operations."""

    def __init__(self, storage: Storage, settings: ApiSettings) -> None:
        self.storage = storage
        self.settings = settings

    # ----- helpers ------------------------------------------------------------------------------
    @staticmethod
    def app_url(call: Call) -> str:
        """Base URL for links the client follows: the address this client reached us at.

        Echoing the request's Host (rather than --public-url) lets clients inside and outside a
        container network use the same server, each through its own address.
        """
        return call.base_url.rstrip("/")

    def _run(self, identifier: str | None) -> RunRow:
        run = self.storage.find_run(identifier or "")
        if run is None:
            raise _not_found(f"Object {identifier}", "EXPERIMENT_NOT_FOUND")
        return run

    def _project(self, identifier: str | None) -> ProjectRow:
        project = self.storage.find_project(identifier or "")
        if project is None:
            raise _not_found(f"Project {identifier}", "PROJECT_NOT_FOUND")
        return project

    def experiment_dto(self, run: RunRow) -> dict[str, Any]:
        """The Experiment object (what createExperiment/getExperiment return)."""
        project = self._project(run.project_id)
        return {
            "id": run.id,
            "type": run.type,
            "shortId": run.short_id,
            "organizationName": project.workspace,
            "organizationId": project.workspace,
            "projectName": project.name,
            "projectId": project.id,
            "trashed": run.trashed,
            "customId": run.custom_id,
        }

    def fields_of(
        self, run: RunRow, stored: list[Attr] | None = None, *, with_size: bool = True
    ) -> dict[str, Attr]:
        """All fields of a run (stored, defaults and server-owned sys fields).

        with_size=False skips measuring the run's files and shows sys/size as 0: for callers that do not
        look at sys/size.
        """
        if stored is None:
            stored = self.storage.attributes(run.id)
        size = self.storage.run_size(run.id) if with_size else 0
        if run.type == "project":
            project = self._project(run.id)
            fields = project_fields(run, project.name, stored, size)
            visibility = self.project_info(project)["visibility"]
            fields["sys/visibility"] = Attr("sys/visibility", "string", {"v": visibility})
            return fields
        state = self.storage.run_state(run, self.settings.state_timeout)
        return merged_fields(run, stored, state, size)

    def _fileset_size(self, run: RunRow) -> Any:
        return lambda path: sum(int(e["size"]) for e in self.storage.fileset_entries(run.id, path))

    def _field(self, call: Call, kind: str) -> tuple[RunRow, Attr]:
        run = self._run(call.arg("experimentId"))
        path = call.need("attribute")
        # Only sys/* fields need the computed view; others are read straight from storage.
        attr = (
            self.fields_of(run).get(path) if path.startswith("sys/") else self.storage.attribute(run.id, path)
        )
        if attr is None or attr.type != kind:
            raise _not_found(f"Attribute {path}", "ATTRIBUTE_NOT_FOUND")
        return run, attr

    # ----- backend ------------------------------------------------------------------------------
    def getClientConfig(self, call: Call) -> Response:
        """API URL, client version bounds, multipart thresholds; artifacts (API version 2) enabled."""
        url = self.app_url(call)
        return JSONResponse(
            {
                "apiUrl": url,
                "applicationUrl": url,
                "pyLibVersions": {
                    "minRecommendedVersion": None,
                    "minCompatibleVersion": MIN_CLIENT_VERSION,
                    "maxCompatibleVersion": MAX_CLIENT_VERSION,
                },
                "multiPartUpload": {
                    "enabled": True,
                    "minChunkSize": self.settings.multipart_chunk,
                    "maxChunkSize": max(self.settings.multipart_chunk, 1024**3),
                    "maxChunkCount": 1000,
                    "maxSinglePartSize": self.settings.multipart_threshold,
                },
                "artifacts": {"enabled": True, "apiVersion": ARTIFACT_API_VERSION},
                "sysNameSetByBackend": False,
            }
        )

    def getProject(self, call: Call) -> Response:
        """A project by workspace/name or id (404 PROJECT_NOT_FOUND otherwise)."""
        return JSONResponse(self.project_dto(self._project(call.need("projectIdentifier"))))

    def listProjects(self, call: Call) -> Response:
        """Projects, optionally of one workspace or matching a search term, paged."""
        projects = self.storage.list_projects()
        workspace = call.arg("organizationIdentifier")
        term = call.arg("searchTerm")
        if workspace:
            projects = [p for p in projects if p.workspace == workspace]
        if term:
            projects = [p for p in projects if term.lower() in p.name.lower()]
        offset = call.int_arg("offset", 0)
        limit = call.int_arg("limit", 100)
        page = projects[offset : offset + limit]
        return JSONResponse(
            {
                "entries": [self.project_dto(p) for p in page],
                "matchingItemCount": len(projects),
                "totalItemCount": len(projects),
            }
        )

    def listOrganizations(self, call: Call) -> Response:
        """The workspaces that hold projects."""
        names = sorted({p.workspace for p in self.storage.list_projects()})
        return JSONResponse([{"id": n, "name": n, "organizationType": "team"} for n in names])

    def workspaceStatus(self, call: Call) -> Response:
        """Storage used by a workspace against a nominal quota."""
        projects = [
            p for p in self.storage.list_projects() if p.workspace == call.arg("organizationIdentifier")
        ]
        if not projects:
            raise _not_found(f"Workspace {call.arg('organizationIdentifier')}", "WORKSPACE_NOT_FOUND")
        used = self.storage.stored_bytes([p.id for p in projects])
        return JSONResponse(
            {
                "storageBytesAvailable": max(STORAGE_LIMIT - used, 0),
                "storageBytesLimit": STORAGE_LIMIT,
                "activeProjectsUsage": len(projects),
                "activeProjectsLimit": None,
                "membersCount": 1,
            }
        )

    # ----- runs ---------------------------------------------------------------------------------
    def createExperiment(self, call: Call) -> Response:
        """Create a run, model or model version; a known customId returns the existing run."""
        params = _expect(call.json(), dict, "experimentCreationParams", "an object")
        where = "experimentCreationParams"
        project = self._project(
            _expect(params.get("projectIdentifier"), str, f"{where}.projectIdentifier", "a string")
        )
        kind = params.get("type") or "run"
        if kind not in ("run", "model", "modelVersion"):
            raise EmulatorError(400, f"Unsupported object type {kind!r}"[:120], "BAD_REQUEST")
        custom_id = params.get("customId") or None
        if custom_id is not None and (not isinstance(custom_id, str) or len(custom_id) > 128):
            raise EmulatorError(400, "customId must be a string of at most 128 characters")
        for optional in ("key", "parentId"):
            if params.get(optional) is not None:
                _expect(params[optional], str, f"{where}.{optional}", "a string")
        parent = params.get("parentId")
        git = _git_info(params.get("gitInfo"))
        run, created = self.storage.create_run(
            project,
            kind=kind,
            custom_id=custom_id,
            model_key=params.get("key"),
            parent_id=parent if kind == "modelVersion" else None,
        )
        if created:
            call.counters["runs_created_total"] += 1
            if git is not None:
                self.storage.put_attribute(run.id, Attr("source_code/git", "gitRef", git))
        else:
            self.storage.ping(run.id)
        return JSONResponse(self.experiment_dto(run))

    def getExperiment(self, call: Call) -> Response:
        """A run by id or workspace/project/SHORT-ID (404 EXPERIMENT_NOT_FOUND otherwise)."""
        return JSONResponse(self.experiment_dto(self._run(call.need("experimentId"))))

    def ping(self, call: Call) -> Response:
        """Record that the client holding the run is alive (keeps sys/state running)."""
        run = self._run(call.need("experimentId"))
        self.storage.ping(run.id)
        return Response(status_code=200)

    def getExperimentAttributes(self, call: Call) -> Response:
        """Every field of a run with its type and properties."""
        run = self._run(call.need("experimentId"))
        sizes = self._fileset_size(run)
        fields = self.fields_of(run)
        attrs = [attribute_dto(a, sizes) for a in sorted(fields.values(), key=lambda a: a.path)]
        system = {key: properties(fields[path]) for key, path in SYSTEM_ATTRIBUTES.items() if path in fields}
        return JSONResponse({"id": run.id, "type": run.type, "attributes": attrs, "systemAttributes": system})

    def executeOperations(self, call: Call) -> Response:
        """Apply a batch of operations in order; the body lists the rejected ones."""
        run = self._run(call.need("experimentId"))
        operations = call.json()
        if not isinstance(operations, list):
            raise EmulatorError(400, "The body must be a list of operations", "BAD_REQUEST")
        refused = operation_type_error(operations)
        if refused is not None:
            raise EmulatorError(400, f"Malformed operations: {refused}", "BAD_REQUEST")
        errors, applied, points = self.storage.execute_operations(run, operations)
        call.counters["operations_total"] += applied
        call.counters["operation_errors_total"] += len(errors)
        call.counters["points_total"] += points
        return JSONResponse([{"errorDescription": e} for e in errors])

    # ----- field reads --------------------------------------------------------------------------
    def _atom(self, call: Call, kind: str) -> Response:
        run, attr = self._field(call, kind)
        return JSONResponse(properties(attr, self._fileset_size(run)))

    def getFloatAttribute(self, call: Call) -> Response:
        """A float field."""
        return self._atom(call, "float")

    def getIntAttribute(self, call: Call) -> Response:
        """An int field."""
        return self._atom(call, "int")

    def getBoolAttribute(self, call: Call) -> Response:
        """A bool field."""
        return self._atom(call, "bool")

    def getStringAttribute(self, call: Call) -> Response:
        """A string field."""
        return self._atom(call, "string")

    def getDatetimeAttribute(self, call: Call) -> Response:
        """A datetime field."""
        return self._atom(call, "datetime")

    def getFileAttribute(self, call: Call) -> Response:
        """Name, extension and size of a File field."""
        return self._atom(call, "file")

    def getStringSetAttribute(self, call: Call) -> Response:
        """A string set field."""
        return self._atom(call, "stringSet")

    def getFloatSeriesAttribute(self, call: Call) -> Response:
        """Last value and statistics of a float series."""
        return self._atom(call, "floatSeries")

    def getStringSeriesAttribute(self, call: Call) -> Response:
        """Last value of a string series."""
        return self._atom(call, "stringSeries")

    def getImageSeriesAttribute(self, call: Call) -> Response:
        """Last step of an image series."""
        return self._atom(call, "imageSeries")

    def getArtifactAttribute(self, call: Call) -> Response:
        """The hash of the artifact an artifact field points at."""
        return self._atom(call, "artifact")

    # ----- artifacts ----------------------------------------------------------------------------
    @staticmethod
    def _artifact_dto(artifact_hash: str, size: int | None, received: bool) -> dict[str, Any]:
        return {"artifactHash": artifact_hash, "size": size, "receivedMetadata": received}

    def _artifact_project(self, call: Call) -> ProjectRow:
        """The project of an artifact call; its parentIdentifier, when given, must be a run of it."""
        project = self._project(call.need("projectIdentifier"))
        parent = call.arg("parentIdentifier")
        if parent is not None and self._run(parent).project_id != project.id:
            raise EmulatorError(
                400, f"parentIdentifier {parent} is not an object of project {project.qualified_name}"
            )
        return project

    @staticmethod
    def _with_metadata(call: Call) -> bool:
        """Whether artifact hashes cover file metadata (artifact API version 1) or not (version 2)."""
        return call.headers.get("x-neptune-artifact-api-version", "1") != str(ARTIFACT_API_VERSION)

    def createNewArtifact(self, call: Call) -> Response:
        """Register an artifact by the hash the client computed; says whether its file list is known."""
        project = self._artifact_project(call)
        artifact_hash = call.need("hash")
        size = call.int_arg("size", 0) if call.arg("size") not in (None, "") else None
        if size is not None and size < 0:
            raise EmulatorError(400, f"Query parameter 'size' must not be negative, got {size}")
        row = self.storage.create_artifact(project.id, artifact_hash, size)
        return JSONResponse(self._artifact_dto(row["hash"], row["size"], row["files"] is not None))

    def uploadArtifactFilesMetadata(self, call: Call) -> Response:
        """Store the file list of a registered artifact; the list must hash to the artifact's hash."""
        project = self._artifact_project(call)
        artifact_hash = call.need("hash")
        if self.storage.artifact(project.id, artifact_hash) is None:
            raise _not_found(f"Artifact {artifact_hash}", "ARTIFACT_NOT_FOUND")
        files = validate_files(call.json())
        if artifact_hash not in (artifact_hash_of(files, True), artifact_hash_of(files, False)):
            raise EmulatorError(
                400,
                f"The {len(files)} files sent do not hash to artifact {artifact_hash}: "
                "the hash must be computed over exactly this file list",
                "BAD_REQUEST",
            )
        size = artifact_size(files)
        self.storage.set_artifact_files(project.id, artifact_hash, files, size)
        return JSONResponse(self._artifact_dto(artifact_hash, size, True))

    def createArtifactVersion(self, call: Call) -> Response:
        """A new artifact made of an existing one's files plus the files sent (same path: replaced)."""
        project = self._artifact_project(call)
        base = self.storage.artifact(project.id, call.need("hash"))
        if base is None or base["files"] is None:
            raise _not_found(f"Artifact {call.arg('hash')}", "ARTIFACT_NOT_FOUND")
        files = merge_files(json.loads(base["files"]), validate_files(call.json()))
        new_hash = artifact_hash_of(files, self._with_metadata(call))
        size = artifact_size(files)
        self.storage.set_artifact_files(project.id, new_hash, files, size)
        return JSONResponse(self._artifact_dto(new_hash, size, True))

    def listArtifactFiles(self, call: Call) -> Response:
        """The file list of an artifact, in path order."""
        project = self._artifact_project(call)
        row = self.storage.artifact(project.id, call.need("hash"))
        if row is None or row["files"] is None:
            raise _not_found(f"Artifact {call.arg('hash')}", "ARTIFACT_NOT_FOUND")
        return JSONResponse({"files": json.loads(row["files"])})

    def _series_values(self, call: Call, kind: str, *, tuples: bool = False) -> tuple[int, list[Any]]:
        """(count, a page of points) of the series a call names; plain (ts_ms, step, value) tuples with
        ``tuples``, else rows by column name."""
        run, attr = self._field(call, kind)
        read = self.storage.series_tuples if tuples else self.storage.series_values
        return read(run.id, attr.path, call.int_arg("offset", 0), min(call.int_arg("limit", 1000), 10000))

    def getFloatSeriesValues(self, call: Call) -> Response:
        """A page of float series points (offset, limit) in step order.

        The JSON is written with one ``%`` format over every point: steps and values are finite floats
        (the store refuses others) and ``%r`` of a float is what ``json.dumps`` writes, so the text is
        the same, made in a third of the time of building 10,000 dicts and encoding them.
        """
        total, rows = self._series_values(call, "floatSeries", tuples=True)
        flat = tuple(itertools.chain.from_iterable(rows))
        try:
            finite = math.isfinite(sum(flat))  # NaN or Inf anywhere makes the sum so
        except TypeError:
            finite = False
        if not finite:  # only data stored by older versions: the general path sends such values as null
            values = [{"timestampMillis": ts, "step": step, "value": value} for ts, step, value in rows]
            return JSONResponse({"totalItemCount": total, "values": values})
        points = ('{"timestampMillis":%d,"step":%r,"value":%r},' * len(rows)) % flat
        body = f'{{"totalItemCount":{int(total)},"values":[{points[:-1]}]}}'
        return Response(body.encode(), media_type="application/json")

    def getStringSeriesValues(self, call: Call) -> Response:
        """A page of string series points (offset, limit) in step order."""
        total, rows = self._series_values(call, "stringSeries")
        values = [{"timestampMillis": r["ts_ms"], "step": r["step"], "value": r["value"]} for r in rows]
        return JSONResponse({"totalItemCount": total, "values": values})

    def getImageSeriesValues(self, call: Call) -> Response:
        """How many images an image series holds."""
        total, _ = self._series_values(call, "imageSeries")
        return JSONResponse({"totalItemCount": total})

    def getImageSeriesValue(self, call: Call) -> Response:
        """The bytes of one image of an image series."""
        run, attr = self._field(call, "imageSeries")
        _, rows = self.storage.series_values(run.id, attr.path, call.int_arg("index", 0), 1)
        if not rows:
            raise _not_found(f"Image {call.arg('index')} of {attr.path}")
        image = json.loads(rows[0]["value"]) or {}
        data = base64.b64decode(image.get("data") or b"")
        return Response(data, media_type="image/png")

    # ----- files --------------------------------------------------------------------------------
    @staticmethod
    def _disposition(name: str) -> dict[str, str]:
        return {"Content-Disposition": f'attachment; filename="{quote(name, safe=" ._-")}"'}

    def downloadAttribute(self, call: Call) -> Response:
        """The content of a File field, with its file name."""
        _, attr = self._field(call, "file")
        name = attr.value.get("name") or "file"
        if attr.value.get("ext"):
            name = f"{name}.{attr.value['ext']}"
        blob = self.storage.blob_path(attr.value["blob"])
        if not blob.exists():
            raise _not_found(f"Content of {attr.path}")
        return FileResponse(blob, media_type="application/octet-stream", headers=self._disposition(name))

    def lsFileSetAttribute(self, call: Call) -> Response:
        """Files and directories directly under a path of a file set."""
        run, attr = self._field(call, "fileSet")
        prefix = normalize_sub_path(call.arg("path") or "")
        entries = self.storage.fileset_entries(run.id, attr.path)
        listing: dict[str, dict[str, Any]] = {}
        for entry in entries:
            sub = entry["sub_path"]
            if prefix:
                if not sub.startswith(prefix + "/"):
                    continue
                sub = sub[len(prefix) + 1 :]
            head, _, rest = sub.partition("/")
            item = listing.setdefault(
                head, {"name": head, "size": 0, "mtime": 0, "fileType": "directory" if rest else "file"}
            )
            item["size"] += int(entry["size"])
            item["mtime"] = max(item["mtime"], int(entry["mtime_ms"]))
        if prefix and not listing:
            raise _not_found(f"Path {prefix} in file set {attr.path}")
        out = [
            {**item, "mtime": iso_ms(item["mtime"])}
            for item in sorted(listing.values(), key=lambda i: i["name"])
        ]
        return JSONResponse(out)

    def _download_dto(self, call: Call, download_id: str) -> dict[str, Any]:
        url = f"{self.app_url(call)}/api/leaderboard/v1/storage/download?id={download_id}"
        return {"id": download_id, "downloadUrl": url, "userId": self.storage.owner}

    def prepareForDownloadFileSetAttributeZip(self, call: Call) -> Response:
        """Register a zip download of a file set (ready at once)."""
        run, attr = self._field(call, "fileSet")
        return JSONResponse(self._download_dto(call, self.storage.prepare_download(run.id, attr.path)))

    def getDownloadPrepareRequest(self, call: Call) -> Response:
        """The URL of a prepared download."""
        download_id = call.need("id")
        if self.storage.download(download_id) is None:
            raise _not_found(f"Download {download_id}")
        return JSONResponse(self._download_dto(call, download_id))

    def downloadPrepared(self, call: Call) -> Response:
        """A file set as a zip archive."""
        download = self.storage.download(call.need("id"))
        if download is None:
            raise _not_found(f"Download {call.arg('id')}")
        data = self.storage.fileset_zip(download["run_id"], download["path"])
        name = PurePosixPath(download["path"]).name + ".zip"
        return Response(data, media_type="application/zip", headers=self._disposition(name))

    @staticmethod
    def _ok(errors: list[str] | None = None) -> Response:
        return JSONResponse({"errors": [{"errorDescription": e} for e in errors or []]})

    def _upload_run(self, call: Call) -> tuple[RunRow, str]:
        run = self._run(call.arg("experimentIdentifier") or call.arg("experimentId"))
        return run, call.need("attribute")

    @_reports_metadata_errors
    def fileAtomUpload(self, call: Call) -> Response:
        """Store a File field's content in one request."""
        run, path = self._upload_run(call)
        size = call.upload_size()
        self.storage.set_file(run, path, call.arg("ext") or "", call.body_file or call.body)
        call.counters["bytes_uploaded_total"] += size
        return self._ok()

    @_reports_metadata_errors
    def fileSetFileUpload(self, call: Call) -> Response:
        """Store one file of a file set in one request."""
        run, path = self._upload_run(call)
        sub = normalize_sub_path(call.need("subPath"))
        if not sub:
            raise EmulatorError(400, f"Invalid subPath {call.arg('subPath')!r}")
        size = call.upload_size()
        self.storage.add_fileset_files(run, path, {sub: call.body_file or call.body}, reset=False)
        call.counters["bytes_uploaded_total"] += size
        return self._ok()

    @_reports_metadata_errors
    def uploadFileSetAttributeTar(self, call: Call) -> Response:
        """Unpack a tar.gz of files into a file set (optionally replacing it)."""
        run, path = self._upload_run(call)
        reset = (call.arg("reset") or "false").lower() == "true"
        size = call.upload_size()
        self.storage.add_fileset_tar(run, path, call.body_file or call.body, reset)
        call.counters["bytes_uploaded_total"] += size
        return self._ok()

    @_reports_metadata_errors
    def _start(self, call: Call, target: str) -> Response:
        run, path = self._upload_run(call)
        total = call.int_arg("totalLength", -1)
        if total < 0:
            raise EmulatorError(400, "totalLength must be given")
        sub = normalize_sub_path(call.need("subPath")) if target == "fileset" else None
        upload_id = self.storage.start_upload(run, path, target, call.arg("ext"), sub, total)
        return JSONResponse({"uploadId": upload_id, "errors": []})

    def _part(self, call: Call) -> Response:
        upload = self.storage.upload(call.need("uploadId"))
        if upload is None:
            raise _not_found(f"Upload {call.arg('uploadId')}")
        match = re.fullmatch(r"bytes=(\d+)-(\d+)/(\d+)", call.headers.get("x-range", ""))
        if not match:
            raise EmulatorError(400, "Missing or malformed X-Range header")
        start, end, total = (int(g) for g in match.groups())
        size = call.upload_size()
        if end - start + 1 != size or total != upload["total"] or end >= total:
            raise EmulatorError(400, "Length of stream does not match given range")
        self.storage.store_part(upload["id"], start, call.body_file or call.body)
        call.counters["bytes_uploaded_total"] += size
        return self._ok()

    @_reports_metadata_errors
    def _finish(self, call: Call) -> Response:
        self.storage.finish_upload(call.need("uploadId"))
        return self._ok()

    def fileAtomMultipartUploadStart(self, call: Call) -> Response:
        """Begin a multipart upload of a File field."""
        return self._start(call, "file")

    def fileSetFileMultipartUploadStart(self, call: Call) -> Response:
        """Begin a multipart upload of one file of a file set."""
        return self._start(call, "fileset")

    def fileAtomMultipartUploadPart(self, call: Call) -> Response:
        """One part (X-Range) of a File field upload."""
        return self._part(call)

    def fileSetFileMultipartUploadPart(self, call: Call) -> Response:
        """One part (X-Range) of a file set file upload."""
        return self._part(call)

    def fileAtomMultipartUploadFinish(self, call: Call) -> Response:
        """Join the parts into the File field."""
        return self._finish(call)

    def fileSetFileMultipartUploadFinish(self, call: Call) -> Response:
        """Join the parts into the file set."""
        return self._finish(call)

    # ----- trash --------------------------------------------------------------------------------
    def _identified(self, call: Call) -> tuple[ProjectRow, list[RunRow], list[dict[str, str]], list[str]]:
        project = self._project(call.need("projectIdentifier"))
        identifiers = call.json() or []
        if not isinstance(identifiers, list):
            raise EmulatorError(400, "experimentIdentifiers must be a list")
        runs: list[RunRow] = []
        errors: list[dict[str, str]] = []
        names: list[str] = []
        for ident in identifiers:
            run = self.storage.find_run(str(ident))
            if run is None and "/" not in str(ident):
                run = self.storage.find_run(f"{project.qualified_name}/{ident}")
            if run is None or run.project_id != project.id:
                errors.append(
                    {"errorDescription": f"Object {ident} not found", "errorType": "EXPERIMENT_NOT_FOUND"}
                )
                continue
            runs.append(run)
            names.append(str(ident))
        return project, runs, errors, names

    def trashExperiments(self, call: Call) -> Response:
        """Move runs (and a model's versions) to the trash."""
        _, runs, errors, names = self._identified(call)
        ids = [r.id for r in runs]
        # Trashing a model trashes its versions too.
        for run in runs:
            if run.type == "model":
                ids += [
                    v.id
                    for v in self.storage.runs_of(run.project_id, ["modelVersion"])
                    if v.parent_id == run.id
                ]
        self.storage.set_trashed(ids, True)
        return JSONResponse({"errors": errors, "updatedExperimentIdentifiers": names})

    def restoreExperiments(self, call: Call) -> Response:
        """Take runs out of the trash."""
        _, runs, errors, names = self._identified(call)
        self.storage.set_trashed([r.id for r in runs], False)
        return JSONResponse({"errors": errors, "updatedExperimentIdentifiers": names})

    def deleteExperiments(self, call: Call) -> Response:
        """Delete trashed runs for good."""
        _, runs, errors, names = self._identified(call)
        doomed = [r for r in runs if r.trashed]
        for run in runs:
            if not run.trashed:
                errors.append({"errorDescription": f"Object {run.short_id} is not in the trash"})
        self.storage.delete_runs([r.id for r in doomed])
        kept = {r.short_id for r in doomed}
        return JSONResponse(
            {
                "errors": errors,
                "updatedExperimentIdentifiers": [n for n in names if n.rsplit("/", 1)[-1] in kept],
            }
        )

    def deleteAllExperiments(self, call: Call) -> Response:
        """Empty a project's trash."""
        project = self._project(call.need("projectIdentifier"))
        doomed = [r for r in self.storage.runs_of(project.id) if r.trashed]
        self.storage.delete_runs([r.id for r in doomed])
        return JSONResponse(
            {
                "errors": [],
                "updatedExperimentIdentifiers": [f"{project.qualified_name}/{r.short_id}" for r in doomed],
            }
        )

    # ----- runs table ---------------------------------------------------------------------------
    def _candidates(
        self,
        project: ProjectRow,
        kinds: list[str],
        where: search.Where,
        order: str,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[RunRow]:
        """Runs of the project (of `kinds`, or of every kind but the project) that `where` lets through."""
        base, args = self._base(project, kinds)
        sql = f"SELECT r.* FROM runs AS r WHERE {base} AND ({where.sql}) ORDER BY {order}"
        args += where.args
        if limit is not None:
            sql += " LIMIT ? OFFSET ?"
            args += (limit, offset)
        return [self.storage.run_row(row) for row in self.storage.rows(sql, args)]

    @staticmethod
    def _base(project: ProjectRow, kinds: list[str]) -> tuple[str, tuple[Any, ...]]:
        if kinds:
            return f"r.project_id = ? AND r.type IN ({', '.join('?' * len(kinds))})", (project.id, *kinds)
        return "r.project_id = ? AND r.type <> 'project'", (project.id,)

    def _stored(self, run_ids: list[str], paths: list[str] | None) -> dict[str, list[Attr]]:
        """Stored fields of some runs (only `paths` of them when given), by run id."""
        out: dict[str, list[Attr]] = {}
        for attr_run, attr in self.storage.attributes_of_runs(run_ids, paths):
            out.setdefault(attr_run, []).append(attr)
        return out

    def searchLeaderboardEntries(self, call: Call) -> Response:
        """The runs table: NQL filter, sorting, paging and column selection.

        The filter, sort and page run in SQLite when the query compiles to SQL exactly (search.py);
        otherwise SQL narrows the runs and the rest of the query is checked in Python over those. Only
        the fields the query, the sort and the requested columns name are read.
        """
        project = self._project(call.need("projectIdentifier"))
        kinds = call.query.get("type", [])
        params = _expect(call.json() or {}, dict, "params", "an object")
        query_text = _optional_object(params, "query", "params").get("query") or ""
        _expect(query_text, str, "params.query.query", "a string")
        try:
            query = nql.parse(query_text)
        except (NQLSyntaxError, RecursionError) as exc:
            raise EmulatorError(400, "Syntax error", "SYNTAX_ERROR") from exc
        sorting = _optional_object(params, "sorting", "params")
        sort_by = _optional_object(sorting, "sortBy", "params.sorting").get("name") or "sys/creation_time"
        _expect(sort_by, str, "params.sorting.sortBy.name", "a string")
        descending = sorting.get("dir", "descending") == "descending"
        page = _optional_object(params, "pagination", "params")
        offset = _count(page.get("offset"), "params.pagination.offset", 0)
        limit = _count(page.get("limit"), "params.pagination.limit", 100)
        filters = _expect(params.get("attributeFilters") or [], list, "params.attributeFilters", "a list")
        columns = [f["path"] for f in filters if isinstance(f, dict) and isinstance(f.get("path"), str)]
        try:
            where = search.narrowing(query)
        except RecursionError as exc:
            raise EmulatorError(400, "Syntax error", "SYNTAX_ERROR") from exc
        direction = "DESC" if descending else "ASC"
        creation = f"r.created_ms {direction}, r.seq {direction}, r.rowid"
        if where.exact and sort_by in search.SQL_SORT_COLUMNS:
            base, args = self._base(project, kinds)
            total = self.storage.rows(
                f"SELECT COUNT(*) FROM runs AS r WHERE {base} AND ({where.sql})", args + where.args
            )[0][0]
            order = f"{search.SQL_SORT_COLUMNS[sort_by]} {direction}, {creation}"
            page_runs = self._candidates(project, kinds, where, order, limit, offset)
        elif where.exact and not sort_by.startswith("sys/"):
            # SQL decided the filter; sorting by a stored field reads only that field's value.
            base, args = self._base(project, kinds)
            keys = search.sort_keys(self.storage, f"{base} AND ({where.sql})", args + where.args, sort_by)
            total = len(keys)
            ids = search.ordered_ids(keys, descending, web=False)[offset : offset + limit]
            page_runs = self.storage.runs_by_id(ids)
        else:
            runs = self._candidates(project, kinds, where, "r.created_ms, r.seq, r.rowid")
            needed = sorted(search.paths_of(query) | {sort_by})
            stored = self._stored([r.id for r in runs], needed)
            with_size = "sys/size" in needed
            rows = [(run, self.fields_of(run, stored.get(run.id, []), with_size=with_size)) for run in runs]
            if not where.exact:
                rows = [
                    (run, fields)
                    for run, fields in rows
                    if nql.matches(query, {p: (a.type, plain_value(a)) for p, a in fields.items()})
                ]
            total = len(rows)
            page_runs = [run for run, _ in _sorted(rows, sort_by, descending)[offset : offset + limit]]
        shown = self._stored([r.id for r in page_runs], columns or None)
        entries = []
        for run in page_runs:
            fields = self.fields_of(
                run, shown.get(run.id, []), with_size=not columns or "sys/size" in columns
            )
            selected = [fields[c] for c in columns if c in fields] if columns else list(fields.values())
            sizes = self._fileset_size(run)
            entries.append(
                {
                    "experimentId": run.id,
                    "organizationName": project.workspace,
                    "projectName": project.name,
                    "type": run.type,
                    "attributes": [attribute_dto(a, sizes) for a in sorted(selected, key=lambda a: a.path)],
                }
            )
        return JSONResponse({"matchingItemCount": total, "totalGroupCount": 0, "entries": entries})

    def searchLeaderboardAttributes(self, call: Call) -> Response:
        """Column names and types present in a project (for sorting).

        Read from the catalog of columns the project's runs have had (confirmed against `attrs`) plus the
        fields every run of a kind shows, instead of from every field of every run.
        """
        project = self._project(call.need("projectIdentifier"))
        search_text = call.arg("search") or ""
        kinds = call.query.get("type", []) or [k for k in RUN_KINDS if k != "project"]
        # The system columns exist even in an empty project (the client sorts by sys/creation_time).
        seen = {(name, kind): None for name, kind in SYSTEM_COLUMNS}
        for kind, has_custom, has_parent in self.storage.kinds_present(project.id, kinds):
            seen.update(dict.fromkeys((a.path, a.type) for a in shown_fields(kind, has_custom, has_parent)))
        for path, kind in self.storage.columns_of(project.id, kinds, search_text):
            seen[(path, kind)] = None
        entries = [{"name": n, "type": t} for n, t in sorted(seen) if search_text in n]
        return JSONResponse({"entries": entries})


def _git_info(value: Any) -> dict[str, Any] | None:
    """The run's gitInfo as stored for source_code/git (None when not sent); 400 when malformed."""
    if value is None:
        return None
    where = "experimentCreationParams.gitInfo"
    info = _expect(value, dict, where, "an object")
    commit = _optional_object(info, "commit", where)
    for key in ("commitId", "message", "authorName", "authorEmail", "commitDate"):
        if commit.get(key) is not None:
            _expect(commit[key], str, f"{where}.commit.{key}", "a string")
    remotes = info.get("remotes") or []
    if not isinstance(remotes, list) or not all(isinstance(r, str) for r in remotes):
        raise EmulatorError(400, f"{where}.remotes must be a list of strings", "BAD_REQUEST")
    branch = info.get("currentBranch")
    if branch is not None:
        _expect(branch, str, f"{where}.currentBranch", "a string")
    dirty = info.get("repositoryDirty")
    if dirty is not None:
        _expect(dirty, bool, f"{where}.repositoryDirty", "a boolean")
    return {
        "commit": {
            k: commit.get(k) for k in ("commitId", "message", "authorName", "authorEmail", "commitDate")
        },
        "repositoryDirty": bool(dirty),
        "currentBranch": branch,
        "remotes": remotes,
    }


def _sorted(
    rows: list[tuple[RunRow, dict[str, Attr]]], sort_by: str, descending: bool
) -> list[tuple[RunRow, dict[str, Attr]]]:
    """Sort table rows by a column; rows without it go last either way, ties by creation order."""

    def key(row: tuple[RunRow, dict[str, Attr]]) -> Any:
        attr = row[1].get(sort_by)
        value = plain_value(attr) if attr else None
        if isinstance(value, list):
            value = ",".join(value)
        return value

    present = [r for r in rows if key(r) is not None]
    missing = [r for r in rows if key(r) is None]
    numeric = all(isinstance(key(r), int | float) for r in present)

    def sort_key(row: tuple[RunRow, dict[str, Attr]]) -> Any:
        value = key(row)
        return (value if numeric else str(value), row[0].created_ms, row[0].seq)

    present.sort(key=sort_key, reverse=descending)
    return present + missing
