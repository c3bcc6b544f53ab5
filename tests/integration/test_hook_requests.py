"""Requests one Neptune task sends, by route, counted by the emulator (real client, sync and async).

Each task runs in a fresh process, as an Airflow worker runs it, so nothing is reused from an
earlier task; the run is prepared in this process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration
MODES = ["sync", "async"]
REPO = Path(__file__).resolve().parents[2]
#: Served outside the server's request limit (the transport takes no permit for them).
UNBUDGETED_ROUTES = ("swagger", "oauthToken")


def _task(
    emulator: Any, mode: str, tmp_path: Path, spec: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, int]]:
    """Run one task in a fresh process; its summary and the requests it caused, by route."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEPTUNE_", "AIRFLOW_CONN_"))}
    env.update(
        AIRFLOW_CONN_NEPTUNE_DEFAULT=emulator.airflow_conn_json(mode=mode),
        NEPTUNE_DATA_DIRECTORY=str(tmp_path / ".neptune-task"),
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")])),
    )
    before = emulator.stats()["requests_by_route"]
    done = subprocess.run(
        [sys.executable, "-m", "tests.helpers.hook_task", json.dumps(spec)],
        cwd=str(tmp_path),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    after = emulator.stats()["requests_by_route"]
    routes = {route: int(n) - int(before.get(route, 0)) for route, n in after.items()}
    return json.loads(done.stdout.strip().splitlines()[-1]), {r: n for r, n in routes.items() if n}


def _budgeted(routes: dict[str, int]) -> int:
    return sum(n for route, n in routes.items() if route not in UNBUDGETED_ROUTES)


def _points(steps: range) -> list[list[float]]:
    return [[float(s), float(s) / 10] for s in steps]


@pytest.mark.parametrize("mode", MODES)
def test_a_task_reopening_a_run_by_sys_id_does_not_search_for_it_and_keeps_its_fields(
    neptune_hook_factory: Any, neptune_emulator: Any, tmp_path: Path, mode: str
) -> None:
    hook = neptune_hook_factory(mode=mode)
    run_id = hook.create_run(custom_run_id=f"req-{uuid.uuid4().hex[:10]}", name="named")
    entrypoint = hook.fetch_field(run_id, "source_code/entrypoint")

    summary, routes = _task(
        neptune_emulator,
        mode,
        tmp_path,
        {"task": "log", "run_id": run_id, "series": {"m": _points(range(5))}},
    )

    assert summary["points_sent"] == 5
    assert "searchLeaderboardEntries" not in routes, routes  # no runs-table search to learn the name
    assert "searchLeaderboardAttributes" not in routes, routes
    assert routes.get("getProject") == 1, routes  # the run's handle only, no project handle
    assert routes.get("getClientConfig") == 1, routes  # the hook (run URL) and the client share one
    assert hook.fetch_field(run_id, "sys/name") == "named"  # the client did not write "Untitled" over it
    assert hook.fetch_field(run_id, "source_code/entrypoint") == entrypoint  # nor its own entrypoint
    assert hook.fetch_series(run_id, "m") == [(float(s), float(s) / 10) for s in range(5)]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("first_step", "skipped", "reads", "most"),
    [
        # Opening (config, token exchange, project, run, its attributes, the client's ping), one
        # operations request and one read-back page: the last step comes from the opening's listing.
        (50, 0, 1, 8),
        # A retry sending every point again: the overlap is read before sending, the new points after.
        (0, 50, 2, 9),
    ],
    ids=["resumed", "retried"],
)
def test_a_log_task_on_a_series_with_points_sends_few_budgeted_requests(
    neptune_hook_factory: Any,
    neptune_emulator: Any,
    tmp_path: Path,
    mode: str,
    first_step: int,
    skipped: int,
    reads: int,
    most: int,
) -> None:
    hook = neptune_hook_factory(mode=mode)
    run_id = hook.create_run(custom_run_id=f"req-{uuid.uuid4().hex[:10]}")
    hook.log_metrics(run_id, {"train/loss": [float(s) / 10 for s in range(50)]})

    spec = {"task": "log", "run_id": run_id, "series": {"train/loss": _points(range(first_step, 80))}}
    summary, routes = _task(neptune_emulator, mode, tmp_path, spec)

    assert (summary["points_sent"], summary["points_skipped"]) == (30, skipped)
    assert _budgeted(routes) <= most, routes
    assert routes.get("getExperimentAttributes") == 1, routes
    assert routes.get("getFloatSeriesValues") == reads, routes
    assert hook.fetch_series(run_id, "train/loss") == [(float(s), float(s) / 10) for s in range(80)]


@pytest.mark.parametrize("mode", MODES)
def test_a_stop_task_opens_the_run_without_a_search(
    neptune_hook_factory: Any, neptune_emulator: Any, tmp_path: Path, mode: str
) -> None:
    hook = neptune_hook_factory(mode=mode)
    run_id = hook.create_run(custom_run_id=f"req-{uuid.uuid4().hex[:10]}", name="kept")
    hook.close()

    _, routes = _task(neptune_emulator, mode, tmp_path, {"task": "stop", "run_id": run_id})

    assert "searchLeaderboardEntries" not in routes, routes
    assert _budgeted(routes) <= 7, routes
    assert hook.fetch_field(run_id, "sys/name") == "kept"


@pytest.mark.parametrize("mode", MODES)
def test_the_direct_series_read_agrees_with_the_clients_own(neptune_hook_factory: Any, mode: str) -> None:
    from airflow_provider_neptune.hooks.series import client_page, raw_page

    hook = neptune_hook_factory(mode=mode)
    run_id = hook.create_run(custom_run_id=f"req-{uuid.uuid4().hex[:10]}")
    hook.log_metrics(run_id, {"a/b": [0.5, 1.5, 2.5, 3.5]}, steps=[1, 2, 4, 8])
    with hook.get_run(run_id) as run:
        assert raw_page(run, "a/b", 1, 2) == client_page(run, "a/b", 1, 2) == (4, [(2.0, 1.5), (4.0, 2.5)])
        assert raw_page(run, "no/such", 0, 10) == client_page(run, "no/such", 0, 10) == (0, [])


@pytest.mark.parametrize("mode", MODES)
def test_reading_a_field_through_a_handle_it_just_opened_lists_the_fields_once(
    neptune_hook_factory: Any, neptune_emulator: Any, mode: str
) -> None:
    from airflow_provider_neptune.hooks.run_pool import POOL

    hook = neptune_hook_factory(mode=mode)
    run_id = hook.create_run(custom_run_id=f"req-{uuid.uuid4().hex[:10]}", name="field")
    POOL.close_all(seconds=10)
    before = neptune_emulator.stats()["requests_by_route"].get("getExperimentAttributes", 0)
    assert hook.fetch_field(run_id, "sys/name") == "field"
    after = neptune_emulator.stats()["requests_by_route"].get("getExperimentAttributes", 0)
    assert after - before == 1  # the client's listing on opening; no second one to refresh it
    with hook.get_run(run_id) as run:
        run["late"] = 1.5
        hook.wait_for_delivery(run, timeout=30)
    assert hook.fetch_field(run_id, "late") == 1.5  # a pooled handle is still refreshed first
