"""NeptuneCreateRunOperator / NeptuneStopRunOperator against an in-memory hook."""

from __future__ import annotations

import pytest

from airflow_provider_neptune.core.run_conditions import STATE_FIELD
from airflow_provider_neptune.hooks.server_rules import MAX_CUSTOM_RUN_ID_LENGTH
from airflow_provider_neptune.links import RUN_URL_XCOM_KEY, NeptuneRunLink
from airflow_provider_neptune.operators import NeptuneCreateRunOperator, NeptuneStopRunOperator
from airflow_provider_neptune.operators.run import derive_custom_run_id, flatten_fields
from tests.helpers.run_metrics_fakes import FakeHook, FakeTI, make_context


def test_custom_run_id_is_deterministic_short_and_distinct() -> None:
    first = derive_custom_run_id("dag_a", "manual__2024")
    assert first == derive_custom_run_id("dag_a", "manual__2024")
    assert len(first) <= MAX_CUSTOM_RUN_ID_LENGTH
    others = {
        derive_custom_run_id("dag_b", "manual__2024"),
        derive_custom_run_id("dag_a", "manual__2025"),
        derive_custom_run_id("dag_a", "manual__2024", "eval"),
        derive_custom_run_id("dag_a", "manual__2024", map_index=0),
        # no ambiguity from concatenation
        derive_custom_run_id("dag_am", "anual__2024"),
    }
    assert first not in others
    assert len(others) == 5
    long_ids = derive_custom_run_id("d" * 250, "r" * 250, "n" * 250)
    assert len(long_ids) == MAX_CUSTOM_RUN_ID_LENGTH


def test_flatten_fields_converts_unsupported_values() -> None:
    flat = flatten_fields(
        {"lr": 0.1, "opt": {"name": "adam", "betas": [0.9, 0.99]}, "skip": None, "n": float("nan")}, "p"
    )
    assert flat == {"p/lr": 0.1, "p/opt/name": "adam", "p/opt/betas": "[0.9, 0.99]", "p/n": "nan"}


def _create(**kwargs: object) -> tuple[NeptuneCreateRunOperator, FakeHook]:
    op = NeptuneCreateRunOperator(task_id="create_run", **kwargs)  # type: ignore[arg-type]
    hook = FakeHook()
    op.make_hook = lambda: hook  # type: ignore[method-assign]
    return op, hook


def test_create_returns_sys_id_pushes_custom_id_and_link() -> None:
    op, hook = _create(name="train", tags=["a", "b"], description="d")
    ti = FakeTI(dag_id="pipeline", run_id="manual__1")
    sys_id = op.execute(make_context(ti, params={"lr": 0.01, "model": {"depth": 3}}))
    custom = derive_custom_run_id("pipeline", "manual__1", "train")
    assert sys_id == hook.runs[custom]
    assert ti.xcom["custom_run_id"] == custom
    assert ti.xcom[RUN_URL_XCOM_KEY].endswith(f"/e/{sys_id}")
    fields = hook.fields[sys_id]
    assert fields["parameters/lr"] == 0.01
    assert fields["parameters/model/depth"] == 3
    assert fields["airflow/dag_id"] == "pipeline"
    assert fields["airflow/dag_run_id"] == "manual__1"
    assert fields["sys/name"] == "train"
    assert ("wait_for_delivery", 60.0) in hook.calls
    assert hook.closed == 1
    # The link resolves from the operator right after execution (as Airflow's finalize does).
    assert NeptuneRunLink().get_link(op, ti_key=None) == ti.xcom[RUN_URL_XCOM_KEY]  # type: ignore[arg-type]


def test_retried_create_reopens_the_same_run() -> None:
    op, hook = _create()
    ti = FakeTI()
    first = op.execute(make_context(ti))
    second = op.execute(make_context(ti))
    assert first == second
    assert len(hook.runs) == 1
    creates = [call for call in hook.calls if call[0] == "create_run"]
    assert creates[0][1]["custom_run_id"] == creates[1][1]["custom_run_id"]
    assert creates[0][1]["name"] == "dag manual__1"


def test_same_run_id_in_two_dags_gives_two_runs() -> None:
    op, _hook = _create()
    a = op.execute(make_context(FakeTI(dag_id="a", run_id="same")))
    b = op.execute(make_context(FakeTI(dag_id="b", run_id="same")))
    assert a != b


def test_explicit_custom_run_id_and_its_length_limit() -> None:
    op, hook = _create(custom_run_id="my-run")
    op.execute(make_context())
    assert "my-run" in hook.runs
    with pytest.raises(ValueError, match="at most 36"):
        NeptuneCreateRunOperator(task_id="t", custom_run_id="x" * 37)


def test_stop_assigns_state_and_final_fields_then_stops() -> None:
    op = NeptuneStopRunOperator(
        task_id="stop", run_id="SAN-3", timeout=5, final_fields={"score": {"f1": 0.5}}
    )
    hook = FakeHook()
    op.make_hook = lambda: hook  # type: ignore[method-assign]
    ti = FakeTI()
    assert op.execute(make_context(ti)) == "SAN-3"
    assert hook.fields["SAN-3"] == {"score/f1": 0.5, STATE_FIELD: "finished"}
    names = [call[0] for call in hook.calls]
    assert names.index("assign") < names.index("stop_run")
    assert ("stop_run", ("SAN-3", 5)) in hook.calls
    assert ti.xcom[RUN_URL_XCOM_KEY].endswith("/e/SAN-3")


def test_stop_failed_state_sets_sys_failed_and_none_writes_nothing() -> None:
    op = NeptuneStopRunOperator(task_id="stop", run_id="SAN-3", state="failed")
    hook = FakeHook()
    op.make_hook = lambda: hook  # type: ignore[method-assign]
    op.execute(make_context())
    assert hook.fields["SAN-3"] == {STATE_FIELD: "failed", "sys/failed": True}
    quiet = NeptuneStopRunOperator(task_id="stop2", run_id="SAN-4", state=None)
    hook2 = FakeHook()
    quiet.make_hook = lambda: hook2  # type: ignore[method-assign]
    quiet.execute(make_context())
    assert [call[0] for call in hook2.calls] == ["stop_run"]


def test_stop_propagates_undelivered_data_error() -> None:
    op = NeptuneStopRunOperator(task_id="stop", run_id="SAN-3")
    hook = FakeHook()

    def stop_run(run_id: str, *, timeout: float = 60.0) -> None:
        raise RuntimeError("2 operations left unsent")

    hook.stop_run = stop_run  # type: ignore[method-assign]
    op.make_hook = lambda: hook  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="left unsent"):
        op.execute(make_context())
    assert hook.closed == 1


def test_template_fields_include_run_id() -> None:
    assert "run_id" in NeptuneStopRunOperator.template_fields
    assert {"name", "tags", "description"} <= set(NeptuneCreateRunOperator.template_fields)


def test_a_tags_string_is_one_tag_and_a_list_several() -> None:
    op, hook = _create(tags="team,a")
    op.execute(make_context(FakeTI()))
    op2, hook2 = _create(tags=["team,a", "b", " ", "b"])
    op2.execute(make_context(FakeTI()))
    assert [call[1]["tags"] for call in hook.calls if call[0] == "create_run"] == [["team,a"]]
    assert [call[1]["tags"] for call in hook2.calls if call[0] == "create_run"] == [["team,a", "b"]]
