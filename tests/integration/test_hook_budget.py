"""One request budget shared by several processes (file store on one host, Redis across hosts).

Four worker processes log through their own NeptuneHook against an emulator limited to 10 requests
per second, sharing a budget of 10 requests per second. Almost no request may be answered 429, and
every point must arrive.
"""

from __future__ import annotations

import multiprocessing
import os
import uuid
from pathlib import Path
from typing import Any

import neptune  # noqa: F401  (imported before forking, so workers start at once)
import pytest

from airflow_provider_neptune.hooks.neptune import NeptuneHook

pytestmark = pytest.mark.integration

WORKERS = 4
RATE = 10
CHUNKS = 1
POINTS = 10


def _worker(mode: str, storage: str, custom: str, env: dict[str, str], go: Any, out: Any) -> None:
    """One worker process: its own hook and budget handle, logging through the shared store."""
    os.environ.update(env)
    hook = NeptuneHook(mode=mode, rate_limit_per_second=RATE, rate_limit_storage=storage, retry_backoff=0.2)
    hook.register_transport()
    if not go.wait(120):
        raise SystemExit("no start signal")
    run_id = hook.create_run(custom_run_id=custom)
    sent = 0
    for chunk in range(CHUNKS):
        steps = list(range(chunk * POINTS, (chunk + 1) * POINTS))
        metrics = {"m/a": [float(s) for s in steps], "m/b": [-float(s) for s in steps]}
        sent += hook.log_metrics(run_id, metrics, steps=steps)["points_sent"]
    hook.stop_run(run_id, timeout=60)
    out.put({"run_id": run_id, "sent": sent, "counters": hook.counters})


def _run_workers(emulator: Any, tmp_path: Path, mode: str, storage: str) -> list[dict[str, Any]]:
    # Forked from this process (airflow and neptune already imported), so workers start at once.
    ctx = multiprocessing.get_context("fork")
    env = {**emulator.env(), "NEPTUNE_DATA_DIRECTORY": str(tmp_path / ".neptune")}
    go = ctx.Event()
    out = ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(mode, storage, f"budget-{uuid.uuid4().hex[:12]}-{i}", env, go, out))
        for i in range(WORKERS)
    ]
    for proc in procs:
        proc.start()
    try:
        emulator.reset_stats()
        go.set()
        results = [out.get(timeout=120) for _ in procs]
        for proc in procs:
            proc.join(30)
            assert proc.exitcode == 0
        return results
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join(10)


def _check(emulator: Any, results: list[dict[str, Any]], hook: Any) -> None:
    stats = emulator.stats()
    total = stats["requests_total"]
    throttled = stats["throttled_total"]
    assert total > 0
    assert throttled <= 0.02 * total, f"{throttled} of {total} requests answered 429"
    assert sum(r["counters"]["requests"] for r in results) > WORKERS * 10  # the budget really was busy
    emulator.set_faults(rate_limit=None)
    expected = [float(s) for s in range(CHUNKS * POINTS)]
    for result in results:
        assert result["sent"] == 2 * CHUNKS * POINTS
        assert hook.fetch_series(result["run_id"], "m/a") == [(s, s) for s in expected]
        assert hook.fetch_series(result["run_id"], "m/b") == [(s, -s) for s in expected]


def test_file_budget_shared_by_four_processes(
    neptune_emulator_factory: Any, neptune_hook_factory: Any, tmp_path: Path
) -> None:
    emulator = neptune_emulator_factory(rate_limit=RATE)
    results = _run_workers(emulator, tmp_path, "async", str(tmp_path / "budget.sqlite"))
    _check(emulator, results, neptune_hook_factory(emulator, mode="sync", rate_limit_per_second=0))


def test_redis_budget_shared_by_four_processes(
    neptune_emulator_factory: Any, neptune_hook_factory: Any, redis_url: str, tmp_path: Path
) -> None:
    emulator = neptune_emulator_factory(rate_limit=RATE)
    results = _run_workers(emulator, tmp_path, "sync", redis_url)
    _check(emulator, results, neptune_hook_factory(emulator, mode="sync", rate_limit_per_second=0))
