"""The unmodified neptune client against the emulator: what is written reads back identically.

Every data test runs in sync and async mode. Tables use a project of their own so parallel tests
in the same session cannot change their rows.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
import uuid
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import neptune
import pytest
from neptune import management
from neptune.exceptions import MetadataInconsistency, NeptuneException
from neptune.types import File

from airflow_provider_neptune.emulator import NeptuneEmulator
from airflow_provider_neptune.hooks.neptune import RUN_DEFAULTS as QUIET

pytestmark = pytest.mark.integration

MODES = ["sync", "async"]


@pytest.fixture
def fresh_project(emulator: NeptuneEmulator) -> str:
    """A project no other test writes to."""
    return emulator.add_project(f"tests/t{uuid.uuid4().hex[:10]}")


def wait_for(condition: Callable[[], Any], timeout: float = 30.0, interval: float = 0.2) -> Any:
    """Poll until condition() is truthy; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(interval)


@pytest.mark.parametrize("mode", MODES)
def test_fields_round_trip(emulator: NeptuneEmulator, mode: str) -> None:
    when = datetime(2024, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    custom = f"fields-{mode}-{uuid.uuid4().hex[:8]}"
    with neptune.init_run(
        mode=mode, custom_run_id=custom, name="fields", description="desc", tags=["a", "b"], **QUIET
    ) as run:
        run["params"] = {"lr": 0.25, "epochs": 7, "use_gpu": True, "optimizer": "adam"}
        run["when"] = when
        run["sys/group_tags"].add(["x", "y"])
        run["sys/group_tags"].remove("x")
        run["sys/tags"].add("c")
        run.wait()
        sys_id = run["sys/id"].fetch()
        assert run["params/lr"].fetch() == 0.25
        assert run["params/epochs"].fetch() == 7
        assert run["params/use_gpu"].fetch() is True
        assert run["params/optimizer"].fetch() == "adam"
        assert run["when"].fetch() == when
        assert run["sys/group_tags"].fetch() == {"y"}
        assert run["sys/tags"].fetch() == {"a", "b", "c"}
        everything = run.fetch()
        assert everything["params"] == {"lr": 0.25, "epochs": 7, "use_gpu": True, "optimizer": "adam"}
        assert everything["sys"]["name"] == "fields"
        assert everything["sys"]["description"] == "desc"
        assert everything["sys"]["custom_run_id"] == custom
        assert everything["sys"]["owner"] == "emulator"
        assert everything["sys"]["failed"] is False
        assert everything["sys"]["state"] == "running"  # fetch() returns the API's value
        assert sys_id.startswith("SAN-")
        assert run.get_url() == f"{emulator.url}/{emulator.project}/e/{sys_id}"

    # The same custom run id resumes the same run; a short id opens it read-only.
    with neptune.init_run(mode=mode, custom_run_id=custom, **QUIET) as again:
        assert again["sys/id"].fetch() == sys_id
        again["params/epochs"] = 8
    with neptune.init_run(with_id=sys_id, mode="read-only") as reader:
        assert reader["params/epochs"].fetch() == 8
        assert reader["sys/custom_run_id"].fetch() == custom


@pytest.mark.parametrize("mode", MODES)
def test_series_round_trip(emulator: NeptuneEmulator, mode: str) -> None:
    before = emulator.stats()["operation_errors_total"]
    with neptune.init_run(mode=mode, **QUIET) as run:
        losses = [1.0 / (i + 1) for i in range(25)]
        run["train/loss"].extend(losses, steps=list(range(0, 50, 2)))
        run["train/log"].append("start")
        run["train/log"].append("end")
        run["auto"].extend([3.0, 2.0, 1.0])
        run.wait()
        # Not strictly greater than the last step: the server rejects this point.
        if mode == "sync":
            with pytest.raises(MetadataInconsistency, match="strictly increasing"):
                run["train/loss"].append(9.9, step=48)
        else:
            run["train/loss"].append(9.9, step=48)
            run.wait()
        run["train/loss"].append(0.01, step=100)
        run.wait()
        values = run["train/loss"].fetch_values()
        assert values["step"].tolist() == [*range(0, 50, 2), 100]
        assert values["value"].tolist() == [*losses, 0.01]
        assert run["train/loss"].fetch_last() == 0.01
        assert run["train/log"].fetch_values()["value"].tolist() == ["start", "end"]
        assert run["train/log"].fetch_last() == "end"
        auto = run["auto"].fetch_values()
        assert auto["step"].tolist() == [0.0, 1.0, 2.0]
        assert auto["value"].tolist() == [3.0, 2.0, 1.0]
        structure = run.get_structure()
        assert {"loss", "log"} <= set(structure["train"])
    assert emulator.stats()["operation_errors_total"] == before + 1


def test_series_pages_of_more_than_a_thousand_points(emulator: NeptuneEmulator) -> None:
    with neptune.init_run(mode="async", **QUIET) as run:
        run["big"].extend([float(i) for i in range(1500)], steps=list(range(1500)))
        run.wait()
        values = run["big"].fetch_values(include_timestamp=False)
        assert len(values) == 1500
        assert values["step"].tolist() == [float(i) for i in range(1500)]


@pytest.mark.parametrize("mode", MODES)
def test_files_round_trip(emulator: NeptuneEmulator, mode: str, tmp_path: Path) -> None:
    small = os.urandom(3000)
    big = os.urandom(6 * 1024 * 1024 + 17)  # above the 5 MiB single-part limit: multipart upload
    (tmp_path / "small.bin").write_bytes(small)
    (tmp_path / "big.bin").write_bytes(big)
    (tmp_path / "d" / "sub").mkdir(parents=True)
    (tmp_path / "d" / "a.txt").write_text("A")
    (tmp_path / "d" / "sub" / "b.txt").write_text("BB")
    parts_before = emulator.stats()["requests_by_route"].get("fileAtomMultipartUploadPart", 0)
    with neptune.init_run(mode=mode, **QUIET) as run:
        run["files/small"].upload(str(tmp_path / "small.bin"))
        run["files/big"].upload(str(tmp_path / "big.bin"))
        run["files/content"].upload(File.from_content(b"hello", extension="txt"))
        run["sets/one"].upload_files(str(tmp_path / "small.bin"))
        run["sets/many"].upload_files([str(tmp_path / "d" / "a.txt"), str(tmp_path / "d" / "sub" / "b.txt")])
        run.wait()

        run["files/small"].download(str(tmp_path / "small.out"))
        run["files/big"].download(str(tmp_path / "big.out"))
        run["files/content"].download(str(tmp_path / "content.out"))
        assert (tmp_path / "small.out").read_bytes() == small
        assert (tmp_path / "big.out").read_bytes() == big
        assert (tmp_path / "content.out").read_bytes() == b"hello"
        assert run["files/big"].fetch_extension() == "bin"

        assert [(e.name, e.size, e.file_type) for e in run["sets/one"].list_fileset_files()] == [
            ("small.bin", 3000, "file")
        ]
        assert [(e.name, e.file_type) for e in run["sets/many"].list_fileset_files()] == [("d", "directory")]
        assert [(e.name, e.size) for e in run["sets/many"].list_fileset_files("d/sub")] == [("b.txt", 2)]
        run["sets/many"].download(str(tmp_path / "many.zip"))
        with zipfile.ZipFile(tmp_path / "many.zip") as archive:
            assert {n: archive.read(n) for n in archive.namelist()} == {
                "/": b"",
                "d/": b"",
                "d/sub/": b"",
                "d/a.txt": b"A",
                "d/sub/b.txt": b"BB",
            }

        run["sets/many"].delete_files("d/sub/b.txt")
        del run["files/small"]
        run.wait()
        run.sync()
        assert [e.name for e in run["sets/many"].list_fileset_files("d")] == ["a.txt"]
        assert not run.exists("files/small")
        assert run.exists("files/big")
    assert emulator.stats()["requests_by_route"]["fileAtomMultipartUploadPart"] == parts_before + 2


def test_runs_table_filters_sorting_and_paging(
    emulator: NeptuneEmulator, fresh_project: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = []
    for i, tags in enumerate((["exp", "gpu"], ["exp"], ["gpu"])):
        with neptune.init_run(project=fresh_project, mode="sync", tags=tags, name=f"run{i}", **QUIET) as run:
            run["score"] = float(i) / 10
            run["loss"].extend([1.0, 0.5 - i / 10])
            ids.append(run["sys/id"].fetch())
    open_run = neptune.init_run(project=fresh_project, mode="sync", tags=["open"], **QUIET)
    try:
        open_id = open_run["sys/id"].fetch()
        with neptune.init_project(project=fresh_project, mode="read-only") as project:

            def ids_of(**kwargs: Any) -> list[str]:
                return [row["sys/id"].get() for row in project.fetch_runs_table(**kwargs).to_rows()]

            assert ids_of() == [open_id, *reversed(ids)]
            assert sorted(ids_of(tag=["exp", "gpu"])) == [ids[0]]
            assert sorted(ids_of(tag="gpu")) == [ids[0], ids[2]]
            assert ids_of(query='(score: float > 0.05) AND (`sys/tags`:stringSet CONTAINS "gpu")') == [ids[2]]
            assert sorted(ids_of(owner="emulator")) == sorted([*ids, open_id])
            assert ids_of(state="active")[0] == open_id
            # A run whose client stopped before its signal websocket connected stays "running"
            # until the state timeout, as on a real server; poll instead of assuming.
            wait_for(lambda: sorted(ids_of(state="inactive")) == sorted(ids))
            assert ids_of(state="active") == [open_id]
            assert sorted(ids_of(id=[ids[1], ids[2]])) == [ids[1], ids[2]]
            assert ids_of(sort_by="score", ascending=True, tag="exp") == [ids[0], ids[1]]
            assert ids_of(sort_by="score", ascending=False, limit=2) == [ids[2], ids[1]]

            monkeypatch.setenv("NEPTUNE_FETCH_TABLE_STEP_SIZE", "1")
            before = emulator.stats()["requests_by_route"].get("searchLeaderboardEntries", 0)
            assert ids_of(sort_by="sys/id", ascending=True) == sorted([*ids, open_id])
            pages = emulator.stats()["requests_by_route"]["searchLeaderboardEntries"] - before
            assert pages >= 5  # a count request plus one request per single-row page

            frame = project.fetch_runs_table(columns=["score", "loss", "sys/name"], tag="exp").to_pandas()
            rows = {r["sys/id"]: r for r in frame.to_dict("records")}
            assert set(frame.columns) == {"sys/id", "sys/creation_time", "score", "loss", "sys/name"}
            assert rows[ids[1]]["score"] == 0.1
            assert rows[ids[1]]["loss"] == 0.4
            assert rows[ids[0]]["sys/name"] == "run0"

            management.trash_objects(project=fresh_project, ids=ids[0])
            assert ids_of(tag="exp") == [ids[1]]
            assert ids_of(trashed=True) == [ids[0]]
            assert len(ids_of(trashed=None)) == 4
    finally:
        open_run.stop()


def test_state_goes_inactive_when_the_client_stops(emulator: NeptuneEmulator, fresh_project: str) -> None:
    run = neptune.init_run(project=fresh_project, mode="async", **QUIET)
    sys_id = run["sys/id"].fetch()

    def state() -> str:
        with neptune.init_project(project=fresh_project, mode="read-only") as project:
            table = project.fetch_runs_table(columns=["sys/state"]).to_rows()
            return str(table[0]["sys/state"].get())

    assert state() == "Active"
    run.stop()
    wait_for(lambda: state() == "Inactive", timeout=20)
    with neptune.init_run(project=fresh_project, with_id=sys_id, mode="sync", **QUIET) as resumed:
        assert resumed["sys/id"].fetch() == sys_id
        wait_for(lambda: state() == "Active", timeout=20)


def test_unknown_project_and_bad_token_fail_like_the_real_server(
    emulator: NeptuneEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(NeptuneException, match="couldn't find project"):
        neptune.init_run(project="nobody/nothing", mode="sync", **QUIET)
    with pytest.raises(NeptuneException, match="No existing Run was found"):
        neptune.init_run(with_id="SAN-999999", mode="read-only")
    import base64

    payload = {"api_address": emulator.url, "api_url": emulator.url, "api_key": "wrong"}
    monkeypatch.setenv("NEPTUNE_API_TOKEN", base64.b64encode(json.dumps(payload).encode()).decode())
    with pytest.raises(NeptuneException):
        neptune.init_run(mode="sync", **QUIET)


def test_run_page_and_unknown_routes(emulator: NeptuneEmulator) -> None:
    with neptune.init_run(mode="sync", **QUIET) as run:
        run["metrics/acc"].extend([0.1, 0.5, 0.9])
        run["params/lr"] = 0.01
        url = run.get_url()
    with urllib.request.urlopen(url, timeout=10) as response:
        page = response.read().decode()
        assert response.headers["content-type"].startswith("text/html")
    with urllib.request.urlopen(f"{url}/metadata", timeout=10) as response:  # the link printed at stop()
        assert "metrics/acc" in response.read().decode()
    assert "metrics/acc" in page
    assert "params/lr" in page
    assert "<svg" in page
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"{emulator.url}/api/leaderboard/v1/nothing-here", timeout=10)
    assert info.value.code == 404
    body = json.loads(info.value.read())
    assert "GET /api/leaderboard/v1/nothing-here" in body["title"]
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"{emulator.url}/api/leaderboard/v1/attributes/ping", timeout=10)
    assert info.value.code == 405
    assert "GET /api/leaderboard/v1/attributes/ping" in json.loads(info.value.read())["title"]
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"{emulator.url}/api/leaderboard/v1/experiments?experimentId=x", timeout=10)
    assert info.value.code == 401


