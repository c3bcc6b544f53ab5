"""Benchmark 5: checkpoint retention over 500 runs x 20 checkpoints, and the plan's memory at 10,000 runs.

The emulator's store is seeded in-process, before the emulator starts on that data directory, through
``airflow_provider_neptune.emulator.storage.Storage`` (``create_run``, ``set_file``,
``execute_operations``): runs whose checkpoint entries are laid out as NeptuneUploadArtifactOperator
writes them (the field names and the record marker come from ``core.checkpoint_records``), with
seeded scores. Seeding through HTTP took 445 s for 500 runs; in-process it takes seconds. Then
NeptuneArtifactRetentionOperator (keep top 3 by score + the last) plans (dry run) over a quarter, half
and all of the runs, and applies over two disjoint groups (a quarter, then the other three quarters);
each in a fresh process with the connection's default settings (shared budget 20 req/s). Figures:
time, the emulator's request count, requests per run and per changed run, by route, and the process's
peak memory growth. A final dry run and a plain-client read-back of sample runs check that exactly the
expected checkpoints remain. A second emulator holds 10,000 runs (quick: 200) for a dry-run plan whose
peak memory is compared with the 500-run plan's: the plan streams the runs table page by page. A
second apply over all runs must delete nothing and send no executeOperations. A third emulator holds
5,000 runs (quick: 48) for one apply over all of them, a second apply and a sampled read-back: the
request and exact-deletion verdicts must hold at that scale too.

Scales can be changed with BENCH_RETENTION_RUNS (default 500, quick 24), BENCH_RETENTION_PLAN_RUNS
(default 10000, quick 200) and BENCH_RETENTION_LARGE_RUNS (default 5000, quick 48); 0 skips the last
two steps, e.g. ``BENCH_RETENTION_LARGE_RUNS=0 python -m benchmarks --only retention``.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import harness

NAME = "retention"
CHECKPOINTS = 20
KEEP_TOP_K = 3
FILE_SIZE = 256
PLAN_TARGET_S = 30.0
LINEAR_TOLERANCE = 0.10
SAMPLE = 12
APPLY_PER_CHANGED_RUN_TARGET = 2.0
# The 10,000-run plan may use at most this multiple of the peak memory growth of a plan over one page
# of runs (the client's default page, 100 runs): the page's parsed response dominates a plan's peak, and
# a plan holding every run's attributes would grow about 100x.
PLAN_MEMORY_RATIO_TARGET = 3.0
PAGE_RUNS = 100
PROJECT = "airflow/sandbox"


def expected_kept(run: int) -> set[int]:
    """Steps retention must keep for a seeded run: the top KEEP_TOP_K scores and the last step."""
    ranked = sorted(range(CHECKPOINTS), key=lambda ck: harness.checkpoint_score(run, ck), reverse=True)
    return set(ranked[:KEEP_TOP_K]) | {CHECKPOINTS - 1}


def checkpoint_bytes(run: int, checkpoint: int) -> bytes:
    """The seeded content of one checkpoint file."""
    return bytes((run + checkpoint + b) % 256 for b in range(FILE_SIZE))


def seed_store(data_dir: Path, runs: int, tags: list[Any], range_tags: list[Any]) -> dict[str, Any]:
    """Write ``runs`` runs with CHECKPOINTS entries each straight into an emulator data directory.

    Uses the emulator's Storage methods (the same code its HTTP routes call), before the emulator runs
    on that directory: each run is created (custom id ``bench-retention-<i>``), gets its files through
    ``set_file`` and its tags and record fields in one ``execute_operations``, in the layout
    NeptuneUploadArtifactOperator writes (record marker last).
    """
    import hashlib

    from airflow_provider_neptune.core.checkpoint_records import (
        NAME_FIELD,
        RECORD_FIELD,
        RECORD_MARKER,
        SCORE_FIELD,
        SHA256_FIELD,
        SIZE_FIELD,
        STEP_FIELD,
        UPLOADED_AT_FIELD,
    )
    from airflow_provider_neptune.emulator.storage import Storage

    start = time.perf_counter()
    storage = Storage(data_dir)
    try:
        project = storage.ensure_project(PROJECT)
        uploaded_ms = int(datetime.now(UTC).timestamp() * 1000)
        run_ids: dict[int, str] = {}
        for index in range(runs):
            run, _ = storage.create_run(project, custom_id=f"bench-retention-{index}")
            run_ids[index] = run.short_id
            run_tags = [tag for tag, bound in tags if index < bound or bound < 0]
            run_tags += [tag for tag, low, high in range_tags if low <= index < high]
            operations: list[dict[str, Any]] = [{"path": "sys/tags", "insertStrings": {"values": run_tags}}]
            for ck in range(CHECKPOINTS):
                data = checkpoint_bytes(index, ck)
                base = f"checkpoints/step_{ck}"
                storage.set_file(run, f"{base}/file", "pt", data)
                values: list[tuple[str, str, dict[str, Any]]] = [
                    (SCORE_FIELD, "assignFloat", {"value": harness.checkpoint_score(index, ck)}),
                    (STEP_FIELD, "assignFloat", {"value": float(ck)}),
                    (SIZE_FIELD, "assignFloat", {"value": float(len(data))}),
                    (UPLOADED_AT_FIELD, "assignDatetime", {"valueMilliseconds": uploaded_ms + ck}),
                    (NAME_FIELD, "assignString", {"value": f"model_{index}_{ck}.pt"}),
                    (SHA256_FIELD, "assignString", {"value": hashlib.sha256(data).hexdigest()}),
                    (RECORD_FIELD, "assignString", {"value": RECORD_MARKER}),
                ]
                operations += [{"path": f"{base}/{field}", kind: body} for field, kind, body in values]
            errors, _, _ = storage.execute_operations(run, operations)
            if errors:
                raise RuntimeError(f"seeding run {index} failed: {errors[:3]}")
    finally:
        storage.close()
    return {"seconds": time.perf_counter() - start, "run_ids": run_ids}


def operate(emu: Any, work: Path, tag: str, selection: str, dry_run: bool) -> dict[str, Any]:
    """One retention task (plan or apply) in a fresh process, measured."""
    env = harness.worker_env(emu, work / tag, AIRFLOW_CONN_NEPTUNE_DEFAULT=emu.airflow_conn_json())
    before = harness.stats(emu)
    cpu = harness.cpu_seconds(emu.pid)
    params = {"keep_top_k": KEEP_TOP_K, "tags": [selection], "dry_run": dry_run}
    result = harness.run_worker(
        "benchmarks.provider_client", "retention", params, env, work / tag / "worker.log", timeout=7200
    )
    after = harness.stats(emu)
    return {
        **result,
        "emulator_cpu": harness.cpu_seconds(emu.pid) - cpu,
        "requests": harness.delta(before, after, "requests_total"),
        "throttled": harness.delta(before, after, "throttled_total"),
        "routes": harness.route_deltas(before, after),
    }


def _scale(name: str, quick: int, full: int, opts: harness.Options) -> int:
    value = os.environ.get(name)
    if value is None:
        return int(opts.pick(quick, full))
    if not value.isdigit():
        raise SystemExit(f"{name} must be a whole number of runs, got {value!r}")
    return int(value)


def plan_memory(work: Path, runs: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Seed ``runs`` runs into a second emulator; measure a dry-run plan over one page and over all."""
    data = work / "memory-data"
    seeded = seed_store(data, runs, [["onepage", PAGE_RUNS], ["all", -1]], [])
    print(f"   memory step: seeded {runs} runs in {seeded['seconds']:.1f} s", flush=True)
    with harness.emulator(data_dir=data) as emu:
        page = operate(emu, work, f"plan-memory{PAGE_RUNS}", "onepage", dry_run=True)
        return page, operate(emu, work, f"plan-memory{runs}", "all", dry_run=True)


