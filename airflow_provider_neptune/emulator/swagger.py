"""The Swagger 2.0 documents the emulator serves (the neptune client builds every call from them).

The client ships no API description: bravado reads `/api/{backend,leaderboard,artifacts}/swagger.json`
and calls operations by operationId. Paths are absolute (basePath "/") because the client joins
`operation.path_name` onto the API URL for its raw upload/download requests. Response models are
declared wherever the client reads attributes (`result.shortId`), since bravado only builds objects
for declared schemas. The same table drives the server's routing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

JSON = dict[str, Any]


@dataclass(frozen=True)
class RouteSpec:
    """One API operation: which document it belongs to, its HTTP method, path, parameters, result."""

    api: str
    method: str
    path: str
    operation_id: str
    params: tuple[JSON, ...] = ()
    response: JSON | None = None
    # Error statuses whose body the client reads as a model (e.g. createProject's validation errors).
    error_responses: tuple[tuple[str, JSON], ...] = ()


def _q(name: str, kind: str = "string", required: bool = False) -> JSON:
    return {"in": "query", "name": name, "type": kind, "required": required}


def _qa(name: str) -> JSON:
    return {
        "in": "query",
        "name": name,
        "type": "array",
        "items": {"type": "string"},
        "collectionFormat": "multi",
        "required": False,
    }


def _h(name: str, required: bool = False) -> JSON:
    return {"in": "header", "name": name, "type": "string", "required": required}


def _body(name: str, schema: JSON) -> JSON:
    return {"in": "body", "name": name, "required": True, "schema": schema}


def _ref(name: str) -> JSON:
    return {"$ref": f"#/definitions/{name}"}


def _list(schema: JSON) -> JSON:
    return {"type": "array", "items": schema}


def _model(**props: JSON) -> JSON:
    return {"type": "object", "properties": props}


_S: JSON = {"type": "string"}
_I: JSON = {"type": "integer", "format": "int64"}
_N: JSON = {"type": "number", "format": "double"}
_B: JSON = {"type": "boolean"}
_DT: JSON = {"type": "string", "format": "date-time"}

_ATTRIBUTE_PROPS = {
    "floatProperties": "FloatAttribute",
    "intProperties": "IntAttribute",
    "boolProperties": "BoolAttribute",
    "stringProperties": "StringAttribute",
    "datetimeProperties": "DatetimeAttribute",
    "fileProperties": "FileAttribute",
    "fileSetProperties": "FileSetAttribute",
    "floatSeriesProperties": "FloatSeriesAttribute",
    "stringSeriesProperties": "StringSeriesAttribute",
    "imageSeriesProperties": "ImageSeriesAttribute",
    "stringSetProperties": "StringSetAttribute",
    "experimentStateProperties": "ExperimentStateAttribute",
    "artifactProperties": "ArtifactAttribute",
    "gitRefProperties": "GitRefAttribute",
}
# getExperimentAttributes' systemAttributes (read by the legacy client): key -> model.
_SYSTEM_ATTRIBUTES = {
    "shortId": "StringAttribute",
    "name": "StringAttribute",
    "description": "StringAttribute",
    "owner": "StringAttribute",
    "hostname": "StringAttribute",
    "creationTime": "DatetimeAttribute",
    "modificationTime": "DatetimeAttribute",
    "pingTime": "DatetimeAttribute",
    "runningTime": "FloatAttribute",
    "size": "FloatAttribute",
    "tags": "StringSetAttribute",
    "state": "ExperimentStateAttribute",
    "trashed": "BoolAttribute",
    "failed": "BoolAttribute",
}

DEFINITIONS: JSON = {
    "Error": _model(errorDescription=_S, errorType=_S),
    "PyLibVersions": _model(minRecommendedVersion=_S, minCompatibleVersion=_S, maxCompatibleVersion=_S),
    "MultiPartUploadConfig": _model(
        enabled=_B, minChunkSize=_I, maxChunkSize=_I, maxChunkCount=_I, maxSinglePartSize=_I
    ),
    "ArtifactsConfig": _model(enabled=_B, apiVersion=_I),
    "ClientConfig": _model(
        apiUrl=_S,
        applicationUrl=_S,
        pyLibVersions=_ref("PyLibVersions"),
        multiPartUpload=_ref("MultiPartUploadConfig"),
        artifacts=_ref("ArtifactsConfig"),
        sysNameSetByBackend=_B,
    ),
    "NeptuneOauthToken": _model(accessToken=_S, refreshToken=_S, username=_S),
    "Project": _model(
        id=_S,
        name=_S,
        organizationName=_S,
        organizationId=_S,
        projectKey=_S,
        version=_I,
        visibility=_S,
        description=_S,
    ),
    "ProjectList": _model(entries=_list(_ref("Project")), matchingItemCount=_I, totalItemCount=_I),
    "Organization": _model(id=_S, name=_S, organizationType=_S),
    "Experiment": _model(
        id=_S,
        type=_S,
        shortId=_S,
        organizationName=_S,
        organizationId=_S,
        projectName=_S,
        projectId=_S,
        trashed=_B,
        customId=_S,
    ),
    # The client sends its git info as a model with a date-time field: without this schema bravado
    # would try to JSON-encode a datetime and init_run() in a git checkout would fail.
    "GitCommit": _model(commitId=_S, message=_S, authorName=_S, authorEmail=_S, commitDate=_DT),
    "GitInfo": _model(commit=_ref("GitCommit"), repositoryDirty=_B, currentBranch=_S, remotes=_list(_S)),
    "ExperimentCreationParams": {**_model(gitInfo=_ref("GitInfo")), "additionalProperties": True},
    "FloatAttribute": _model(attributeName=_S, attributeType=_S, value=_N),
    "IntAttribute": _model(attributeName=_S, attributeType=_S, value=_I),
    "BoolAttribute": _model(attributeName=_S, attributeType=_S, value=_B),
    "StringAttribute": _model(attributeName=_S, attributeType=_S, value=_S),
    "DatetimeAttribute": _model(attributeName=_S, attributeType=_S, value=_DT),
    "FileAttribute": _model(attributeName=_S, attributeType=_S, name=_S, ext=_S, size=_I),
    "FileSetAttribute": _model(attributeName=_S, attributeType=_S, size=_I),
    "FloatSeriesAttribute": _model(
        attributeName=_S, attributeType=_S, last=_N, lastStep=_N, min=_N, max=_N, average=_N
    ),
    "StringSeriesAttribute": _model(attributeName=_S, attributeType=_S, last=_S, lastStep=_N),
    "ImageSeriesAttribute": _model(attributeName=_S, attributeType=_S, lastStep=_N),
    "StringSetAttribute": _model(attributeName=_S, attributeType=_S, values=_list(_S)),
    "ExperimentStateAttribute": _model(attributeName=_S, attributeType=_S, value=_S),
    "ArtifactAttribute": _model(attributeName=_S, attributeType=_S, hash=_S),
    "ArtifactMetadataEntry": _model(key=_S, value=_S),
    "ArtifactFile": _model(
        filePath=_S, fileHash=_S, type=_S, size=_I, metadata=_list(_ref("ArtifactMetadataEntry"))
    ),
    "ArtifactFiles": _model(files=_list(_ref("ArtifactFile"))),
    "ArtifactModel": _model(artifactHash=_S, size=_I, receivedMetadata=_B),
    "Attribute": _model(name=_S, type=_S, **{prop: _ref(model) for prop, model in _ATTRIBUTE_PROPS.items()}),
    "GitRefAttribute": _model(
        attributeName=_S,
        attributeType=_S,
        commit=_ref("GitCommit"),
        repositoryDirty=_B,
        currentBranch=_S,
        remotes=_list(_S),
    ),
    "SystemAttributes": _model(**{key: _ref(model) for key, model in _SYSTEM_ATTRIBUTES.items()}),
    "ExperimentAttributes": _model(
        id=_S, type=_S, attributes=_list(_ref("Attribute")), systemAttributes=_ref("SystemAttributes")
    ),
    "FloatPointValue": _model(timestampMillis=_I, step=_N, value=_N),
    "StringPointValue": _model(timestampMillis=_I, step=_N, value=_S),
    "FloatSeriesValues": _model(totalItemCount=_I, values=_list(_ref("FloatPointValue"))),
    "StringSeriesValues": _model(totalItemCount=_I, values=_list(_ref("StringPointValue"))),
    "ImageSeriesValues": _model(totalItemCount=_I),
    "FileEntry": _model(name=_S, size=_I, mtime=_DT, fileType=_S),
    "DownloadPrepareRequest": _model(id=_S, downloadUrl=_S, userId=_S),
    "UploadStart": _model(uploadId=_S, errors=_list(_ref("Error"))),
    "UploadResult": _model(errors=_list(_ref("Error"))),
    "TrashResult": _model(errors=_list(_ref("Error")), updatedExperimentIdentifiers=_list(_S)),
    "AttributeNameType": _model(name=_S, type=_S),
    "AttributeNameTypeList": _model(entries=_list(_ref("AttributeNameType"))),
    "WorkspaceStatus": _model(
        storageBytesAvailable=_I,
        storageBytesLimit=_I,
        activeProjectsUsage=_I,
        activeProjectsLimit=_I,
        membersCount=_I,
    ),
    # Management API (neptune.management): projects, members and service accounts.
    "ValidationErrors": _model(code=_I, message=_S, validationErrors=_list({"type": "object"})),
    "RegisteredMemberInfo": _model(username=_S, firstName=_S, lastName=_S),
    "ProjectMember": _model(role=_S, registeredMemberInfo=_ref("RegisteredMemberInfo")),
    "WorkspaceMember": _model(role=_S, registeredMemberInfo=_ref("RegisteredMemberInfo")),
    "ServiceAccount": _model(id=_S, displayName=_S),
    "ProjectServiceAccount": _model(role=_S, serviceAccountInfo=_ref("ServiceAccount")),
}

_TOKEN = _h("X-Neptune-Api-Token")
_EXP = _q("experimentId", required=True)
_EXPI = _q("experimentIdentifier", required=True)
_ATTR = _q("attribute", required=True)
_LB = "/api/leaderboard/v1"
_BE = "/api/backend/v1"
_AR = "/api/artifacts/v1"
_PROJ = _q("projectIdentifier", required=True)
_HASH = _q("hash", required=True)
_ARTIFACT_API = _h("X-Neptune-Artifact-Api-Version")


def _attr_get(kind: str, model: str) -> RouteSpec:
    op = f"get{model}"
    return RouteSpec("leaderboard", "GET", f"{_LB}/attributes/{kind}", op, (_EXP, _ATTR), _ref(model))


_PROJECT = _q("projectIdentifier", required=True)
_WORKSPACE = _q("organizationIdentifier", required=True)
MANAGEMENT_ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec(
        "backend",
        "POST",
        f"{_BE}/projects",
        "createProject",
        (_body("projectToCreate", {"type": "object"}),),
        _ref("Project"),
        (("400", _ref("ValidationErrors")),),
    ),
    RouteSpec("backend", "DELETE", f"{_BE}/projects", "deleteProject", (_PROJECT,), None),
    RouteSpec(
        "backend",
        "POST",
        f"{_BE}/projects/members",
        "addProjectMember",
        (_PROJECT, _body("member", {"type": "object"})),
        {"type": "object"},
    ),
    RouteSpec(
        "backend",
        "GET",
        f"{_BE}/projects/members",
        "listProjectMembers",
        (_PROJECT,),
        _list(_ref("ProjectMember")),
    ),
    RouteSpec(
        "backend",
        "DELETE",
        f"{_BE}/projects/members",
        "deleteProjectMember",
        (_PROJECT, _q("userId", required=True)),
        None,
    ),
    RouteSpec(
        "backend",
        "GET",
        f"{_BE}/organizations/members",
        "listOrganizationMembers",
        (_WORKSPACE,),
        _list(_ref("WorkspaceMember")),
    ),
    RouteSpec(
        "backend",
        "GET",
        f"{_BE}/organizations/service-accounts",
        "listServiceAccounts",
        (_WORKSPACE, _q("deactivated", "boolean")),
        _list(_ref("ServiceAccount")),
    ),
    RouteSpec(
        "backend",
        "GET",
        f"{_BE}/projects/service-accounts",
        "listProjectServiceAccounts",
        (_PROJECT,),
        _list(_ref("ProjectServiceAccount")),
    ),
    RouteSpec(
        "backend",
        "POST",
        f"{_BE}/projects/service-accounts",
        "addProjectServiceAccount",
        (_PROJECT, _body("account", {"type": "object"})),
        {"type": "object"},
    ),
    RouteSpec(
        "backend",
        "DELETE",
        f"{_BE}/projects/service-accounts",
        "deleteProjectServiceAccount",
        (_PROJECT, _q("serviceAccountId", required=True)),
        None,
    ),
    RouteSpec(
        "backend",
        "POST",
        f"{_BE}/invitations/organization",
        "createOrganizationInvitations",
        (_body("newOrganizationInvitations", {"type": "object"}),),
        {"type": "object"},
    ),
)

ROUTES: tuple[RouteSpec, ...] = (
    RouteSpec(
        "backend",
        "GET",
        f"{_BE}/clients/config",
        "getClientConfig",
        (_TOKEN, _q("alpha")),
        _ref("ClientConfig"),
    ),
    RouteSpec(
        "backend",
        "GET",
        f"{_BE}/authorization/oauth-token",
        "exchangeApiToken",
        (_TOKEN,),
        _ref("NeptuneOauthToken"),
    ),
    RouteSpec(
        "backend",
        "GET",
        f"{_BE}/projects/get",
        "getProject",
        (_q("projectIdentifier", required=True),),
        _ref("Project"),
    ),
    RouteSpec(
        "backend",
        "GET",
        f"{_BE}/projects",
        "listProjects",
        (
            _q("limit", "integer"),
            _q("offset", "integer"),
            _q("organizationIdentifier"),
            _q("searchTerm"),
            _qa("sortBy"),
            _qa("sortDirection"),
            _q("userRelation"),
            _q("viewedUsername"),
        ),
        _ref("ProjectList"),
    ),
    RouteSpec(
        "backend", "GET", f"{_BE}/myOrganizations", "listOrganizations", (), _list(_ref("Organization"))
    ),
    RouteSpec(
        "backend",
        "GET",
        f"{_BE}/workspaces/status",
        "workspaceStatus",
        (_q("organizationIdentifier", required=True),),
        _ref("WorkspaceStatus"),
    ),
    RouteSpec(
        "leaderboard",
        "POST",
        f"{_LB}/experiments",
        "createExperiment",
        (_body("experimentCreationParams", _ref("ExperimentCreationParams")), _h("X-Neptune-CliVersion")),
        _ref("Experiment"),
    ),
    RouteSpec("leaderboard", "GET", f"{_LB}/experiments", "getExperiment", (_EXP,), _ref("Experiment")),
    RouteSpec(
        "leaderboard",
        "GET",
        f"{_LB}/attributes",
        "getExperimentAttributes",
        (_EXP,),
        _ref("ExperimentAttributes"),
    ),
    RouteSpec("leaderboard", "POST", f"{_LB}/attributes/ping", "ping", (_EXP,), None),
    RouteSpec(
        "leaderboard",
        "POST",
        f"{_LB}/attributes/operations",
        "executeOperations",
        (_EXP, _body("operations", _list({"type": "object"}))),
        _list(_ref("Error")),
    ),
    _attr_get("float", "FloatAttribute"),
    _attr_get("int", "IntAttribute"),
    _attr_get("bool", "BoolAttribute"),
    _attr_get("string", "StringAttribute"),
    _attr_get("datetime", "DatetimeAttribute"),
    _attr_get("file", "FileAttribute"),
    _attr_get("stringSet", "StringSetAttribute"),
    _attr_get("floatSeries", "FloatSeriesAttribute"),
    _attr_get("stringSeries", "StringSeriesAttribute"),
    _attr_get("imageSeries", "ImageSeriesAttribute"),
    _attr_get("artifact", "ArtifactAttribute"),
    RouteSpec(
        "artifacts",
        "POST",
        f"{_AR}/artifacts",
        "createNewArtifact",
        (_PROJ, _HASH, _q("size", "integer"), _q("parentIdentifier", required=True), _ARTIFACT_API),
        _ref("ArtifactModel"),
    ),
    RouteSpec(
        "artifacts",
        "POST",
        f"{_AR}/artifacts/files",
        "uploadArtifactFilesMetadata",
        (_PROJ, _HASH, _body("artifactFilesDTO", _ref("ArtifactFiles")), _ARTIFACT_API),
        _ref("ArtifactModel"),
    ),
    RouteSpec(
        "artifacts",
        "POST",
        f"{_AR}/artifacts/version",
        "createArtifactVersion",
        (
            _PROJ,
            _HASH,
            _q("parentIdentifier", required=True),
            _body("artifactFilesDTO", _ref("ArtifactFiles")),
            _ARTIFACT_API,
        ),
        _ref("ArtifactModel"),
    ),
    RouteSpec(
        "artifacts",
        "GET",
        f"{_AR}/artifacts/files",
        "listArtifactFiles",
        (_PROJ, _HASH, _ARTIFACT_API),
        _ref("ArtifactFiles"),
    ),
    RouteSpec(
        "leaderboard",
        "GET",
        f"{_LB}/attributes/series/float",
        "getFloatSeriesValues",
        (_EXP, _ATTR, _q("limit", "integer"), _q("offset", "integer")),
        _ref("FloatSeriesValues"),
    ),
    RouteSpec(
        "leaderboard",
        "GET",
        f"{_LB}/attributes/series/string",
        "getStringSeriesValues",
        (_EXP, _ATTR, _q("limit", "integer"), _q("offset", "integer")),
        _ref("StringSeriesValues"),
    ),
    RouteSpec(
        "leaderboard",
        "GET",
        f"{_LB}/attributes/series/image",
        "getImageSeriesValues",
        (_EXP, _ATTR, _q("limit", "integer"), _q("offset", "integer")),
        _ref("ImageSeriesValues"),
    ),
    RouteSpec(
        "leaderboard",
        "GET",
        f"{_LB}/attributes/series/image/download",
        "getImageSeriesValue",
        (_EXP, _ATTR, _q("index", "integer")),
        None,
    ),
    RouteSpec("leaderboard", "GET", f"{_LB}/attributes/download", "downloadAttribute", (_EXP, _ATTR), None),
    RouteSpec(
        "leaderboard",
        "GET",
        f"{_LB}/attributes/storage/fileset/list",
        "lsFileSetAttribute",
        (_EXP, _ATTR, _q("path")),
        _list(_ref("FileEntry")),
    ),
    RouteSpec(
        "leaderboard",
        "POST",
        f"{_LB}/attributes/storage/fileset/download/prepare",
        "prepareForDownloadFileSetAttributeZip",
        (_EXP, _ATTR, _q("expectedZipSize", "integer")),
        _ref("DownloadPrepareRequest"),
    ),
    RouteSpec(
        "leaderboard",
        "GET",
        f"{_LB}/storage/downloadRequest",
        "getDownloadPrepareRequest",
        (_q("id", required=True),),
        _ref("DownloadPrepareRequest"),
    ),
    RouteSpec("leaderboard", "GET", f"{_LB}/storage/download", "downloadPrepared", (_q("id"),), None),
    RouteSpec(
        "leaderboard",
        "POST",
        f"{_LB}/attributes/storage/file/upload",
        "fileAtomUpload",
        (_EXPI, _ATTR, _q("ext")),
        _ref("UploadResult"),
    ),
    RouteSpec(
        "leaderboard",
        "POST",
        f"{_LB}/attributes/storage/file/upload/start",
        "fileAtomMultipartUploadStart",
        (_EXPI, _ATTR, _q("ext"), _q("totalLength", "integer", required=True)),
        _ref("UploadStart"),
    ),
    RouteSpec(
        "leaderboard",
        "POST",
        f"{_LB}/attributes/storage/file/upload/part",
        "fileAtomMultipartUploadPart",
        (_EXPI, _ATTR, _q("uploadId"), _q("uploadPartIdx", "integer"), _h("X-Range")),
        _ref("UploadResult"),
    ),
    RouteSpec(
        "leaderboard",
        "POST",
        f"{_LB}/attributes/storage/file/upload/finish",
        "fileAtomMultipartUploadFinish",
        (_EXPI, _ATTR, _q("uploadId", required=True)),
        _ref("UploadResult"),
    ),
    RouteSpec(
        "leaderboard",
        "POST",
        f"{_LB}/attributes/storage/fileset/upload",
        "fileSetFileUpload",
        (_EXPI, _ATTR, _q("subPath")),
        _ref("UploadResult"),
    ),
    RouteSpec(
        "leaderboard",
        "POST",
        f"{_LB}/attributes/storage/fileset/upload/start",
        "fileSetFileMultipartUploadStart",
        (_EXPI, _ATTR, _q("subPath", required=True), _q("totalLength", "integer", required=True)),
        _ref("UploadStart"),
    ),
    RouteSpec(
        "leaderboard",
        "POST",
        f"{_LB}/attributes/storage/fileset/upload/part",
        "fileSetFileMultipartUploadPart",
        (_EXPI, _ATTR, _q("subPath"), _q("uploadId"), _q("uploadPartIdx", "integer"), _h("X-Range")),
        _ref("UploadResult"),
    ),
    RouteSpec(
        "leaderboard",
        "POST",
        f"{_LB}/attributes/storage/fileset/upload/finish",
        "fileSetFileMultipartUploadFinish",
        (_EXPI, _ATTR, _q("subPath", required=True), _q("uploadId", required=True)),
        _ref("UploadResult"),
    ),
    RouteSpec(
        "leaderboard",
        "POST",
        f"{_LB}/attributes/uploadFileSetTar",
        "uploadFileSetAttributeTar",
        (_EXP, _ATTR, _q("reset")),
        _ref("UploadResult"),
    ),
    RouteSpec(
        "leaderboard",
        "POST",
        f"{_LB}/leaderboard/entries/search",
        "searchLeaderboardEntries",
        (_q("projectIdentifier", required=True), _qa("type"), _body("params", {"type": "object"})),
        {"type": "object"},
    ),
    RouteSpec(
        "leaderboard",
        "POST",
        f"{_LB}/leaderboard/attributes/search",
        "searchLeaderboardAttributes",
        (
            _q("projectIdentifier", required=True),
            _q("search"),
            _qa("type"),
            _body("params", {"type": "object"}),
        ),
        _ref("AttributeNameTypeList"),
    ),
    RouteSpec(
        "leaderboard",
        "POST",
        f"{_LB}/experiments/trash",
        "trashExperiments",
        (_q("projectIdentifier", required=True), _body("experimentIdentifiers", _list(_S))),
        _ref("TrashResult"),
    ),
    RouteSpec(
        "leaderboard",
        "POST",
        f"{_LB}/experiments/restore",
        "restoreExperiments",
        (_q("projectIdentifier", required=True), _body("experimentIdentifiers", _list(_S))),
        _ref("TrashResult"),
    ),
    RouteSpec(
        "leaderboard",
        "POST",
        f"{_LB}/experiments/delete",
        "deleteExperiments",
        (_q("projectIdentifier", required=True), _body("experimentIdentifiers", _list(_S))),
        _ref("TrashResult"),
    ),
    RouteSpec(
        "leaderboard",
        "POST",
        f"{_LB}/experiments/deleteAll",
        "deleteAllExperiments",
        (_q("projectIdentifier", required=True),),
        _ref("TrashResult"),
    ),
    *MANAGEMENT_ROUTES,
)

SWAGGER_PATHS = {
    "backend": "/api/backend/swagger.json",
    "leaderboard": "/api/leaderboard/swagger.json",
    "artifacts": "/api/artifacts/swagger.json",
}


def build_spec(api: str, host: str | None = None) -> JSON:
    """The Swagger 2.0 document of one API ("backend", "leaderboard" or "artifacts")."""
    paths: JSON = {}
    for route in ROUTES:
        if route.api != api:
            continue
        responses: JSON = {"200": {"description": "OK"}}
        if route.response is not None:
            responses["200"]["schema"] = route.response
        for status, schema in route.error_responses:
            responses[status] = {"description": "Error", "schema": schema}
        op: JSON = {
            "operationId": route.operation_id,
            "tags": ["api"],
            "parameters": [dict(p) for p in route.params],
            "responses": responses,
            "produces": ["application/json", "application/octet-stream"],
            "consumes": ["application/json", "application/octet-stream"],
        }
        paths.setdefault(route.path, {})[route.method.lower()] = op
    spec: JSON = {
        "swagger": "2.0",
        "info": {"title": f"Neptune emulator {api} API", "version": "2.8"},
        "basePath": "/",
        "paths": paths,
        "definitions": DEFINITIONS,
    }
    if host:
        spec["host"] = host
    return spec
