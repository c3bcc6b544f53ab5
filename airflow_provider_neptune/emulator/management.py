"""The management API (what `neptune.management` calls): projects, members and service accounts.

The emulator has one user, its owner, who owns every workspace and project. Other users exist as
soon as someone adds them to a project or invites them to a workspace; each workspace has one
service account, `service-account@<workspace>`. Memberships are kept in the `meta` table as JSON.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from typing import Any

from starlette.responses import JSONResponse, Response

from airflow_provider_neptune.emulator.errors import EmulatorError
from airflow_provider_neptune.emulator.storage import ProjectRow, Storage

PROJECT_ROLES = ("viewer", "member", "manager")
VISIBILITIES = ("priv", "pub", "workspace")
WORKSPACE_ROLES = ("owner", "member")
PROJECT_NAME = re.compile(r"[A-Za-z0-9_.-]{1,50}")
PROJECT_KEY = re.compile(r"(?=.*[A-Z])[A-Z0-9]{1,10}")
_LOCK = threading.Lock()


def service_account_name(workspace: str) -> str:
    """The display name of a workspace's service account."""
    return f"service-account@{workspace}"


def service_account_id(workspace: str) -> str:
    """The id of a workspace's service account."""
    return f"sa-{workspace}"


def validation_error(status: int, field: str, code: str, message: str) -> Response:
    """A request refused with Neptune's validation-error body (the client reads errorCode.name)."""
    body = {
        "code": status,
        "message": message,
        "validationErrors": [{"path": field, "errors": [{"errorCode": {"name": code}, "context": message}]}],
    }
    return JSONResponse(body, status_code=status)


def typed_error(status: int, error_type: str, message: str, **details: str) -> Response:
    """A refusal the client turns into a specific exception by its errorType (ProjectKeyCollision...)."""
    body = {"code": status, "message": message, "title": message, "errorType": error_type, **details}
    return JSONResponse(body, status_code=status)


def _text(body: dict[str, Any], key: str, where: str, required: bool = True) -> str | None:
    value = body.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value):
        raise EmulatorError(
            400, f"{where}.{key} must be a non-empty string, got {value!r}"[:200], "BAD_REQUEST"
        )
    return value


def _role(value: Any, allowed: tuple[str, ...], where: str) -> str:
    if value not in allowed:
        raise EmulatorError(
            400, f"{where} must be one of {', '.join(allowed)}, got {value!r}"[:200], "BAD_REQUEST"
        )
    return str(value)


