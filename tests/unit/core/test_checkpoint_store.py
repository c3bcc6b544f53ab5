"""The edits that delete checkpoint records, computed from the fields a run holds, without a server."""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime
from pathlib import Path

from airflow_provider_neptune.core.checkpoint_records import RECORD_MARKER, checkpoints_from_fields
from airflow_provider_neptune.core.checkpoint_store import (
    HashingReader,
    deletion_edits,
    file_digest,
    file_extension,
)

SHA = "ab" * 32
WHEN = datetime(2026, 1, 1, tzinfo=UTC)


def _record(base: str, *, marker: bool) -> dict[str, object]:
    fields: dict[str, object] = {
        f"{base}/sha256": SHA,
        f"{base}/size": 12.0,
        f"{base}/uploaded_at": WHEN,
        f"{base}/name": "m.pt",
        f"{base}/score": 0.5,
    }
    if marker:
        fields[f"{base}/record"] = RECORD_MARKER
    return fields


def test_deletion_marks_old_records_first_and_never_touches_other_fields() -> None:
    values = {
        **_record("ns/old", marker=False),
        **_record("ns/new", marker=True),
        "ns/old/comment": "mine",
        "ns/new/comment": "mine",
        "ns/other/sha256": SHA,
    }
    files = ["ns/old/file", "ns/new/file", "ns/new/extra/file"]
    entries = {c.key: c for c in checkpoints_from_fields(values, files, "ns")}
    assert sorted(entries) == ["new", "old"]
    edits = deletion_edits("ns", [(key, entries[key].fields) for key in ("old", "new")])

    old = [edit for edit in edits if edit[0].startswith("ns/old/")]
    assert old[0] == ("ns/old/record", RECORD_MARKER)
    assert old[1] == ("ns/old/file", None)
    assert old[-1] == ("ns/old/record", None)
    assert {path for path, _ in old} == {
        f"ns/old/{k}" for k in ("file", "sha256", "size", "uploaded_at", "name", "score", "record")
    }
    new = [edit for edit in edits if edit[0].startswith("ns/new/")]
    assert new[0] == ("ns/new/file", None)
    assert new[-1] == ("ns/new/record", None)
    assert all(text is None for _, text in new)
    assert {path for path, _ in new} == {
        f"ns/new/{k}" for k in ("file", "sha256", "size", "uploaded_at", "name", "score", "record")
    }
    # The user's fields (beside a record, an entry of their own, a file deeper down) are never edited.
    touched = {path for path, _ in edits}
    assert not touched & {"ns/old/comment", "ns/new/comment", "ns/other/sha256", "ns/new/extra/file"}
    # Entries are deleted one after the other: all of "old" before anything of "new".
    assert [path.split("/")[1] for path, _ in edits] == ["old"] * len(old) + ["new"] * len(new)


def test_remnant_without_file_loses_only_what_it_still_has() -> None:
    values = {"ns/half/sha256": SHA, "ns/half/record": RECORD_MARKER, "ns/half/comment": "annotated"}
    (half,) = checkpoints_from_fields(values, [], "ns")
    assert deletion_edits("ns", [(half.key, half.fields)]) == [
        ("ns/half/sha256", None),
        ("ns/half/record", None),
    ]


def test_digest_and_hashing_reader_agree(tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    path = tmp_path / "model.ckpt"
    path.write_bytes(data)
    assert file_digest(path) == (hashlib.sha256(data).hexdigest(), len(data))
    reader = HashingReader(path)
    copied = b"".join(iter(lambda: reader.read(8192), b""))
    reader.close()
    assert copied == data
    assert reader.hexdigest() == hashlib.sha256(data).hexdigest()
    assert file_extension(path) == "ckpt"
    assert file_extension(tmp_path / "noext") == "bin"
