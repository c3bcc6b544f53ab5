"""`make demo-celery`: docker-compose.yaml's CeleryExecutor stack as processes, the example DAGs on it.

Run as ``python -m tests.e2e.demo_celery``. Starts every service of docker-compose.yaml with
tests.e2e.compose_stack (PostgreSQL, Redis, the emulator, api-server, scheduler, dag-processor,
triggerer, two Celery workers), sets the emulator's request limit to the connection's budget,
runs the training pipeline over both workers and the environment check,
reads every run back with the plain client and prints a report (requests, 429s and points per
worker). Stops every process it started; exits 0 only when every DAG run succeeded and the points
read back equal the points sent.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.e2e.compose_stack import ComposeStack
from tests.e2e.scenario import CREATE_TASK, ENVIRONMENT_DAG, LOG_TASKS, RETENTION_DAG, TRAINING_DAG, read_run
from tests.e2e.stack import REPO, StackError


def build_parser() -> argparse.ArgumentParser:
    """Command-line options (all optional)."""
    parser = argparse.ArgumentParser(prog="python -m tests.e2e.demo_celery", description=__doc__)
    parser.add_argument(
        "--home", type=Path, default=REPO / ".demo-celery", help="throwaway folder, emptied first"
    )
    parser.add_argument("--experiments", type=int, default=8, help="hyper-parameter sets (mapped groups)")
    parser.add_argument("--epochs", type=int, default=8, help="training epochs per set")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds each DAG run may take")
    parser.add_argument("--keep-running", action="store_true", help="keep the stack up until Ctrl-C")
    return parser


def xcom(stack: ComposeStack, dag_id: str, run_id: str, task_id: str, map_index: int, key: str) -> Any:
    """One XCom value through the REST API."""
    from urllib.parse import quote

    path = (
        f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/xcomEntries/"
        f"{key}?map_index={map_index}"
    )
    return stack.api("GET", path)["value"]


def per_worker(stack: ComposeStack, run_id: str, summaries: dict[tuple[str, int], Any]) -> list[str]:
    """Lines: per worker host, task instances run and the log tasks' requests, 429s and points."""
    rows: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for ti in stack.task_instances(TRAINING_DAG, run_id):
        row = rows[f"{ti['hostname']} (queue {ti['queue']})"]
        row["task instances"] += 1
        summary = summaries.get((ti["task_id"], ti["map_index"]))
        if isinstance(summary, dict):
            row["requests"] += int(summary.get("requests", 0) or 0)
            row["429s"] += int(summary.get("throttled", 0) or 0)
            row["points sent"] += int(summary.get("points_sent", 0) or 0)
    return [f"  {host:50s} " + ", ".join(f"{k} {v}" for k, v in row.items()) for host, row in rows.items()]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the Celery demo; return the exit status."""
    args = build_parser().parse_args(argv)
    home: Path = args.home.resolve()
    if home.exists():
        shutil.rmtree(home)
    started = time.monotonic()
    stack = ComposeStack(home=home, startup_timeout=300.0)
    try:
        with stack:
            print(stack.report(), flush=True)
            stack.wait_for_dags(TRAINING_DAG, RETENTION_DAG, ENVIRONMENT_DAG, timeout=240)
            emulator = stack.emulator()
            budget = float(stack.connection_extra()["rate_limit_per_second"])
            emulator.set_faults(rate_limit=budget)
            emulator.reset_stats()
            conf = {
                "experiments": args.experiments,
                "epochs": args.epochs,
                "output_dir": str(home / "output"),
            }
            print(f"Running the training pipeline ({args.experiments} experiments) ...", flush=True)
            run_id = stack.run_dag(TRAINING_DAG, conf, timeout=args.timeout)
            stats = emulator.stats()
            print("Running the environment check on both workers ...", flush=True)
            stack.run_dag(ENVIRONMENT_DAG, timeout=args.timeout)
            summaries = {
                (task, index): xcom(stack, TRAINING_DAG, run_id, task, index, "return_value")
                for task in LOG_TASKS
                for index in range(args.experiments)
            }
            sent = sum(int(s.get("points_sent", 0)) for s in summaries.values() if isinstance(s, dict))
            emulator.set_faults(rate_limit=None)
            os.environ["NEPTUNE_ALLOW_SELF_SIGNED_CERTIFICATE"] = "1"
            read = 0
            for index in range(args.experiments):
                sys_id = str(xcom(stack, TRAINING_DAG, run_id, CREATE_TASK, index, "return_value"))
                snap = read_run(emulator.api_token, emulator.project, sys_id, home / "downloads")
                read += snap.points
            budgeted = stats["accepted_total"] + stats["throttled_total"]
            throttled = stats["throttled_total"]
            seconds = time.monotonic() - started
            lines = [
                "",
                f"Celery demo finished in {seconds:.0f} s; training run {run_id} succeeded.",
                f"Emulator limit = connection budget = {budget:g} req/s; {budgeted} budgeted requests, "
                f"{throttled} answered 429 ({throttled / max(1, budgeted):.2%}).",
                f"Points: {sent} sent by the log tasks, {read} read back "
                f"({'ok' if sent == read else 'FAILED'}).",
                "Per worker (the log tasks' own counts):",
                *per_worker(stack, run_id, summaries),
                f"Logs: {stack.log_dir} (services), {stack.home / 'volumes' / 'airflow-logs'} (tasks)",
            ]
            print("\n".join(lines), flush=True)
            if args.keep_running:
                print(f"\nUI and REST API on {stack.api_url}; Ctrl-C stops every service.", flush=True)
                try:
                    while True:
                        stack.check_alive()
                        time.sleep(2)
                except KeyboardInterrupt:
                    pass
            if sent != read:
                return 1
    except StackError as exc:
        print(f"\nCelery demo failed: {exc}\nLogs are under {home}", file=sys.stderr)
        return 1
    print("All processes stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
