"""Benchmark 7: peak memory of logging a 200 MB metric file through NeptuneLogMetricsOperator.

A long-layout CSV (columns path, step, timestamp, value; 10 series interleaved row by row) of
about 200 MB is written, and the same points as a Parquet file; each is logged in a fresh worker
process by NeptuneLogMetricsOperator(metrics_path=...) with the connection's default settings
(async, shared budget 20 requests/s) against a fresh emulator. The figure is the worker's RSS
high-water mark (VmHWM in /proc/self/status): the whole process that logs, so it includes the
interpreter, Airflow and neptune imports (the baseline every task pays) and the neptune client's
own thread; tracemalloc would miss memory outside Python's allocator (pyarrow buffers, the client's
serialisation) and understate it. getrusage's ru_maxrss is not used: Linux carries it over from
the parent at fork, so it reports the benchmark runner's size. Every point is read back with the
plain client afterwards.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from airflow_provider_neptune.operators.metrics import DEFAULT_CHUNK_POINTS
from benchmarks import harness

NAME = "metric_file_memory"
SERIES = 10
TARGET_MB = 300.0
FILE_MB_FULL = 200
FILE_MB_QUICK = 20
MB = 1_000_000
MIB = 1024 * 1024
START_TS = 1_764_547_200


def _row(series: int, step: int) -> str:
    return f"{harness.series_path(series)},{step},{START_TS + step},{harness.metric_value(series, step)!r}\n"


def write_csv(path: Path, target_bytes: int) -> int:
    """Write whole steps (every series) until the file reaches target_bytes; returns the steps."""
    step = 0
    size = len("path,step,timestamp,value\n")
    with path.open("w", buffering=1 << 20) as out:
        out.write("path,step,timestamp,value\n")
        while size < target_bytes:
            block = "".join(_row(i, step) for i in range(SERIES))
            out.write(block)
            size += len(block)
            step += 1
    return step


def write_parquet(path: Path, steps: int) -> None:
    """The same points as the CSV, as Parquet in row groups of 131,072 rows, written a group at a time."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    group = 131_072 // SERIES
    schema = pa.schema(
        [("path", pa.string()), ("step", pa.int64()), ("timestamp", pa.int64()), ("value", pa.float64())]
    )
    with pq.ParquetWriter(path, schema) as writer:
        for first in range(0, steps, group):
            rows = [(i, s) for s in range(first, min(steps, first + group)) for i in range(SERIES)]
            writer.write_table(
                pa.table(
                    {
                        "path": [harness.series_path(i) for i, _ in rows],
                        "step": [s for _, s in rows],
                        "timestamp": [START_TS + s for _, s in rows],
                        "value": [harness.metric_value(i, s) for i, s in rows],
                    },
                    schema=schema,
                )
            )


def log_file(emu: Any, work: Path, label: str, path: Path) -> dict[str, Any]:
    """Log one file in a fresh worker process and return its figures plus the emulator's counts."""
    env = harness.worker_env(emu, work / label, AIRFLOW_CONN_NEPTUNE_DEFAULT=emu.airflow_conn_json())
    before = harness.stats(emu)
    cpu = harness.cpu_seconds(emu.pid)
    result = harness.run_worker(
        "benchmarks.metric_file_worker",
        "log_file",
        {"path": str(path), "custom_run_id": f"bench-file-{label}"},
        env,
        work / label / "worker.log",
        timeout=5400,
    )
    after = harness.stats(emu)
    result["requests"] = harness.delta(before, after, "requests_total")
    result["emulator_cpu"] = harness.cpu_seconds(emu.pid) - cpu
    return result


def read_back(emu: Any, work: Path, measured: dict[str, dict[str, Any]], steps: int) -> dict[str, Any]:
    """Plain-client read-back of every series of every run: lost, duplicated, wrong points."""
    return harness.run_worker(
        "benchmarks.plain_client",
        "read_back",
        {"runs": {m["run_id"]: SERIES for m in measured.values()}, "steps": steps},
        harness.worker_env(emu, work / "check"),
        work / "check" / "worker.log",
        timeout=5400,
    )


def _mib(value: float) -> str:
    return f"{value / MIB:.0f} MiB ({value / MB:.0f} MB)"


