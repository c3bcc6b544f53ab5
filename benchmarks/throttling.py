"""Benchmark 2: 8 processes logging at once against an emulator limited to 20 requests/s.

Each process logs 20,000 points (2 series x 10,000 steps) to its own run; all are released at the
same moment after their imports. With the provider every process runs the log task (create_run +
NeptuneLogMetricsOperator) sharing one 20 req/s budget, kept in a file (one host) or in a real
redis-server (many hosts). Beside it the plain client (async `extend`) with no budget. The server's
own per-second counts give the 429 share, the highest request rate in any 5 s window (arrivals:
accepted + throttled) and how much of the budget was used while work remained; the data is read
back from the emulator.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks import harness

NAME = "throttling"
PROCESSES = 8
SERIES = 2
LIMIT = 20.0
MAX_429_SHARE = 0.01
MAX_OVERSHOOT = 0.05
MIN_UTILISATION = 0.85
#: The most of the budget the limiter hands out: 20 permits per (1 s + its 100 ms margin).
LIMITER_CEILING = 1000 / 1100
WINDOW = 5
#: Share of a second that permit waits must cover for it to count as "work waiting for the budget".
QUEUED_COVERAGE = 0.95
EXEMPT_ROUTES = ("swagger", "oauthToken")


def queued_seconds(waits: list[tuple[float, float]], first: int, last: int) -> list[int]:
    """Whole seconds in (first, last) during which, at (nearly) every moment, at least one request
    of some process was waiting for a budget permit: demand exceeded the budget all second long."""
    merged: list[list[float]] = []
    for begin, end in sorted(waits):
        if merged and begin <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([begin, end])
    chosen = []
    for second in range(first + 1, last):
        covered = sum(max(0.0, min(end, second + 1) - max(begin, second)) for begin, end in merged)
        if covered >= QUEUED_COVERAGE:
            chosen.append(second)
    return chosen


def window_figures(
    rows: list[list[int]],
    start_at: float,
    first_done: float,
    end_at: float,
    limit: float,
    waits: list[tuple[float, float]] | None = None,
) -> dict[str, Any]:
    """From the server's [second, accepted, throttled] rows: the busiest 5 s window's arrival rate
    (accepted + throttled); budget utilisation (accepted / limit) over the whole seconds until the
    first process was done (the verdict) and until the last was; and, to tell a slow limiter from
    idle clients, over the seconds in which requests were queued for a permit all second long
    (``waits``: the workers' permit waits)."""
    first, last = int(start_at), int(end_at)
    per_second = {int(r[0]): (int(r[1]), int(r[2])) for r in rows if first <= int(r[0]) <= last}
    seconds = list(range(first, last + 1))
    arrivals = [sum(per_second.get(s, (0, 0))) for s in seconds]
    accepted = [per_second.get(s, (0, 0))[0] for s in seconds]
    windows = [sum(arrivals[i : i + WINDOW]) / WINDOW for i in range(max(1, len(seconds) - WINDOW + 1))]

    def utilisation(until: float) -> float:
        # whole seconds only: after the start's partial second, before the end's partial second
        inner = [accepted[i] for i, s in enumerate(seconds) if first < s < int(until)]
        return sum(inner) / (limit * len(inner)) if inner else float("nan")

    queued = queued_seconds(waits or [], first, last)
    queued_accepted = [accepted[q - first] for q in queued]
    timeline = " ".join(
        f"{acc}" + (f"+{arr - acc}" if arr > acc else "") for acc, arr in zip(accepted, arrivals, strict=True)
    )
    return {
        "timeline": timeline,
        "max_window_rate": max(windows) if windows else 0.0,
        "utilisation_queued": (sum(queued_accepted) / (limit * len(queued)) if queued else float("nan")),
        "queued_seconds": len(queued),
        "utilisation_all_busy": utilisation(first_done),
        "utilisation": utilisation(end_at),
        "busy_seconds": max(0, int(first_done) - first - 1),
    }


@contextlib.contextmanager
def budget_store(kind: str, work: Path) -> Iterator[str | None]:
    """The rate_limit_storage value of a variant (a fresh file, a fresh redis-server, or none)."""
    if kind == "file":
        yield str(work / "budget.sqlite")
    elif kind == "redis":
        with harness.redis_server() as url:
            yield url
    else:
        yield None


def one_round(emu: Any, work: Path, kind: str, points: int, tag: str) -> dict[str, Any]:
    """Release PROCESSES workers together, wait for all, read the server's figures and the data."""
    steps = points // SERIES
    emu.set_faults(rate_limit=LIMIT, fault_rate=0.0)
    go_file = work / tag / "go"
    with budget_store(kind, work / tag) as storage:
        extra: dict[str, Any] = {"rate_limit_per_second": LIMIT, "rate_limit_storage": storage}
        env = harness.worker_env(emu, work / tag, AIRFLOW_CONN_NEPTUNE_DEFAULT=emu.airflow_conn_json(**extra))
        procs, logs, ready = [], [], []
        for i in range(PROCESSES):
            params: dict[str, Any] = {
                "series": SERIES,
                "steps": steps,
                "ready_file": str(work / tag / f"ready{i}"),
                "go_file": str(go_file),
            }
            if kind == "plain":
                module, worker = "benchmarks.plain_client", "log_points"
                params.update(mode="async", style="extend")
            else:
                module, worker = "benchmarks.provider_client", "log_task"
                params["custom_run_id"] = f"bench-throttle-{tag}-{i}"[:36]
            logs.append(work / tag / f"worker{i}.log")
            ready.append(Path(params["ready_file"]))
            procs.append(harness.spawn(module, worker, params, env, logs[-1]))
        before = harness.stats(emu)
        emulator_cpu = harness.cpu_seconds(emu.pid)
        start_at = harness.release_together(ready, go_file, procs)
        results = [harness.collect(p, log, timeout=1800) for p, log in zip(procs, logs, strict=True)]
        end_at = max(float(r["finished_at"]) for r in results)
        first_done = min(float(r["finished_at"]) for r in results)
        emulator_cpu = harness.cpu_seconds(emu.pid) - emulator_cpu
        time.sleep(1.1)  # let the last second's row complete
        after = harness.stats(emu)
    emu.set_faults(rate_limit=None, fault_rate=0.0)
    check = harness.run_worker(
        "benchmarks.plain_client",
        "read_back",
        {"runs": {r["run_id"]: SERIES for r in results if r["run_id"]}, "steps": steps},
        harness.worker_env(emu, work / tag / "check"),
        work / tag / "check.log",
    )
    requests = harness.delta(before, after, "requests_total")
    throttled = harness.delta(before, after, "throttled_total")
    routes = harness.route_deltas(before, after)
    # Requests the emulator answers outside its limit (spec documents, OAuth token refresh).
    exempt = sum(n for route, n in routes.items() if route in EXEMPT_ROUTES)
    waits = [(float(a), float(b)) for r in results for a, b in r.get("permit_waits", [])]
    figures = window_figures(
        after.get("requests_per_second") or [], start_at, first_done, end_at, LIMIT, waits
    )
    return {
        "time": end_at - start_at,
        "requests": requests,
        "throttled": throttled,
        "share_429": harness.ratio(throttled, requests),
        "exempt": exempt,
        "all_rate": requests / (end_at - start_at),
        # CPU the workers (after the start) and the emulator used, as a share of every core's time
        "cpu_share": (sum(float(r.get("cpu", 0.0)) for r in results) + emulator_cpu)
        / ((os.cpu_count() or 1) * (end_at - start_at)),
        **figures,
        # a process that never got a run lost all its points
        "lost": check["missing"] + check["wrong_values"] + sum(points for r in results if not r["run_id"]),
        "duplicates": check["duplicates"],
        "points": check["points"],
        # The provider's hook counts its retries; the plain client keeps no count, but every 429 the
        # server answered was retried (nothing was given up: see the read-back), so that is its count.
        "client_retries": (
            throttled
            if kind == "plain"
            else sum(int((r.get("counters") or {}).get("retries", 0)) for r in results)
        ),
        "errors": sorted({e for r in results for e in r.get("errors", [])}),
        "clean": all(r.get("clean", True) for r in results),
    }


def _queued_cell(runs: list[dict[str, Any]]) -> str:
    """Worst utilisation over the seconds in which requests queued for a permit all second long."""
    known = [r for r in runs if r["queued_seconds"]]
    if not known:
        return "no such second"
    worst = min(known, key=lambda r: r["utilisation_queued"])
    return f"{worst['utilisation_queued'] * 100:.0f}% ({min(r['queued_seconds'] for r in known)} s)"


def run(opts: harness.Options) -> harness.Section:
    """Each variant `reps` times against one emulator; medians and the worst repetition."""
    points = int(opts.pick(4_000, 20_000))
    reps = opts.reps(1, 3)
    section = harness.Section(
        NAME,
        harness.TITLES[NAME],
        opts,
        scale=f"{PROCESSES} processes x {points:,} points ({SERIES} series), "
        f"emulator limit {LIMIT:.0f} req/s, {reps} repetition(s)",
    )
    variants = {
        "provider, file-backed budget 20 req/s": "file",
        "provider, Redis budget 20 req/s": "redis",
        "plain client, no budget (async extend)": "plain",
    }
    results: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-throttle-") as tmp, harness.emulator() as emu:
        work = Path(tmp)
        for label, kind in variants.items():
            results[label] = [one_round(emu, work, kind, points, f"{kind}{rep}") for rep in range(reps)]
            print(f"   {label}: {results[label][-1]}", flush=True)
    rows = []
    for label, runs in results.items():
        rows.append(
            [
                label,
                f"{harness.median([r['time'] for r in runs]):.1f} s",
                f"{harness.median([r['requests'] for r in runs]):,.0f}",
                f"{harness.median([r['throttled'] for r in runs]):,.0f} "
                f"({max(r['share_429'] for r in runs) * 100:.2f}% worst)",
                f"{max(r['max_window_rate'] for r in runs):.1f} req/s "
                f"({(max(r['max_window_rate'] for r in runs) / LIMIT - 1) * 100:+.0f}%)",
                f"{min(r['utilisation_all_busy'] for r in runs) * 100:.0f}% "
                f"({min(r['busy_seconds'] for r in runs)} s)",
                f"{min(r['utilisation'] for r in runs) * 100:.0f}%",
                _queued_cell(runs),
                f"{harness.median([r['cpu_share'] for r in runs]) * 100:.0f}%",
                f"{harness.median([r['all_rate'] for r in runs]):.1f} req/s "
                f"({harness.median([r['exempt'] for r in runs]):.0f} exempt)",
                f"{harness.median([r['client_retries'] for r in runs]):,.0f}",
                f"{sum(r['lost'] for r in runs)} / {sum(r['duplicates'] for r in runs)}",
                "; ".join(sorted({e for r in runs for e in r["errors"]}))[:300] or "none",
            ]
        )
    section.table(
        [
            "Variant",
            "Time (median)",
            "Requests (server)",
            "429s (worst share)",
            "Busiest 5 s arrival rate (vs limit)",
            "Budget used while every process had work (worst; whole seconds)",
            "Budget used until the last process was done (worst)",
            "Budget used in seconds with requests queued for a permit all second (worst; seconds)",
            "CPU used by workers + emulator, share of all cores (median)",
            "All requests per second incl. those outside the emulator's limit",
            "Retries (hook's count; plain: one per 429)",
            "Lost / duplicated points (read back)",
            "Client errors",
        ],
        rows,
    )
    section.table(
        ["Variant (first repetition)", "Accepted requests per second, start to end (+429s)"],
        [[label, runs[0]["timeline"]] for label, runs in results.items()],
    )
    for label in list(variants)[:2]:
        runs = results[label]
        share = max(r["share_429"] for r in runs)
        peak = max(r["max_window_rate"] for r in runs)
        util = min(r["utilisation_all_busy"] for r in runs)
        bad = sum(r["lost"] + r["duplicates"] for r in runs)
        short = label.split(",")[1].strip()
        worst = max(runs, key=lambda r: r["share_429"])
        section.verdict(
            f"{short}: 429s <= 1% of requests (worst repetition)",
            f"{share * 100:.2f}% ({worst['throttled']} of {worst['requests']}; median "
            f"{harness.median([r['throttled'] for r in runs]):.0f})",
            share <= MAX_429_SHARE,
            ""
            if share <= MAX_429_SHARE
            else "the server counted more than 20 budgeted requests in some one-second window although "
            "the limiter spaces its permits over 1.1 s: a permit is taken before the request is sent, "
            "so requests delayed after their permit (the processes share 2 cores) can arrive bunched",
        )
        section.verdict(
            f"{short}: no 5 s window above limit +5% ({LIMIT * (1 + MAX_OVERSHOOT):.0f} req/s)",
            f"{peak:.1f} req/s",
            peak <= LIMIT * (1 + MAX_OVERSHOOT),
        )
        section.verdict(
            f"{short}: >= {MIN_UTILISATION * 100:.0f}% of the budget used while work remains",
            f"{util * 100:.0f}%",
            util >= MIN_UTILISATION,
            f"the limiter's 100 ms window margin: 20 permits per 1.1 s, {LIMITER_CEILING * 100:.0f}% of the "
            "budget at best (a 50 ms margin drew 429s, see below); the rest is seconds in which no process "
            "had a request to send (compare the seconds with requests queued for a permit, and the "
            "per-second timeline)",
        )
        section.verdict(f"{short}: zero points lost or duplicated (read back)", f"{bad} bad points", bad == 0)
    section.note(
        "Time runs from the common start (every process imported and waiting) to the last process "
        "done. 'Busiest 5 s arrival rate' counts every budgeted request that reached the emulator "
        "(accepted and throttled) in the worst 5 s window; 'budget used' is accepted requests over "
        f"{LIMIT:.0f}/s across the whole seconds from the start until the first process finished "
        "(every process still had requests to send, so demand exceeded the budget: the target's "
        "'while work remains'), and until the last one finished (the tail, where one process's "
        "sequential requests cannot use the whole budget). 'Seconds with requests queued' are the "
        "whole seconds in which, at (nearly) every moment, some provider request was waiting for a "
        "permit (each worker records its waits): there the budget, not the clients, set the pace. "
        "Spec documents, OAuth token refreshes and websocket handshakes take no permit (the server "
        "does not count them against its limit); the 'all requests' column includes them. The "
        "plain client retries 429s itself (it reads only the first digit of Retry-After). Why the "
        "margin is 100 ms: with WINDOW_MARGIN_MS = 50 (a 95% ceiling) this benchmark drew 429s for "
        "20% (file) and 22% (Redis) of the requests on this 2-core host (2026-12-01, one run): "
        "between a permit and the server's count a request waits for its process to be scheduled "
        "and for the emulator to finish the request before it, and that delay varies by more than "
        "50 ms here."
    )
    return section


if __name__ == "__main__":
    harness.standalone(NAME, __doc__ or NAME, run)
