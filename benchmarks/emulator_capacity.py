"""Benchmark 6: how many `executeOperations` requests per second the emulator sustains.

Four client processes send as fast as they can for a fixed window, started together; the rate is
the emulator's own count (`/_emulator/stats` requests_per_second) over the seconds fully inside the
window. Client kinds: lean HTTP posts of 100 points and of 1 point per request over one keep-alive
connection (the server's cost alone), the same with a new connection per request, and the real
`neptune` client in sync mode appending one point per request (what the other benchmarks' clients
look like: keep-alive). Client and server share the machine's cores.

Then its memory under big bodies: the emulator's peak RSS while it takes a large JSON body (under and
over `--max-body-bytes`) and a large file upload sent in chunks (streamed to disk).
"""

from __future__ import annotations

import functools
import json
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil

from benchmarks import harness

NAME = "emulator_capacity"
CLIENTS = 4
# What the other benchmarks ask of the emulator at most (benchmark 2's limit is 20 requests/s).
NEEDED_RPS = 20.0
VARIANTS = (
    ("lean HTTP keep-alive, 100 points/request", "http", 100),
    ("lean HTTP keep-alive, 1 point/request", "http", 1),
    ("lean HTTP new connection per request, 1 point/request", "http-fresh", 1),
    ("neptune client (sync), 1 point/request", "client", 1),
)


MB = 1_000_000
MEMORY_LIMIT = 4 * 1024 * 1024  # --max-body-bytes for the over-the-limit row (below either body size)


def _peak_rss(pid: int | None, action: Callable[[], Any]) -> tuple[int, int, int]:
    """(RSS before, peak RSS while the request `action` runs, its HTTP status), polling every 10 ms."""
    proc = psutil.Process(pid)
    base = proc.memory_info().rss
    peak = [base]
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            try:
                peak[0] = max(peak[0], proc.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.01)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        status = int(action().status_code)
    finally:
        done.set()
        poller.join()
    return base, peak[0], status


def _memory_rows(opts: Any) -> list[list[str]]:
    """Peak emulator RSS for a big JSON body under/over the limit and for a big chunked upload."""
    import requests

    ops_count = int(opts.pick(1500, 6000))
    upload_mb = int(opts.pick(50, 200))
    rows: list[list[str]] = []
    for limit in (None, MEMORY_LIMIT):
        with harness.emulator(max_body_bytes=limit) as emu:
            session = requests.Session()
            token = session.get(
                f"{emu.url}/api/backend/v1/authorization/oauth-token",
                headers={"X-Neptune-Api-Token": emu.api_token},
                timeout=30,
            ).json()["accessToken"]
            auth = {"Authorization": f"Bearer {token}"}
            run_id = session.post(
                f"{emu.url}/api/leaderboard/v1/experiments",
                json={"projectIdentifier": emu.project},
                headers=auth,
                timeout=30,
            ).json()["id"]
            entries = [
                {"value": 0.123456789, "step": j, "timestampMilliseconds": 1700000000000} for j in range(100)
            ]
            body = json.dumps(
                [{"path": f"m{i}", "logFloats": {"entries": entries}} for i in range(ops_count)]
            )
            url = f"{emu.url}/api/leaderboard/v1/attributes/operations?experimentId={run_id}"
            headers = {**auth, "Content-Type": "application/json"}
            base, peak, status = _peak_rss(
                emu.pid,
                functools.partial(session.post, url, data=body.encode(), headers=headers, timeout=300),
            )
            shown = f"{limit // (1024 * 1024)} MiB" if limit else "default (256 MiB)"
            rows.append(
                [
                    f"JSON body {len(body) / MB:.0f} MB, limit {shown}",
                    str(status),
                    f"{base / MB:.0f} MB",
                    f"{peak / MB:.0f} MB",
                ]
            )
            if limit is None:

                def chunks() -> Iterator[bytes]:
                    block = b"x" * (1024 * 1024)
                    for _ in range(upload_mb):
                        yield block

                upload = (
                    f"{emu.url}/api/leaderboard/v1/attributes/storage/file/upload"
                    f"?experimentIdentifier={run_id}&attribute=blob&ext=bin"
                )
                base, peak, status = _peak_rss(
                    emu.pid,
                    functools.partial(session.post, upload, data=chunks(), headers=auth, timeout=300),
                )
                rows.append(
                    [
                        f"file upload {upload_mb} MiB, chunked",
                        str(status),
                        f"{base / MB:.0f} MB",
                        f"{peak / MB:.0f} MB",
                    ]
                )
    return rows


def _server_rate(snapshot: dict[str, Any], start_at: float, stop_at: float) -> tuple[float, int]:
    """Accepted requests per second over the whole seconds inside [start_at, stop_at)."""
    first, last = int(start_at) + 1, int(stop_at) - 1
    rows = [r for r in snapshot.get("requests_per_second") or [] if first <= int(r[0]) < last]
    seconds = max(last - first, 1)
    accepted = sum(int(r[1]) for r in rows)
    return accepted / seconds, seconds


