"""Benchmark 3: nothing lost or duplicated under faults, and a killed task's retries converge.

Part A: one log task (create_run + NeptuneLogMetricsOperator) sends 100,000 points (10 series x
10,000 steps) while the emulator fails 10% of requests (500, 503 or a dropped connection, seeded)
and another 5% are answered 429 (queued one at a time through the emulator's fail_next control as
the request count grows); the same task without faults gives the time ratio. In async mode the
client packs the points into a few large requests; sync mode sends one request per 100 points, so
it meets many more faults. The data is read back from the emulator with faults off.

Part B: a log task is killed with SIGKILL at a random (seeded) moment after its imports, then
retried, 20 times, then allowed to finish; every series must equal, point for point, those of an
uninterrupted run of the same task. It runs in sync mode, where points leave as the task goes, so
kills land before, during and after delivery.
"""

from __future__ import annotations

import json
import random
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks import harness

NAME = "faults"
SERIES = 10
FAULT_RATE = 0.10
THROTTLE_SHARE = 0.05
SEED = 8
MODES = ("async", "sync")
CLEAN, FAULTY = "no faults", "10% faults + 5% 429s"
KILL_MODE = "sync"
KILL_SPAN = 1.2


class ThrottleInjector(threading.Thread):
    """Keeps about THROTTLE_SHARE of the emulator's requests answered 429, one queued at a time."""

    def __init__(self, emu: Any) -> None:
        super().__init__(daemon=True)
        self.emu = emu
        self.stop_event = threading.Event()
        self.queued = 0
        self.base = harness.stats(emu)

    def run(self) -> None:
        """Poll the request count; queue one more 429 whenever fewer than the share were queued."""
        while not self.stop_event.wait(0.02):
            now = harness.stats(self.emu)
            requests = harness.delta(self.base, now, "requests_total")
            consumed = harness.delta(self.base, now, "fail_next_total")
            if self.queued - consumed < 1 and self.queued < THROTTLE_SHARE * requests:
                harness.http_json(
                    f"{self.emu.url}/_emulator/faults",
                    {"fail_next": {"route": "/api/", "status": 429, "count": 1}},
                    headers=self.emu.control_headers(),
                )
                self.queued += 1

    def stop(self) -> None:
        """Stop queueing and clear what is still queued (by consuming nothing further)."""
        self.stop_event.set()
        self.join(timeout=5)


def log_params(steps: int, custom_run_id: str) -> dict[str, Any]:
    """Parameters of the provider's log task for SERIES x steps points."""
    return {"series": SERIES, "steps": steps, "custom_run_id": custom_run_id}


def part_a(emu: Any, work: Path, steps: int, rep: int) -> dict[str, dict[str, Any]]:
    """The same task without and with faults; times, server counts and the read-back check of each."""
    out: dict[str, dict[str, Any]] = {}
    for mode, faulty in ((m, f) for m in MODES for f in (False, True)):
        label = f"{mode}: {FAULTY if faulty else CLEAN}"
        tag = f"a{rep}_{mode}_{'faulty' if faulty else 'clean'}"
        conn = emu.airflow_conn_json(mode=mode)
        env = harness.worker_env(emu, work / tag, AIRFLOW_CONN_NEPTUNE_DEFAULT=conn)
        before = harness.stats(emu)
        injector: ThrottleInjector | None = None
        if faulty:
            emu.set_faults(fault_rate=FAULT_RATE, rate_limit=None)
            injector = ThrottleInjector(emu)
            injector.start()
        try:
            result = harness.run_worker(
                "benchmarks.provider_client", "log_task", log_params(steps, f"bench-faults-{tag}"), env,
                work / tag / "worker.log", timeout=1800,
            )  # fmt: skip
        finally:
            if injector is not None:
                injector.stop()
            emu.set_faults(fault_rate=0.0, rate_limit=None)
        after = harness.stats(emu)
        check = harness.run_worker(
            "benchmarks.plain_client", "read_back", {"runs": {result["run_id"]: SERIES}, "steps": steps},
            harness.worker_env(emu, work / tag / "check"), work / tag / "check.log",
        )  # fmt: skip
        by_status_before = before.get("requests_by_status") or {}
        by_status_after = after.get("requests_by_status") or {}
        answered_429 = int(by_status_after.get("429", 0)) - int(by_status_before.get("429", 0))
        out[label] = {
            "time": float(result["elapsed"]),
            "requests": harness.delta(before, after, "requests_total"),
            "faults": harness.delta(before, after, "faults_injected_total"),
            "throttled": answered_429,
            "retries": int(result["counters"].get("retries", 0)),
            "lost": check["missing"] + check["wrong_values"],
            "duplicates": check["duplicates"],
            "points": check["points"],
        }
    return out


