"""Fields a real Neptune server handles differently from plain metadata: group tags, where string sets
may be written, systemAttributes, numbers sent as text, git info and a project's own sys/ fields."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import neptune
import pytest
from neptune.exceptions import MetadataInconsistency

from airflow_provider_neptune.emulator import NeptuneEmulator
from airflow_provider_neptune.hooks.neptune import RUN_DEFAULTS as QUIET
from tests.fidelity.conftest import MODES

pytestmark = pytest.mark.integration

LB = "/api/leaderboard/v1"


def _api(emulator: NeptuneEmulator, method: str, path: str, body: Any = None) -> Any:
    """One raw API call with a bearer token, as the client would make it."""
    token = json.loads(
        urllib.request.urlopen(
            urllib.request.Request(
                f"{emulator.url}/api/backend/v1/authorization/oauth-token",
                headers={"X-Neptune-Api-Token": emulator.api_token},
            )
        ).read()
    )["accessToken"]
    request = urllib.request.Request(
        f"{emulator.url}{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read() or b"null")


@pytest.mark.parametrize("mode", MODES)
def test_group_tags_written_and_queried(
    fidelity_emulator: NeptuneEmulator, own_project: str, mode: str
) -> None:
    with neptune.init_run(project=own_project, mode=mode, **QUIET) as run:
        run["sys/group_tags"].add(["blue", "green"])
        run["sys/group_tags"].remove("green")
        run.wait()
        tagged = run["sys/id"].fetch()
        assert run["sys/group_tags"].fetch() == {"blue"}
    with neptune.init_run(project=own_project, mode=mode, **QUIET) as other:
        other["sys/group_tags"].add("green")
    with neptune.init_project(project=own_project, mode="read-only") as project:
        table = project.fetch_runs_table(
            query='`sys/group_tags`:stringSet CONTAINS "blue"', columns=["sys/group_tags"]
        ).to_pandas()
    assert table["sys/id"].tolist() == [tagged]
    assert table["sys/group_tags"].tolist() == ["blue"]


@pytest.mark.parametrize("mode", MODES)
def test_string_sets_refused_outside_tags(fidelity_emulator: NeptuneEmulator, mode: str) -> None:
    before = fidelity_emulator.stats()["operation_errors_total"]
    with neptune.init_run(mode=mode, tags=["kept"], **QUIET) as run:
        if mode == "sync":  # a sync client raises the per-operation error; async logs it and goes on
            with pytest.raises(MetadataInconsistency, match="sys/tags"):
                run["labels"].add(["x", "y"])
        else:
            run["labels"].add(["x", "y"])
        run["sys/tags"].add("more")
        run.wait()
        run_id = run["sys/id"].fetch()
    assert fidelity_emulator.stats()["operation_errors_total"] == before + 1
    with neptune.init_run(with_id=run_id, mode="read-only") as reader:
        assert reader["sys/tags"].fetch() == {"kept", "more"}
        assert "labels" not in reader.get_structure()


def test_string_set_refusal_is_per_operation(fidelity_emulator: NeptuneEmulator) -> None:
    run = _api(
        fidelity_emulator, "POST", f"{LB}/experiments", {"projectIdentifier": fidelity_emulator.project}
    )
    errors = _api(
        fidelity_emulator,
        "POST",
        f"{LB}/attributes/operations?experimentId={run['id']}",
        [
            {"path": "labels", "addStrings": {"values": ["x"]}},
            {"path": "x", "assignFloat": {"value": "2.5"}},
            {"path": "y", "assignFloat": {"value": "not a number"}},
        ],
    )
    assert len(errors) == 2
    assert "labels" in errors[0]["errorDescription"]
    assert "sys/tags" in errors[0]["errorDescription"]
    assert "not a number" in errors[1]["errorDescription"]
    attributes = _api(fidelity_emulator, "GET", f"{LB}/attributes?experimentId={run['id']}")
    by_name = {a["name"]: a for a in attributes["attributes"]}
    assert by_name["x"]["floatProperties"]["value"] == 2.5
    assert "labels" not in by_name
    assert "y" not in by_name


def test_system_attributes_in_experiment_attributes(fidelity_emulator: NeptuneEmulator) -> None:
    with neptune.init_run(mode="sync", name="legacy-read", description="d", tags=["t"], **QUIET) as run:
        run_id = run["sys/id"].fetch()
    project = fidelity_emulator.project
    found = _api(fidelity_emulator, "GET", f"{LB}/experiments?experimentId={project}/{run_id}")
    system = _api(fidelity_emulator, "GET", f"{LB}/attributes?experimentId={found['id']}")["systemAttributes"]
    assert system["shortId"]["value"] == run_id
    assert system["name"]["value"] == "legacy-read"
    assert system["description"]["value"] == "d"
    assert system["tags"]["values"] == ["t"]
    assert system["owner"]["value"] == "emulator"
    assert system["state"]["value"] in ("running", "idle")
    assert isinstance(system["runningTime"]["value"], float)
    assert system["creationTime"]["value"].endswith("Z")


def test_legacy_client_reads_experiment(fidelity_emulator: NeptuneEmulator) -> None:
    """The legacy API's get_experiment reads systemAttributes and parameters sent as text by assignFloat."""
    from neptune.legacy.internal.api_clients.hosted_api_clients.hosted_alpha_leaderboard_api_client import (
        HostedAlphaLeaderboardApiClient,
    )
    from neptune.legacy.internal.api_clients.hosted_api_clients.hosted_backend_api_client import (
        HostedNeptuneBackendApiClient,
    )

    with neptune.init_run(mode="sync", name="legacy", tags=["a"], **QUIET) as run:
        run_id = run["sys/id"].fetch()
    backend = HostedNeptuneBackendApiClient(api_token=fidelity_emulator.api_token)
    client = HostedAlphaLeaderboardApiClient(backend_api_client=backend)
    experiment = client.get_experiment(f"{fidelity_emulator.project}/{run_id}")
    assert experiment.shortId == run_id
    assert experiment.name == "legacy"
    assert experiment.tags == ["a"]


