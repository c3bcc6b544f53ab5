"""NeptuneUploadArtifactOperator against the emulator (sync and async), read back with the plain client."""

from __future__ import annotations

import hashlib
import os
import random
import uuid
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_neptune.core.checkpoint_records import RECORD_MARKER
from airflow_provider_neptune.hooks.neptune import NeptuneHook
from airflow_provider_neptune.hooks.run_pool import POOL
from airflow_provider_neptune.operators.artifacts import (
    NeptuneArtifactRetentionOperator,
    NeptuneUploadArtifactOperator,
)
from tests.helpers.artifacts_support import (  # noqa: F401 (fixture)
    TaskInstanceStub,
    close_pooled_runs,
    context,
    plain_run,
    use_emulator,
)

pytestmark = pytest.mark.integration


def _new_run(emulator: Any, tag: str) -> str:
    run = plain_run(emulator, mode="sync", tags=[tag])
    sys_id = str(run["sys/id"].fetch())
    run.stop()
    return sys_id


def _read(emulator: Any, sys_id: str, tmp_path: Path, *, download: bool = False) -> dict[str, dict[str, Any]]:
    """{key: fields (+ "bytes" when downloaded)} under checkpoints/ (plain client, read-only)."""
    run = plain_run(emulator, with_id=sys_id, mode="read-only")
    try:
        if not run.exists("checkpoints"):
            return {}
        values = run["checkpoints"].fetch()
        structure = run.get_structure()["checkpoints"]
        for key, fields in values.items():
            fields["has_file"] = "file" in structure[key]
            if download and fields["has_file"]:
                target = tmp_path / f"dl-{key}-{uuid.uuid4().hex}"
                run[f"checkpoints/{key}/file"].download(destination=str(target))
                fields["bytes"] = target.read_bytes()
        return values
    finally:
        run.stop()


def _upload(path: Path, run_id: str, mode: str, **kwargs: Any) -> dict[str, Any]:
    op = NeptuneUploadArtifactOperator(task_id="upload", run_id=run_id, path=str(path), mode=mode, **kwargs)
    ti = TaskInstanceStub()
    result = op.execute(context(ti))
    assert ti.xcom["neptune_run_url"].endswith(f"/e/{run_id}")
    return result


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_gated_upload_of_20_epochs_then_retention_leaves_final_top3(
    neptune_emulator: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, mode: str
) -> None:
    use_emulator(monkeypatch, neptune_emulator, mode)
    tag = f"gate-{uuid.uuid4().hex[:8]}"
    run_id = _new_run(neptune_emulator, tag)
    rng = random.Random(20261126)
    scores = [round(rng.uniform(0.0, 1.0), 4) for _ in range(20)]
    ckpt = tmp_path / "last.pt"  # overwritten every epoch, as a training loop does
    sent: list[int] = []
    for epoch, score in enumerate(scores):
        ckpt.write_bytes(f"epoch {epoch} weights ".encode() * 4)
        result = _upload(
            ckpt, run_id, mode, score=str(score), step=epoch, only_if_better=True, keep_top_k="3"
        )
        if result["uploaded"]:
            assert [u["key"] for u in result["uploaded"]] == [f"step_{epoch}"]
            sent.append(epoch)
        else:
            assert "not among the best 3" in result["skipped"][0]["reason"]
    in_top3_at_their_time = [e for e, s in enumerate(scores) if sum(1 for p in scores[:e] if p >= s) < 3]
    assert sent == in_top3_at_their_time
    stored = _read(neptune_emulator, run_id, tmp_path)
    assert sorted(stored) == sorted(f"step_{e}" for e in sent)
    assert all(f["has_file"] for f in stored.values())
    assert stored[f"step_{sent[-1]}"]["score"] == scores[sent[-1]]

    final_top3 = sorted(range(20), key=lambda e: -scores[e])[:3]
    result = NeptuneArtifactRetentionOperator(
        task_id="retention", tags=[tag], keep_top_k=3, keep_last=False, max_delete_fraction=1.0, mode=mode
    ).execute(context())
    assert result["checkpoints_deleted"] == len(sent) - 3
    after = _read(neptune_emulator, run_id, tmp_path, download=True)
    assert sorted(after) == sorted(f"step_{e}" for e in final_top3)
    for epoch in final_top3:
        assert after[f"step_{epoch}"]["bytes"] == f"epoch {epoch} weights ".encode() * 4
    assert result["bytes_freed"] == sum(
        len(f"epoch {e} weights ".encode() * 4) for e in sent if e not in final_top3
    )


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_retry_does_not_resend_and_changed_file_replaces(
    neptune_emulator: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, mode: str
) -> None:
    use_emulator(monkeypatch, neptune_emulator, mode)
    run_id = _new_run(neptune_emulator, "retry")
    ckpt = tmp_path / "model.bin"
    ckpt.write_bytes(b"first version")
    first = _upload(ckpt, run_id, mode, score=0.5, step=7, keep=True)
    assert first["uploaded"][0]["sha256"] == hashlib.sha256(b"first version").hexdigest()
    fresh = NeptuneHook()
    _ = fresh.settings  # close() acts on the handles of the settings it resolved
    fresh.close()  # a task retry runs in a new process: nothing pooled survives
    assert len(POOL) == 0

    uploads_before = _upload_requests(neptune_emulator)
    again = _upload(ckpt, run_id, mode, score=0.5, step=7)
    assert again["uploaded"] == []
    assert again["skipped"][0]["reason"].startswith("already uploaded")
    assert _upload_requests(neptune_emulator) == uploads_before

    ckpt.write_bytes(b"second version, longer")
    replaced = _upload(ckpt, run_id, mode, step=7)
    assert replaced["uploaded"][0]["key"] == "step_7"
    stored = _read(neptune_emulator, run_id, tmp_path, download=True)["step_7"]
    assert stored["bytes"] == b"second version, longer"
    assert stored["sha256"] == hashlib.sha256(b"second version, longer").hexdigest()
    assert stored["size"] == len(b"second version, longer")
    assert "score" not in stored  # no stale score from the replaced upload
    assert "keep" not in stored
    assert stored["step"] == 7
    assert stored["record"] == RECORD_MARKER  # written last: the record is complete