def large_apply(work: Path, runs: int) -> dict[str, Any]:
    """Seed ``runs`` runs into a third emulator; apply over all, apply again, read back a sample."""
    data = work / "large-data"
    seeded = seed_store(data, runs, [["all", -1]], [])
    print(f"   large step: seeded {runs} runs in {seeded['seconds']:.1f} s", flush=True)
    with harness.emulator(data_dir=data) as emu:
        apply = operate(emu, work, f"large-apply{runs}", "all", dry_run=False)
        final = operate(emu, work, f"large-final{runs}", "all", dry_run=False)
        mismatched = sampled_mismatches(emu, work / "large-readback", seeded["run_ids"], runs)
    return {"seed": seeded, "apply": apply, "final": final, "mismatched": mismatched}


def sampled_mismatches(emu: Any, work: Path, run_ids: dict[int, str], runs: int) -> list[int]:
    """Sampled runs whose checkpoint steps (plain-client read-back) are not exactly top k + last."""
    sample = sample_of(runs)
    readback = harness.run_worker(
        "benchmarks.plain_client",
        "checkpoint_steps",
        {"run_ids": [run_ids[i] for i in sample], "namespace": "checkpoints"},
        harness.worker_env(emu, work),
        work / "worker.log",
    )
    return [i for i in sample if set(readback["steps"].get(run_ids[i], [])) != expected_kept(i)]


