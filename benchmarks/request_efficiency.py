"""Benchmark 1: HTTP requests and wall time to log 10 series x 10,000 steps.

Side by side, each in a fresh process against one emulator: NeptuneLogMetricsOperator's code path
(hook.create_run, then the operator's execute(): validation, resume check, batched extend, verified
delivery, stop), with the default shared budget and with the budget off; and the plain client with
no provider code, appending point by point (sync and async) and with `extend` (async). The sync
point-by-point baseline (one request per point) is measured at two smaller sizes and extrapolated
along its fitted line. Requests are the emulator's count; every run is read back from the emulator
and checked point by point.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from benchmarks import harness

NAME = "request_efficiency"
SERIES = 10
MIN_REQUEST_RATIO = 50.0
MAX_TIME_RATIO = 1.2
#: The operator's time less its verification reads (resume read before sending, read-back after),
#: which plain `extend` does not do, against plain `extend`: the cost of the provider's machinery.
MAX_MACHINERY_RATIO = 1.05
PROVIDER = "provider: NeptuneLogMetricsOperator (async, default budget)"
PROVIDER_FREE = "provider: NeptuneLogMetricsOperator (async, budget off)"
EXTEND = "plain client: extend (async)"
APPEND_ASYNC = "plain client: append point by point (async)"
APPEND_SYNC = "plain client: append point by point (sync)"
#: Requests the client itself leaves out of the server's limit (the transport takes no permit for them).
UNBUDGETED_ROUTES = ("swagger", "oauthToken")
MAX_RESUMED_LOG_BUDGETED = 8
#: The training pipeline's Neptune tasks for one run, in DAG order, each in a fresh process:
#: (label, params); the two extra log rows are what a retried task and a later epoch range cost.
PIPELINE_TASKS: list[tuple[str, dict[str, Any]]] = [
    ("create_run", {"task": "create_run"}),
    ("log_metrics (train/*, new series)", {"task": "log_metrics", "part": "train", "epochs": 30}),
    ("upload_checkpoint_1", {"task": "upload_checkpoint", "step": 10, "score": 0.6}),
    ("upload_checkpoint_2", {"task": "upload_checkpoint", "step": 20, "score": 0.8}),
    ("upload_checkpoint_3", {"task": "upload_checkpoint", "step": 29, "score": 0.7}),
    ("log_val_metrics (val/*, new series)", {"task": "log_metrics", "part": "val", "epochs": 30}),
    ("wait_for_val_accuracy (one poke)", {"task": "sensor"}),
    ("stop_run", {"task": "stop_run"}),
]
EXTRA_TASKS: list[tuple[str, dict[str, Any]]] = [
    ("log_metrics retried (30 points held)", {"task": "log_metrics", "part": "train", "epochs": 30}),
    (
        "log_metrics resumed (train/loss holds points, 30 new)",
        {"task": "log_metrics", "part": "train", "epochs": 30, "first_epoch": 30, "series": 1},
    ),
]
#: Requests per task of the same tasks before issue 15 (this benchmark with airflow_provider_neptune/hooks
#: at commit 48b3bd0): total and budgeted.
BEFORE: dict[str, tuple[int, int]] = {
    "create_run": (20, 13),
    "log_metrics (train/*, new series)": (25, 18),
    "upload_checkpoint_1": (24, 17),
    "upload_checkpoint_2": (25, 18),
    "upload_checkpoint_3": (25, 18),
    "log_val_metrics (val/*, new series)": (25, 18),
    "wait_for_val_accuracy (one poke)": (15, 9),
    "log_metrics retried (30 points held)": (24, 17),
    "log_metrics resumed (train/loss holds points, 30 new)": (25, 18),
    "stop_run": (22, 15),
}
# The sync point-by-point baseline sends one request per point; it is measured at these fractions
# of the full step count and its requests and time extrapolated linearly to the full scale.
SYNC_FRACTIONS = (0.02, 0.05)


def linear_fit(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares (intercept, slope) of ys over xs."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    var = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else 0.0
    return my - slope * mx, slope


def _variants(series: int, steps: int) -> list[tuple[str, str, str, dict[str, Any], dict[str, Any]]]:
    """(label, worker module, kind, params, connection extra) of every full-scale variant."""
    base = {"series": series, "steps": steps}
    provider, plain = "benchmarks.provider_client", "benchmarks.plain_client"
    return [
        (PROVIDER, provider, "log_task", base, {}),
        (PROVIDER_FREE, provider, "log_task", base, {"rate_limit_per_second": 0}),
        (EXTEND, plain, "log_points", {**base, "mode": "async", "style": "extend"}, {}),
        (APPEND_ASYNC, plain, "log_points", {**base, "mode": "async", "style": "append"}, {}),
    ]


def measure(
    emu: Any, work: Path, module: str, kind: str, params: dict[str, Any], extra: dict[str, Any], tag: str
) -> dict[str, Any]:
    """One repetition of one variant: its time and the server's request counts."""
    env = harness.worker_env(emu, work / tag, AIRFLOW_CONN_NEPTUNE_DEFAULT=emu.airflow_conn_json(**extra))
    before = harness.stats(emu)
    result = harness.run_worker(module, kind, params, env, work / tag / "worker.log", timeout=3600)
    after = harness.stats(emu)
    return {
        "run_id": result["run_id"],
        "series": params["series"],
        "steps": params["steps"],
        "elapsed": float(result["elapsed"]),
        "init": float(result["init"]),
        "reads": float(result.get("resume_seconds", 0.0)) + float(result.get("read_back_seconds", 0.0)),
        "requests": harness.delta(before, after, "requests_total"),
        "operations_requests": harness.route_count(before, after, "executeOperations"),
        "routes_read": harness.route_count(before, after, "getFloatSeriesValues"),
        "routes": harness.route_deltas(before, after),
        "errors": result.get("errors", []),
    }


