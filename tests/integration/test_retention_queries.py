"""Values pasted into NQL are quoted: retention tags and hook look-ups with the real client and emulator.

Each test writes its runs with the plain ``neptune`` client and tags them uniquely, so other runs of
the shared emulator are never selected (a dry run first, so a regression cannot delete them either).
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from airflow_provider_neptune.operators.artifacts import NeptuneArtifactRetentionOperator
from tests.helpers.artifacts_support import close_pooled_runs, context, plain_run, use_emulator  # noqa: F401 (fixture)
from tests.helpers.retention_runs import make_runs, read_checkpoints

pytestmark = pytest.mark.integration

HOSTILE = '\\ ") OR (`sys/tags`:stringSet CONTAINS "'


def _op(tags: Any, **kwargs: Any) -> NeptuneArtifactRetentionOperator:
    options: dict[str, Any] = {"keep_top_k": 1, "max_delete_fraction": 1.0, "tags": tags}
    options.update(kwargs)
    return NeptuneArtifactRetentionOperator(task_id="retention", **options)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_tag_with_quotes_backticks_parentheses_and_backslashes_selects_only_its_run(
    neptune_emulator: Any, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    use_emulator(monkeypatch, neptune_emulator, mode)
    base = f"q-{uuid.uuid4().hex[:10]}"
    # Pasted unquoted, this tag closes the string and ORs in "has tag <base>-victim".
    hostile = f"{base} {HOSTILE}{base}-victim"
    own = make_runs(neptune_emulator, hostile, {"own": [0.1, 0.9, 0.2]})
    victim = make_runs(neptune_emulator, f"{base}-victim", {"victim": [0.1, 0.9, 0.2]})
    untouched = {"step_0": True, "step_1": True, "step_2": True}

    dry = _op([hostile], dry_run=True, mode=mode).execute(context())
    assert dry["runs_matched"] == 1
    assert [item["run_id"] for item in dry["plan"]] == [own["own"]]

    real = _op(hostile, mode=mode).execute(context())  # a templated string: one tag, no commas in it
    assert real["runs_matched"] == 1
    assert real["checkpoints_deleted"] == 1
    assert read_checkpoints(neptune_emulator, own["own"]) == {"step_1": True, "step_2": True}
    assert read_checkpoints(neptune_emulator, victim["victim"]) == untouched


def test_query_and_tag_combination_cannot_be_widened(
    neptune_emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_emulator(monkeypatch, neptune_emulator, "sync")
    tag = f"q-{uuid.uuid4().hex[:10]}"
    ids = make_runs(neptune_emulator, tag, {"mine": [0.1, 0.9]})
    # A top-level OR in the user's query stays inside its parentheses, ANDed with the tag.
    result = _op(
        [tag], dry_run=True, query='(`sys/name`:string = "nobody") OR (`sys/name`:string = "mine")'
    ).execute(context())
    assert result["runs_matched"] == 1
    assert [item["run_id"] for item in result["plan"]] == [ids["mine"]]
    with pytest.raises(ValueError, match=r"query .*closes a parenthesis it did not open"):
        _op([tag], dry_run=True, query='`sys/name`:string = "x") OR (`sys/id`:string != ""').execute(
            context()
        )
    with pytest.raises(ValueError, match="control character"):
        _op([f"{tag}\nsecond line"], dry_run=True).execute(context())


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_hook_finds_runs_whose_custom_id_needs_escaping(
    neptune_hook_factory: Any, neptune_emulator: Any, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    for key, value in neptune_emulator.env().items():
        monkeypatch.setenv(key, value)
    custom = f'c"(`\\{uuid.uuid4().hex[:12]}'
    run = plain_run(neptune_emulator, mode="sync", custom_run_id=custom, name="written-outside")
    sys_id = run["sys/id"].fetch()
    run.stop()
    decoy = plain_run(neptune_emulator, mode="sync", custom_run_id=f"c{uuid.uuid4().hex[:12]}")
    decoy.stop()

    hook = neptune_hook_factory(mode=mode)
    with hook.get_run(custom_run_id=custom, mode="read-only") as reader:
        assert reader["sys/id"].fetch() == sys_id
    # Reopening for writing finds the run by its custom id and keeps the name it was given.
    with hook.get_run(custom_run_id=custom) as writer:
        assert writer["sys/id"].fetch() == sys_id
        writer["airflow/touched"] = True
        writer.wait()
    check = plain_run(neptune_emulator, with_id=sys_id, mode="read-only")
    try:
        assert check["sys/name"].fetch() == "written-outside"
        assert check["airflow/touched"].fetch() is True
    finally:
        check.stop()
