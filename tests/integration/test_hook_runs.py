"""NeptuneHook runs and metrics with the real neptune client against the emulator, sync and async."""

from __future__ import annotations

import uuid
from typing import Any

import neptune
import pytest

from airflow_provider_neptune.hooks.neptune import NeptuneHook
from airflow_provider_neptune.hooks.run_pool import POOL
from airflow_provider_neptune.hooks.series import last_step_by_points

pytestmark = pytest.mark.integration
MODES = ["sync", "async"]


def _cid() -> str:
    return "t-" + uuid.uuid4().hex[:20]


@pytest.mark.parametrize("mode", MODES)
def test_create_run_is_idempotent_by_custom_id(
    neptune_hook_factory: Any, neptune_emulator: Any, mode: str
) -> None:
    hook = neptune_hook_factory(mode=mode)
    custom = _cid()
    first = hook.create_run(custom_run_id=custom, name="train", tags=["a", "b"], description="d")
    POOL.close_all(seconds=10)  # as if the task were retried in a new process
    second = NeptuneHook().create_run(custom_run_id=custom, name="train")
    assert first == second
    # The plain client agrees: one run with that custom id, holding the fields the hook wrote.
    with neptune.init_run(
        with_id=first,
        project=neptune_emulator.project,
        api_token=neptune_emulator.api_token,
        mode="read-only",
    ) as run:
        assert run["sys/custom_run_id"].fetch() == custom
        assert run["sys/name"].fetch() == "train"
        assert run["sys/tags"].fetch() == {"a", "b"}
    assert hook.fetch_field(first, "sys/description") == "d"


def test_too_long_custom_run_id_is_refused_before_any_request(neptune_hook_factory: Any) -> None:
    hook = neptune_hook_factory(mode="sync")
    before = hook.counters
    with pytest.raises(ValueError, match="at most 36"):
        hook.create_run(custom_run_id="x" * 37)
    with pytest.raises(ValueError, match="at most 36"), hook.get_run(custom_run_id="y" * 40):
        pass
    assert hook.counters["requests"] == before["requests"]


@pytest.mark.parametrize("mode", MODES)
def test_same_run_opened_twice_uses_one_handle_and_close_stops_it(
    neptune_hook_factory: Any, mode: str
) -> None:
    hook = neptune_hook_factory(mode=mode)
    custom = _cid()
    sys_id = hook.create_run(custom_run_id=custom)
    other_hook = NeptuneHook()  # another hook on the same connection in the same process
    with hook.get_run(sys_id) as a, other_hook.get_run(sys_id) as b, hook.get_run(custom_run_id=custom) as c:
        assert a is b
        assert a is c
        assert a.get_state() == "started"
    hook.close()
    assert a.get_state() == "stopped"
    assert POOL.get((*hook._scope(), mode, "id", sys_id)) is None
    with hook.get_run(sys_id) as reopened:  # reopened by sys/id after close
        assert reopened is not a
        assert reopened.get_state() == "started"


@pytest.mark.parametrize("mode", MODES)
def test_log_metrics_delivers_and_resumes_without_duplicates(neptune_hook_factory: Any, mode: str) -> None:
    hook = neptune_hook_factory(mode=mode)
    run_id = hook.create_run(custom_run_id=_cid())
    loss = [1.0 / (i + 1) for i in range(12)]
    acc = [i / 10 for i in range(5)]
    progress: list[tuple[int, int]] = []
    summary = hook.log_metrics(
        run_id,
        {"train/loss": loss[:8], "eval/acc": acc},
        steps={"train/loss": list(range(0, 16, 2))[:8], "eval/acc": [1, 2, 3, 4, 5]},
        progress=lambda done, total: progress.append((done, total)),
    )
    assert summary["points_sent"] == 13
    assert summary["points_skipped"] == 0
    assert summary["last_steps"] == {"train/loss": 14.0, "eval/acc": 5.0}
    assert summary["requests"] > 0
    assert progress[0] == (0, 13)
    assert progress[-1] == (13, 13)

    # A retried task sends the whole input again: only the new points go out.
    POOL.close_all(seconds=10)
    again = NeptuneHook().log_metrics(run_id, {"train/loss": loss}, steps=list(range(0, 24, 2)))
    assert again["points_skipped"] == 8
    assert again["points_sent"] == 4
    assert again["last_steps"] == {"train/loss": 22.0}

    series = hook.fetch_series(run_id, "train/loss")
    assert series == [(float(step), value) for step, value in zip(range(0, 24, 2), loss, strict=True)]
    assert hook.fetch_series(run_id, "eval/acc") == [
        (float(s), v) for s, v in zip([1, 2, 3, 4, 5], acc, strict=True)
    ]
    assert hook.last_steps(run_id, ["train/loss", "eval/acc", "missing/series"]) == {
        "train/loss": 22.0,
        "eval/acc": 5.0,
        "missing/series": None,
    }
    with hook.get_run(run_id, mode="read-only") as reader:  # the fallback for servers without lastStep
        assert last_step_by_points(reader, "train/loss") == 22.0
        assert last_step_by_points(reader, "missing/series") is None
    assert hook.fetch_field(run_id, "train/loss") == loss[-1]
    assert hook.counters["points"] >= 17


