"""Values the emulator cannot store safely, sent by the real client through the provider's hook.

The emulator refuses them per operation (as a real server refuses non-increasing steps), so the
client neither hangs nor loses its other data, the hook's delivery check fails the task with a
clear message, and the run, its project's runs table and a retention dry run stay readable.
"""

from __future__ import annotations

import uuid
from typing import Any

import neptune
import pytest
from neptune.exceptions import MetadataInconsistency

from airflow_provider_neptune.exceptions import NeptuneDeliveryError
from airflow_provider_neptune.hooks.neptune import RUN_DEFAULTS as QUIET
from airflow_provider_neptune.operators import NeptuneLogMetricsOperator
from airflow_provider_neptune.operators.artifacts import NeptuneArtifactRetentionOperator
from tests.helpers.artifacts_support import close_pooled_runs, context, use_emulator  # noqa: F401 (fixture)

pytestmark = pytest.mark.integration
MODES = ["sync", "async"]


def _assert_run_and_project_readable(emulator: Any, run_id: str, tag: str) -> None:
    """The plain client reads the run's fields and series, and the project's runs table."""
    with neptune.init_run(
        with_id=run_id, mode="read-only", project=emulator.project, api_token=emulator.api_token, **QUIET
    ) as run:
        assert run["sys/id"].fetch() == run_id
        assert run["train/ok"].fetch_values()["value"].tolist() == [1.0, 2.0]
        assert run["train/ok"].fetch_last() == 2.0
    with neptune.init_project(
        project=emulator.project, api_token=emulator.api_token, mode="read-only"
    ) as project:
        table = project.fetch_runs_table(tag=[tag], columns=["sys/id", "train/ok"]).to_pandas()
    assert table["sys/id"].tolist() == [run_id]


@pytest.mark.parametrize("mode", MODES)
def test_summing_past_the_double_range_fails_the_task_clearly_and_the_run_stays_readable(
    neptune_hook_factory: Any, neptune_emulator: Any, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    tag = f"hard-{uuid.uuid4().hex[:10]}"
    hook = neptune_hook_factory(mode=mode)
    run_id = hook.create_run(custom_run_id=f"h-{uuid.uuid4().hex[:20]}", tags=[tag])
    with pytest.raises(NeptuneDeliveryError) as info:
        hook.log_metrics(
            run_id, {"train/ok": [1.0, 2.0], "train/huge": [1.7e308, 1.7e308]}, delivery_timeout=30
        )
    message = str(info.value)
    assert f"run {run_id}" in message
    assert "train/huge" in message
    assert "would overflow a double" in message
    assert hook.fetch_series(run_id, "train/huge") == [], "a refused operation stores nothing"
    assert hook.fetch_series(run_id, "train/ok") == [(0.0, 1.0), (1.0, 2.0)], "the other series arrived"
    _assert_run_and_project_readable(neptune_emulator, run_id, tag)
    use_emulator(monkeypatch, neptune_emulator, mode)
    # The Airflow task itself fails with that message (the operator logs through the same hook).
    task = NeptuneLogMetricsOperator(
        task_id="log", run_id=run_id, metrics={"eval/huge": [1.7e308, 1.7e308]}, resume=False
    )
    with pytest.raises(NeptuneDeliveryError, match=r"eval/huge.*would overflow a double"):
        task.execute(context())
    _assert_run_and_project_readable(neptune_emulator, run_id, tag)
    dry = NeptuneArtifactRetentionOperator(
        task_id="retention", keep_top_k=1, tags=[tag], dry_run=True, mode=mode
    ).execute(context())
    assert dry["dry_run"] is True
    assert dry["runs_scanned"] == 1
    assert dry["checkpoints_to_delete"] == 0


@pytest.mark.parametrize("mode", MODES)
def test_a_timestamp_beyond_year_9999_is_refused_by_the_hook_and_by_the_emulator(
    neptune_hook_factory: Any, neptune_emulator: Any, mode: str
) -> None:
    hook = neptune_hook_factory(mode=mode)
    run_id = hook.create_run(custom_run_id=f"h-{uuid.uuid4().hex[:20]}")
    # The hook refuses it before anything is sent, naming the series.
    with pytest.raises(ValueError, match=r"eval/t.*out of range"):
        hook.log_metrics(run_id, {"eval/t": [0.5]}, timestamps=[1e20], delivery_timeout=30)
    # A client that bypasses the hook meets the emulator's own per-operation refusal.
    with neptune.init_run(
        with_id=run_id,
        mode=mode,
        project=neptune_emulator.project,
        api_token=neptune_emulator.api_token,
        **QUIET,
    ) as run:
        run["eval/u"].append(0.25)
        if mode == "sync":  # sync mode raises the server's per-operation error at once
            with pytest.raises(MetadataInconsistency, match=r"eval/t.*out of range"):
                run["eval/t"].append(0.5, timestamp=1e20)
        else:  # async mode logs it and keeps the rest of the batch
            run["eval/t"].append(0.5, timestamp=1e20)
            run.wait()
    assert hook.fetch_series(run_id, "eval/t") == [], "a refused operation stores nothing"
    assert hook.fetch_series(run_id, "eval/u") == [(0.0, 0.25)]
    hook.log_metrics(run_id, {"eval/t": [0.5]})
    assert hook.fetch_series(run_id, "eval/t") == [(0.0, 0.5)]
