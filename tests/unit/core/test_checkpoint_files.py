"""Which files the upload operator may read: symlinks and globs stay inside the directory given."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from airflow_provider_neptune.core.checkpoint_files import base_directory, resolve_files


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Path]:
    """base/ with real checkpoints and links; outside/ beside it holding a secret."""
    base = tmp_path / "base"
    outside = tmp_path / "outside"
    (base / "sub").mkdir(parents=True)
    outside.mkdir()
    (base / "a.pt").write_bytes(b"a")
    (base / "sub" / "b.pt").write_bytes(b"b")
    (outside / "secret.pt").write_bytes(b"secret")
    return {"base": base, "outside": outside, "tmp": tmp_path}


def test_base_directory_is_the_part_before_the_first_wildcard() -> None:
    assert base_directory("/data/ckpt/*.pt") == Path("/data/ckpt")
    assert base_directory("/data/ckpt/**/epoch_[0-9].pt") == Path("/data/ckpt")
    assert base_directory("/data/ckpt/model.pt") == Path("/data/ckpt")
    assert base_directory("model.pt") == Path(".")
    assert base_directory("*.pt") == Path(".")
    assert base_directory("/model.pt") == Path("/")


def test_symlinked_file_pointing_outside_is_refused(tree: dict[str, Path]) -> None:
    link = tree["base"] / "model.pt"
    link.symlink_to(tree["outside"] / "secret.pt")
    for path in (str(link), str(tree["base"] / "*.pt")):
        with pytest.raises(ValueError, match=r"resolve outside .* through symlinks") as refused:
            resolve_files(path)
        assert f"{link} -> {tree['outside'] / 'secret.pt'}" in str(refused.value)
        assert "follow_symlinks=True" in str(refused.value)
    assert resolve_files(str(link), follow_symlinks=True) == [link]
    # A link to a file inside the base is fine.
    inner = tree["base"] / "latest.pt"
    inner.symlink_to(tree["base"] / "sub" / "b.pt")
    assert resolve_files(str(inner)) == [inner]


def test_symlinked_directory_inside_the_base_pointing_outside_is_refused(tree: dict[str, Path]) -> None:
    (tree["base"] / "shared").symlink_to(tree["outside"], target_is_directory=True)
    for pattern in ("*/*.pt", "**/*.pt", "**/secret.pt", "s*/*"):
        with pytest.raises(ValueError, match=r"1 file\(s\) matched .* resolve outside"):
            resolve_files(str(tree["base"] / pattern))
    followed = resolve_files(str(tree["base"] / "**" / "*.pt"), follow_symlinks=True)
    assert tree["base"] / "shared" / "secret.pt" in followed
    # Naming the linked directory itself makes it the base: the user chose that directory.
    assert resolve_files(str(tree["base"] / "shared" / "secret.pt")) == [
        tree["base"] / "shared" / "secret.pt"
    ]


def test_recursive_glob_through_a_link_loop_yields_each_file_once(tree: dict[str, Path]) -> None:
    (tree["base"] / "sub" / "loop").symlink_to(tree["base"], target_is_directory=True)
    found = resolve_files(str(tree["base"] / "**" / "*.pt"))
    assert found == [tree["base"] / "a.pt", tree["base"] / "sub" / "b.pt"]


@pytest.mark.parametrize(
    "pattern",
    ["../outside/secret.pt", "*/../../outside/*.pt", "sub/../../outside/secret.pt", "**/../../outside/*"],
)
def test_dot_dot_in_patterns_is_refused_even_when_following_links(
    tree: dict[str, Path], pattern: str
) -> None:
    for follow in (False, True):
        with pytest.raises(ValueError, match=r"contains '\.\.'"):
            resolve_files(str(tree["base"] / pattern), follow_symlinks=follow)


def test_absolute_and_relative_patterns_use_the_same_base(
    tree: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tree["base"] / "sub" / "c.pt").symlink_to(tree["outside"] / "secret.pt")
    absolute = str(tree["base"].resolve() / "**" / "*.pt")
    with pytest.raises(ValueError, match="resolve outside"):
        resolve_files(absolute)
    monkeypatch.chdir(tree["base"])
    with pytest.raises(ValueError, match=r"resolve outside '\.'"):
        resolve_files("**/*.pt")
    os.unlink(tree["base"] / "sub" / "c.pt")
    assert resolve_files("**/*.pt") == [Path("a.pt"), Path("sub/b.pt")]
    assert resolve_files(absolute) == [
        tree["base"].resolve() / "a.pt",
        tree["base"].resolve() / "sub" / "b.pt",
    ]


def test_resolve_files_single_glob_and_missing(tmp_path: Path) -> None:
    for name in ("b.pt", "a.pt", "c.txt"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.pt").write_bytes(b"y")
    assert resolve_files(str(tmp_path / "a.pt")) == [tmp_path / "a.pt"]
    assert resolve_files(str(tmp_path / "*.pt")) == [tmp_path / "a.pt", tmp_path / "b.pt"]
    assert resolve_files(str(tmp_path / "**" / "*.pt"))[-1] == tmp_path / "sub" / "d.pt"
    with pytest.raises(FileNotFoundError, match="no file matches"):
        resolve_files(str(tmp_path / "*.bin"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_files(str(tmp_path / "sub"))