def check_all(emu: Any, work: Path, measured: list[dict[str, Any]]) -> None:
    """Read every run back with the plain client (one process) and store lost/duplicated per run."""
    check = harness.run_worker(
        "benchmarks.plain_client",
        "read_back",
        {
            "runs": {m["run_id"]: m["series"] for m in measured},
            "steps_by_run": {m["run_id"]: m["steps"] for m in measured},
        },
        harness.worker_env(emu, work / "check"),
        work / "check" / "worker.log",
        timeout=3600,
    )
    for m in measured:
        counts = check["per_run"][m["run_id"]]
        m["lost"] = counts["missing"] + counts["wrong_values"] + counts["unexpected"]
        m["duplicates"] = counts["duplicates"]
        m["points"] = counts["points"]


def pipeline_requests(emu: Any, work: Path) -> list[dict[str, Any]]:
    """Run the pipeline's Neptune tasks for one run, each in a fresh process; requests by route per task."""
    env = harness.worker_env(emu, work / "pipeline", AIRFLOW_CONN_NEPTUNE_DEFAULT=emu.airflow_conn_json())
    rows: list[dict[str, Any]] = []
    run_id = ""
    for number, (label, params) in enumerate(PIPELINE_TASKS[:-1] + EXTRA_TASKS + PIPELINE_TASKS[-1:]):
        spec = {**params, "run_id": run_id, "custom_run_id": "bench-pipeline-run"}
        before = harness.stats(emu)
        result = harness.run_worker(
            "benchmarks.provider_client", "pipeline_task", spec, env, work / "pipeline" / f"t{number}.log"
        )
        routes = harness.route_deltas(before, harness.stats(emu))
        run_id = run_id or str(result["out"])
        budgeted = sum(n for route, n in routes.items() if route not in UNBUDGETED_ROUTES)
        rows.append(
            {
                "label": label,
                "in_dag": (label, params) in PIPELINE_TASKS,
                "requests": sum(routes.values()),
                "budgeted": budgeted,
                "routes": routes,
                "elapsed": float(result["elapsed"]),
            }
        )
        print(f"   {label}: {sum(routes.values())} requests ({budgeted} budgeted) {routes}", flush=True)
    return rows


