"""NeptuneBaseOperator: one tags meaning, one hook built one way, one close policy, request counts."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_neptune.exceptions import NeptuneSettingsError
from airflow_provider_neptune.operators.base import NeptuneBaseOperator, build_hook, normalize_tags


class _CountingHook:
    """Counts close() calls and serves counters a test sets."""

    def __init__(self) -> None:
        self.closed = 0
        self.counters: dict[str, int] = {"requests": 0, "throttled": 0, "retries": 0, "points": 0}

    def close(self) -> None:
        self.closed += 1


class _Op(NeptuneBaseOperator):
    """Uses the hook in execute, then fails when asked to."""

    def __init__(self, *, fail: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fail = fail
        self.built: list[_CountingHook] = []

    def make_hook(self) -> Any:
        hook = _CountingHook()
        self.built.append(hook)
        return hook

    def execute(self, context: Any) -> dict[str, int]:
        with self.closing_hook() as hook:
            before = self.request_counters()
            hook.counters = {"requests": 5, "throttled": 1, "retries": 2, "points": 100}
            if self.fail:
                raise RuntimeError("boom")
            return self.requests_since(before)


def test_a_string_is_one_tag_even_with_commas() -> None:
    assert normalize_tags("a,b") == ["a,b"]
    assert normalize_tags(["a,b", "c"]) == ["a,b", "c"]


def test_lists_and_tuples_hold_several_tags_blank_and_repeated_dropped() -> None:
    assert normalize_tags(("x", " ", "", "y", "x")) == ["x", "y"]
    assert normalize_tags(None) == []
    assert normalize_tags(()) == []
    assert normalize_tags(" ") == []


@pytest.mark.parametrize("bad", [{"a": 1}, 3, [["nested"]], [True]])
def test_other_tag_types_fail_naming_the_argument(bad: Any) -> None:
    with pytest.raises(NeptuneSettingsError, match="Invalid Neptune setting tags="):
        normalize_tags(bad)


def test_the_hook_is_cached_and_closed_once_after_execute() -> None:
    op = _Op(task_id="t")
    assert op.execute({}) == {"requests": 5, "throttled": 1, "retries": 2}
    assert len(op.built) == 1
    assert op.built[0].closed == 1
    assert op.hook is op.hook
    assert len(op.built) == 1


def test_the_hook_is_closed_when_execute_fails_and_on_kill() -> None:
    op = _Op(task_id="t", fail=True)
    with pytest.raises(RuntimeError, match="boom"):
        op.execute({})
    assert op.built[0].closed == 1
    op.on_kill()
    assert op.built[0].closed == 2


def test_on_kill_before_any_hook_builds_none() -> None:
    op = _Op(task_id="t")
    op.on_kill()
    assert op.built == []


@pytest.mark.parametrize("unset", [None, "", "None"])
def test_build_hook_falls_back_to_the_connection_for_unset_templated_values(unset: str | None) -> None:
    hook = build_hook("neptune_default", project=unset, mode=unset)
    assert hook.neptune_conn_id == "neptune_default"
    assert hook._arguments["project"] is None
    assert hook._arguments["mode"] is None
    hook = build_hook("other", project="ws/proj", mode="offline")
    assert (hook._arguments["project"], hook._arguments["mode"]) == ("ws/proj", "offline")


def test_operator_builds_its_hook_from_its_arguments() -> None:
    op = NeptuneBaseOperator(task_id="t", neptune_conn_id="c", project="ws/p", mode="sync")
    hook = op.hook
    assert hook.neptune_conn_id == "c"
    assert (hook._arguments["project"], hook._arguments["mode"]) == ("ws/p", "sync")