def test_management_project_fields_and_model_registry(emulator: NeptuneEmulator, fresh_project: str) -> None:
    workspace = fresh_project.split("/")[0]
    assert fresh_project in management.get_project_list()
    assert management.get_workspace_status(workspace=workspace)["storageBytesUsed"] >= 0
    with neptune.init_project(project=fresh_project, mode="read-only") as project:
        assert project.fetch_runs_table().to_rows() == []  # an empty project still has its columns
    with neptune.init_project(project=fresh_project, mode="sync") as project:
        project["info/team"] = "ml"
    with neptune.init_run(project=fresh_project, mode="sync", **QUIET) as run:
        doomed = run["sys/id"].fetch()
    management.trash_objects(project=fresh_project, ids=doomed)
    management.delete_objects_from_trash(project=fresh_project, ids=doomed)
    with neptune.init_project(project=fresh_project, mode="read-only") as project:
        assert project["info/team"].fetch() == "ml"
        assert project.fetch_runs_table(trashed=None).to_rows() == []

    with neptune.init_model(project=fresh_project, key="CLS", mode="sync") as model:
        model_id = model["sys/id"].fetch()
        model["arch"] = "resnet"
    with neptune.init_model_version(project=fresh_project, model=model_id, mode="sync") as version:
        version["acc"] = 0.9
        version.change_stage("staging")
        version_id = version["sys/id"].fetch()
    assert version_id == f"{model_id}-1"
    with neptune.init_model(project=fresh_project, with_id=model_id, mode="read-only") as model:
        rows = model.fetch_model_versions_table().to_rows()
        assert [(r["sys/id"].get(), r["acc"].get(), r["sys/stage"].get()) for r in rows] == [
            (version_id, 0.9, "staging")
        ]
    with neptune.init_project(project=fresh_project, mode="read-only") as project:
        assert [r["sys/id"].get() for r in project.fetch_models_table().to_rows()] == [model_id]


def test_links_follow_the_address_the_client_used(
    emulator: NeptuneEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_neptune.emulator.auth import api_key_of, make_api_token

    other_address = emulator.url.replace("127.0.0.1", "localhost")
    key = api_key_of(emulator.api_token)
    assert key is not None
    monkeypatch.setenv("NEPTUNE_API_TOKEN", make_api_token(other_address, key))
    with neptune.init_run(mode="sync", **QUIET) as run:
        run["x"] = 1
        assert run.get_url().startswith(f"{other_address}/{emulator.project}/e/")
