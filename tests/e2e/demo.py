"""`make demo`: the example DAGs through a real Airflow against the emulator, then a short report.

Run as ``python -m tests.e2e.demo``. Creates a throwaway home under .demo/ (SQLite Airflow home,
emulator data, training output), starts the emulator and Airflow (scheduler, dag-processor,
triggerer, api-server; LocalExecutor), sets the neptune_default connection and the neptune_api pool,
runs the training pipeline, the retention clean-up and the environment check, reads back what the
emulator holds, prints the report, stops every process it started and exits 0 only if all succeeded.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tests.e2e.scenario import (
    RETENTION_DAG,
    RETENTION_TASK,
    RunSnapshot,
    Scenario,
    ScenarioSettings,
    running_scenario,
)
from tests.e2e.stack import REPO, StackError


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of the demo (all optional)."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.e2e.demo",
        description="Run the example Neptune DAGs through a real Airflow 3 stack against the Neptune "
        "emulator on this machine (loopback only), print what was tracked, and clean up.",
    )
    parser.add_argument(
        "--home",
        type=Path,
        default=REPO / ".demo",
        help="folder for the throwaway Airflow home, emulator data and training output; emptied first "
        "(default: .demo/ in the repository)",
    )
    parser.add_argument("--epochs", type=int, default=8, help="training epochs per hyper-parameter set")
    parser.add_argument("--pool-slots", type=int, default=2, help="slots of the neptune_api pool (default 2)")
    parser.add_argument("--parallelism", type=int, default=4, help="Airflow core.parallelism (default 4)")
    parser.add_argument(
        "--rate-limit", type=float, default=30.0, help="the emulator's requests/second limit (429 above it)"
    )
    parser.add_argument(
        "--budget", type=float, default=20.0, help="the connection's shared budget, requests/second"
    )
    parser.add_argument(
        "--fault-rate", type=float, default=0.0, help="share of requests the emulator fails (500/503/drop)"
    )
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds each DAG run may take")
    parser.add_argument(
        "--keep-running",
        action="store_true",
        help="after the report, keep Airflow and the emulator up until Ctrl-C, to browse the Airflow UI and "
        "the run pages, runs table and compare view the report lists",
    )
    return parser


def _python() -> str:
    """This interpreter, relative to the repository when it is the repository's venv."""
    executable = Path(sys.executable)
    return str(executable.relative_to(REPO)) if executable.is_relative_to(REPO) else str(executable)


def _ok(flag: bool) -> str:
    return "ok" if flag else "FAILED"


def report(
    scenario: Scenario, stats: dict[str, Any], snapshots: list[RunSnapshot], seconds: float
) -> tuple[str, bool]:
    """The demo's report, built from the emulator's stats and the runs read back; and whether it adds up.

    ``stats`` are taken when the DAG runs ended, before the read-back (which is not Airflow's traffic).
    """
    log_summaries = scenario.log_summaries()
    retention: dict[str, Any] = scenario.xcom(RETENTION_DAG, RETENTION_TASK)
    points_read = sum(snap.points for snap in snapshots)
    points_sent = sum(int(summary["points_sent"]) for summary in log_summaries)
    retries = sum(int(summary.get("retries", 0)) for summary in log_summaries)
    kept = sum(len(snap.checkpoints) for snap in snapshots)
    deleted = int(retention["checkpoints_deleted"])
    uploads = scenario.uploads()
    uploaded = sum(len(upload["uploaded"]) for upload in uploads)
    gated = sum(len(upload["skipped"]) for upload in uploads)
    consistent = points_read == points_sent and uploaded == kept + deleted
    stack, settings = scenario.stack, scenario.settings
    task_retries = sum(
        max(0, int(ti["try_number"]) - 1)
        for dag_id, run_id in scenario.dag_runs.items()
        for ti in stack.task_instances(dag_id, run_id)
    )
    lines = [
        f"Neptune demo finished in {seconds:.0f} s: every DAG run succeeded.",
        "",
        "DAG runs (real Airflow: scheduler, dag-processor, triggerer, api-server, LocalExecutor):",
    ]
    lines += [f"  {dag_id:28s} {run_id}  success" for dag_id, run_id in scenario.dag_runs.items()]
    lines += [
        "",
        f"Runs created:     {len(snapshots)} in project {scenario.settings.project}",
    ]
    for snap in snapshots:
        accuracy = snap.fields.get("training/final_val_accuracy")
        lines.append(
            f"  {snap.sys_id:12s} {snap.name:12s} {snap.points:4d} points, final val/accuracy {accuracy}, "
            f"{len(snap.checkpoints)} checkpoint(s) left: {', '.join(sorted(snap.checkpoints)) or '-'}"
        )
    lines += [
        f"Points logged:    {points_read} read back from the emulator "
        f"({points_sent} sent by the log tasks: {_ok(points_read == points_sent)})",
        f"Requests:         {stats['requests_total']} served by the emulator during the DAG runs (its limit "
        f"{settings.emulator_rate_limit} req/s; the connection's budget {settings.budget_per_second} req/s)",
        f"HTTP 429s:        {stats['throttled_total']}",
        f"Injected faults:  {stats.get('faults_injected_total', 0)}",
        f"Retries:          {retries} HTTP retries inside the log tasks; {task_retries} Airflow task retries",
        f"Checkpoints:      {uploaded} uploaded, {gated} held back by the gate (best "
        f"{settings.checkpoint_top_k} so far); clean-up kept {kept} and deleted {deleted} "
        f"({retention.get('bytes_freed', 0)} bytes freed; {uploaded} = {kept} + {deleted}: "
        f"{_ok(uploaded == kept + deleted)})",
        "",
        "Where to look:",
        f"  Airflow home:        {stack.home} (task logs in logs/, component logs in component-logs/)",
        f"  Emulator data:       {scenario.home / 'emulator'}",
        f"  Training output:     {scenario.training_output}",
        "",
        *page_lines(scenario.emulator.url, settings.project, snapshots),
        "  (served while the demo runs: pass --keep-running to browse them; afterwards "
        f"`{_python()} -m airflow_provider_neptune.emulator --port 5050 --data-dir "
        f"{scenario.home / 'emulator'}` serves the same pages at http://127.0.0.1:5050)",
    ]
    return "\n".join(lines), consistent


