"""Shared plumbing for the benchmarks: timing, medians, machine facts, emulator, Redis and
worker processes, and the RESULTS.md writer that every benchmark's section goes through."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.metadata
import json
import math
import os
import platform
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_neptune.emulator import NeptuneEmulator

REPO = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
#: Where quick mode (``make bench``) writes, so the committed full-scale figures stay as they are.
QUICK_RESULTS = Path(__file__).resolve().parent / "RESULTS-quick.md"
RESULT_PREFIX = "BENCH_RESULT "
# Every benchmark module, in the order of issue 8, with its title in RESULTS.md.
TITLES: dict[str, str] = {
    "request_efficiency": "1. Request efficiency and overhead",
    "throttling": "2. Throttling under a shared budget",
    "throttling_celery": "2b. Throttling on real Airflow: LocalExecutor and the Celery stack",
    "faults": "3. Faults and killed tasks",
    "parse_cost": "4. DAG parse cost",
    "retention": "5. Retention at scale",
    "emulator_capacity": "6. Emulator capacity",
    "web_view": "7. Web view render time",
    "metric_file_memory": "8. Metric file memory",
    "emulator_scale": "9. Emulator CPU per request as data grows",
}
#: Run only when named with --only: they start whole Airflow stacks and take minutes.
OPT_IN = frozenset({"throttling_celery"})
PACKAGES = (
    "airflow-provider-neptune",
    "apache-airflow",
    "apache-airflow-task-sdk",
    "neptune",
    "pyrate-limiter",
    "tenacity",
    "redis",
    "uvicorn",
    "starlette",
)


# ---------------------------------------------------------------- options and results


@dataclass(frozen=True)
class Options:
    """What the command line asked for: quick (small, for `make bench`) or full scale."""

    quick: bool
    repeat: int | None
    output: Path
    command: str

    def reps(self, quick: int, full: int) -> int:
        """Repetitions: --repeat when given, else the benchmark's quick or full default."""
        return self.repeat if self.repeat else (quick if self.quick else full)

    def pick(self, quick: Any, full: Any) -> Any:
        """The quick-mode or full-mode value of a scale parameter."""
        return quick if self.quick else full


@dataclass
class Verdict:
    """One target of the issue with the figure measured against it."""

    target: str
    measured: str
    met: bool
    limit: str = ""

    def row(self) -> list[str]:
        """Markdown table row: target, measured, verdict, what limits it."""
        return [self.target, self.measured, "met" if self.met else "**MISSED**", self.limit or ""]