def sample_of(runs: int) -> list[int]:
    """SAMPLE run indexes spread evenly over ``runs``."""
    return list(range(runs))[:: max(1, runs // SAMPLE)][:SAMPLE]


def deleted_expected_for(runs: int) -> int:
    """Checkpoints retention must delete from ``runs`` seeded runs."""
    return sum(CHECKPOINTS - len(expected_kept(i)) for i in range(runs))


def run(opts: harness.Options) -> harness.Section:
    """Seed, plan at three scales, apply over two disjoint groups, verify; then the large plan's memory."""
    runs = _scale("BENCH_RETENTION_RUNS", 24, 500, opts)
    memory_runs = _scale("BENCH_RETENTION_PLAN_RUNS", 200, 10_000, opts)
    large_runs = _scale("BENCH_RETENTION_LARGE_RUNS", 48, 5_000, opts)
    quarter, half = runs // 4, runs // 2
    section = harness.Section(
        NAME,
        harness.TITLES[NAME],
        opts,
        scale=f"{runs:,} runs x {CHECKPOINTS} checkpoints of {FILE_SIZE} bytes; keep top {KEEP_TOP_K} "
        f"+ last; "
        + (f"plan memory at {memory_runs:,} runs" if memory_runs else "plan memory step skipped")
        + (f"; apply at {large_runs:,} runs" if large_runs else "; large apply step skipped"),
    )
    tags = [[f"upto{quarter}", quarter], [f"upto{half}", half], ["all", -1]]
    range_tags = [["group_a", 0, quarter], ["group_b", quarter, runs]]
    with tempfile.TemporaryDirectory(prefix="bench-retention-") as tmp:
        work = Path(tmp)
        seeded = seed_store(work / "data", runs, tags, range_tags)
        print(f"   seeded {runs} runs in-process in {seeded['seconds']:.1f} s", flush=True)
        with harness.emulator(data_dir=work / "data") as emu:
            plans = {
                n: operate(emu, work, f"plan{n}", selection, dry_run=True)
                for n, selection in ((quarter, f"upto{quarter}"), (half, f"upto{half}"), (runs, "all"))
            }
            applies = {
                n: operate(emu, work, f"apply{n}", selection, dry_run=False)
                for n, selection in ((quarter, "group_a"), (runs - quarter, "group_b"))
            }
            final = operate(emu, work, "final", "all", dry_run=False)
            mismatched = sampled_mismatches(emu, work / "readback", seeded["run_ids"], runs)
        page, memory = plan_memory(work, memory_runs) if memory_runs else (None, None)
        large = large_apply(work, large_runs) if large_runs else None
    print(f"   plans: {json.dumps({n: p['summary'] for n, p in plans.items()})[:600]}", flush=True)
    print(f"   applies: {json.dumps({n: a['summary'] for n, a in applies.items()})[:600]}", flush=True)

    deleted_expected = deleted_expected_for(runs)
    rows = [["seed (setup: in-process into the store)", f"{runs:,}", f"{seeded['seconds']:.1f} s",
             f"{seeded['seconds'] / runs * 1000:.0f} ms", "0", "", "", "", "", ""]]  # fmt: skip
    steps = [("plan (dry run)", n, r) for n, r in plans.items()]
    steps += [("apply", n, r) for n, r in applies.items()]
    steps.append(("second apply (nothing left)", runs, final))
    if page is not None and memory is not None:
        steps.append(("plan (dry run), memory step: one page", PAGE_RUNS, page))
        steps.append(("plan (dry run), memory step: all", memory_runs, memory))
    if large is not None:
        rows.append(
            ["large step: seed (in-process)", f"{large_runs:,}", f"{large['seed']['seconds']:.1f} s",
             f"{large['seed']['seconds'] / large_runs * 1000:.0f} ms", "0", "", "", "", "", ""]
        )  # fmt: skip
        steps.append(("large step: apply", large_runs, large["apply"]))
        steps.append(("large step: second apply (nothing left)", large_runs, large["final"]))
    for label, n, result in steps:
        summary = result["summary"]
        rows.append(
            [
                label,
                f"{n:,}",
                f"{result['seconds']:.2f} s",
                f"{result['seconds'] / n * 1000:.1f} ms",
                f"{result['requests']:,}",
                f"{result['requests'] / n:.2f}",
                f"{result['emulator_cpu']:.1f} s",
                str(result["throttled"]),
                f"{result['peak_growth'] / 2**20:.1f} MiB (peak RSS {result['peak_rss'] / 2**20:.0f} MiB)",
                f"{summary.get('checkpoints_to_delete', summary.get('checkpoints_deleted'))}",
            ]
        )
    section.table(
        [
            "Step",
            "Runs",
            "Time",
            "Time per run",
            "Requests (server)",
            "Requests per run",
            "Emulator CPU",
            "429s",
            "Peak memory growth",
            "Checkpoints to delete / deleted",
        ],
        rows,
    )
    route_rows = [
        [f"plan {runs}", ", ".join(f"{r} {n}" for r, n in plans[runs]["routes"].items())],
        [
            f"apply {runs - quarter}",
            ", ".join(f"{r} {n}" for r, n in applies[runs - quarter]["routes"].items()),
        ],
    ]
    if memory is not None:
        route_rows.append([f"plan {memory_runs}", ", ".join(f"{r} {n}" for r, n in memory["routes"].items())])
    if large is not None:
        route_rows.append(
            [f"apply {large_runs}", ", ".join(f"{r} {n}" for r, n in large["apply"]["routes"].items())]
        )
    section.table(["Step", "Requests by route (emulator)"], route_rows)

    plan_time = plans[runs]["seconds"]
    section.verdict(
        f"plan (dry run) of {runs} runs in under {PLAN_TARGET_S:.0f} s",
        f"{plan_time:.2f} s",
        plan_time < PLAN_TARGET_S,
        "" if plan_time < PLAN_TARGET_S else "paged table fetch through the shared budget",
    )
    sizes = sorted(plans)
    per_run = [plans[n]["requests"] / n for n in sizes]
    linear = per_run[-1] <= per_run[0] * (1 + LINEAR_TOLERANCE)
    section.verdict(
        "plan: requests grow linearly with runs",
        ", ".join(
            f"{n} runs: {plans[n]['requests']:,} ({p:.2f}/run)" for n, p in zip(sizes, per_run, strict=True)
        ),
        linear,
        "" if linear else "requests per run grow with the number of runs",
    )
    # Apply: budgeted requests per run whose checkpoints change, beyond the task's one-off start-up.
    apply_results = dict(applies)
    if large is not None:
        apply_results[large_runs] = large["apply"]
    per_changed = {n: per_changed_run(a) for n, a in apply_results.items()}
    ok = all(v <= APPLY_PER_CHANGED_RUN_TARGET for v in per_changed.values())
    section.verdict(
        f"apply: at most {APPLY_PER_CHANGED_RUN_TARGET:g} budgeted requests per run whose checkpoints "
        f"change (beyond the task's start-up: {', '.join(STARTUP_ROUTES)})",
        ", ".join(
            f"{n:,} runs: {budgeted(apply_results[n]['routes']):,} budgeted "
            f"({per_changed[n]:.2f}/changed run)"
            for n in sorted(apply_results)
        ),
        ok,
        "" if ok else "requests per changed run",
    )
    unchanged_cost = final["routes"].get("executeOperations", 0)
    section.verdict(
        "apply: 0 requests for a run that keeps everything (a second apply over all runs)",
        f"{unchanged_cost} executeOperations for {runs:,} unchanged runs; "
        f"{budgeted(final['routes'])} budgeted requests in all (scan and start-up)",
        unchanged_cost == 0,
    )
    deleted = sum(int(a["summary"].get("checkpoints_deleted", 0)) for a in applies.values())
    left = int(final["summary"].get("checkpoints_deleted", -1))
    exact = deleted == deleted_expected and left == 0 and not mismatched
    sampled = len(sample_of(runs))
    section.verdict(
        "exactly the expected checkpoints deleted (operator summary, second apply, plain-client read-back)",
        f"deleted {deleted:,} of {deleted_expected:,} expected; a second apply deletes {left}; "
        f"{sampled - len(mismatched)}/{sampled} sampled runs hold exactly top {KEEP_TOP_K} + last",
        exact,
    )
    if large is not None:
        large_deleted = int(large["apply"]["summary"].get("checkpoints_deleted", 0))
        large_expected = deleted_expected_for(large_runs)
        large_left = int(large["final"]["summary"].get("checkpoints_deleted", -1))
        large_unchanged = large["final"]["routes"].get("executeOperations", 0)
        large_sampled = len(sample_of(large_runs))
        large_exact = large_deleted == large_expected and large_left == large_unchanged == 0
        large_exact = large_exact and not large["mismatched"]
        section.verdict(
            f"at {large_runs:,} runs: exactly the expected checkpoints deleted, and a second apply sends "
            "no executeOperations",
            f"deleted {large_deleted:,} of {large_expected:,} expected; a second apply deletes {large_left} "
            f"with {large_unchanged} executeOperations; {large_sampled - len(large['mismatched'])}/"
            f"{large_sampled} sampled runs hold exactly top {KEEP_TOP_K} + last",
            large_exact,
        )
    if page is not None and memory is not None:
        small, large = page["peak_growth"], memory["peak_growth"]
        ratio = large / small if small else float("inf")
        expected_large = sum(CHECKPOINTS - len(expected_kept(i)) for i in range(memory_runs))
        found = int(memory["summary"].get("checkpoints_to_delete", -1))
        bounded = ratio <= PLAN_MEMORY_RATIO_TARGET and found == expected_large
        section.verdict(
            f"plan memory bounded: a {memory_runs:,}-run plan's peak growth at most "
            f"{PLAN_MEMORY_RATIO_TARGET:g}x a {PAGE_RUNS}-run (one page) plan's",
            f"{large / 2**20:.1f} MiB vs {small / 2**20:.1f} MiB ({ratio:.2f}x; "
            f"{(large - small) / max(1, memory_runs - PAGE_RUNS) / 1024:.1f} KiB per added run); "
            f"plan deletes {found:,} of {expected_large:,} expected",
            bounded,
            "" if bounded else "what the plan holds per run",
        )
    section.note(
        "Each plan and apply runs in a fresh process with the connection's default settings (async, "
        "shared budget 20 requests/s in memory); time is the operator's execute(). Peak memory growth "
        "is the process's maximum resident set after execute() minus its resident set before (imports "
        "excluded). 'Emulator CPU' is the CPU time the emulator process spent meanwhile: when it "
        "approaches the time column, the emulator (not the provider) sets the pace. Budgeted requests "
        "exclude the API description documents and OAuth token refreshes (no permit). Seeding writes "
        "the emulator's store in-process before it starts (see the module docstring) and sends no request."
    )
    return section


UNBUDGETED_ROUTES = ("swagger", "oauthToken")
# Sent once per retention task whatever the number of runs: client config, token exchange, the
# project's id, the sort column's type.
STARTUP_ROUTES = ("getClientConfig", "exchangeApiToken", "getProject", "searchLeaderboardAttributes")


def per_changed_run(result: dict[str, Any]) -> float:
    """Budgeted requests of an apply beyond its start-up, per run whose checkpoints changed."""
    routes = result["routes"]
    startup = sum(routes.get(route, 0) for route in STARTUP_ROUTES)
    return (budgeted(routes) - startup) / max(1, int(result["summary"].get("runs_changed", 0)))


def budgeted(routes: dict[str, int]) -> int:
    """Requests by route that take a permit from the shared budget."""
    return sum(n for route, n in routes.items() if route not in UNBUDGETED_ROUTES)


if __name__ == "__main__":
    harness.standalone(NAME, __doc__ or NAME, run)
