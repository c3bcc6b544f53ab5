"""Benchmark 5: checkpoint retention over 500 runs x 20 checkpoints.

The emulator is seeded (two processes, budget off) with runs whose checkpoint entries are laid out
as NeptuneUploadArtifactOperator writes them, with seeded scores. NeptuneArtifactRetentionOperator
(keep top 3 by score + the last) then plans (dry run) over a quarter, half and all of the runs, and
applies over two disjoint groups (a quarter, then the other three quarters); each in a fresh
process with the connection's default settings (shared budget 20 req/s). Figures: time, the
emulator's request count and requests per run, and the process's peak memory growth. A final dry
run and a plain-client read-back of sample runs check that exactly the expected checkpoints remain.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from benchmarks import harness

NAME = "retention"
CHECKPOINTS = 20
KEEP_TOP_K = 3
FILE_SIZE = 256
PLAN_TARGET_S = 30.0
LINEAR_TOLERANCE = 0.10
SEEDERS = 2
SAMPLE = 12


def expected_kept(run: int) -> set[int]:
    """Steps retention must keep for a seeded run: the top KEEP_TOP_K scores and the last step."""
    ranked = sorted(range(CHECKPOINTS), key=lambda ck: harness.checkpoint_score(run, ck), reverse=True)
    return set(ranked[:KEEP_TOP_K]) | {CHECKPOINTS - 1}


def seed(emu: Any, work: Path, runs: int, tags: list[Any], range_tags: list[Any]) -> dict[str, Any]:
    """Create the runs in SEEDERS parallel processes; returns the time and the emulator's counts."""
    env = harness.worker_env(
        emu, work / "seed", AIRFLOW_CONN_NEPTUNE_DEFAULT=emu.airflow_conn_json(rate_limit_per_second=0)
    )
    before = harness.stats(emu)
    cpu = harness.cpu_seconds(emu.pid)
    bounds = [runs * i // SEEDERS for i in range(SEEDERS + 1)]
    procs = []
    for i in range(SEEDERS):
        params = {
            "first": bounds[i],
            "last": bounds[i + 1],
            "checkpoints": CHECKPOINTS,
            "size": FILE_SIZE,
            "tags": tags,
            "range_tags": range_tags,
        }
        log = work / "seed" / f"seeder{i}.log"
        procs.append((harness.spawn("benchmarks.provider_client", "seed_checkpoints", params, env, log), log))
    results = [harness.collect(p, log, timeout=7200) for p, log in procs]
    after = harness.stats(emu)
    return {
        "seconds": max(float(r["seconds"]) for r in results),
        "requests": harness.delta(before, after, "requests_total"),
        "runs": harness.delta(before, after, "runs_created_total"),
        "emulator_cpu": harness.cpu_seconds(emu.pid) - cpu,
        "run_ids": {int(k): v for r in results for k, v in r["run_ids"].items()},
    }


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


def run(opts: harness.Options) -> harness.Section:
    """Seed, plan at three scales, apply over two disjoint groups, verify."""
    runs = int(opts.pick(24, 500))
    quarter, half = runs // 4, runs // 2
    section = harness.Section(
        NAME,
        harness.TITLES[NAME],
        opts,
        scale=f"{runs} runs x {CHECKPOINTS} checkpoints of {FILE_SIZE} bytes; keep top {KEEP_TOP_K} + last",
    )
    tags = [[f"upto{quarter}", quarter], [f"upto{half}", half], ["all", -1]]
    range_tags = [["group_a", 0, quarter], ["group_b", quarter, runs]]
    with tempfile.TemporaryDirectory(prefix="bench-retention-") as tmp, harness.emulator() as emu:
        work = Path(tmp)
        seeded = seed(emu, work, runs, tags, range_tags)
        print(f"   seeded: {json.dumps({k: v for k, v in seeded.items() if k != 'run_ids'})}", flush=True)
        plans = {
            n: operate(emu, work, f"plan{n}", selection, dry_run=True)
            for n, selection in ((quarter, f"upto{quarter}"), (half, f"upto{half}"), (runs, "all"))
        }
        applies = {
            n: operate(emu, work, f"apply{n}", selection, dry_run=False)
            for n, selection in ((quarter, "group_a"), (runs - quarter, "group_b"))
        }
        final = operate(emu, work, "final", "all", dry_run=True)
        sample = sorted(seeded["run_ids"])[:: max(1, runs // SAMPLE)][:SAMPLE]
        readback = harness.run_worker(
            "benchmarks.plain_client",
            "checkpoint_steps",
            {"run_ids": [seeded["run_ids"][i] for i in sample], "namespace": "checkpoints"},
            harness.worker_env(emu, work / "readback"),
            work / "readback" / "worker.log",
        )
    print(f"   plans: {json.dumps({n: p['summary'] for n, p in plans.items()})[:600]}", flush=True)
    print(f"   applies: {json.dumps({n: a['summary'] for n, a in applies.items()})[:600]}", flush=True)

    deleted_expected = sum(CHECKPOINTS - len(expected_kept(i)) for i in range(runs))
    rows = [["seed (setup, budget off, 2 processes)", f"{runs:,}", f"{seeded['seconds']:.1f} s",
             f"{seeded['seconds'] / runs * 1000:.0f} ms", f"{seeded['requests']:,}",
             f"{seeded['requests'] / runs:.1f}", f"{seeded['emulator_cpu']:.1f} s", "", "", ""]]  # fmt: skip
    for label, group in (("plan (dry run)", plans), ("apply", applies)):
        for n, result in group.items():
            summary = result["summary"]
            rows.append(
                [
                    label,
                    f"{n:,}",
                    f"{result['seconds']:.2f} s",
                    f"{result['seconds'] / n * 1000:.0f} ms",
                    f"{result['requests']:,}",
                    f"{result['requests'] / n:.2f}",
                    f"{result['emulator_cpu']:.1f} s",
                    str(result["throttled"]),
                    f"{result['peak_growth'] / 2**20:.1f} MiB "
                    f"(peak RSS {result['peak_rss'] / 2**20:.0f} MiB)",
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
    section.table(
        ["Step", "Requests by route (emulator)"],
        [
            [f"plan {runs}", ", ".join(f"{r} {n}" for r, n in plans[runs]["routes"].items())],
            [
                f"apply {runs - quarter}",
                ", ".join(f"{r} {n}" for r, n in applies[runs - quarter]["routes"].items()),
            ],
        ],
    )
    plan_time = plans[runs]["seconds"]
    section.verdict(
        f"plan (dry run) of {runs} runs in under {PLAN_TARGET_S:.0f} s",
        f"{plan_time:.2f} s",
        plan_time < PLAN_TARGET_S,
        "" if plan_time < PLAN_TARGET_S else "paged table fetch through the shared budget",
    )
    for label, group in (("plan", plans), ("apply", applies)):
        sizes = sorted(group)
        per_run = [group[n]["requests"] / n for n in sizes]
        # Linear (or better): requests per run at the largest scale no more than 10% above the smallest's.
        linear = per_run[-1] <= per_run[0] * (1 + LINEAR_TOLERANCE)
        section.verdict(
            f"{label}: requests grow linearly with runs",
            ", ".join(
                f"{n} runs: {group[n]['requests']:,} ({p:.2f}/run)"
                for n, p in zip(sizes, per_run, strict=True)
            ),
            linear,
            "" if linear else "requests per run grow with the number of runs",
        )
    deleted = sum(int(a["summary"].get("checkpoints_deleted", 0)) for a in applies.values())
    left = int(final["summary"].get("checkpoints_to_delete", -1))
    mismatched = [
        i for i in sample if set(readback["steps"].get(seeded["run_ids"][i], [])) != expected_kept(i)
    ]
    ok = deleted == deleted_expected and left == 0 and not mismatched
    section.verdict(
        "exactly the expected checkpoints deleted (operator summary, final dry run, plain-client read-back)",
        f"deleted {deleted:,} of {deleted_expected:,} expected; final plan deletes {left}; "
        f"{len(sample) - len(mismatched)}/{len(sample)} sampled runs hold exactly top {KEEP_TOP_K} + last",
        ok,
    )
    section.note(
        "Each plan and apply runs in a fresh process with the connection's default settings (async, "
        "shared budget 20 requests/s in memory); time is the operator's execute(). Peak memory growth "
        "is the process's maximum resident set after execute() minus its resident set before (imports "
        "excluded). 'Emulator CPU' is the CPU time the emulator process spent meanwhile: when it "
        "approaches the time column, the emulator (not the provider) sets the pace. Seeding is setup, "
        "shown for scale only."
    )
    return section


if __name__ == "__main__":
    harness.standalone(NAME, __doc__ or NAME, run)