def page_urls(base_url: str, project: str, snapshots: Sequence[RunSnapshot]) -> dict[str, str]:
    """The emulator's web pages for the demo's runs: runs table, each run page, compare view."""
    base = f"{base_url.rstrip('/')}/{project}"
    urls = {"Runs table": f"{base}?cols=val/accuracy,val/loss&sort=val/accuracy"}
    for snap in snapshots:
        urls[f"Run {snap.sys_id} ({snap.name})"] = f"{base}/e/{snap.sys_id}"
    if len(snapshots) > 1:
        runs = "&".join(f"run={quote(snap.sys_id)}" for snap in snapshots)
        urls["Compare val/accuracy"] = f"{base}/compare?{runs}&metric=val/accuracy"
    return urls


def page_lines(base_url: str, project: str, snapshots: Sequence[RunSnapshot]) -> list[str]:
    """Report lines listing the web pages, one per line."""
    lines = ["Run pages (the emulator's web view):"]
    lines += [f"  {label + ':':36s} {url}" for label, url in page_urls(base_url, project, snapshots).items()]
    return lines


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def stop_on_signals() -> None:
    """Let SIGINT and SIGTERM end --keep-running with the normal clean-up.

    A shell starts background jobs with SIGINT ignored, and SIGTERM would otherwise end Python without
    stopping Airflow and the emulator; both now raise KeyboardInterrupt, which stops every process.
    """
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; return the process exit status."""
    args = build_parser().parse_args(argv)
    settings = ScenarioSettings(
        project="airflow/demo",
        pool_slots=args.pool_slots,
        parallelism=args.parallelism,
        epochs=args.epochs,
        emulator_rate_limit=args.rate_limit,
        budget_per_second=args.budget,
        fault_rate=args.fault_rate,
        dag_timeout=args.timeout,
    )
    home: Path = args.home.resolve()
    if home.exists():
        shutil.rmtree(home)
    started = time.monotonic()
    print(f"Demo home: {home}", flush=True)
    try:
        with running_scenario(home, settings) as scenario:
            print(
                f"Emulator at {scenario.emulator.url}; Airflow API and UI at {scenario.stack.api_url}",
                flush=True,
            )
            for label, step in (
                ("training pipeline", scenario.run_training),
                ("retention clean-up", scenario.run_retention),
                ("environment check", scenario.run_environment_check),
            ):
                print(f"Running the {label} ...", flush=True)
                step()
            stats = scenario.emulator.stats()
            seconds = time.monotonic() - started
            snapshots = [scenario.read_run(run) for run in scenario.created_runs()]
            text, consistent = report(scenario, stats, snapshots, seconds)
            print("\n" + text, flush=True)
            if args.keep_running:
                print(
                    f"\nAirflow ({scenario.stack.api_url}) and the emulator ({scenario.emulator.url}) keep "
                    "running; open the run pages above. Ctrl-C (or SIGTERM) stops them.",
                    flush=True,
                )
                stop_on_signals()
                try:
                    while True:
                        scenario.stack.check_alive()
                        time.sleep(2)
                except KeyboardInterrupt:
                    pass
            if not consistent:
                print("The report does not add up (see the FAILED marks above).", file=sys.stderr)
                return 1
    except StackError as exc:
        print(f"\nDemo failed: {exc}", file=sys.stderr)
        print(f"Logs are under {home}", file=sys.stderr)
        return 1
    print("All processes stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
