"""Artifacts of local files through the real neptune client (sync and async) against the emulator.

`track_files` registers a file list by hash, `fetch_hash` / `fetch_files_list` read it back,
`download` links the tracked files into place, tracking more files into an existing artifact makes
the artifact of all of them, and assigning a fetched artifact to another field shares it.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration


def _tree(root: Path) -> dict[str, bytes]:
    files = {
        "model/weights.bin": os.urandom(4096),
        "model/config/params.yaml": b"lr: 0.1\nlayers: 4\n",
        "README.txt": "résumé of the data set".encode(),
    }
    for name, content in files.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
    return files


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_track_local_folder_then_fetch_hash_and_files(run_factory: Any, tmp_path: Path, mode: str) -> None:
    files = _tree(tmp_path / "data")
    run = run_factory(mode)
    run["artifacts/relative"].track_files("data")
    run["artifacts/absolute"].track_files(f"file://{tmp_path / 'data'}")
    run.wait()

    listed = run["artifacts/relative"].fetch_files_list()
    assert sorted(f.file_path for f in listed) == sorted(files)
    for entry in listed:
        content = files[entry.file_path]
        assert entry.size == len(content)
        assert entry.file_hash == hashlib.sha1(content).hexdigest()
        assert entry.type == "Local"
        assert entry.metadata["file_path"] == f"file://{(tmp_path / 'data' / entry.file_path).resolve()}"
    digest = run["artifacts/relative"].fetch_hash()
    assert re.fullmatch("[0-9a-f]{64}", digest)
    assert run["artifacts/absolute"].fetch_hash() == digest
    assert run["artifacts/absolute"].fetch_files_list() == listed
    assert run.get_structure()["artifacts"]["relative"].fetch_hash() == digest


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_download_links_the_tracked_files(run_factory: Any, tmp_path: Path, mode: str) -> None:
    files = _tree(tmp_path / "data")
    run = run_factory(mode)
    run["art"].track_files("data", wait=True)

    run["art"].download(str(tmp_path / "restored"))

    restored = {
        p.relative_to(tmp_path / "restored").as_posix(): p.read_bytes()
        for p in (tmp_path / "restored").rglob("*")
        if p.is_file()
    }
    assert restored == files


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_tracking_more_files_into_an_existing_artifact(run_factory: Any, tmp_path: Path, mode: str) -> None:
    files = _tree(tmp_path / "data")
    run = run_factory(mode)
    run["all"].track_files("data")
    run["growing"].track_files("data/README.txt")
    run.wait()
    first_hash = run["growing"].fetch_hash()
    assert [f.file_path for f in run["growing"].fetch_files_list()] == ["README.txt"]

    run["growing"].track_files("data/model", destination="model")
    run.wait()

    assert run["growing"].fetch_hash() != first_hash
    assert run["growing"].fetch_hash() == run["all"].fetch_hash()
    assert run["growing"].fetch_files_list() == run["all"].fetch_files_list()
    assert sorted(f.file_path for f in run["growing"].fetch_files_list()) == sorted(files)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_assigning_a_fetched_artifact_shares_it(run_factory: Any, tmp_path: Path, mode: str) -> None:
    _tree(tmp_path / "data")
    run = run_factory(mode)
    run["first"].track_files("data/model/weights.bin", wait=True)

    run["second"] = run["first"].fetch()
    run.wait()

    assert run["second"].fetch_hash() == run["first"].fetch_hash()
    assert [f.file_path for f in run["second"].fetch_files_list()] == ["weights.bin"]


def test_unknown_artifact_hash_is_refused(run_factory: Any, neptune_emulator_env: Any) -> None:
    """Assigning a hash no artifact of the project has is refused and stores nothing."""
    import neptune
    from neptune.exceptions import MetadataInconsistency
    from neptune.types.atoms.artifact import Artifact

    run = run_factory("sync")
    run["kept"] = 1
    with pytest.raises(MetadataInconsistency, match=r"artifact 0{64} does not exist in this project"):
        run["bogus"].assign(Artifact("0" * 64))
    sys_id = run["sys/id"].fetch()

    reader = neptune.init_run(
        project=neptune_emulator_env.project,
        api_token=neptune_emulator_env.api_token,
        with_id=sys_id,
        mode="read-only",
    )
    try:
        assert reader.exists("kept")
        assert not reader.exists("bogus")
    finally:
        reader.stop()


def test_file_list_must_match_the_artifact_hash(run_factory: Any, neptune_emulator_env: Any) -> None:
    """A file list that does not hash to the registered artifact is refused, naming the problem."""
    import requests

    emulator = neptune_emulator_env
    run = run_factory("sync")
    parent = f"{emulator.project}/{run['sys/id'].fetch()}"
    session = requests.Session()
    token = session.get(
        f"{emulator.url}/api/backend/v1/authorization/oauth-token",
        headers={"X-Neptune-Api-Token": emulator.api_token},
        timeout=10,
    )
    token.raise_for_status()
    session.headers["Authorization"] = f"Bearer {token.json()['accessToken']}"
    query = {"projectIdentifier": emulator.project, "hash": "ab" * 32, "parentIdentifier": parent}
    created = session.post(
        f"{emulator.url}/api/artifacts/v1/artifacts", params={**query, "size": 3}, timeout=10
    )
    assert created.status_code == 200
    assert created.json()["receivedMetadata"] is False
    files = {
        "files": [{"filePath": "a.txt", "fileHash": "f" * 40, "type": "Local", "size": 3, "metadata": []}]
    }

    refused = session.post(
        f"{emulator.url}/api/artifacts/v1/artifacts/files", params=query, json=files, timeout=10
    )
    assert refused.status_code == 400
    assert "do not hash to artifact" in refused.text

    malformed = {"files": [{"filePath": "a.txt", "fileHash": 7, "type": "Local"}]}
    bad = session.post(
        f"{emulator.url}/api/artifacts/v1/artifacts/files", params=query, json=malformed, timeout=10
    )
    assert bad.status_code == 400
    assert "files[0].fileHash must be a string" in bad.text

    listed = session.get(f"{emulator.url}/api/artifacts/v1/artifacts/files", params=query, timeout=10)
    assert listed.status_code == 404


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("container", ["project", "model"])
def test_artifacts_on_projects_and_models(
    neptune_emulator_env: Any, run_factory: Any, tmp_path: Path, mode: str, container: str
) -> None:
    import neptune

    files = _tree(tmp_path / "data")
    options = {
        "project": neptune_emulator_env.project,
        "api_token": neptune_emulator_env.api_token,
        "mode": mode,
    }
    if container == "project":
        obj = neptune.init_project(**options)
    else:
        obj = neptune.init_model(key=f"M{os.urandom(3).hex().upper()}", **options)
    try:
        obj["art"].track_files("data", wait=True)
        assert sorted(f.file_path for f in obj["art"].fetch_files_list()) == sorted(files)
        run = run_factory(mode)
        run["art"].track_files("data", wait=True)
        assert obj["art"].fetch_hash() == run["art"].fetch_hash()
    finally:
        obj.stop()


def test_runs_table_shows_the_artifact_hash(
    neptune_emulator_env: Any, run_factory: Any, tmp_path: Path
) -> None:
    import neptune

    _tree(tmp_path / "data")
    run = run_factory("sync")
    run["sys/tags"].add(tag := f"art-{os.urandom(4).hex()}")
    run["art"].track_files("data", wait=True)
    expected = run["art"].fetch_hash()
    project = neptune.init_project(
        project=neptune_emulator_env.project, api_token=neptune_emulator_env.api_token, mode="read-only"
    )
    try:
        rows = project.fetch_runs_table(tag=[tag], columns=["art"]).to_rows()
    finally:
        project.stop()
    assert [row.get_attribute_value("art") for row in rows] == [expected]
