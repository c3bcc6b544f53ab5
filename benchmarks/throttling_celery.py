"""Benchmark 2b: the throttling figure on real Airflow, LocalExecutor beside the Celery stack.

The training pipeline (mapped experiments: create, train, log, gated uploads, log validation,
deferrable sensor, stop) runs once on each stack with the emulator's limit equal to the
connection's budget (docker-compose.yaml's, 20 req/s): on LocalExecutor (one host, file-backed
budget; tests.e2e.scenario) and on docker-compose.yaml's services run as processes
(tests.e2e.compose_stack: CeleryExecutor, PostgreSQL, Redis budget, two worker hosts on the
queues default and training). The emulator's counters give requests, 429s and the budget used
while the DAG ran; the log tasks' own summaries give requests, 429s and points per worker; the
points are read back with the plain client.

Opt-in (two Airflow stacks take minutes): ``python -m benchmarks --only throttling_celery``.
"""

from __future__ import annotations

import collections
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import harness

NAME = "throttling_celery"
LIMIT = 20.0
MAX_429_SHARE = 0.01
LOG_TASKS = ("experiment.log_metrics", "experiment.log_val_metrics")
CREATE_TASK = "experiment.create_run"
TRAINING_DAG = "neptune_training_pipeline"


def _xcom(stack: Any, run_id: str, task_id: str, map_index: int) -> Any:
    from urllib.parse import quote

    path = (
        f"/api/v2/dags/{TRAINING_DAG}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/"
        f"xcomEntries/return_value?map_index={map_index}"
    )
    return stack.api("GET", path)["value"]


def _measure(
    stack: Any, emulator: Any, token: str, project: str, conf: dict[str, Any], work: Path
) -> dict[str, Any]:
    """Run the pipeline once on ``stack``; the emulator's figures, per-worker figures, points read back."""
    from tests.e2e.scenario import read_run

    emulator.set_faults(rate_limit=LIMIT)
    emulator.reset_stats()
    started = time.time()
    run_id = stack.run_dag(TRAINING_DAG, conf, timeout=1800)
    ended = time.time()
    stats = emulator.stats()
    experiments = int(conf["experiments"])
    workers: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    sent = 0
    for ti in stack.task_instances(TRAINING_DAG, run_id):
        host = f"{ti['hostname']} ({ti['queue']})"
        workers[host]["task instances"] += 1
        if ti["task_id"] in LOG_TASKS:
            summary = _xcom(stack, run_id, ti["task_id"], ti["map_index"])
            workers[host]["log requests"] += int(summary.get("requests", 0))
            workers[host]["log 429s"] += int(summary.get("throttled", 0))
            workers[host]["points"] += int(summary.get("points_sent", 0))
            sent += int(summary.get("points_sent", 0))
    emulator.set_faults(rate_limit=None)
    read = 0
    for index in range(experiments):
        sys_id = str(_xcom(stack, run_id, CREATE_TASK, index))
        read += read_run(token, project, sys_id, work / "downloads").points
    rows = [r for r in stats["requests_per_second"] if int(started) < int(r[0]) < int(ended)]
    accepted = sum(int(r[1]) for r in rows)
    budgeted = stats["accepted_total"] + stats["throttled_total"]
    return {
        "time": ended - started,
        "requests": stats["requests_total"],
        "budgeted": budgeted,
        "throttled": stats["throttled_total"],
        "share_429": stats["throttled_total"] / budgeted if budgeted else 0.0,
        "budget_used": accepted / (LIMIT * len(rows)) if rows else 0.0,
        "peak": max((int(r[1]) + int(r[2]) for r in rows), default=0),
        "workers": workers,
        "sent": sent,
        "read": read,
    }


def _local(conf: dict[str, Any], work: Path) -> dict[str, Any]:
    from tests.e2e.scenario import ScenarioSettings, running_scenario

    settings = ScenarioSettings(project="airflow/bench", emulator_rate_limit=LIMIT, budget_per_second=LIMIT)
    with running_scenario(work / "local", settings) as scenario:
        emu = scenario.emulator
        previous = os.environ.get("OAUTHLIB_INSECURE_TRANSPORT")
        os.environ["OAUTHLIB_INSECURE_TRANSPORT"] = "1"
        try:
            return _measure(scenario.stack, emu, emu.api_token, settings.project, conf, work / "local")
        finally:
            if previous is None:
                os.environ.pop("OAUTHLIB_INSECURE_TRANSPORT", None)


