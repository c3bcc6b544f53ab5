"""Artifacts: validating the file lists the client sends and hashing them as the server does.

An artifact is a project-level list of file descriptions (path, content hash, size, type, metadata)
named by a SHA-256 over that list; runs point at one through an `artifact` field. The hash layout is
the one the neptune client's FileHasher documents for the server: for every file in path order,
`#`, path length in characters (4 bytes, big endian), path, `#`, file hash, `#`, size (8 bytes)
when known, `#`, type length and type, then (artifact API version 1 only) `#` and each metadata
key and value, sorted by key, each preceded by `|` and its 4-byte length.
"""

from __future__ import annotations

import hashlib
from typing import Any

from airflow_provider_neptune.emulator.errors import EmulatorError

JSON = dict[str, Any]
MAX_FILES = 100_000
# Version 2: artifact hashes leave file metadata out, and empty S3 "folder" objects are skipped.
ARTIFACT_API_VERSION = 2


def _bad(message: str) -> EmulatorError:
    return EmulatorError(400, message[:500], "BAD_REQUEST")


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise _bad(f"{where} must be a string, got {type(value).__name__}")
    return value


def validate_files(body: Any) -> list[JSON]:
    """The `files` of an ArtifactFilesDTO body, checked field by field and sorted by path."""
    if not isinstance(body, dict) or not isinstance(body.get("files"), list):
        raise _bad("The body must be an object with a list `files` of artifact file descriptions")
    raw_files: list[Any] = body["files"]
    if len(raw_files) > MAX_FILES:
        raise _bad(f"An artifact may list at most {MAX_FILES} files, got {len(raw_files)}")
    files: dict[str, JSON] = {}
    for i, raw in enumerate(raw_files):
        where = f"files[{i}]"
        if not isinstance(raw, dict):
            raise _bad(f"{where} must be an object, got {type(raw).__name__}")
        path = _text(raw.get("filePath"), f"{where}.filePath")
        if not path:
            raise _bad(f"{where}.filePath must not be empty")
        size = raw.get("size")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
            raise _bad(f"{where}.size must be a non-negative integer or null, got {size!r}")
        metadata = raw.get("metadata") or []
        if not isinstance(metadata, list):
            raise _bad(f"{where}.metadata must be a list of {{key, value}} objects")
        pairs: dict[str, str] = {}
        for j, item in enumerate(metadata):
            if not isinstance(item, dict):
                raise _bad(f"{where}.metadata[{j}] must be an object with `key` and `value`")
            key = _text(item.get("key"), f"{where}.metadata[{j}].key")
            pairs[key] = _text(item.get("value"), f"{where}.metadata[{j}].value")
        files[path] = {
            "filePath": path,
            "fileHash": _text(raw.get("fileHash"), f"{where}.fileHash"),
            "type": _text(raw.get("type"), f"{where}.type"),
            "size": size,
            "metadata": [{"key": k, "value": pairs[k]} for k in sorted(pairs)],
        }
    return [files[path] for path in sorted(files)]


def merge_files(old: list[JSON], new: list[JSON]) -> list[JSON]:
    """An artifact's files with `new` added; a new file replaces an old one at the same path."""
    merged = {f["filePath"]: f for f in old}
    merged.update({f["filePath"]: f for f in new})
    return [merged[path] for path in sorted(merged)]


def artifact_size(files: list[JSON]) -> int | None:
    """Total bytes of an artifact, or None when some file's size is unknown."""
    sizes = [f.get("size") for f in files]
    return None if any(s is None for s in sizes) else sum(int(s) for s in sizes if s is not None)


def _sized(text: str) -> bytes:
    """Length in characters (4 bytes, big endian; what the client counts) followed by the UTF-8 text."""
    return len(text).to_bytes(4, "big") + text.encode("utf-8")


def artifact_hash(files: list[JSON], with_metadata: bool) -> str:
    """The SHA-256 naming an artifact (the client computes the same value locally)."""
    digest = hashlib.sha256()
    for item in sorted(files, key=lambda f: f["filePath"]):
        digest.update(b"#" + _sized(item["filePath"]))
        digest.update(b"#" + item["fileHash"].encode("utf-8"))
        digest.update(b"#")
        if item.get("size") is not None:
            digest.update(int(item["size"]).to_bytes(8, "big"))
        digest.update(b"#" + _sized(item["type"]))
        if with_metadata:
            digest.update(b"#")
            for pair in item.get("metadata") or []:
                digest.update(b"|" + _sized(pair["key"]))
                digest.update(b"|" + _sized(pair["value"]))
    return digest.hexdigest()
