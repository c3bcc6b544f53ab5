"""Benchmark 1: HTTP requests and wall time to log 10 series x 10,000 steps.

Side by side, each in a fresh process against one emulator: NeptuneLogMetricsOperator's code path
(hook.create_run, then the operator's execute(): validation, resume check, batched extend, verified
delivery, stop), with the default shared budget and with the budget off; and the plain client with
no provider code, appending point by point (sync and async) and with `extend` (async). Requests are
the emulator's count; every run is read back from the emulator and checked point by point.
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


def _variants(series: int, steps: int) -> list[tuple[str, str, str, dict[str, Any], dict[str, Any]]]:
    """(label, worker module, kind, params, connection extra) of every variant, cheapest first."""
    base = {"series": series, "steps": steps}
    provider, plain = "benchmarks.provider_client", "benchmarks.plain_client"
    return [
        ("provider: NeptuneLogMetricsOperator (async, default budget)", provider, "log_task", base, {}),
        ("provider: NeptuneLogMetricsOperator (async, budget off)", provider, "log_task", base,
         {"rate_limit_per_second": 0}),
        ("plain client: extend (async)", plain, "log_points",
         {**base, "mode": "async", "style": "extend"}, {}),
        ("plain client: append point by point (async)", plain, "log_points",
         {**base, "mode": "async", "style": "append"}, {}),
        ("plain client: append point by point (sync)", plain, "log_points",
         {**base, "mode": "sync", "style": "append"}, {}),
    ]  # fmt: skip


def measure(
    emu: Any,
    work: Path,
    label: str,
    module: str,
    kind: str,
    params: dict[str, Any],
    extra: dict[str, Any],
    tag: str,
) -> dict[str, Any]:
    """One repetition of one variant: its time, the server's request counts and the read-back check."""
    env = harness.worker_env(emu, work / tag, AIRFLOW_CONN_NEPTUNE_DEFAULT=emu.airflow_conn_json(**extra))
    before = harness.stats(emu)
    result = harness.run_worker(module, kind, params, env, work / tag / "worker.log", timeout=3600)
    after = harness.stats(emu)
    check = harness.run_worker(
        "benchmarks.plain_client",
        "read_back",
        {"runs": {result["run_id"]: params["series"]}, "steps": params["steps"]},
        harness.worker_env(emu, work / tag / "check"),
        work / tag / "check.log",
    )
    return {
        "elapsed": float(result["elapsed"]),
        "init": float(result["init"]),
        "requests": harness.delta(before, after, "requests_total"),
        "operations_requests": harness.route_count(before, after, "executeOperations"),
        "errors": result.get("errors", []),
        "clean": result.get("clean", True),
        "lost": check["missing"] + check["wrong_values"],
        "duplicates": check["duplicates"],
        "points": check["points"],
    }


def run(opts: harness.Options) -> harness.Section:
    """Run every variant `reps` times (the slow sync point-by-point baseline fewer times)."""
    steps = int(opts.pick(1000, 10_000))
    reps = opts.reps(2, 3)
    section = harness.Section(
        NAME,
        harness.TITLES[NAME],
        opts,
        scale=f"{SERIES} series x {steps:,} steps = {SERIES * steps:,} points",
    )
    results: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-efficiency-") as tmp, harness.emulator() as emu:
        work = Path(tmp)
        for number, (label, module, kind, params, extra) in enumerate(_variants(SERIES, steps)):
            slow = "(sync)" in label and "point by point" in label
            n = 1 if slow and not opts.repeat else reps
            results[label] = [
                measure(emu, work, label, module, kind, params, extra, f"v{number}_r{rep}")
                for rep in range(n)
            ]
            print(f"   {label}: {json.dumps(results[label][-1])[:200]}", flush=True)

    def med(label: str, key: str) -> float:
        return harness.median([r[key] for r in results[label]])

    labels = list(results)
    provider, provider_free, extend, _, sync_append = labels
    rows = []
    for label in labels:
        runs = results[label]
        rows.append(
            [
                label,
                str(len(runs)),
                f"{med(label, 'requests'):,.0f}",
                f"{med(label, 'operations_requests'):,.0f}",
                f"{harness.ratio(med(sync_append, 'requests'), med(label, 'requests')):,.1f}x",
                f"{med(label, 'elapsed'):.2f} s ({harness.spread([r['elapsed'] for r in runs])})",
                f"{med(label, 'init'):.2f} s",
                f"{harness.ratio(med(label, 'elapsed'), med(extend, 'elapsed')):.2f}x",
                f"{sum(r['lost'] for r in runs)} / {sum(r['duplicates'] for r in runs)}",
                "; ".join(sorted({e for r in runs for e in r["errors"]})) or "none",
            ]
        )
    section.table(
        [
            "Variant",
            "Reps",
            "HTTP requests (server)",
            "executeOperations",
            "Fewer requests than sync point by point",
            "Wall time median (min..max)",
            "of which run creation",
            "Time vs plain extend",
            "Lost / duplicated points (read back)",
            "Client errors",
        ],
        rows,
    )
    req_ratio = harness.ratio(med(sync_append, "requests"), med(provider, "requests"))
    time_ratio = harness.ratio(med(provider, "elapsed"), med(extend, "elapsed"))
    free_ratio = harness.ratio(med(provider_free, "elapsed"), med(extend, "elapsed"))
    section.verdict(
        f">= {MIN_REQUEST_RATIO:.0f}x fewer HTTP requests than plain point-by-point sync",
        f"{req_ratio:,.1f}x ({med(provider, 'requests'):,.0f} vs {med(sync_append, 'requests'):,.0f})",
        req_ratio >= MIN_REQUEST_RATIO,
        "" if req_ratio >= MIN_REQUEST_RATIO else "bootstrap and verification reads dominate at this scale",
    )
    limit = ""
    if time_ratio > MAX_TIME_RATIO:
        limit = (
            f"with the budget off the operator takes {free_ratio:.2f}x; the rest is the default 20 req/s "
            "budget pacing bootstrap, resume and verification reads"
            if free_ratio <= MAX_TIME_RATIO
            else "the operator's extra work: resume read before sending and verification after "
            f"(budget off: {free_ratio:.2f}x)"
        )
    section.verdict(
        f"wall time <= {MAX_TIME_RATIO}x plain `extend` (async)",
        f"{time_ratio:.2f}x ({med(provider, 'elapsed'):.2f} s vs {med(extend, 'elapsed'):.2f} s)",
        time_ratio <= MAX_TIME_RATIO,
        limit,
    )
    lost = sum(r["lost"] + r["duplicates"] for runs in results.values() for r in runs)
    section.verdict("every variant's data read back complete, no duplicates", f"{lost} bad points", lost == 0)
    section.note(
        "Wall time runs from run creation (`init_run` / `hook.create_run`) until the data is on the "
        "server (`stop()` returned / the operator verified delivery and stopped the handle); interpreter "
        "start-up and imports are outside it. Requests are all HTTP requests the emulator served for "
        "the variant (bootstrap, operations, reads, pings). The operator's figures include reading each "
        "series' last step before sending (resume) and after (verification)."
    )
    return section


if __name__ == "__main__":
    harness.standalone(NAME, __doc__ or NAME, run)