def run(opts: harness.Options) -> harness.Section:
    """Write the files, log each in a fresh process, read every point back."""
    file_mb = int(opts.pick(FILE_MB_QUICK, FILE_MB_FULL))
    section = harness.Section(NAME, harness.TITLES[NAME], opts)
    measured: dict[str, dict[str, Any]] = {}
    sizes: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="bench-metric-file-") as tmp, harness.emulator() as emu:
        work = Path(tmp)
        csv_path = work / "metrics.csv"
        steps = write_csv(csv_path, file_mb * MB)
        parquet_path = work / "metrics.parquet"
        write_parquet(parquet_path, steps)
        sizes = {"CSV": csv_path.stat().st_size, "Parquet": parquet_path.stat().st_size}
        section.scale = (
            f"{SERIES} series x {steps:,} steps = {SERIES * steps:,} points; CSV {sizes['CSV'] / MB:.0f} MB, "
            f"Parquet {sizes['Parquet'] / MB:.0f} MB"
        )
        print(f"   files: {section.scale}", flush=True)
        for label, path in (("CSV", csv_path), ("Parquet", parquet_path)):
            measured[label] = log_file(emu, work, label.lower(), path)
            shown = {k: v for k, v in measured[label].items() if k != "summary"}
            print(f"   {label}: {json.dumps(shown)}", flush=True)
        check = read_back(emu, work, measured, steps)
    points = SERIES * steps
    rows = []
    for label, m in measured.items():
        summary = m["summary"]
        per_run = check["per_run"][m["run_id"]]
        bad = per_run["missing"] + per_run["wrong_values"] + per_run["unexpected"]
        rows.append(
            [
                f"{label}, {sizes[label] / MB:.0f} MB",
                f"{points:,}",
                _mib(m["peak_rss"]),
                _mib(m["ru_maxrss"]),
                _mib(m["baseline_rss"]),
                _mib(max(0, m["peak_rss"] - m["baseline_rss"])),
                f"{m['seconds']:.1f} s",
                f"{summary['chunks']}",
                f"{m['requests']:,}",
                f"{m['emulator_cpu']:.0f} s",
                f"{per_run['points']:,}",
                f"{bad} / {per_run['duplicates']}",
            ]
        )
        section.verdict(
            f"{label} file of {sizes[label] / MB:.0f} MB logged with peak RSS under {TARGET_MB:.0f} MB",
            f"{_mib(m['peak_rss'])} peak RSS ({_mib(m['baseline_rss'])} before the file)",
            m["peak_rss"] < TARGET_MB * MB,
            "" if m["peak_rss"] < TARGET_MB * MB else "the process's baseline plus one chunk in flight",
        )
        section.verdict(
            f"{label}: every point read back exactly once",
            f"{per_run['points']:,} of {points:,} points; {bad} lost or wrong, "
            f"{per_run['duplicates']} duplicated",
            per_run["points"] == points and bad == 0 and per_run["duplicates"] == 0,
        )
    section.table(
        [
            "File",
            "Points",
            "Peak RSS (VmHWM)",
            "ru_maxrss (inherited, see below)",
            "RSS before execute()",
            "Peak growth",
            "execute() time",
            "Chunks",
            "Requests (server)",
            "Emulator CPU",
            "Points read back",
            "Lost / duplicated",
        ],
        rows,
    )
    section.note(
        "Each file is logged by NeptuneLogMetricsOperator(metrics_path=...).execute() in a fresh worker "
        "process with the connection's default settings (async, shared budget 20 requests/s), after "
        "the run was created. The operator reads the file twice as a stream: once to validate every "
        "point (nothing is sent if one is bad), once to hand chunks of "
        f"{DEFAULT_CHUNK_POINTS:,} points (the default chunk_points) to "
        "hook.log_metrics, which resumes and verifies per chunk. 'Peak RSS' is the worker's "
        "resident-set high-water mark (VmHWM of /proc/self/status) at the end: the whole process, "
        "including the interpreter, Airflow and neptune (the 'before' column, which any task pays) "
        "and the neptune client's sending thread; tracemalloc would see only Python allocations and "
        "miss pyarrow's buffers and the client's. getrusage's ru_maxrss, shown for comparison, is "
        "not the figure: Linux carries it over from the parent at fork and through exec, so it is at "
        "least the benchmark runner's own size when it started the worker. "
        "JSON files are parsed whole and refused above 64 MiB (use CSV or Parquet for large files), "
        "so they are not part of this benchmark. The read-back uses the plain client in another process."
    )
    return section


if __name__ == "__main__":
    harness.standalone(NAME, __doc__ or NAME, run)
