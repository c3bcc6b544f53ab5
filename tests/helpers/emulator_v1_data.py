"""Writes the checked-in data directory tests/fixtures/emulator_v1 with the emulator of commit 48b3bd0.

That is the emulator before schema versions (layout 1). Regenerate it, only if it is lost, with that
commit's code first on the path, so its Storage writes the layout:

    git archive 48b3bd0 | tar -x -C /tmp/v1
    PYTHONPATH=/tmp/v1 .venv/bin/python tests/helpers/emulator_v1_data.py tests/fixtures/emulator_v1

What it holds is described by V1_CONTENT, which the migration test reads back through the client.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

PROJECT = "legacy/proj"
# custom id -> (name, tags, loss series, text field, file contents, file-set files)
V1_CONTENT: dict[str, dict[str, Any]] = {
    "legacy-1": {
        "name": "first",
        "tags": ["old", "kept"],
        "loss": [1.0, 0.5, 0.25],
        "note": "written by v1",
        "file": b"model bytes v1",
        "files": {"a.txt": b"alpha", "sub/b.txt": b"beta"},
    },
    "legacy-2": {
        "name": "second",
        "tags": ["old"],
        "loss": [2.0, 1.5],
        "note": "second run",
        "file": b"other model",
        "files": {"c.txt": b"gamma"},
    },
}


def write(target: Path) -> None:
    """Create the data directory at `target` with whatever emulator storage is first on the path."""
    from airflow_provider_neptune.emulator.storage import Storage

    storage = Storage(target)
    project = storage.ensure_project(PROJECT)
    for custom_id, content in V1_CONTENT.items():
        run, _ = storage.create_run(project, custom_id=custom_id)
        entries = [
            {"value": value, "step": float(step), "timestampMilliseconds": 1_700_000_000_000 + step}
            for step, value in enumerate(content["loss"])
        ]
        errors, _, _ = storage.execute_operations(
            run,
            [
                {"path": "sys/name", "assignString": {"value": content["name"]}},
                {"path": "sys/tags", "insertStrings": {"values": content["tags"]}},
                {"path": "train/loss", "logFloats": {"entries": entries}},
                {"path": "note", "assignString": {"value": content["note"]}},
            ],
        )
        if errors:
            raise RuntimeError(f"v1 storage refused the fixture's operations: {errors}")
        storage.set_file(run, "model/weights", "bin", content["file"])
        storage.add_fileset_files(run, "data/files", dict(content["files"]), reset=False)
    storage.close()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: emulator_v1_data.py TARGET_DIR")
    write(Path(sys.argv[1]))