def test_log_metrics_default_steps_and_shared_timestamps(neptune_hook_factory: Any) -> None:
    hook = neptune_hook_factory(mode="sync")
    run_id = hook.create_run(custom_run_id=_cid())
    stamps = [1_700_000_000.0 + i for i in range(3)]
    summary = hook.log_metrics(run_id, {"a": [3, 2, 1], "b": [5, 6, 7]}, timestamps=stamps)
    assert summary["last_steps"] == {"a": 2.0, "b": 2.0}
    assert hook.fetch_series(run_id, "a") == [(0.0, 3.0), (1.0, 2.0), (2.0, 1.0)]


@pytest.mark.parametrize(
    ("metrics", "steps", "message"),
    [
        ({"s": [1.0, float("nan")]}, None, "index 1 is not finite"),
        ({"s": [1.0, "x"]}, None, "index 1 is not a number"),
        ({"s": [1.0, 2.0]}, [0, 0], "step at index 1"),
        (
            {"s": [1.0, 2.0, 3.0, 4.0]},
            [0, 1, 5, 5],
            r"step at index 3 \(5\) is not greater than the previous step \(5\)",
        ),
        ({"s": [1.0, 2.0]}, [0], "2 values but 1 steps"),
    ],
)
def test_bad_input_is_rejected_before_sending(
    neptune_hook_factory: Any, metrics: dict[str, Any], steps: Any, message: str
) -> None:
    hook = neptune_hook_factory(mode="sync")
    run_id = hook.create_run(custom_run_id=_cid())
    before = hook.counters["requests"]
    with pytest.raises(ValueError, match=message):
        hook.log_metrics(run_id, metrics, steps=steps)
    assert hook.counters["requests"] == before


def test_fetch_field_reads_fields_and_none_when_missing(neptune_hook_factory: Any) -> None:
    hook = neptune_hook_factory(mode="sync")
    run_id = hook.create_run(custom_run_id=_cid(), name="named")
    assert hook.fetch_field(run_id, "sys/name") == "named"
    assert hook.fetch_field(run_id, "no/such/field") is None
    with hook.get_run(run_id) as run:
        run["params/lr"] = 0.01
    assert hook.fetch_field(run_id, "params/lr") == 0.01  # written after the read handle opened
    assert hook.fetch_series(run_id, "no/such/series") == []


@pytest.mark.parametrize("mode", MODES)
def test_stop_run_stops_and_leaves_nothing_unsent(neptune_hook_factory: Any, mode: str) -> None:
    hook = neptune_hook_factory(mode=mode)
    run_id = hook.create_run(custom_run_id=_cid())
    with hook.get_run(run_id) as run:
        run["final/score"] = 0.9
    hook.stop_run(run_id, timeout=30)
    assert run.get_state() == "stopped"
    assert hook.fetch_field(run_id, "final/score") == 0.9
    hook.stop_run(run_id, timeout=5)  # not open any more: a no-op


def test_run_url_points_at_the_run_page(neptune_hook_factory: Any, neptune_emulator: Any) -> None:
    hook = neptune_hook_factory(mode="sync")
    run_id = hook.create_run(custom_run_id=_cid())
    url = hook.run_url(run_id)
    assert url.startswith(neptune_emulator.url)
    assert url.endswith(f"/{neptune_emulator.project}/e/{run_id}")