def part_b(emu: Any, work: Path, steps: int, kills: int) -> dict[str, Any]:
    """Kill a log task `kills` times at random moments, retry it to completion, compare with a reference.

    The task runs in sync mode, where points leave in requests of 100 as the task goes, so a kill can
    land before, during or after delivery (in async mode one batch leaves at the very end). Kill
    moments are uniform over 1.2x an uninterrupted task's time: a retry also looks the run up first.
    """
    rng = random.Random(SEED)
    conn = emu.airflow_conn_json(mode=KILL_MODE)
    env = harness.worker_env(emu, work / "b", AIRFLOW_CONN_NEPTUNE_DEFAULT=conn)
    series = 5
    params = {"series": series, "steps": steps}
    reference = harness.run_worker(
        "benchmarks.provider_client", "log_task", {**params, "custom_run_id": "bench-kill-reference"}, env,
        work / "b" / "reference.log", timeout=900,
    )  # fmt: skip
    work_time = float(reference["elapsed"])
    killed_at: list[float] = []
    finished_early = 0
    attempts = 0
    accepted: list[int] = []  # points the server stored during each attempt (its own count)
    rejected = 0  # operations the server refused (e.g. a step sent twice)
    while attempts < kills:  # `kills` retries, each killed at a random moment if still running
        attempts += 1
        tag = f"attempt{attempts}"
        ready, go = work / "b" / f"{tag}.ready", work / "b" / f"{tag}.go"
        attempt = {
            **params,
            "custom_run_id": "bench-kill-retried",
            "ready_file": str(ready),
            "go_file": str(go),
        }
        log = work / "b" / f"{tag}.log"
        before = harness.stats(emu)
        proc = harness.spawn("benchmarks.provider_client", "log_task", attempt, env, log)
        start_at = harness.release_together([ready], go, [proc])
        delay = rng.uniform(0.0, KILL_SPAN * work_time)
        time.sleep(max(0.0, start_at + delay - time.time()))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            killed_at.append(delay / work_time)
        else:
            finished_early += 1
            harness.collect(proc, log, timeout=60)
        after = harness.stats(emu)
        accepted.append(harness.delta(before, after, "points_total"))
        rejected += harness.delta(before, after, "operation_errors_total")
    before = harness.stats(emu)
    final = harness.run_worker(
        "benchmarks.provider_client", "log_task", {**params, "custom_run_id": "bench-kill-retried"}, env,
        work / "b" / "final.log", timeout=900,
    )  # fmt: skip
    after = harness.stats(emu)
    accepted.append(harness.delta(before, after, "points_total"))
    rejected += harness.delta(before, after, "operation_errors_total")
    paths = [harness.series_path(i) for i in range(series)]
    fetched = {
        name: harness.run_worker(
            "benchmarks.plain_client", "fetch_series", {"run_id": run_id, "paths": paths},
            harness.worker_env(emu, work / "b" / f"fetch_{name}"), work / "b" / f"fetch_{name}.log",
        )["series"]
        for name, run_id in (("reference", reference["run_id"]), ("retried", final["run_id"]))
    }  # fmt: skip
    equal = [p for p in paths if fetched["reference"][p] == fetched["retried"][p]]
    expected = [[float(s), harness.metric_value(i, s)] for i, _ in enumerate(paths) for s in range(steps)]
    reference_ok = [pt for p in paths for pt in fetched["reference"][p]] == expected
    return {
        "kills": len(killed_at),
        "finished_early": finished_early,
        "attempts": attempts + 1,
        "kill_points": sorted(killed_at),
        "series_equal": len(equal),
        "series": series,
        "points": sum(len(v) for v in fetched["retried"].values()),
        "reference_points": sum(len(v) for v in fetched["reference"].values()),
        "reference_matches_input": reference_ok,
        "final_summary": {k: final["summary"].get(k) for k in ("points_sent", "points_skipped")},
        "accepted": accepted,
        "rejected": rejected,
        "reference_time": work_time,
    }