@pytest.mark.parametrize("mode", MODES)
def test_git_info_stored_as_source_code_git(
    fidelity_emulator: NeptuneEmulator, tmp_path: Path, mode: str
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-c", "user.name=Tess", "-c", "user.email=tess@example.com"]
    subprocess.run([*git, "init", "-q", "-b", "trunk"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "first commit"], cwd=repo, check=True)
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, check=True, capture_output=True, text=True
    )
    settings = {**QUIET, "git_ref": neptune.types.GitRef(repository_path=str(repo))}
    with neptune.init_run(mode=mode, **settings) as run:
        run_id = run["sys/id"].fetch()
        assert "git" in run.get_structure()["source_code"]
    with neptune.init_project(mode="read-only") as project:
        table = project.fetch_runs_table(id=run_id, columns=["source_code/git"]).to_pandas()
    assert table["source_code/git"].tolist() == [commit.stdout.strip()]
    found = _api(
        fidelity_emulator, "GET", f"{LB}/experiments?experimentId={fidelity_emulator.project}/{run_id}"
    )
    attributes = _api(fidelity_emulator, "GET", f"{LB}/attributes?experimentId={found['id']}")["attributes"]
    git_ref = next(a for a in attributes if a["name"] == "source_code/git")
    assert git_ref["type"] == "gitRef"
    assert git_ref["gitRefProperties"]["currentBranch"] == "trunk"
    assert git_ref["gitRefProperties"]["commit"]["message"].rstrip("\n") == "first commit"
    assert git_ref["gitRefProperties"]["commit"]["authorEmail"] == "tess@example.com"
    assert git_ref["gitRefProperties"]["repositoryDirty"] is False


def test_project_has_project_sys_fields(fidelity_emulator: NeptuneEmulator, own_project: str) -> None:
    with neptune.init_project(project=own_project) as project:
        project["notes"] = "n"
        project.wait()
        system = project.get_structure()["sys"]
        assert project["sys/visibility"].fetch() == "priv"
        assert project["sys/name"].fetch() == own_project.split("/")[1]
    assert {
        "id",
        "name",
        "owner",
        "creation_time",
        "modification_time",
        "ping_time",
        "size",
        "visibility",
    } <= set(system)
    for run_only in ("state", "running_time", "monitoring_time", "tags", "group_tags", "failed", "trashed"):
        assert run_only not in system
