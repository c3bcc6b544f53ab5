"""File sets as the real server keeps and serves them, driven by the real neptune client (sync and async).

The downloaded zip holds a root entry `/` and an entry per folder besides the files (what the
client's own end-to-end suite expects of a real server); deleting files, resetting a file set by
assigning a new one and uploading a changed file over an old one leave exactly the expected files.
"""

from __future__ import annotations

import os
import uuid
import zipfile
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration


def _write(root: Path, files: dict[str, bytes]) -> None:
    for name, content in files.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)


def _download(run: Any, key: str, tmp_path: Path) -> dict[str, bytes]:
    """{zip entry name: content} of the file set's zip download (folders and `/` map to b"")."""
    target = tmp_path / f"download-{uuid.uuid4().hex}.zip"
    run[key].download(str(target), progress_bar=False)
    with zipfile.ZipFile(target) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _route_count(emulator: Any, operation: str) -> int:
    """How many requests the emulator has answered for one API operation."""
    return int(emulator.stats()["requests_by_route"].get(operation, 0))


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_zip_has_root_and_folder_entries(run_factory: Any, tmp_path: Path, mode: str) -> None:
    files = {
        "from/heart/of/deep.bin": os.urandom(3000),
        "from/heart/beat.txt": b"lub dub",
        "from/note.txt": b"a note",
    }
    _write(tmp_path, files)
    run = run_factory(mode)
    run["data/files"].upload_files(str(tmp_path / "from"))  # members are named relative to the cwd
    run.wait()

    got = _download(run, "data/files", tmp_path)

    assert set(got) == {"/", "from/", "from/heart/", "from/heart/of/", *files}
    assert {name: got[name] for name in files} == files
    assert all(got[name] == b"" for name in ("/", "from/", "from/heart/", "from/heart/of/"))
    with zipfile.ZipFile(next(tmp_path.glob("download-*.zip"))) as archive:
        folders = {info.filename for info in archive.infolist() if info.is_dir()}
    assert folders == {"/", "from/", "from/heart/", "from/heart/of/"}


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_single_file_upload_zip_has_root_entry(run_factory: Any, tmp_path: Path, mode: str) -> None:
    content = os.urandom(50_000)
    _write(tmp_path, {"single.bin": content})
    run = run_factory(mode)
    run["one"].upload_files(str(tmp_path / "single.bin"), wait=True)

    got = _download(run, "one", tmp_path)  # no run.wait(): wait=True already flushed the upload

    assert got == {"/": b"", "single.bin": content}


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_delete_files_removes_files_and_folders(run_factory: Any, tmp_path: Path, mode: str) -> None:
    files = {
        "keep.txt": b"kept",
        "gone.txt": b"deleted by name",
        "dir/inner/a.txt": b"deleted with its folder",
        "dir/b.txt": b"kept in dir",
    }
    _write(tmp_path, files)
    run = run_factory(mode)
    run["fs"].upload_files([str(tmp_path / name) for name in ("keep.txt", "gone.txt", "dir")])
    run.wait()

    run["fs"].delete_files(["gone.txt", "dir/inner"])
    run.wait()

    got = _download(run, "fs", tmp_path)
    assert got == {"/": b"", "dir/": b"", "keep.txt": b"kept", "dir/b.txt": b"kept in dir"}
    names = {(entry.name, entry.file_type) for entry in run["fs"].list_fileset_files()}
    assert names == {("keep.txt", "file"), ("dir", "directory")}

    run["fs"].delete_files(["keep.txt", "dir"], wait=True)
    assert run["fs"].list_fileset_files() == []
    assert _download(run, "fs", tmp_path) == {"/": b""}


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_assigning_a_file_set_replaces_the_old_one(run_factory: Any, tmp_path: Path, mode: str) -> None:
    from neptune.types import FileSet

    first, second = os.urandom(2048), os.urandom(4096)
    _write(tmp_path, {"first.bin": first, "sub/second.bin": second})
    run = run_factory(mode)
    run["fs"].upload_files(str(tmp_path / "first.bin"))
    run.wait()
    assert _download(run, "fs", tmp_path) == {"/": b"", "first.bin": first}

    run["fs"] = FileSet([str(tmp_path / "sub" / "second.bin")])
    run.wait()

    assert _download(run, "fs", tmp_path) == {"/": b"", "sub/": b"", "sub/second.bin": second}


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_uploading_a_changed_file_again_overrides_it(run_factory: Any, tmp_path: Path, mode: str) -> None:
    path = tmp_path / "weights.bin"
    run = run_factory(mode)
    path.write_bytes(b"version one" * 100)
    run["fs"].upload_files([str(path)], wait=True)
    path.write_bytes(b"version two, longer" * 100)
    run["fs"].upload_files([str(path)], wait=True)

    assert _download(run, "fs", tmp_path) == {"/": b"", "weights.bin": b"version two, longer" * 100}
    sizes = {entry.name: entry.size for entry in run["fs"].list_fileset_files()}
    assert sizes == {"weights.bin": len(b"version two, longer" * 100)}


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_multipart_member_with_many_small_files_then_delete(
    neptune_emulator_env: Any, run_factory: Any, tmp_path: Path, mode: str
) -> None:
    """A file over the multipart threshold (5 MiB) next to many small ones, as the client's e2e suite does."""
    large = os.urandom(6 * 1024 * 1024)
    small = {f"small-{i:02d}.txt": f"small file {i}".encode() for i in range(20)}
    _write(tmp_path, {"large.bin": large, **small})
    run = run_factory(mode)
    parts_before = _route_count(neptune_emulator_env, "fileSetFileMultipartUploadPart")
    run["fs"].upload_files([str(tmp_path / "large.bin")])
    run.wait()
    assert _route_count(neptune_emulator_env, "fileSetFileMultipartUploadPart") - parts_before >= 2
    assert _download(run, "fs", tmp_path) == {"/": b"", "large.bin": large}

    run["fs"].upload_files([str(tmp_path / name) for name in small])
    run.wait()
    assert _download(run, "fs", tmp_path) == {"/": b"", "large.bin": large, **small}

    run["fs"].delete_files(["large.bin"])
    run.wait()
    assert _download(run, "fs", tmp_path) == {"/": b"", **small}
