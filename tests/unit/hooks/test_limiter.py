"""The shared request budget: rates, stores (memory, file across processes), failure handling."""

from __future__ import annotations

import itertools
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from airflow_provider_neptune.hooks.limiter import (
    START_BURST,
    WINDOW_MARGIN_MS,
    BudgetTimeout,
    RequestBudget,
    close_budgets,
    get_budget,
    rates_for,
    storage_kind,
)


def test_rates_space_permits_and_cap_each_second() -> None:
    window = 1000 + WINDOW_MARGIN_MS
    spacing, cap = rates_for(20)  # a group holds one task's start-up: 13 permits per 13/20 window
    assert (spacing.limit, spacing.interval) == (START_BURST, START_BURST * window // 20)
    assert (cap.limit, cap.interval) == (20, window)
    spacing, cap = rates_for(10)  # a budget below the start-up burst keeps the fine spacing
    assert (spacing.limit, spacing.interval) == (2, window // 5)
    spacing, cap = rates_for(400)
    assert spacing.limit == 100
    assert spacing.interval == window // 4
    assert cap.limit == 400
    spacing, cap = rates_for(2.7)
    assert cap.limit == 2  # rounded down: never above the budget in any second
    assert spacing.interval == -(-window // 2.7)
    (only,) = rates_for(1.5)  # a spacing under a second would allow two requests in one second
    assert (only.limit, only.interval) == (1, window)
    (only,) = rates_for(0.5)
    assert (only.limit, only.interval) == (1, 2000 + WINDOW_MARGIN_MS)
    with pytest.raises(ValueError, match="> 0"):
        rates_for(0)


@pytest.mark.parametrize("rate", [20, 7.5, 400, 0.5])
def test_no_one_second_window_holds_more_than_the_budget(rate: float) -> None:
    """Simulate the rates granting as early as they allow; count any 1 s window (exact arithmetic)."""
    rates = rates_for(rate)
    grants: list[int] = []
    now = 0
    while now < 10_000:
        if all(sum(1 for g in grants if g > now - r.interval) < r.limit for r in rates):
            grants.append(now)
        else:
            now += 1
    busiest = max(sum(1 for g in grants if start <= g < start + 1000) for start in grants)
    assert busiest <= max(1, int(rate))
    # and the budget is not wasted: at least 85 % of it over the 10 s (rates from 2 up)
    if rate >= 2:
        assert len(grants) >= 0.85 * rate * 10


def test_storage_kind() -> None:
    assert storage_kind("memory") == "memory"
    assert storage_kind("redis://h:6379/0") == "redis"
    assert storage_kind("rediss://h/0") == "redis"
    assert storage_kind("/tmp/x.sqlite") == "file"


def test_memory_budget_spaces_permits_and_refuses_when_out_of_time() -> None:
    budget = RequestBudget("neptune-test-mem", 5, "memory")  # one permit every 220 ms
    try:
        budget.acquire(timeout=0)
        with pytest.raises(BudgetTimeout, match="5 req/s in memory"):
            budget.acquire(timeout=0)
        granted = []
        for _ in range(3):
            budget.acquire(timeout=5)
            granted.append(time.monotonic())
        # a limiter never grants early: every gap is at least the spacing
        assert all(b - a >= 0.219 for a, b in itertools.pairwise(granted))
    finally:
        budget.close()


def test_zero_rate_means_no_budget() -> None:
    assert get_budget("k", 0, "memory") is None


def test_budgets_are_shared_per_key_rate_and_store() -> None:
    try:
        a = get_budget("neptune-shared", 3, "memory")
        assert a is get_budget("neptune-shared", 3, "memory")
        assert a is not get_budget("neptune-other", 3, "memory")
        assert a is not get_budget("neptune-shared", 4, "memory")
    finally:
        close_budgets()


CHILD = textwrap.dedent(
    """
    import sys
    from airflow_provider_neptune.hooks.limiter import BudgetTimeout, RequestBudget
    budget = RequestBudget(sys.argv[1], 0.01, sys.argv[2])
    try:
        # A few seconds, not 0: the store's file lock may be busy for a moment (the parent's bucket
        # upkeep); the shared bucket's next permit is 100 s away, so "refused" still means shared.
        budget.acquire(timeout=3)
        print("granted")
    except BudgetTimeout:
        print("refused")
    budget.close()
    """
)


def _child(key: str, store: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, key, str(store)], capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout.strip()


def test_file_budget_is_shared_across_processes(tmp_path: Path) -> None:
    store = tmp_path / "sub" / "budget.sqlite"
    # One request per 100 s: the parent takes the only permit, so another process must be refused.
    parent = RequestBudget("neptune-file-shared", 0.01, str(store))
    try:
        parent.acquire(timeout=3)
        assert store.exists()
        assert _child("neptune-file-shared", store) == "refused"
        assert _child("neptune-file-other-key", store) == "granted"
        ok, message = parent.check()
        assert ok
        assert "file" in message
    finally:
        parent.close()


def test_unreachable_redis_fails_open_and_reports(caplog: pytest.LogCaptureFixture) -> None:
    budget = RequestBudget("neptune-redis-down", 5, "redis://:hunter2@127.0.0.1:1/0")
    try:
        budget.acquire(timeout=1)  # no exception: the request may go, the server still limits
        budget.acquire(timeout=1)
        assert budget.store_errors == 2
        warnings = [r for r in caplog.records if "budget store failed" in r.getMessage()]
        assert len(warnings) == 1  # logged at most once a minute
        ok, message = budget.check()
        assert not ok
        assert "unreachable" in message
        assert "hunter2" not in budget.describe()
    finally:
        budget.close()