class ManagementApi:
    """Handlers of the management operations; mixed into NeptuneApi, which provides these members."""

    storage: Storage
    _project: Callable[[str | None], ProjectRow]

    # ----- persisted settings ---------------------------------------------------------------------
    def _json_meta(self, key: str) -> dict[str, Any]:
        loaded = json.loads(self.storage.meta(key) or "{}")
        return loaded if isinstance(loaded, dict) else {}

    def project_info(self, project: ProjectRow) -> dict[str, Any]:
        """Visibility, description, members and service accounts of a project (owner is a manager)."""
        info = self._json_meta(f"project:{project.id}")
        info.setdefault("visibility", "priv")
        info.setdefault("description", "")
        info.setdefault("members", {self.storage.owner: "manager"})
        info.setdefault("service_accounts", {})
        return info

    def _save_project_info(self, project: ProjectRow, info: dict[str, Any]) -> None:
        self.storage.meta_set(f"project:{project.id}", json.dumps(info))

    def _workspace_members(self, workspace: str) -> dict[str, str]:
        members: dict[str, str] = {self.storage.owner: "owner"}
        for user, role in self._json_meta(f"workspace:{workspace}").items():
            members.setdefault(user, role)
        for project in self.storage.list_projects():
            if project.workspace == workspace:
                for user in self.project_info(project)["members"]:
                    members.setdefault(user, "member")
        return members

    def _workspace(self, name: str) -> str:
        if not any(p.workspace == name for p in self.storage.list_projects()):
            raise EmulatorError(404, f"Workspace {name} not found", "WORKSPACE_NOT_FOUND")
        return name

    # ----- projects -----------------------------------------------------------------------------
    def createProject(self, call: Any) -> Response:
        """Create a project in an existing workspace (name unique in it, key unique server-wide)."""
        body = call.json()
        if not isinstance(body, dict):
            raise EmulatorError(400, "projectToCreate must be an object", "BAD_REQUEST")
        name = _text(body, "name", "projectToCreate")
        assert name is not None
        if not PROJECT_NAME.fullmatch(name):
            return typed_error(400, "PROJECT_NAME_INVALID", f"Invalid project name {name!r}", name=name)
        key = _text(body, "projectKey", "projectToCreate", required=False)
        if key is not None and not PROJECT_KEY.fullmatch(key):
            reason = "a key is 1-10 upper-case letters or digits with at least one letter"
            return typed_error(
                400, "PROJECT_KEY_INVALID", f"Invalid key {key!r}: {reason}", key=key, reason=reason
            )
        workspace = self._workspace(_text(body, "organizationId", "projectToCreate") or "")
        visibility = _role(body.get("visibility") or "priv", VISIBILITIES, "projectToCreate.visibility")
        description = _text(body, "description", "projectToCreate", required=False) or ""
        with _LOCK:
            try:
                project = self.storage.create_project(workspace, name, key)
            except EmulatorError as exc:
                if exc.error_type == "name":  # the client reports it as ProjectAlreadyExists
                    return validation_error(400, "name", "ERR_NOT_UNIQUE", exc.message)
                return typed_error(400, "PROJECT_KEY_COLLISION", exc.message, key=key or "")
            info = self.project_info(project)
            info.update(visibility=visibility, description=description)
            self._save_project_info(project, info)
        return JSONResponse(self.project_dto(project))

    def project_dto(self, project: ProjectRow) -> dict[str, Any]:
        """The Project object (getProject, listProjects, createProject)."""
        info = self.project_info(project)
        return {
            "id": project.id,
            "name": project.name,
            "organizationName": project.workspace,
            "organizationId": project.workspace,
            "projectKey": project.key,
            "version": 2,
            "visibility": info["visibility"],
            "description": info["description"],
        }

    def deleteProject(self, call: Any) -> Response:
        """Delete a project with everything in it."""
        project = self._project(call.need("projectIdentifier"))
        with _LOCK:
            self.storage.delete_project(project.id)
            self.storage.meta_set(f"project:{project.id}", "{}")
        return Response(status_code=200)

    # ----- members ------------------------------------------------------------------------------
    def addProjectMember(self, call: Any) -> Response:
        """Give a user a role in a project (409 when the user already has one)."""
        project = self._project(call.need("projectIdentifier"))
        body = call.json()
        if not isinstance(body, dict):
            raise EmulatorError(400, "member must be an object", "BAD_REQUEST")
        user = _text(body, "userId", "member") or ""
        role = _role(body.get("role"), PROJECT_ROLES, "member.role")
        with _LOCK:
            info = self.project_info(project)
            if user in info["members"]:
                raise EmulatorError(409, f"User {user} is already a member of {project.qualified_name}")
            info["members"][user] = role
            self._save_project_info(project, info)
        return JSONResponse({"role": role, "registeredMemberInfo": {"username": user}})

    def listProjectMembers(self, call: Any) -> Response:
        """The users of a project with their roles."""
        project = self._project(call.need("projectIdentifier"))
        members = self.project_info(project)["members"]
        return JSONResponse(
            [
                {"role": role, "registeredMemberInfo": {"username": user}}
                for user, role in sorted(members.items())
            ]
        )

    def deleteProjectMember(self, call: Any) -> Response:
        """Take a user out of a project (422 when not a member; the owner cannot be removed: 403)."""
        project = self._project(call.need("projectIdentifier"))
        user = call.need("userId")
        with _LOCK:
            info = self.project_info(project)
            if user not in info["members"]:
                raise EmulatorError(422, f"User {user} is not a member of {project.qualified_name}")
            if user == self.storage.owner:
                raise EmulatorError(403, f"User {user} owns {project.qualified_name} and cannot be removed")
            del info["members"][user]
            self._save_project_info(project, info)
        return Response(status_code=200)

    def listOrganizationMembers(self, call: Any) -> Response:
        """The owner (role owner) and every user invited or added to one of the workspace's projects."""
        workspace = self._workspace(call.need("organizationIdentifier"))
        members = self._workspace_members(workspace)
        return JSONResponse(
            [
                {"role": role, "registeredMemberInfo": {"username": user}}
                for user, role in sorted(members.items())
            ]
        )

    def createOrganizationInvitations(self, call: Any) -> Response:
        """Invitations are accepted at once: the invitees become workspace members (409 if already)."""
        body = call.json()
        if not isinstance(body, dict):
            raise EmulatorError(400, "newOrganizationInvitations must be an object", "BAD_REQUEST")
        workspace = self._workspace(_text(body, "organizationIdentifier", "newOrganizationInvitations") or "")
        entries = body.get("invitationsEntries")
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise EmulatorError(400, "invitationsEntries must be a list of objects", "BAD_REQUEST")
        with _LOCK:
            members = self._workspace_members(workspace)
            invited = self._json_meta(f"workspace:{workspace}")
            for i, entry in enumerate(entries):
                invitee = _text(entry, "invitee", f"invitationsEntries[{i}]") or ""
                role = _role(entry.get("roleGrant"), WORKSPACE_ROLES, f"invitationsEntries[{i}].roleGrant")
                if invitee in members:
                    raise EmulatorError(409, f"{invitee} is already a member of workspace {workspace}")
                invited[invitee] = role
            self.storage.meta_set(f"workspace:{workspace}", json.dumps(invited))
        return JSONResponse({"invitations": [{"invitee": e["invitee"]} for e in entries]})

    # ----- service accounts ---------------------------------------------------------------------
    def listServiceAccounts(self, call: Any) -> Response:
        """The workspace's one service account."""
        workspace = self._workspace(call.need("organizationIdentifier"))
        return JSONResponse(
            [{"id": service_account_id(workspace), "displayName": service_account_name(workspace)}]
        )

    def listProjectServiceAccounts(self, call: Any) -> Response:
        """Service accounts given a role in a project."""
        project = self._project(call.need("projectIdentifier"))
        accounts = self.project_info(project)["service_accounts"]
        return JSONResponse(
            [
                {
                    "role": role,
                    "serviceAccountInfo": {
                        "id": sa_id,
                        "displayName": service_account_name(project.workspace),
                    },
                }
                for sa_id, role in sorted(accounts.items())
            ]
        )

    def addProjectServiceAccount(self, call: Any) -> Response:
        """Give the workspace's service account a role in a project (404 unknown id, 409 already)."""
        project = self._project(call.need("projectIdentifier"))
        body = call.json()
        if not isinstance(body, dict):
            raise EmulatorError(400, "account must be an object", "BAD_REQUEST")
        sa_id = _text(body, "serviceAccountId", "account") or ""
        role = _role(body.get("role"), PROJECT_ROLES, "account.role")
        if sa_id != service_account_id(project.workspace):
            raise EmulatorError(404, f"Service account {sa_id} not found in workspace {project.workspace}")
        with _LOCK:
            info = self.project_info(project)
            if sa_id in info["service_accounts"]:
                raise EmulatorError(
                    409, f"Service account {sa_id} already has access to {project.qualified_name}"
                )
            info["service_accounts"][sa_id] = role
            self._save_project_info(project, info)
        return JSONResponse({"role": role})

    def deleteProjectServiceAccount(self, call: Any) -> Response:
        """Take the service account out of a project (422 when it has no role there)."""
        project = self._project(call.need("projectIdentifier"))
        sa_id = call.need("serviceAccountId")
        with _LOCK:
            info = self.project_info(project)
            if sa_id not in info["service_accounts"]:
                raise EmulatorError(422, f"Service account {sa_id} has no access to {project.qualified_name}")
            del info["service_accounts"][sa_id]
            self._save_project_info(project, info)
        return Response(status_code=200)