def _one_window(emu: Any, work: Path, via: str, points: int, duration: float, rep: int) -> dict[str, float]:
    """Start CLIENTS workers, release them together for `duration` seconds, measure the server."""
    tag = f"{via}{points}_{rep}"
    go_file = work / f"go_{tag}"
    env = harness.worker_env(emu, work / tag)
    procs = []
    for client in range(CLIENTS):
        params = {
            "via": via,
            "points": points,
            "client": client,
            "url": emu.url,
            "ready_file": str(work / f"ready_{tag}_{client}"),
            "go_file": str(go_file),
        }
        log = work / tag / f"client{client}.log"
        procs.append((harness.spawn("benchmarks.plain_client", "hammer", params, env, log), log))
    server = psutil.Process(emu.pid)
    ready = [work / f"ready_{tag}_{c}" for c in range(CLIENTS)]
    start_at = harness.release_together(ready, go_file, [p for p, _ in procs], duration)
    stop_at = start_at + duration
    time.sleep(max(0.0, start_at - time.time()))
    cpu0 = server.cpu_times()
    time.sleep(max(0.0, stop_at - time.time()))
    cpu1 = server.cpu_times()
    results = [harness.collect(p, log, timeout=120) for p, log in procs]
    rate, seconds = _server_rate(harness.stats(emu), start_at, stop_at)
    cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    if not all(r["clean"] for r in results):
        raise RuntimeError("a plain client worker had provider code loaded")
    return {
        "rate": rate,
        "seconds": seconds,
        "client_sent": sum(r["sent"] for r in results),
        "failed": sum(r["failed"] for r in results),
        "p50": harness.median([r["p50"] for r in results]),
        "p99": max(r["p99"] for r in results),
        "server_cpu_share": cpu / duration,
    }


def run(opts: harness.Options) -> harness.Section:
    """Measure each client kind `reps` times against one emulator and report medians."""
    duration = float(opts.pick(4, 10))
    reps = opts.reps(1, 3)
    section = harness.Section(
        NAME,
        harness.TITLES[NAME],
        opts,
        scale=f"{CLIENTS} client processes, {duration:.0f} s windows x {reps}",
    )
    rows: list[list[str]] = []
    rates: dict[str, float] = {}
    p50s: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-capacity-") as tmp, harness.emulator() as emu:
        work = Path(tmp)
        for label, via, points in VARIANTS:
            windows = [_one_window(emu, work, via, points, duration, rep) for rep in range(reps)]
            rate = harness.median([w["rate"] for w in windows])
            rates[label] = rate
            p50s[label] = harness.median([w["p50"] for w in windows])
            cpu_share = harness.median([w["server_cpu_share"] for w in windows])
            rows.append(
                [
                    label,
                    f"{rate:.0f} ({harness.spread([w['rate'] for w in windows])})",
                    f"{rate * points:,.0f}",
                    f"{harness.median([w['p50'] for w in windows]) * 1000:.1f} ms",
                    f"{max(w['p99'] for w in windows) * 1000:.1f} ms",
                    f"{cpu_share * 100:.0f}%",
                    f"{cpu_share / rate * 1000:.2f} ms" if rate else "n/a",
                    str(sum(int(w["failed"]) for w in windows)),
                ]
            )
    section.table(
        [
            "Client kind",
            "Requests/s (server count, median; min..max)",
            "Points/s",
            "Latency p50",
            "Latency p99",
            "Emulator CPU (% of one core)",
            "Emulator CPU per request",
            "Failed requests",
        ],
        rows,
    )
    client = rates[VARIANTS[-1][0]]
    section.verdict(
        f"not the limit of benchmark 2: 4 real clients sustain >= 5x its {NEEDED_RPS:.0f} req/s",
        f"{client:.0f} req/s ({client / NEEDED_RPS:.1f}x)",
        client >= 5 * NEEDED_RPS,
        "" if client >= 5 * NEEDED_RPS else "per-request latency on keep-alive connections (next row)",
    )
    alive, fresh = p50s[VARIANTS[1][0]], p50s[VARIANTS[2][0]]
    section.verdict(
        "not the limit of sequential clients: keep-alive latency no worse than a new connection's",
        f"p50 {alive * 1000:.1f} ms keep-alive vs {fresh * 1000:.1f} ms new connection",
        alive <= max(2 * fresh, fresh + 0.005),
        ""
        if alive <= max(2 * fresh, fresh + 0.005)
        else "emulator defect: its accepted sockets lack TCP_NODELAY (the listening socket is created "
        "with proto 0, so asyncio's _set_nodelay skips it); uvicorn writes each response in two "
        "sends and Nagle holds the second until the client's delayed ACK (~40 ms). Every client "
        "request over a kept-alive connection (the neptune client's) pays it",
    )
    section.table(
        ["Request to the emulator", "HTTP status", "Emulator RSS before", "Emulator peak RSS"],
        _memory_rows(opts),
        caption="Memory: a JSON body over --max-body-bytes is refused (413) without being read; "
        "uploads are streamed to disk",
    )
    section.note(
        "The emulator, the four client processes and anything else running share "
        f"{psutil.cpu_count()} cores, so these rates are a lower bound of the emulator's capacity; "
        "the CPU-per-request column is the machine-independent cost. Benchmark 1's plain sync "
        "point-by-point run is the only one that sends at this kind of rate, so its time partly "
        "measures the emulator; every other benchmark stays far below it. These rates are for an "
        "emulator holding little data; benchmark 9 shows its CPU per request per route at up to "
        "10,000 stored runs."
    )
    return section


if __name__ == "__main__":
    harness.standalone(NAME, __doc__ or NAME, run)
