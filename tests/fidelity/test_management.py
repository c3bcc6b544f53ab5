"""neptune.management against the emulator: the client's own e2e set-up (create a project with a key
and a visibility, add a member and a service account) runs unchanged, and every call answers as a
real server would, refusals included."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import neptune
import pytest
from neptune import management
from neptune.management.exceptions import (
    ProjectAlreadyExists,
    ProjectKeyCollision,
    ProjectKeyInvalid,
    ProjectNameInvalid,
    ProjectNotFound,
    ServiceAccountAlreadyHasAccess,
    ServiceAccountNotFound,
    UserAlreadyHasAccess,
    UserNotExistsOrWithoutAccess,
    WorkspaceNotFound,
)

from airflow_provider_neptune.emulator import NeptuneEmulator

pytestmark = pytest.mark.integration


def _workspace(emulator: NeptuneEmulator) -> str:
    return emulator.project.split("/")[0]


def _unique_key() -> str:
    return "K" + uuid.uuid4().hex[:8].upper()


def test_e2e_setup_fixture_runs_unchanged(fidelity_emulator: NeptuneEmulator) -> None:
    workspace = _workspace(fidelity_emulator)
    name = f"mgmt-{uuid.uuid4().hex[:8]}"
    key = _unique_key()
    created = management.create_project(name=name, key=key, visibility="priv", workspace=workspace)
    assert created == f"{workspace}/{name}"
    management.add_project_member(project=created, username="alice", role="contributor")
    management.add_project_service_account(
        project=created, service_account_name=f"service-account@{workspace}", role="contributor"
    )
    with neptune.init_project(project=created) as project:
        project["finished"] = datetime(2024, 5, 6, tzinfo=UTC)
        project.wait()
        assert project["sys/id"].fetch() == key
        assert project["sys/visibility"].fetch() == "priv"
    assert created in management.get_project_list()
    with neptune.init_run(project=created, mode="sync") as run:
        assert run["sys/id"].fetch() == f"{key}-1"


def test_project_visibility_and_members_read_back(fidelity_emulator: NeptuneEmulator) -> None:
    workspace = _workspace(fidelity_emulator)
    created = management.create_project(
        name=f"pub-{uuid.uuid4().hex[:8]}", visibility="pub", workspace=workspace
    )
    with neptune.init_project(project=created, mode="read-only") as project:
        assert project["sys/visibility"].fetch() == "pub"
    management.add_project_member(project=created, username="bob", role="viewer")
    assert management.get_project_member_list(project=created) == {"emulator": "owner", "bob": "viewer"}
    assert management.get_workspace_member_list(workspace=workspace)["bob"] == "member"
    assert management.get_workspace_member_list(workspace=workspace)["emulator"] == "admin"
    with pytest.raises(UserAlreadyHasAccess):
        management.add_project_member(project=created, username="bob", role="owner")
    management.remove_project_member(project=created, username="bob")
    assert management.get_project_member_list(project=created) == {"emulator": "owner"}
    with pytest.raises(UserNotExistsOrWithoutAccess):
        management.remove_project_member(project=created, username="bob")


def test_service_accounts(fidelity_emulator: NeptuneEmulator) -> None:
    workspace = _workspace(fidelity_emulator)
    account = f"service-account@{workspace}"
    created = management.create_project(name=f"sa-{uuid.uuid4().hex[:8]}", workspace=workspace)
    assert management.get_workspace_service_account_list(workspace=workspace) == {account: "member"}
    assert management.get_project_service_account_list(project=created) == {}
    management.add_project_service_account(project=created, service_account_name=account, role="owner")
    assert management.get_project_service_account_list(project=created) == {account: "owner"}
    with pytest.raises(ServiceAccountAlreadyHasAccess):
        management.add_project_service_account(project=created, service_account_name=account, role="viewer")
    with pytest.raises(ServiceAccountNotFound):
        management.add_project_service_account(project=created, service_account_name="nobody", role="viewer")
    management.remove_project_service_account(project=created, service_account_name=account)
    assert management.get_project_service_account_list(project=created) == {}


def test_create_project_refusals(fidelity_emulator: NeptuneEmulator) -> None:
    workspace = _workspace(fidelity_emulator)
    name = f"dup-{uuid.uuid4().hex[:8]}"
    key = _unique_key()
    management.create_project(name=name, key=key, workspace=workspace)
    with pytest.raises(ProjectAlreadyExists):
        management.create_project(name=name, workspace=workspace)
    with pytest.raises(ProjectKeyCollision, match=key):
        management.create_project(name=f"{name}-2", key=key, workspace=workspace)
    with pytest.raises(ProjectKeyInvalid, match="upper-case"):
        management.create_project(name=f"{name}-3", key="lower", workspace=workspace)
    with pytest.raises(ProjectNameInvalid):
        management.create_project(name="bad name!", workspace=workspace)
    with pytest.raises(WorkspaceNotFound):
        management.create_project(name=f"{name}-4", workspace=f"nowhere-{uuid.uuid4().hex[:6]}")


def test_delete_project_removes_it_and_its_runs(fidelity_emulator: NeptuneEmulator) -> None:
    workspace = _workspace(fidelity_emulator)
    created = management.create_project(name=f"del-{uuid.uuid4().hex[:8]}", workspace=workspace)
    with neptune.init_run(project=created, mode="sync") as run:
        run["x"] = 1
        run_id = run["sys/id"].fetch()
    management.delete_project(project=created)
    assert created not in management.get_project_list()
    with pytest.raises(ProjectNotFound):
        management.delete_project(project=created)
    with pytest.raises(neptune.exceptions.NeptuneException):
        neptune.init_run(project=created, with_id=run_id, mode="read-only")


def test_trash_and_delete_objects(fidelity_emulator: NeptuneEmulator, own_project: str) -> None:
    with neptune.init_run(project=own_project, mode="sync") as run:
        run_id = run["sys/id"].fetch()
    management.trash_objects(project=own_project, ids=run_id)
    with neptune.init_project(project=own_project, mode="read-only") as project:
        assert project.fetch_runs_table(trashed=True).to_pandas()["sys/id"].tolist() == [run_id]
    management.delete_objects_from_trash(project=own_project, ids=run_id)
    with neptune.init_project(project=own_project, mode="read-only") as project:
        assert project.fetch_runs_table(trashed=None).to_pandas().empty