def run(opts: harness.Options) -> harness.Section:
    """Part A `reps` times, then part B once."""
    steps_a = int(opts.pick(1_000, 10_000))
    steps_b = int(opts.pick(1_000, 2_000))
    kills = int(opts.pick(5, 20))
    reps = opts.reps(1, 3)
    section = harness.Section(
        NAME,
        harness.TITLES[NAME],
        opts,
        scale=f"A: {SERIES} series x {steps_a:,} steps = {SERIES * steps_a:,} points, {reps} rep(s); "
        f"B: 5 series x {steps_b:,} steps, {kills} kills ({KILL_MODE} mode)",
    )
    with tempfile.TemporaryDirectory(prefix="bench-faults-") as tmp, harness.emulator(seed=SEED) as emu:
        work = Path(tmp)
        rounds = [part_a(emu, work, steps_a, rep) for rep in range(reps)]
        print(f"   part A: {json.dumps(rounds)[:400]}", flush=True)
        kill = part_b(emu, work, steps_b, kills)
        print(f"   part B: {json.dumps(kill)[:400]}", flush=True)
    rows = []
    for label in rounds[0]:
        runs = [r[label] for r in rounds]
        rows.append(
            [
                label,
                f"{harness.median([r['time'] for r in runs]):.2f} s "
                f"({harness.spread([r['time'] for r in runs])})",
                f"{harness.median([r['requests'] for r in runs]):,.0f}",
                f"{harness.median([r['faults'] for r in runs]):,.0f}",
                f"{harness.median([r['throttled'] for r in runs]):,.0f}",
                f"{harness.median([r['retries'] for r in runs]):,.0f}",
                f"{harness.median([r['points'] for r in runs]):,.0f}",
                f"{sum(r['lost'] for r in runs)} / {sum(r['duplicates'] for r in runs)}",
            ]
        )
    section.table(
        [
            "Part A",
            "Time median (min..max)",
            "Requests (server)",
            "5xx/drops injected",
            "429s answered",
            "Retries (hook)",
            "Points read back",
            "Lost / duplicated",
        ],
        rows,
    )
    for mode in MODES:
        faulty = [r[f"{mode}: {FAULTY}"] for r in rounds]
        clean = [r[f"{mode}: {CLEAN}"] for r in rounds]
        bad = sum(r["lost"] + r["duplicates"] for r in faulty)
        took = harness.median([r["time"] for r in faulty])
        slowdown = harness.ratio(took, harness.median([r["time"] for r in clean]))
        failed = harness.median([r["faults"] + r["throttled"] for r in faulty])
        section.verdict(
            f"{mode} mode, {SERIES * steps_a:,} points under {FAULTY}: zero lost, zero duplicated",
            f"{bad} bad points; took {took:.1f} s ({slowdown:.2f}x no faults); "
            f"{failed:.0f} requests failed on purpose",
            bad == 0,
        )
    kills_ok = kill["series_equal"] == kill["series"] and kill["attempts"] == kills + 1
    section.table(
        ["Part B", "Value"],
        [
            ["kills (SIGKILL) / attempts incl. the final one", f"{kill['kills']} / {kill['attempts']}"],
            ["attempts that finished before their kill time", str(kill["finished_early"])],
            [
                "kill moments (fraction of an uninterrupted task's time)",
                ", ".join(f"{x:.2f}" for x in kill["kill_points"]),
            ],
            ["series equal to the uninterrupted run", f"{kill['series_equal']} of {kill['series']}"],
            [
                "points held: retried run / uninterrupted run",
                f"{kill['points']:,} / {kill['reference_points']:,}",
            ],
            ["uninterrupted run equals the input", str(kill["reference_matches_input"])],
            ["final attempt: points sent / skipped as already there", json.dumps(kill["final_summary"])],
            [
                "points the server stored in each attempt (its count; sum = points held means none twice)",
                f"{' + '.join(str(n) for n in kill['accepted'])} = {sum(kill['accepted']):,}",
            ],
            ["operations the server rejected (e.g. a step sent twice)", str(kill["rejected"])],
        ],
    )
    section.verdict(
        f"task killed at random points and retried {kills} times: every series equal to an uninterrupted run",
        f"{kill['series_equal']}/{kill['series']} series equal after {kill['attempts'] - 1} attempts, "
        f"{kill['kills']} killed mid-task (the rest finished before their kill moment)",
        kills_ok,
    )
    section.note(
        "Faults are injected by the emulator before a request is processed (a faulted request changes "
        "nothing), from a seeded RNG; 429s come through its fail_next control, one queued at a time "
        "whenever fewer than 5% of the requests so far were answered 429. Read-backs run with every "
        "fault off, with the plain client."
    )
    return section


if __name__ == "__main__":
    harness.standalone(NAME, __doc__ or NAME, run)
