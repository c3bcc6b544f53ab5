"""What a retention clean-up costs in requests, by route, counted by the emulator.

The clean-up must not open runs: a run whose checkpoints change costs at most 2 budgeted requests
(its deletions), a run that keeps everything costs none, and the scan costs one search page per
page of runs whatever the number of checkpoints. A dedicated emulator holds only this test's runs,
so its per-route counters see nothing else.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from airflow_provider_neptune.hooks.neptune import NeptuneHook
from airflow_provider_neptune.operators.artifacts import NeptuneArtifactRetentionOperator
from tests.helpers.artifacts_support import close_pooled_runs, context, use_emulator  # noqa: F401 (fixture)
from tests.helpers.retention_runs import make_runs, read_checkpoints

pytestmark = pytest.mark.integration

# Five runs lose checkpoints under keep top 1 + last; three keep everything (one or two checkpoints).
CHANGED = {f"c{i}": [0.2, 0.9, 0.1, 0.4] for i in range(5)}
KEPT = {"k0": [0.5], "k1": [0.7, 0.1], "k2": [0.9, 0.3]}
PAGE = 3  # runs per search page, so the scan takes several pages
# Served outside the API limit (no permit): API descriptions and OAuth token refreshes.
UNBUDGETED = {"swagger", "oauthToken"}
# Once per clean-up: client config, token exchange, the project, the sort column's type.
FIXED = {"getClientConfig", "exchangeApiToken", "getProject", "searchLeaderboardAttributes"}


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_apply_spends_one_request_per_changed_run_and_none_on_the_others(
    neptune_emulator_factory: Any, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    emulator = neptune_emulator_factory(state_timeout=2)
    use_emulator(monkeypatch, emulator, mode)
    monkeypatch.setenv("NEPTUNE_FETCH_TABLE_STEP_SIZE", str(PAGE))
    ids = make_runs(emulator, "cost", {**CHANGED, **KEPT})
    runs = len(ids)

    emulator.reset_stats()
    hook = NeptuneHook()
    before = hook.counters["requests"]
    result = NeptuneArtifactRetentionOperator(
        task_id="retention", tags=["cost"], keep_top_k=1, max_delete_fraction=1.0
    ).execute(context())
    stats = emulator.stats()
    routes: dict[str, int] = stats["requests_by_route"]

    assert result["checkpoints_deleted"] == 2 * len(CHANGED)  # steps 0 and 2 of each changed run
    # One executeOperations per changed run, none for the runs that keep everything; no run is opened
    # (today's clean-up spent about 15 per changed run: getExperiment, attributes, ping, ...).
    assert routes.get("executeOperations", 0) == len(CHANGED)
    budgeted = {route: n for route, n in routes.items() if route not in UNBUDGETED}
    assert set(budgeted) <= FIXED | {"executeOperations", "searchLeaderboardEntries"}, budgeted
    assert all(budgeted.get(route, 0) <= 1 for route in FIXED), budgeted
    # The scan: a count request, then one page per PAGE runs (the last page may come back empty).
    pages = budgeted.get("searchLeaderboardEntries", 0)
    assert 1 + math.ceil(runs / PAGE) <= pages <= 2 + math.ceil(runs / PAGE)
    # The operator's own count agrees with what the server saw (the hook's transport sent them all).
    assert result["requests"]["requests"] == hook.counters["requests"] - before == stats["requests_total"]

    for name in CHANGED:
        assert read_checkpoints(emulator, ids[name]) == {"step_1": True, "step_3": True}
    for name, scores in KEPT.items():
        assert read_checkpoints(emulator, ids[name]) == {f"step_{i}": True for i in range(len(scores))}
    emulator.reset_stats()
    again = NeptuneArtifactRetentionOperator(
        task_id="again", tags=["cost"], keep_top_k=1, max_delete_fraction=1.0
    ).execute(context())
    assert again["checkpoints_deleted"] == 0
    assert "executeOperations" not in emulator.stats()["requests_by_route"]
