"""Shared helpers of the retention integration tests (no tests here): runs holding checkpoint records
written with the plain client in the upload operator's layout, and what the server holds afterwards."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from tests.helpers.artifacts_support import plain_run


def checkpoint_payload(run: str, step: int) -> bytes:
    """The bytes of checkpoint ``step`` of run ``run`` (size grows with the step)."""
    return f"{run}-{step}-".encode() * (3 + step)


def make_runs(
    emulator: Any, tag: str, scores: dict[str, list[float]], *, keep: Sequence[str] = ()
) -> dict[str, str]:
    """Create stopped runs holding checkpoints with known scores; returns {name: sys/id}."""
    from neptune.types import File

    ids = {}
    for name, values in scores.items():
        run = plain_run(emulator, mode="async", tags=[tag], name=name)
        for step, score in enumerate(values):
            data = checkpoint_payload(name, step)
            base = f"checkpoints/step_{step}"
            run[f"{base}/file"].upload(File.from_content(data, extension="pt"))
            run[f"{base}/score"] = score
            run[f"{base}/step"] = float(step)
            run[f"{base}/size"] = float(len(data))
            run[f"{base}/uploaded_at"] = datetime.now(UTC)
            run[f"{base}/name"] = "model.pt"
            if f"{name}/{step}" in keep:
                run[f"{base}/keep"] = True
            run[f"{base}/sha256"] = hashlib.sha256(data).hexdigest()
        # Not ours: no sha256 under the namespace, and a look-alike outside it.
        run["checkpoints/notes/text"] = "hand-written"
        run["other/step_0/sha256"] = "x" * 64
        run["other/step_0/file"].upload(File.from_content(b"elsewhere", extension="bin"))
        ids[name] = run["sys/id"].fetch()
        run.stop()
    return ids


def read_checkpoints(emulator: Any, sys_id: str) -> dict[str, bool]:
    """{entry key: has file} under checkpoints/ as the server holds it (plain client)."""
    run = plain_run(emulator, with_id=sys_id, mode="read-only")
    try:
        structure = run.get_structure()
        assert structure["checkpoints"]["notes"]["text"] is not None
        assert "file" in structure["other"]["step_0"]
        return {
            key: "file" in fields
            for key, fields in structure["checkpoints"].items()
            if key != "notes" and isinstance(fields, dict)
        }
    finally:
        run.stop()
