"""Which local files a checkpoint upload sends: a path or glob resolved, refusing escapes via symlinks.

Worker-side and pure file-system code (no Airflow, no ``neptune``).
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

_GLOB_CHARS = ("*", "?", "[")


def base_directory(path: str) -> Path:
    """The directory ``path`` was given: its leading part before any wildcard (the parent for a file).

    A ``..`` component is refused: it could climb out of the directory the path names.
    """
    parts = Path(path).parts
    if ".." in parts:
        raise ValueError(f"path {path!r} contains '..'; write it without '..' (e.g. as an absolute path)")
    fixed = len(parts) - 1
    if any(char in path for char in _GLOB_CHARS):
        fixed = next(i for i, part in enumerate(parts) if any(char in part for char in _GLOB_CHARS))
    return Path(*parts[:fixed]) if fixed > 0 else Path(".")


def resolve_files(path: str, *, follow_symlinks: bool = False) -> list[Path]:
    """The files ``path`` names: one file, or every file a glob (``**`` allowed) matches, sorted.

    Unless ``follow_symlinks``, a file whose real location (symlinks resolved, also symlinked
    directories a ``**`` walked through) lies outside :func:`base_directory` is refused, so a link
    inside a checkpoint folder cannot upload e.g. ``/etc/passwd``. Several names of one real file
    (a symlink to a sibling, a ``**`` walk through a link) yield it once, under its first name.
    """
    base = base_directory(path)
    if any(char in path for char in _GLOB_CHARS):
        matches = sorted(Path(p) for p in glob.glob(path, recursive=True) if Path(p).is_file())
        if not matches:
            raise FileNotFoundError(f"no file matches {path!r}")
    else:
        matches = [Path(path)]
        if not matches[0].is_file():
            raise FileNotFoundError(f"checkpoint file {path!r} does not exist or is not a file")
    real_base = Path(os.path.realpath(base))
    files: list[Path] = []
    seen: set[Path] = set()
    outside: list[str] = []
    for match in matches:
        real = Path(os.path.realpath(match))
        if not follow_symlinks and not real.is_relative_to(real_base):
            outside.append(f"{match} -> {real}")
            continue
        if real not in seen:
            seen.add(real)
            files.append(match)
    if outside:
        shown = "; ".join(outside[:5]) + (f"; and {len(outside) - 5} more" if len(outside) > 5 else "")
        raise ValueError(
            f"{len(outside)} file(s) matched by {path!r} resolve outside {str(base)!r} through symlinks "
            f"({shown}); refusing to upload them. Set follow_symlinks=True to allow it."
        )
    return files