def run(opts: harness.Options) -> harness.Section:
    """Run every full-scale variant `reps` times (point-by-point append 3), and the sync baseline at two
    smaller sizes."""
    steps = int(opts.pick(1000, 10_000))
    reps = opts.reps(1, 5)
    slow_reps = min(reps, opts.reps(1, 3))  # point-by-point append takes 5x as long; its ratio is far off
    sync_steps = [max(10, int(steps * f)) for f in SYNC_FRACTIONS]
    section = harness.Section(
        NAME,
        harness.TITLES[NAME],
        opts,
        scale=f"{SERIES} series x {steps:,} steps = {SERIES * steps:,} points; sync point-by-point "
        f"measured at {' and '.join(f'{SERIES} x {n:,}' for n in sync_steps)} and extrapolated",
    )
    results: dict[str, list[dict[str, Any]]] = {}
    sync: dict[int, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-efficiency-") as tmp, harness.emulator() as emu:
        work = Path(tmp)
        # The fast variants' repetitions interleave, so a drift of the machine or of the emulator's
        # growing store weighs on each alike. Point-by-point append runs after them: its 700 small
        # writes slowed whatever ran next by 0.3-0.5 s.
        variants = list(enumerate(_variants(SERIES, steps)))
        schedule = [(rep, v) for rep in range(reps) for v in variants if v[1][0] != APPEND_ASYNC]
        schedule += [(rep, v) for rep in range(slow_reps) for v in variants if v[1][0] == APPEND_ASYNC]
        for rep, (number, (label, module, kind, params, extra)) in schedule:
            measured = measure(emu, work, module, kind, params, extra, f"v{number}_r{rep}")
            results.setdefault(label, []).append(measured)
            print(f"   {label} (repetition {rep + 1}): {json.dumps(measured)[:200]}", flush=True)
        for n in sync_steps:
            params = {"series": SERIES, "steps": n, "mode": "sync", "style": "append"}
            sync[n] = measure(emu, work, "benchmarks.plain_client", "log_points", params, {}, f"sync{n}")
            print(f"   {APPEND_SYNC} at {n} steps: {json.dumps(sync[n])[:200]}", flush=True)
        check_all(emu, work, [m for runs in results.values() for m in runs] + list(sync.values()))
        tasks = pipeline_requests(emu, work)

    points = [float(SERIES * n) for n in sync_steps]
    req_a, req_b = linear_fit(points, [float(sync[n]["requests"]) for n in sync_steps])
    time_a, time_b = linear_fit(points, [float(sync[n]["elapsed"]) for n in sync_steps])
    sync_requests = req_a + req_b * SERIES * steps
    sync_time = time_a + time_b * SERIES * steps

    def med(label: str, key: str) -> float:
        return harness.median([r[key] for r in results[label]])

    def paired(label: str, less_reads: bool = False) -> float:
        """Median over repetitions of (this variant's time / plain extend's in the same repetition):
        the repetitions interleave, so a slow moment of the machine weighs on both sides of a pair."""
        return harness.median(
            [
                harness.ratio(r["elapsed"] - (r["reads"] if less_reads else 0.0), x["elapsed"])
                for r, x in zip(results[label], results[EXTEND], strict=False)
            ]
        )

    def bad(runs: list[dict[str, Any]]) -> str:
        return f"{sum(r['lost'] for r in runs)} / {sum(r['duplicates'] for r in runs)}"

    rows = []
    for label, runs in results.items():
        rows.append(
            [
                label,
                f"{SERIES * steps:,}",
                str(len(runs)),
                f"{med(label, 'requests'):,.0f}",
                f"{med(label, 'operations_requests'):,.0f}",
                f"{harness.ratio(sync_requests, med(label, 'requests')):,.1f}x",
                f"{med(label, 'elapsed'):.2f} s ({harness.spread([r['elapsed'] for r in runs])})",
                f"{med(label, 'init'):.2f} s",
                f"{med(label, 'reads'):.2f} s" if label in (PROVIDER, PROVIDER_FREE) else "",
                f"{paired(label):.2f}x",
                bad(runs),
                "; ".join(sorted({e for r in runs for e in r["errors"]})) or "none",
            ]
        )
    for n in sync_steps:
        r = sync[n]
        rows.append(
            [
                f"{APPEND_SYNC}, measured",
                f"{SERIES * n:,}",
                "1",
                f"{r['requests']:,}",
                f"{r['operations_requests']:,}",
                "",
                f"{r['elapsed']:.2f} s",
                f"{r['init']:.2f} s",
                "",
                "",
                bad([r]),
                "; ".join(r["errors"]) or "none",
            ]
        )
    rows.append(
        [
            f"{APPEND_SYNC}, extrapolated",
            f"{SERIES * steps:,}",
            "",
            f"{sync_requests:,.0f}",
            "",
            "1.0x",
            f"{sync_time:.1f} s",
            "",
            "",
            f"{harness.ratio(sync_time, med(EXTEND, 'elapsed')):.1f}x",
            "",
            "",
        ]
    )
    section.table(
        [
            "Variant",
            "Points",
            "Reps",
            "HTTP requests (server)",
            "executeOperations",
            "Fewer requests than sync point by point",
            "Wall time median (min..max)",
            "of which run creation",
            "of which verification reads",
            "Time vs plain extend (median of paired repetitions)",
            "Lost / duplicated (read back)",
            "Client errors",
        ],
        rows,
    )
    section.table(
        ["Variant (first repetition)", "Requests by route (emulator)"],
        [
            [label, ", ".join(f"{route} {n}" for route, n in runs[0]["routes"].items())]
            for label, runs in results.items()
        ],
    )
    section.note(
        f"Sync point by point sends one request per point: measured {req_b:.3f} requests per point "
        f"plus {req_a:.0f} (least-squares line through the two measured sizes), {time_b * 1000:.1f} ms "
        "per point; the full-scale row is that line at the full point count."
    )
    req_ratio = harness.ratio(sync_requests, med(PROVIDER, "requests"))
    time_ratio, free_ratio = paired(PROVIDER), paired(PROVIDER_FREE)
    section.verdict(
        f">= {MIN_REQUEST_RATIO:.0f}x fewer HTTP requests than plain point-by-point sync",
        f"{req_ratio:,.1f}x ({med(PROVIDER, 'requests'):,.0f} vs {sync_requests:,.0f})",
        req_ratio >= MIN_REQUEST_RATIO,
        "" if req_ratio >= MIN_REQUEST_RATIO else "bootstrap and verification reads dominate at this scale",
    )
    read_time, created = med(PROVIDER, "reads"), med(PROVIDER, "init") - med(EXTEND, "init")
    section.verdict(
        f"wall time <= {MAX_TIME_RATIO}x plain `extend` (async)",
        f"{time_ratio:.2f}x (median of {len(results[PROVIDER])} paired repetitions; medians "
        f"{med(PROVIDER, 'elapsed'):.2f} s vs {med(EXTEND, 'elapsed'):.2f} s)",
        time_ratio <= MAX_TIME_RATIO,
        f"the operator's extra work: {read_time:.2f} s verification reads (every point read back, "
        f"{med(PROVIDER, 'routes_read'):.0f} getFloatSeriesValues), {created:.2f} s run creation (the "
        f"custom-id search before createExperiment); budget off: {free_ratio:.2f}x",
    )
    machinery = paired(PROVIDER, less_reads=True)
    section.verdict(
        f"wall time less the verification reads <= {MAX_MACHINERY_RATIO}x plain `extend` (async)",
        f"{machinery:.2f}x (median of {len(results[PROVIDER])} paired repetitions)",
        machinery <= MAX_MACHINERY_RATIO,
        f"what is left: run creation ({created:.2f} s more than `init_run`'s) and the permit waits",
    )
    lost = sum(r["lost"] + r["duplicates"] for runs in [*results.values(), list(sync.values())] for r in runs)
    section.verdict("every variant's data read back complete, no duplicates", f"{lost} bad points", lost == 0)
    _pipeline_verdicts(section, tasks)
    section.note(
        "Wall time runs from run creation (`init_run` / `hook.create_run`) until the data is on the "
        "server (`stop()` returned / the operator verified delivery and stopped the handle); interpreter "
        "start-up and imports are outside it. Requests are all HTTP requests the emulator served for "
        "the variant (bootstrap, operations, reads, pings). The operator's figures include reading each "
        "series' last step before sending (resume) and after (verification); 'verification reads' is the "
        "time of those reads (the read-back compares every point sent with the server's)."
    )
    return section


def _pipeline_verdicts(section: harness.Section, tasks: list[dict[str, Any]]) -> None:
    """The per-task table and its two verdicts (halved per task; a resumed log task's budget)."""
    section.table(
        ["Task (fresh process each)", "Requests", "Budgeted", "Before (budgeted)", "Requests by route"],
        [
            [
                t["label"],
                str(t["requests"]),
                str(t["budgeted"]),
                f"{BEFORE[t['label']][0]} ({BEFORE[t['label']][1]})" if t["label"] in BEFORE else "",
                ", ".join(f"{route} {n}" for route, n in t["routes"].items()),
            ]
            for t in tasks
        ],
    )
    in_dag = [t for t in tasks if t["in_dag"]]
    now = sum(t["requests"] for t in in_dag) / len(in_dag)
    known = [t for t in in_dag if t["label"] in BEFORE]
    before = sum(BEFORE[t["label"]][0] for t in known) / len(known) if known else float("nan")
    section.verdict(
        "requests per Neptune task of the training pipeline at least halved (mean over its 8 tasks)",
        f"{now:.1f} vs {before:.1f} before ({harness.ratio(before, now):.2f}x fewer)",
        bool(known) and now <= before / 2,
        "opening a run costs the client's bootstrap in every task process (client config, token "
        "exchange, project, run, its attributes, ping); create_run also searches the runs table",
    )
    resumed = next(t for t in tasks if t["label"].startswith("log_metrics resumed"))
    section.verdict(
        f"budgeted requests of a log task resuming a series <= {MAX_RESUMED_LOG_BUDGETED}",
        f"{resumed['budgeted']} ({', '.join(f'{r} {n}' for r, n in resumed['routes'].items())})",
        resumed["budgeted"] <= MAX_RESUMED_LOG_BUDGETED,
    )
    section.note(
        "Per task: each of the training pipeline's Neptune tasks for one run (dags/neptune_training_pipeline"
        ".py: its operators' execute(), the sensor's poke) in a fresh process, as an Airflow worker runs "
        "it, plus a retried log task (every point already held) and a log task continuing a series that "
        "has points (one series; each further series sent to adds one read-back page). 'Budgeted' "
        "leaves out the API descriptions (swagger) and OAuth token refreshes, "
        "which take no permit. 'Before' is the same task at commit 48b3bd0 (before issue 15)."
    )


if __name__ == "__main__":
    harness.standalone(NAME, __doc__ or NAME, run)