def _celery(conf: dict[str, Any], work: Path) -> dict[str, Any]:
    from tests.e2e.compose_stack import ComposeStack

    with ComposeStack(home=work / "celery", startup_timeout=300.0) as stack:
        stack.wait_for_dags(TRAINING_DAG, timeout=240)
        budget = float(stack.connection_extra()["rate_limit_per_second"])
        if budget != LIMIT:
            raise RuntimeError(
                f"docker-compose.yaml's budget is {budget} req/s; this benchmark compares {LIMIT}"
            )
        emulator = stack.emulator()
        os.environ["NEPTUNE_ALLOW_SELF_SIGNED_CERTIFICATE"] = "1"
        return _measure(stack, emulator, emulator.api_token, emulator.project, conf, work / "celery")


def run(opts: harness.Options) -> harness.Section:
    """The pipeline once per executor; one table side by side, one table per worker."""
    experiments = int(opts.pick(4, 8))
    epochs = int(opts.pick(50, 500))
    section = harness.Section(
        NAME,
        harness.TITLES[NAME],
        opts,
        scale=f"training pipeline, {experiments} experiments x {epochs} epochs, emulator limit = budget = "
        f"{LIMIT:.0f} req/s, 1 run per executor",
    )
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-celery-") as tmp:
        work = Path(tmp)
        for label, runner in (
            ("LocalExecutor, SQLite, file-backed budget (one host)", _local),
            ("CeleryExecutor, PostgreSQL, Redis budget (2 worker hosts)", _celery),
        ):
            conf = {
                "experiments": experiments,
                "epochs": epochs,
                "output_dir": str(work / "output" / runner.__name__),
            }
            results[label] = runner(conf, work)
            print(f"   {label}: {results[label]}", flush=True)
    section.table(
        [
            "Stack",
            "DAG run time",
            "Requests (server)",
            "Budgeted requests",
            "429s (share)",
            "Budget used while the DAG ran",
            "Busiest second (arrivals)",
            "Points sent / read back",
        ],
        [
            [
                label,
                f"{r['time']:.0f} s",
                f"{r['requests']:,}",
                f"{r['budgeted']:,}",
                f"{r['throttled']} ({r['share_429'] * 100:.2f}%)",
                f"{r['budget_used'] * 100:.0f}%",
                f"{r['peak']} req/s",
                f"{r['sent']:,} / {r['read']:,}",
            ]
            for label, r in results.items()
        ],
    )
    section.table(
        ["Stack", "Worker (queue)", "Task instances", "Log tasks' requests", "Log tasks' 429s", "Points"],
        [
            [
                label,
                host,
                counts["task instances"],
                counts["log requests"],
                counts["log 429s"],
                f"{counts['points']:,}",
            ]
            for label, r in results.items()
            for host, counts in sorted(r["workers"].items())
        ],
    )
    for label, r in results.items():
        short = label.split(",")[0]
        section.verdict(
            f"{short}: 429s <= 1% of budgeted requests",
            f"{r['share_429'] * 100:.2f}% ({r['throttled']} of {r['budgeted']})",
            r["share_429"] <= MAX_429_SHARE,
        )
        section.verdict(
            f"{short}: every point read back exactly once",
            f"{r['read']:,} of {r['sent']:,}",
            r["read"] == r["sent"],
        )
    section.note(
        "Budget used: accepted requests over the limit across the whole seconds of the DAG run. The run "
        "is request-bound ("
        + "; ".join(
            f"{label.split(',')[0]}: {r['budgeted']:,} budgeted requests at {LIMIT:.0f}/s are "
            f"{r['budgeted'] / LIMIT:.0f} s of its {r['time']:.0f} s"
            for label, r in results.items()
        )
        + "); the rest of the seconds are scheduling, task start-up and training. LocalExecutor ignores "
        "queues: both of its "
        "rows are the one host (the queue is the tasks' label). Per-worker figures count the log tasks' "
        "own requests (the hook's summary); runs, uploads and the sensor's polls are in the server's total."
    )
    return section
