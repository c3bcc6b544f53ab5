"""Throttling and fault injection: counted in /_emulator/stats, and the real client completes after them."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import neptune
import pytest
from neptune.common.exceptions import ClientHttpError

from airflow_provider_neptune.emulator import NeptuneEmulator
from airflow_provider_neptune.hooks.neptune import RUN_DEFAULTS as QUIET

pytestmark = pytest.mark.integration

MODES = ["sync", "async"]


def wait_for(condition: Callable[[], Any], timeout: float = 30.0) -> Any:
    """Poll until condition() is truthy; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(0.05)
    return result


@pytest.mark.parametrize("mode", MODES)
def test_throttled_requests_are_counted_and_the_client_completes(
    emulator: NeptuneEmulator, mode: str
) -> None:
    with neptune.init_run(mode=mode, **QUIET) as run:
        run.wait()
        # Limit first, then zero the counters: a request accepted between the two (the async
        # thread's ping) would be counted in a second's row without being in the limiter's window.
        emulator.set_faults(rate_limit=4)
        emulator.reset_stats()
        for step in range(12):
            run["metric"].append(float(step), step=step)
            run.wait()  # one request per point, so the budget is exceeded in both modes
        stats = emulator.stats()
        emulator.set_faults(rate_limit=None)
        assert stats["throttled_total"] > 0
        assert stats["requests_by_status"]["429"] == stats["throttled_total"]
        assert all(accepted <= 4 for _, accepted, _ in stats["requests_per_second"])
        assert sum(throttled for *_, throttled in stats["requests_per_second"]) == stats["throttled_total"]
        values = run["metric"].fetch_values()
        assert values["step"].tolist() == [float(s) for s in range(12)]


@pytest.mark.parametrize("mode", MODES)
def test_fault_burst_is_counted_and_every_point_arrives_once(emulator: NeptuneEmulator, mode: str) -> None:
    with neptune.init_run(mode=mode, **QUIET) as run:
        run.wait()
        before = emulator.stats()["faults_injected_total"]
        emulator.set_faults(fault_rate=1.0, seed=11)
        worker = threading.Thread(
            target=lambda: [run["m"].append(float(i), step=i) for i in range(5)] and run.wait()
        )
        worker.start()
        wait_for(lambda: emulator.stats()["faults_injected_total"] >= before + 2)
        emulator.set_faults(fault_rate=0.0)
        worker.join(timeout=60)
        assert not worker.is_alive()
        run.wait()
        stats = emulator.stats()
        assert stats["faults_injected_total"] >= before + 2
        assert sum(stats["faults_by_kind"].values()) == stats["faults_injected_total"]
        values = run["m"].fetch_values()
        assert values["step"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
        assert values["value"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_fail_next_answers_the_given_status_and_changes_nothing(emulator: NeptuneEmulator) -> None:
    with neptune.init_run(mode="sync", **QUIET) as run:
        before = emulator.stats()["fail_next_total"]
        emulator.set_faults(fail_next={"route": "executeOperations", "status": 400, "count": 1})
        with pytest.raises(ClientHttpError):
            run["rejected"] = 1.0
        emulator.set_faults(fail_next={"route": "attributes/operations", "status": 503, "count": 2})
        run["retried"] = 2.0  # 503 is retried by the client itself
        run.sync()
        assert not run.exists("rejected")
        assert run["retried"].fetch() == 2.0
        assert emulator.stats()["fail_next_total"] == before + 3
        assert emulator.stats()["fail_next"] == []


def test_429_carries_a_retry_after_header(emulator: NeptuneEmulator) -> None:
    emulator.set_faults(rate_limit=1)
    statuses = []
    for _ in range(3):
        try:
            urllib.request.urlopen(f"{emulator.url}/api/backend/v1/clients/config", timeout=10)
        except urllib.error.HTTPError as exc:
            statuses.append((exc.code, exc.headers.get("Retry-After")))
    # The first request is within budget (and unauthenticated: 401), the next ones are throttled.
    assert statuses[0] == (401, None)
    assert statuses[1:] == [(429, "1"), (429, "1")]
    # The stats and swagger documents are never throttled.
    assert emulator.stats()["rate_limit"] == 1
    with urllib.request.urlopen(f"{emulator.url}/api/leaderboard/swagger.json", timeout=10) as response:
        assert response.status == 200
