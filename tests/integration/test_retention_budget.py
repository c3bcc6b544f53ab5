"""Clean-up and sync spend their requests inside the hook's shared budget.

A private emulator enforces 5 requests/s (from the moment the set-up is done); the connection's
budget is 4/s. Retention (scan + deletes)
and a sync of an offline run must then never be answered 429, and every request they sent is
accounted for by the hook's counters.
"""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_neptune.hooks.neptune import NeptuneHook
from airflow_provider_neptune.operators.artifacts import (
    NeptuneArtifactRetentionOperator,
    NeptuneUploadArtifactOperator,
)
from airflow_provider_neptune.operators.sync import NeptuneSyncOperator
from tests.helpers.artifacts_support import close_pooled_runs, context, plain_run  # noqa: F401 (fixture)

pytestmark = pytest.mark.integration


def test_retention_and_sync_never_exceed_the_server_limit(
    neptune_emulator_factory: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from neptune.types import File

    emulator = neptune_emulator_factory(state_timeout=2)
    for key, value in emulator.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("NEPTUNE_DATA_DIRECTORY", str(tmp_path / "data"))
    conn = emulator.airflow_conn_json(mode="async", rate_limit_per_second=4)
    monkeypatch.setenv("AIRFLOW_CONN_NEPTUNE_DEFAULT", conn)

    # Enough runs (and small search pages) that the clean-up alone sends more than 5 requests in a
    # second: it costs one request per changed run and per page, so few runs would not test the limit.
    names = [f"r{i}" for i in range(10)]
    monkeypatch.setenv("NEPTUNE_FETCH_TABLE_STEP_SIZE", "2")
    for name in names:
        run = plain_run(emulator, mode="sync", name=name, tags=["budget"])
        for step, score in enumerate([0.3, 0.9, 0.1, 0.5]):
            run[f"checkpoints/step_{step}/file"].upload(File.from_content(b"w" * (step + 1), extension="pt"))
            run[f"checkpoints/step_{step}"] = {
                "score": score,
                "step": float(step),
                "size": float(step + 1),
                "uploaded_at": datetime.now(UTC),
                "name": "model.pt",
                "sha256": hashlib.sha256(b"w" * (step + 1)).hexdigest(),
            }
        run.stop()
    checkpoint = tmp_path / "offline.pt"
    checkpoint.write_bytes(os.urandom(2048))
    monkeypatch.setenv("AIRFLOW_CONN_NEPTUNE_OFFLINE", emulator.airflow_conn_json(mode="offline"))
    NeptuneUploadArtifactOperator(
        task_id="offline_upload",
        custom_run_id="budget-offline",
        path=str(checkpoint),
        score=1.0,
        step=1,
        neptune_conn_id="neptune_offline",
    ).execute(context())
    offline_hook = NeptuneHook("neptune_offline")
    _ = offline_hook.settings  # close() acts on the handles of the settings it resolved
    offline_hook.close()

    # The limit starts now, with an empty window: the plain-client set-up above does not count.
    emulator.set_faults(rate_limit=5)
    emulator.reset_stats()
    hook = NeptuneHook()
    before = hook.counters["requests"]
    result = NeptuneArtifactRetentionOperator(
        task_id="retention", tags=["budget"], keep_top_k=1, keep_last=False, max_delete_fraction=1.0
    ).execute(context())
    assert result["checkpoints_deleted"] == 3 * len(names)
    report = NeptuneSyncOperator(task_id="sync", data_directory=str(tmp_path / "data")).execute(context())
    assert [s["kind"] for s in report["synced"]] == ["offline"]
    assert result["requests"]["requests"] > 0
    assert report["requests"]["requests"] > 0
    assert result["requests"]["throttled"] == report["requests"]["throttled"] == 0
    hook.close()

    stats = emulator.stats()
    assert stats["throttled_total"] == 0, stats["requests_by_status"]
    sent = hook.counters["requests"] - before
    assert sent >= 20
    # Every request the server saw since the reset came through the hook's transport.
    assert stats["requests_total"] - stats["requests_by_route"].get("swagger", 0) <= sent