@dataclass
class Section:
    """A benchmark's part of RESULTS.md: its tables, notes and verdicts."""

    name: str
    title: str
    options: Options
    scale: str = ""
    body: list[str] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    load_before: tuple[float, float, float] = field(default_factory=os.getloadavg)

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[Any]], caption: str = "") -> None:
        """Append a Markdown table (with an optional bold caption line above it)."""
        if caption:
            self.body.append(f"**{caption}**\n")
        self.body.append(md_table(headers, rows))

    def note(self, text: str) -> None:
        """Append a paragraph."""
        self.body.append(text.strip() + "\n")

    def verdict(self, target: str, measured: str, met: bool, limit: str = "") -> None:
        """Record a target with its measured figure; a miss must say what limits it."""
        self.verdicts.append(Verdict(target, measured, met, limit))

    def render(self) -> str:
        """The section as Markdown, with its verdicts embedded for the summary table."""
        took = time.time() - self.started
        load_after = os.getloadavg()
        when = dt.datetime.fromtimestamp(self.started, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        mode = "quick" if self.options.quick else "full"
        lines = [
            f"## {self.title}\n",
            f"- Command: `{self.options.command}`",
            f"- Mode: {mode}; scale: {self.scale}" if self.scale else f"- Mode: {mode}",
            f"- Date: {when}; took {took:.0f} s",
            f"- Machine: {machine_line()}",
            f"- Load average (1 min) before/after: {self.load_before[0]:.2f} / {load_after[0]:.2f}",
            "",
        ]
        if self.verdicts:
            lines.append(
                md_table(
                    ["Target", "Measured", "Verdict", "What limits it"], [v.row() for v in self.verdicts]
                )
            )
        lines.extend(self.body)
        payload = json.dumps([v.__dict__ for v in self.verdicts])
        return "\n".join(lines).rstrip() + f"\n\n<!-- verdicts {payload} -->\n"


def md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table."""
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------- figures


def median(values: Sequence[float]) -> float:
    """Median of a non-empty sequence."""
    return float(statistics.median(values))


def fmt_s(seconds: float) -> str:
    """Seconds with a sensible number of digits."""
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, infinity when the denominator is zero."""
    return numerator / denominator if denominator else float("inf")


def spread(values: Sequence[float]) -> str:
    """min..max of repetitions, to show how noisy a median is."""
    return f"{min(values):.3g}..{max(values):.3g}"


@contextlib.contextmanager
def stopwatch() -> Iterator[list[float]]:
    """Measure a block: the yielded list holds the elapsed seconds afterwards."""
    box: list[float] = []
    start = time.perf_counter()
    try:
        yield box
    finally:
        box.append(time.perf_counter() - start)


def series_path(index: int) -> str:
    """Field path of the index-th benchmark series."""
    return f"bench/series_{index:03d}"


def metric_value(series: int, step: int) -> float:
    """The deterministic value every benchmark logs for (series, step); read-backs recompute it."""
    return round(math.sin(step * 0.001 + series) * 100.0 + series, 6)


def checkpoint_score(run: int, checkpoint: int) -> float:
    """The deterministic score of a seeded checkpoint (retention's expected outcome recomputes it)."""
    return round(random.Random(run * 7919 + checkpoint).random(), 6)


# ---------------------------------------------------------------- machine


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def versions() -> dict[str, str]:
    """Installed versions of the packages the figures depend on."""
    found: dict[str, str] = {}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "absent"
    return found


def _git_commit() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head or "unknown"


def machine_line() -> str:
    """One line: cores, CPU, memory, OS, Python, package versions, commit."""
    mem = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    pkgs = ", ".join(f"{k} {v}" for k, v in versions().items())
    return (
        f"{os.cpu_count()} cores ({_cpu_model()}){mem}, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}; {pkgs}; commit {_git_commit()}"
    )


# ---------------------------------------------------------------- servers


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def emulator(**kwargs: Any) -> Iterator[NeptuneEmulator]:
    """A fresh emulator subprocess (the provider's own), stopped on exit."""
    from airflow_provider_neptune.emulator import NeptuneEmulator

    with NeptuneEmulator(**kwargs) as emu:
        yield emu


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds a process has used so far (0.0 when it is gone)."""
    import psutil

    try:
        times = psutil.Process(pid).cpu_times()
    except (psutil.Error, ValueError):
        return 0.0
    return float(times.user + times.system)


def http_json(
    url: str,
    payload: Mapping[str, Any] | None = None,
    timeout: float = 30.0,
    headers: Mapping[str, str] | None = None,
) -> Any:
    """GET (or POST JSON) a URL with urllib and decode the JSON answer."""
    data = None if payload is None else json.dumps(payload).encode()
    sent = {"Content-Type": "application/json", **(headers or {})}
    req = urllib.request.Request(url, data=data, headers=sent)
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read() or b"null")


def stats(emu: NeptuneEmulator) -> dict[str, Any]:
    """The emulator's /_emulator/stats, read over HTTP (the server's own count, not the client's)."""
    return dict(http_json(f"{emu.url}/_emulator/stats", headers=emu.control_headers()))


def route_count(before: Mapping[str, Any], after: Mapping[str, Any], fragment: str) -> int:
    """Requests on routes whose name contains `fragment` between two stats snapshots."""

    def total(snap: Mapping[str, Any]) -> int:
        routes = snap.get("requests_by_route") or {}
        return sum(int(n) for route, n in routes.items() if fragment in route)

    return total(after) - total(before)


def route_deltas(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, int]:
    """Requests per route between two stats snapshots (routes with none left out)."""
    old, new = before.get("requests_by_route") or {}, after.get("requests_by_route") or {}
    counts = {route: int(n) - int(old.get(route, 0)) for route, n in new.items()}
    return {route: n for route, n in sorted(counts.items(), key=lambda kv: -kv[1]) if n}


def delta(before: Mapping[str, Any], after: Mapping[str, Any], key: str) -> int:
    """Difference of one numeric stats counter between two snapshots."""
    return int(after.get(key) or 0) - int(before.get(key) or 0)


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """A throwaway redis-server on a free loopback port; yields its redis:// URL."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise RuntimeError("redis-server is not installed (make redis installs it)")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as tmp:
        proc = subprocess.Popen(
            [
                exe,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                tmp,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 15
            while True:
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start on port {port}")
                time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


# ---------------------------------------------------------------- worker processes


def worker_env(emu: NeptuneEmulator | None, workdir: Path, **extra: str) -> dict[str, str]:
    """Environment of a worker: no developer NEPTUNE_* settings, the emulator's, a private data dir."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEPTUNE_", "AIRFLOW_CONN_"))}
    if emu is not None:
        env.update(emu.env())
    env["NEPTUNE_DATA_DIRECTORY"] = str(workdir / ".neptune")
    env["AIRFLOW_HOME"] = str(workdir / "airflow")
    env["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{workdir / 'airflow' / 'airflow.db'}"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH", "")]))
    env.update(extra)
    return env


def spawn(
    module: str, kind: str, params: Mapping[str, Any], env: Mapping[str, str], log: Path
) -> subprocess.Popen[str]:
    """Start `python -m <module> <kind>` with JSON params on argv; stdout and stderr go to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    handle = log.open("w")
    return subprocess.Popen(
        [sys.executable, "-m", module, kind, json.dumps(dict(params))],
        cwd=str(log.parent),
        env=dict(env),
        stdout=handle,
        stderr=subprocess.STDOUT,
        text=True,
    )


def collect(proc: subprocess.Popen[str], log: Path, timeout: float) -> dict[str, Any]:
    """Wait for a worker and return the JSON it printed; raise with its log tail when it failed."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise RuntimeError(f"worker timed out after {timeout:.0f} s; log {log}:\n{tail(log)}") from None
    text = log.read_text(errors="replace")
    for line in reversed(text.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return dict(json.loads(line[len(RESULT_PREFIX) :]))
    raise RuntimeError(f"worker exited {proc.returncode} without a result; log {log}:\n{tail(log)}")


def run_worker(
    module: str, kind: str, params: Mapping[str, Any], env: Mapping[str, str], log: Path, timeout: float = 900
) -> dict[str, Any]:
    """spawn() then collect()."""
    return collect(spawn(module, kind, params, env, log), log, timeout)


def tail(path: Path, lines: int = 30) -> str:
    """The last lines of a log file."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def emit(result: Mapping[str, Any]) -> None:
    """Worker side: print the result line the parent reads."""
    sys.stdout.flush()
    print(RESULT_PREFIX + json.dumps(dict(result)), flush=True)


def ready_and_wait(params: Mapping[str, Any], timeout: float = 300.0) -> tuple[float, float]:
    """Worker side: when the parent asked for a synchronised start (`ready_file`/`go_file`), say
    ready and block until the shared start time; returns (start_at, stop_at), zeros without one."""
    if not params.get("go_file"):
        return 0.0, 0.0
    Path(params["ready_file"]).write_text("ready")
    go_file = Path(params["go_file"])
    deadline = time.monotonic() + timeout
    while not (go_file.exists() and go_file.read_text().strip()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no go signal in {go_file}")
        time.sleep(0.01)
    start_at, stop_at = (float(x) for x in go_file.read_text().split())
    while time.time() < start_at:
        time.sleep(0.001)
    return start_at, stop_at


def release_together(
    ready_files: Sequence[Path], go_file: Path, procs: Sequence[subprocess.Popen[str]], duration: float = 0.0
) -> float:
    """Parent side: wait until every worker is ready, then publish one start time; returns it."""
    deadline = time.monotonic() + 600
    while not all(f.exists() for f in ready_files):
        dead = [p.returncode for p in procs if p.poll() is not None]
        if dead or time.monotonic() > deadline:
            raise RuntimeError(f"workers did not become ready (exit codes {dead})")
        time.sleep(0.05)
    start_at = time.time() + 0.3
    staging = go_file.with_name(go_file.name + ".tmp")
    staging.write_text(f"{start_at} {start_at + duration}")
    os.replace(staging, go_file)  # atomic: a worker never reads half a line
    return start_at


def worker_main(kinds: Mapping[str, Callable[[dict[str, Any]], dict[str, Any]]]) -> None:
    """Worker side: dispatch `python -m module <kind> <json>` to a function and emit its result."""
    if len(sys.argv) != 3 or sys.argv[1] not in kinds:
        sys.exit(f"usage: python -m {sys.argv[0]} {{{','.join(kinds)}}} '<json params>'")
    emit(kinds[sys.argv[1]](json.loads(sys.argv[2])))


# ---------------------------------------------------------------- RESULTS.md

_HEADER = """# Benchmark results

Written by `python -m benchmarks` (full scale, to RESULTS.md) and `make bench` (= `python -m
benchmarks --quick`: the same tables at small scale, to RESULTS-quick.md); a single benchmark
rewrites only its own section (`python -m benchmarks --only NAME`), so each section names its
own command, date and commit. A section's figures are measured in one run, side by side, against a
fresh emulator subprocess on this machine; times
are medians of the stated repetitions, so compare the ratios rather than absolute times between
machines. Request counts and rates are the emulator's own (`/_emulator/stats`); every loss and
duplicate check reads the data back from the emulator, never the client's counters. A missed target
is reported as missed with the figure and what limits it.
"""

_BLOCK = re.compile(r"<!-- BEGIN (?P<name>[a-z_]+) -->\n(?P<body>.*?)<!-- END (?P=name) -->\n", re.S)
_VERDICTS = re.compile(r"<!-- verdicts (?P<json>\[.*?\]) -->", re.S)


def write_results(rendered: Mapping[str, str], path: Path) -> None:
    """Merge freshly rendered sections into RESULTS.md, keeping the other sections as they were."""
    order, titles = list(TITLES), TITLES
    existing: dict[str, str] = {}
    if path.exists():
        existing = {m["name"]: m["body"] for m in _BLOCK.finditer(path.read_text())}
    existing.update(rendered)
    rows: list[list[str]] = []
    for name in order:
        body = existing.get(name)
        if body is None:
            continue
        match = _VERDICTS.search(body)
        for item in json.loads(match["json"]) if match else []:
            verdict = Verdict(**item)
            rows.append([titles[name], *verdict.row()[:3]])
    parts = [_HEADER]
    if rows:
        parts.append("## Summary\n\n" + md_table(["Benchmark", "Target", "Measured", "Verdict"], rows))
    parts += [f"<!-- BEGIN {n} -->\n{existing[n]}<!-- END {n} -->\n" for n in order if n in existing]
    path.write_text("\n".join(parts))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every benchmark understands."""
    parser.add_argument("--quick", action="store_true", help="small scale and few repetitions (make bench)")
    parser.add_argument(
        "--repeat", type=int, default=None, help="repetitions (default: per benchmark and mode)"
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help=f"Markdown file to update (default {RESULTS.relative_to(REPO)}, with --quick "
        f"{QUICK_RESULTS.relative_to(REPO)})",
    )


def options_from(args: argparse.Namespace) -> Options:
    """Options from parsed arguments, with the exact command line for RESULTS.md."""
    argv = " ".join(sys.argv[1:])
    module = Path(sys.argv[0]).stem if sys.argv[0] else ""
    prog = "benchmarks" if module == "__main__" else f"benchmarks.{module}"
    command = f"python -m {prog} {argv}".strip()
    output = Path(args.output) if args.output else (QUICK_RESULTS if args.quick else RESULTS)
    return Options(quick=bool(args.quick), repeat=args.repeat, output=output, command=command)


def standalone(name: str, doc: str, run: Callable[[Options], Section]) -> None:
    """Command line of one benchmark module: run it and update its section of RESULTS.md."""
    parser = argparse.ArgumentParser(
        prog=f"python -m benchmarks.{name}",
        description=doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    opts = options_from(parser.parse_args())
    section = run(opts)
    write_results({name: section.render()}, opts.output)
    print(f"{TITLES[name]}: section written to {opts.output}")
