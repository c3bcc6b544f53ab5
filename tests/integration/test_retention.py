"""NeptuneArtifactRetentionOperator against the emulator, checked with the plain neptune client.

Every test tags its runs uniquely and selects by that tag, so the shared emulator's other runs are
never touched. Runs are written with the plain client in the layout the upload operator uses.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import pytest

from airflow_provider_neptune.core.checkpoint_records import RECORD_MARKER
from airflow_provider_neptune.exceptions import NeptuneProviderError
from airflow_provider_neptune.hooks.run_edits import RunEditor
from airflow_provider_neptune.operators.artifacts import (
    NeptuneArtifactRetentionOperator,
    NeptuneRetentionRefusedError,
)
from tests.helpers.artifacts_support import close_pooled_runs, context, plain_run, use_emulator  # noqa: F401 (fixture)
from tests.helpers.retention_runs import checkpoint_payload, make_runs, read_checkpoints

pytestmark = pytest.mark.integration

# run name -> scores of its checkpoints at steps 0, 1, 2, ...
SCORES: dict[str, list[float]] = {
    "a": [0.10, 0.50, 0.30, 0.90, 0.20, 0.40],  # top-2: steps 3, 1; final: 5
    "b": [0.70, 0.60, 0.80],  # top-2: steps 2, 0; final 2
    "c": [0.30],  # single checkpoint: always kept
}


def _size(name: str, step: int) -> int:
    return len(checkpoint_payload(name, step))


@pytest.fixture
def tag() -> str:
    return f"ret-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def retention_env(neptune_emulator: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    use_emulator(monkeypatch, neptune_emulator, "async")
    return neptune_emulator


def _op(tag: str, **kwargs: Any) -> NeptuneArtifactRetentionOperator:
    options: dict[str, Any] = {"keep_top_k": 2, "max_delete_fraction": 1.0, "tags": [tag]}
    options.update(kwargs)
    return NeptuneArtifactRetentionOperator(task_id="retention", **options)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_dry_run_then_clean_up_then_nothing_left_to_do(retention_env: Any, tag: str, mode: str) -> None:
    ids = make_runs(retention_env, tag, SCORES, keep=["a/0"])
    before = {name: read_checkpoints(retention_env, sys_id) for name, sys_id in ids.items()}

    dry = _op(tag, dry_run=True, mode=mode).execute(context())
    assert {name: read_checkpoints(retention_env, sys_id) for name, sys_id in ids.items()} == before
    assert dry["dry_run"] is True
    assert dry["checkpoints_deleted"] == 0
    expected_deleted = {"a": [2, 4], "b": [1]}
    expected_bytes = sum(_size(name, step) for name, steps in expected_deleted.items() for step in steps)
    assert dry["checkpoints_to_delete"] == 3
    assert dry["bytes_to_free"] == expected_bytes
    plan = {item["run_id"]: item for item in dry["plan"]}
    assert sorted(plan[ids["a"]]["delete"]) == ["step_2", "step_4"]
    assert plan[ids["a"]]["keep"] == {
        "step_0": "marked keep",
        "step_3": "top-k",
        "step_1": "top-k",
        "step_5": "final",
    }

    real = _op(tag, mode=mode).execute(context())
    assert real["runs_scanned"] == 3
    assert real["checkpoints_found"] == 10
    assert real["checkpoints_deleted"] == 3
    assert real["checkpoints_kept"] == 7
    assert real["bytes_freed"] == expected_bytes
    after = {name: read_checkpoints(retention_env, sys_id) for name, sys_id in ids.items()}
    assert after == {
        "a": {"step_0": True, "step_1": True, "step_3": True, "step_5": True},
        "b": {"step_0": True, "step_2": True},
        "c": {"step_0": True},
    }

    again = _op(tag, mode=mode).execute(context())
    assert again["checkpoints_deleted"] == 0
    assert again["bytes_freed"] == 0
    assert {name: read_checkpoints(retention_env, sys_id) for name, sys_id in ids.items()} == after


def test_safety_limit_refuses_and_explains(retention_env: Any, tag: str) -> None:
    ids = make_runs(retention_env, tag, {"a": SCORES["a"]})
    before = read_checkpoints(retention_env, ids["a"])
    op = _op(tag, keep_top_k=1, keep_last=False, max_delete_fraction=0.5)
    with pytest.raises(NeptuneRetentionRefusedError) as refused:
        op.execute(context())
    message = str(refused.value)
    assert "5 of 6 checkpoints" in message
    assert "max_delete_fraction=0.84" in message
    assert read_checkpoints(retention_env, ids["a"]) == before
    dry = _op(tag, keep_top_k=1, keep_last=False, max_delete_fraction=0.5, dry_run=True).execute(context())
    assert dry["refused"] == message
    done = _op(tag, keep_top_k=1, keep_last=False, max_delete_fraction=0.84).execute(context())
    assert done["checkpoints_deleted"] == 5
    assert read_checkpoints(retention_env, ids["a"]) == {"step_3": True}


def test_last_checkpoint_survives_keep_zero(retention_env: Any, tag: str) -> None:
    ids = make_runs(retention_env, tag, {"c": [0.3], "b": [0.9, 0.1]})
    result = _op(tag, keep_top_k=0, keep_last=False).execute(context())
    assert result["checkpoints_deleted"] == 1
    assert read_checkpoints(retention_env, ids["c"]) == {"step_0": True}
    assert read_checkpoints(retention_env, ids["b"]) == {"step_1": True}


def test_interrupted_clean_up_is_finished_by_the_next_run(
    retention_env: Any, tag: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = make_runs(retention_env, tag, {"a": SCORES["a"], "b": SCORES["b"]})
    # A clean-up that died half-way through one entry: its file is gone, its fields remain.
    run = plain_run(retention_env, with_id=ids["b"], mode="sync")
    del run["checkpoints/step_1/file"]
    run.stop()

    real_edit = RunEditor.edit
    calls: list[str] = []

    def crash_after_first_run(editor: RunEditor, run_internal_id: str, edits: Any) -> list[str]:
        if calls:
            raise RuntimeError("worker lost")
        calls.append(run_internal_id)
        return real_edit(editor, run_internal_id, edits)

    monkeypatch.setattr(RunEditor, "edit", crash_after_first_run)
    with pytest.raises(RuntimeError, match="worker lost"):
        _op(tag).execute(context())
    monkeypatch.setattr(RunEditor, "edit", real_edit)
    first_done = {name: read_checkpoints(retention_env, sys_id) for name, sys_id in ids.items()}
    assert sum(len(v) for v in first_done.values()) < 9

    finish = _op(tag).execute(context())
    assert finish["checkpoints_deleted"] >= 1
    assert read_checkpoints(retention_env, ids["a"]) == {"step_1": True, "step_3": True, "step_5": True}
    assert read_checkpoints(retention_env, ids["b"]) == {"step_0": True, "step_2": True}
    assert _op(tag).execute(context())["checkpoints_deleted"] == 0


def test_project_wide_rules_and_paging(retention_env: Any, tag: str, monkeypatch: pytest.MonkeyPatch) -> None:
    scores = {"r1": [0.1, 0.9, 0.2], "r2": [0.3, 0.8, 0.4], "r3": [0.5, 0.7, 0.6]}
    ids = make_runs(retention_env, tag, scores)
    for name, metric in (("r1", 0.2), ("r2", 0.95), ("r3", 0.5)):
        run = plain_run(retention_env, with_id=ids[name], mode="sync")
        run["eval/accuracy"] = metric
        run.stop()
    monkeypatch.setenv("NEPTUNE_FETCH_TABLE_STEP_SIZE", "2")  # three runs: two pages
    result = _op(tag, keep_top_k=1, keep_best_runs=1, run_metric="eval/accuracy").execute(context())
    assert result["runs_scanned"] == 3
    assert read_checkpoints(retention_env, ids["r2"]) == {"step_1": True, "step_2": True}
    assert read_checkpoints(retention_env, ids["r1"]) == {"step_2": True}
    assert read_checkpoints(retention_env, ids["r3"]) == {"step_2": True}

    young = make_runs(retention_env, tag + "-age", {"y": [0.9, 0.1, 0.2]})
    skipped = _op(tag + "-age", older_than_days=1).execute(context())
    assert skipped["runs_too_recent"] == 1
    assert skipped["runs_scanned"] == 0
    final_only = _op(tag + "-age", final_only_older_than_days=0).execute(context())
    assert final_only["checkpoints_deleted"] == 2
    assert read_checkpoints(retention_env, young["y"]) == {"step_2": True}


def test_nql_query_and_tags_select_the_runs(retention_env: Any, tag: str) -> None:
    ids = make_runs(retention_env, tag, {"good": [0.1, 0.9, 0.2], "poor": [0.1, 0.9, 0.2]})
    ids.update(make_runs(retention_env, tag + "-other", {"other": [0.1, 0.9, 0.2]}))
    for name, accuracy in (("good", 0.93), ("poor", 0.41), ("other", 0.99)):
        run = plain_run(retention_env, with_id=ids[name], mode="sync")
        run["eval/accuracy"] = accuracy
        run.stop()
    result = _op(tag, keep_top_k=1, query="`eval/accuracy`:float > 0.6").execute(context())
    assert result["runs_matched"] == 1
    assert result["checkpoints_deleted"] == 1
    assert read_checkpoints(retention_env, ids["good"]) == {"step_1": True, "step_2": True}
    untouched = {"step_0": True, "step_1": True, "step_2": True}
    assert read_checkpoints(retention_env, ids["poor"]) == untouched
    assert read_checkpoints(retention_env, ids["other"]) == untouched  # matches the query, not the tag


def _structure(emulator: Any, sys_id: str) -> dict[str, set[str]]:
    """{entry key: its field names} under checkpoints/ as the server holds it (plain client)."""
    run = plain_run(emulator, with_id=sys_id, mode="read-only")
    try:
        entries = run.get_structure().get("checkpoints", {})
        return {key: set(fields) for key, fields in entries.items() if isinstance(fields, dict)}
    finally:
        run.stop()


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_only_whole_records_are_touched_and_foreign_fields_survive(
    retention_env: Any, tag: str, mode: str
) -> None:
    ids = make_runs(retention_env, tag, {"a": [0.1, 0.9, 0.2]})
    run = plain_run(retention_env, with_id=ids["a"], mode="sync")
    # A user's own entry that merely has a sha256 and a name, next to their comment.
    run["checkpoints/mine/sha256"] = hashlib.sha256(b"dataset").hexdigest()
    run["checkpoints/mine/name"] = "dataset.csv"
    run["checkpoints/mine/comment"] = "my own notes"
    # The user's annotation of a record that retention deletes.
    run["checkpoints/step_0/comment"] = "first try"
    # The remnant of an interrupted deletion of a marked record: file and most fields already gone.
    run["checkpoints/half/sha256"] = hashlib.sha256(b"half").hexdigest()
    run["checkpoints/half/record"] = RECORD_MARKER
    run["checkpoints/half/comment"] = "annotated"
    run.stop()

    result = _op(tag, keep_top_k=1, mode=mode).execute(context())
    assert result["checkpoints_found"] == 4  # step_0..2 and the remnant; never "mine"
    assert result["checkpoints_deleted"] == 2
    after = _structure(retention_env, ids["a"])
    assert after["mine"] == {"sha256", "name", "comment"}
    assert after["step_0"] == {"comment"}
    assert after["half"] == {"comment"}
    assert after["step_1"] >= {"file", "sha256", "score", "size", "uploaded_at", "name"}
    assert _op(tag, keep_top_k=1, mode=mode).execute(context())["checkpoints_deleted"] == 0


def test_a_failed_request_leaves_its_run_whole_and_the_next_clean_up_finishes(
    retention_env: Any, tag: str
) -> None:
    ids = make_runs(retention_env, tag, {"a": SCORES["a"], "b": SCORES["b"]})
    before = {name: read_checkpoints(retention_env, sys_id) for name, sys_id in ids.items()}
    # An answer no retry can change stops the clean-up at the first changed run, which stays whole.
    retention_env.set_faults(fail_next={"route": "executeOperations", "status": 400, "count": 1})
    with pytest.raises(NeptuneProviderError, match=r"HTTP 400"):
        _op(tag).execute(context())
    assert {name: read_checkpoints(retention_env, sys_id) for name, sys_id in ids.items()} == before
    # Answers the transport retries (503) cost retries, not the result.
    retention_env.set_faults(fail_next={"route": "executeOperations", "status": 503, "count": 2})
    done = _op(tag).execute(context())
    assert done["requests"]["retries"] >= 2
    assert done["checkpoints_deleted"] == 4
    assert read_checkpoints(retention_env, ids["a"]) == {"step_1": True, "step_3": True, "step_5": True}
    assert read_checkpoints(retention_env, ids["b"]) == {"step_0": True, "step_2": True}
    assert _op(tag).execute(context())["checkpoints_deleted"] == 0