def _upload_requests(emulator: Any) -> int:
    routes = emulator.stats()["requests_by_route"]
    return sum(count for route, count in routes.items() if "upload" in route.lower())


def test_glob_and_multipart_upload_are_byte_exact(
    neptune_emulator: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    use_emulator(monkeypatch, neptune_emulator, "async")
    run_id = _new_run(neptune_emulator, "multipart")
    big = os.urandom(6 * 1024 * 1024 + 123)  # above the emulator's 5 MiB single-part limit
    (tmp_path / "ckpts").mkdir()
    (tmp_path / "ckpts" / "model.pt").write_bytes(big)
    (tmp_path / "ckpts" / "optimizer.pt").write_bytes(b"tiny optimizer state")
    routes_before = neptune_emulator.stats()["requests_by_route"]
    result = _upload(tmp_path / "ckpts" / "*.pt", run_id, "async", step=3, score=0.7)
    assert sorted(u["key"] for u in result["uploaded"]) == ["step_3_model_pt", "step_3_optimizer_pt"]
    routes_after = neptune_emulator.stats()["requests_by_route"]
    multipart = {r: n - routes_before.get(r, 0) for r, n in routes_after.items() if "multipart" in r.lower()}
    assert sum(multipart.values()) >= 3, routes_after  # start, parts, finish
    stored = _read(neptune_emulator, run_id, tmp_path, download=True)
    assert stored["step_3_model_pt"]["bytes"] == big
    assert stored["step_3_model_pt"]["sha256"] == hashlib.sha256(big).hexdigest()
    assert stored["step_3_optimizer_pt"]["bytes"] == b"tiny optimizer state"
    assert stored["step_3_model_pt"]["name"] == "model.pt"


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_symlink_out_of_the_checkpoint_folder_is_refused_unless_followed(
    neptune_emulator: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, mode: str
) -> None:
    use_emulator(monkeypatch, neptune_emulator, mode)
    run_id = _new_run(neptune_emulator, "symlinks")
    folder = tmp_path / "ckpt"
    (folder / "epoch_1").mkdir(parents=True)
    (folder / "epoch_1" / "model.pt").write_bytes(b"weights")
    secret = tmp_path / "passwd"
    secret.write_bytes(b"root:x:0:0")
    (folder / "epoch_1" / "notes.pt").symlink_to(secret)

    with pytest.raises(ValueError, match=r"notes\.pt -> .*passwd"):
        _upload(folder / "**" / "*.pt", run_id, mode, step=1)
    assert _read(neptune_emulator, run_id, tmp_path) == {}

    result = _upload(folder / "**" / "*.pt", run_id, mode, step=1, follow_symlinks=True)
    assert sorted(u["key"] for u in result["uploaded"]) == ["step_1_model_pt", "step_1_notes_pt"]
    stored = _read(neptune_emulator, run_id, tmp_path, download=True)
    assert stored["step_1_notes_pt"]["bytes"] == b"root:x:0:0"
    assert stored["step_1_model_pt"]["bytes"] == b"weights"
