"""Worker process of the metric-file memory benchmark: one task that logs a metric file.

`python -m benchmarks.metric_file_worker log_file '<json params>'` creates a run and calls
NeptuneLogMetricsOperator(metrics_path=...).execute() the way an Airflow worker would (connection
from AIRFLOW_CONN_NEPTUNE_DEFAULT), then prints one result line with the process's memory figures.
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks import harness


def _rss() -> int:
    """Current resident set size of this process, bytes."""
    import psutil

    return int(psutil.Process().memory_info().rss)


def _peak_rss() -> int:
    """High-water mark of this process's resident set (VmHWM of /proc/self/status), bytes.

    Not getrusage's ru_maxrss: Linux carries that over from the parent at fork and through exec,
    so a worker started by a parent of 300 MB would report at least 300 MB whatever it did.
    """
    import re
    from pathlib import Path

    match = re.search(r"^VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.M)
    if match is None:
        raise RuntimeError("no VmHWM in /proc/self/status (this benchmark needs Linux)")
    return int(match.group(1)) * 1024


def _ru_maxrss() -> int:
    """getrusage ru_maxrss (KiB on Linux), bytes: shown next to VmHWM to make the difference visible."""
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def log_file(params: dict[str, Any]) -> dict[str, Any]:
    """Create a run, log the file through the operator, and report time and memory.

    Memory: the process's RSS after imports and run creation (the baseline any task pays), and
    its RSS high-water mark (VmHWM) at the end, which covers everything the task did in this
    process: reading, validating, the hook, and the neptune client's own thread and queue.
    """
    import neptune  # noqa: F401 - imported before the baseline, as an Airflow worker has it loaded

    from airflow_provider_neptune.hooks.neptune import NeptuneHook
    from airflow_provider_neptune.operators.metrics import NeptuneLogMetricsOperator
    from benchmarks.provider_client import _context

    hook = NeptuneHook()
    run_id = hook.create_run(custom_run_id=str(params["custom_run_id"]))
    baseline_rss, baseline_peak = _rss(), _peak_rss()
    kwargs: dict[str, Any] = {}
    if params.get("chunk_points"):
        kwargs["chunk_points"] = int(params["chunk_points"])
    operator = NeptuneLogMetricsOperator(
        task_id="log_metrics_file", run_id=run_id, metrics_path=str(params["path"]), **kwargs
    )
    start = time.perf_counter()
    cpu_start = time.process_time()
    summary = operator.execute(_context())
    seconds = time.perf_counter() - start
    peak = _peak_rss()
    ru_maxrss = _ru_maxrss()
    hook.close()
    return {
        "run_id": run_id,
        "seconds": seconds,
        "cpu": time.process_time() - cpu_start,
        "baseline_rss": baseline_rss,
        "baseline_peak": baseline_peak,
        "peak_rss": peak,
        "ru_maxrss": ru_maxrss,
        "summary": summary,
    }


KINDS = {"log_file": log_file}

if __name__ == "__main__":
    harness.worker_main(KINDS)
