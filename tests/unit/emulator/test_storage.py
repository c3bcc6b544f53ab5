"""Unit tests of the emulator's SQLite + blob storage (no server, no client)."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from airflow_provider_neptune.emulator.errors import DataDirectoryError, EmulatorError
from airflow_provider_neptune.emulator.storage import SCHEMA_VERSION, ProjectRow, RunRow, Storage


@pytest.fixture
def storage(tmp_path: Path) -> Storage:
    store = Storage(tmp_path / "data", owner="tester")
    yield store
    store.close()


@pytest.fixture
def project(storage: Storage) -> ProjectRow:
    return storage.ensure_project("ws/sandbox")


@pytest.fixture
def run(storage: Storage, project: ProjectRow) -> RunRow:
    return storage.create_run(project)[0]


def _entry(value: str) -> dict[str, object]:
    return {"step": None, "value": value, "timestampMilliseconds": 9}


def _log(values: list[tuple[float | None, float]]) -> dict[str, object]:
    return {"entries": [{"step": s, "value": v, "timestampMilliseconds": 1000} for s, v in values]}


def test_project_keys_and_short_ids(storage: Storage, project: ProjectRow) -> None:
    other = storage.ensure_project("ws/sanity")
    assert project.key == "SAN"
    assert other.key == "SAN2"
    assert storage.ensure_project("ws/sandbox") == project
    first, created = storage.create_run(project)
    second, _ = storage.create_run(project)
    assert created
    assert (first.short_id, second.short_id) == ("SAN-1", "SAN-2")
    assert storage.find_run(first.id) == first
    assert storage.find_run("ws/sandbox/SAN-2") == second
    assert storage.find_run("ws/sandbox/SAN-3") is None
    with pytest.raises(ValueError, match="workspace/name"):
        storage.ensure_project("no-slash")


def test_custom_run_id_returns_the_existing_run(storage: Storage, project: ProjectRow) -> None:
    first, created_first = storage.create_run(project, custom_id="job-1")
    again, created_again = storage.create_run(project, custom_id="job-1")
    other, _ = storage.create_run(project, custom_id="job-2")
    assert created_first
    assert not created_again
    assert again.id == first.id
    assert other.id != first.id


def test_assignments_and_type_conflicts(storage: Storage, run: RunRow) -> None:
    errors, applied, _ = storage.execute_operations(
        run,
        [
            {"path": "p/f", "assignFloat": {"value": 0.5}},
            {"path": "p/i", "assignInt": {"value": 3}},
            {"path": "p/b", "assignBool": {"value": True}},
            {"path": "p/s", "assignString": {"value": "x"}},
            {"path": "p/d", "assignDatetime": {"valueMilliseconds": 1_700_000_000_123}},
            {"path": "p/f", "assignString": {"value": "clash"}},
            {"path": "p/f/deeper", "assignInt": {"value": 1}},
            {"path": "p", "assignInt": {"value": 1}},
            {"path": "sys/id", "assignString": {"value": "hack"}},
            {"path": "p/i", "assignInt": {"value": True}},
        ],
    )
    assert applied == 5
    assert len(errors) == 5
    assert "read-only" in errors[3]
    values = {a.path: (a.type, a.value["v"]) for a in storage.attributes(run.id)}
    assert values == {
        "p/f": ("float", 0.5),
        "p/i": ("int", 3),
        "p/b": ("bool", True),
        "p/s": ("string", "x"),
        "p/d": ("datetime", 1_700_000_000_123),
    }


def test_series_steps_must_strictly_increase(storage: Storage, run: RunRow) -> None:
    errors, _, points = storage.execute_operations(
        run,
        [
            {"path": "m/loss", "logFloats": _log([(0, 1.0), (1, 0.5)])},
            {"path": "m/loss", "logFloats": _log([(1, 9.0), (2, 0.25)])},
            {"path": "m/loss", "logFloats": _log([(None, 0.125)])},
        ],
    )
    assert points == 4
    assert errors == [
        "X-coordinates (step) must be strictly increasing for series attribute: m/loss. Invalid point: 1.0"
    ]
    total, rows = storage.series_values(run.id, "m/loss", 0, 100)
    assert total == 4
    assert [(r["step"], r["value"]) for r in rows] == [(0, 1.0), (1, 0.5), (2, 0.25), (3, 0.125)]
    state = storage.attribute(run.id, "m/loss")
    assert state is not None
    assert (state.value["last"], state.value["lastStep"], state.value["min"]) == (0.125, 3, 0.125)
    _, page = storage.series_values(run.id, "m/loss", 1, 2)
    assert [r["step"] for r in page] == [1, 2]


def _vm_steps(storage: Storage, read: Callable[[], object]) -> int:
    """SQLite virtual-machine instructions (in units of 100) that ``read`` makes the store execute."""
    steps = [0]

    def tick() -> int:
        steps[0] += 1
        return 0

    storage._db.set_progress_handler(tick, 100)
    try:
        read()
    finally:
        storage._db.set_progress_handler(None, 100)
    return steps[0]


def test_a_page_deep_in_a_long_series_costs_what_the_first_page_costs(storage: Storage, run: RunRow) -> None:
    points = 30_000
    for start in range(0, points, 10_000):
        storage.execute_operations(
            run, [{"path": "m/long", "logFloats": _log([(s, s / 2) for s in range(start, start + 10_000)])}]
        )
    storage.execute_operations(run, [{"path": "m/short", "logFloats": _log([(s, 1.0) for s in range(200)])}])
    short = _vm_steps(storage, lambda: storage.series_values(run.id, "m/short", 100, 100))
    first = _vm_steps(storage, lambda: storage.series_values(run.id, "m/long", 0, 100))
    deep = _vm_steps(storage, lambda: storage.series_values(run.id, "m/long", points - 100, 100))
    # Counting the series or skipping to the offset row by row costs ~ the series' length (150x here).
    assert max(first, deep) <= 2 * short + 5, (short, first, deep)
    total, rows = storage.series_values(run.id, "m/long", points - 3, 100)
    assert total == points
    assert [(r["step"], r["value"]) for r in rows] == [(s, s / 2) for s in range(points - 3, points)]
    assert storage.series_values(run.id, "m/long", points, 10) == (points, [])
    assert storage.series_values(run.id, "m/none", 0, 10) == (0, [])


def test_string_series_sets_and_deletion(storage: Storage, run: RunRow) -> None:
    errors, _, _ = storage.execute_operations(
        run,
        [
            {"path": "log", "logStrings": {"entries": [_entry("a")]}},
            {"path": "sys/tags", "insertStrings": {"values": ["x", "y", "z"]}},
            {"path": "sys/tags", "removeStrings": {"values": ["y"]}},
            {"path": "log", "deleteAttribute": {}},
            {"path": "unknown", "frobnicate": {}},
        ],
    )
    assert errors == ["Unsupported operation frobnicate on unknown"]
    tags = storage.attribute(run.id, "sys/tags")
    assert tags is not None
    assert tags.value["v"] == ["x", "z"]
    assert storage.attribute(run.id, "log") is None
    assert storage.series_values(run.id, "log", 0, 10)[0] == 0


def test_file_replace_and_delete_drop_blobs(storage: Storage, run: RunRow) -> None:
    storage.set_file(run, "model/weights", "pt", b"v1")
    first = storage.attribute(run.id, "model/weights")
    assert first is not None
    storage.set_file(run, "model/weights", "pt", b"version 2")
    second = storage.attribute(run.id, "model/weights")
    assert second is not None
    assert not storage.blob_path(first.value["blob"]).exists()
    assert storage.blob_path(second.value["blob"]).read_bytes() == b"version 2"
    assert (second.value["name"], second.value["ext"], second.value["size"]) == ("weights", "pt", 9)
    storage.execute_operations(run, [{"path": "model/weights", "deleteAttribute": {}}])
    assert not storage.blob_path(second.value["blob"]).exists()
    with pytest.raises(EmulatorError, match="read-only"):
        storage.set_file(run, "sys/id", "", b"x")


def test_fileset_tar_and_delete_files(storage: Storage, run: RunRow) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as archive:
        for name, data in (("a.txt", b"A"), ("dir/b.txt", b"BB"), ("dir/c.txt", b"CCC")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    storage.add_fileset_tar(run, "files", buf.getvalue(), reset=False)
    storage.add_fileset_files(run, "files", {"extra.bin": b"E"}, reset=False)
    assert [e["sub_path"] for e in storage.fileset_entries(run.id, "files")] == [
        "a.txt",
        "dir/b.txt",
        "dir/c.txt",
        "extra.bin",
    ]
    storage.execute_operations(run, [{"path": "files", "deleteFiles": {"filePaths": ["dir"]}}])
    assert [e["sub_path"] for e in storage.fileset_entries(run.id, "files")] == ["a.txt", "extra.bin"]
    storage.add_fileset_files(run, "files", {"only.txt": b"O"}, reset=True)
    assert [e["sub_path"] for e in storage.fileset_entries(run.id, "files")] == ["only.txt"]
    assert storage.run_size(run.id) == 1
    with pytest.raises(EmulatorError, match="tar"):
        storage.add_fileset_tar(run, "files", b"not a tar", reset=False)


def test_multipart_upload_joins_parts_in_offset_order(storage: Storage, run: RunRow) -> None:
    upload_id = storage.start_upload(run, "big", "file", "bin", None, total=10)
    storage.store_part(upload_id, 6, b"6789")
    storage.store_part(upload_id, 0, b"012345")
    storage.finish_upload(upload_id)
    attr = storage.attribute(run.id, "big")
    assert attr is not None
    assert storage.blob_path(attr.value["blob"]).read_bytes() == b"0123456789"
    assert storage.upload(upload_id) is None

    short = storage.start_upload(run, "big2", "file", "", None, total=10)
    storage.store_part(short, 0, b"0123")
    with pytest.raises(EmulatorError, match="Length of stream"):
        storage.finish_upload(short)


def test_state_follows_sockets_and_pings(storage: Storage, run: RunRow) -> None:
    assert storage.run_state(run, state_timeout_s=60) == "running"
    assert storage.run_state(run, state_timeout_s=0) == "idle"
    storage.socket_opened(run.id)
    assert storage.run_state(run, state_timeout_s=0) == "running"
    storage.socket_closed(run.id)
    refreshed = storage.find_run(run.id)
    assert refreshed is not None
    assert storage.run_state(refreshed, state_timeout_s=60) == "idle"


def test_trash_and_delete(storage: Storage, project: ProjectRow, run: RunRow) -> None:
    storage.set_file(run, "f", "", b"data")
    storage.set_trashed([run.id], True)
    trashed = storage.find_run(run.id)
    assert trashed is not None
    assert trashed.trashed
    blob = storage.attribute(run.id, "f")
    assert blob is not None
    storage.delete_runs([run.id])
    assert storage.find_run(run.id) is None
    assert not storage.blob_path(blob.value["blob"]).exists()
    assert storage.runs_of(project.id) == []


def test_state_survives_reopening(tmp_path: Path) -> None:
    first = Storage(tmp_path / "d")
    key = first.meta_setdefault("api_key", lambda: "k1")
    project = first.ensure_project("ws/p")
    run, _ = first.create_run(project, custom_id="c")
    first.execute_operations(run, [{"path": "x", "assignInt": {"value": 7}}])
    first.close()
    second = Storage(tmp_path / "d")
    assert second.meta_setdefault("api_key", lambda: "other") == key
    again, created = second.create_run(second.ensure_project("ws/p"), custom_id="c")
    assert not created
    assert again.id == run.id
    attr = second.attribute(run.id, "x")
    assert attr is not None
    assert attr.value["v"] == 7
    second.close()


def test_stored_bytes_counts_files_and_file_sets_of_runs_not_of_the_project(
    storage: Storage, project: ProjectRow, run: RunRow
) -> None:
    other, _ = storage.create_run(project, custom_id="other")
    storage.set_file(run, "model/weights", "bin", b"x" * 10)
    storage.set_file(run, "model/weights", "bin", b"x" * 7)  # replaces the 10 bytes
    storage.add_fileset_files(other, "data/files", {"a": b"y" * 3, "b/c": b"z" * 5}, reset=False)
    container = storage.find_run(project.id)
    assert container is not None
    storage.set_file(container, "project/readme", "txt", b"p" * 100)  # a project's own file: not a run's
    elsewhere = storage.ensure_project("ws/elsewhere")
    far, _ = storage.create_run(elsewhere)
    storage.set_file(far, "f", "bin", b"q" * 1000)
    assert storage.stored_bytes([project.id]) == 7 + 3 + 5
    assert storage.stored_bytes([project.id, elsewhere.id]) == 7 + 3 + 5 + 1000


def test_a_data_directory_from_a_newer_emulator_is_refused_naming_both_versions(tmp_path: Path) -> None:
    store = Storage(tmp_path / "data")
    assert store.schema_version == SCHEMA_VERSION
    store.meta_set("schema_version", str(SCHEMA_VERSION + 1))
    store.close()
    with pytest.raises(
        DataDirectoryError, match=rf"schema version {SCHEMA_VERSION + 1}.*up to {SCHEMA_VERSION}"
    ):
        Storage(tmp_path / "data")


def test_reopening_keeps_the_version_and_the_indexes_answer_tag_searches(tmp_path: Path) -> None:
    store = Storage(tmp_path / "data")
    project = store.ensure_project("ws/proj")
    run, _ = store.create_run(project)
    assert store.execute_operations(run, [{"path": "sys/tags", "insertStrings": {"values": ["t"]}}])[0] == []
    store.close()
    reopened = Storage(tmp_path / "data")
    assert reopened.schema_version == SCHEMA_VERSION
    members = reopened.rows("SELECT run_id, path, member FROM set_members")
    assert [tuple(m) for m in members] == [(run.id, "sys/tags", "t")]
    reopened.close()
