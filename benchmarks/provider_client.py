"""Worker processes that log through the provider: a task's run creation and NeptuneLogMetricsOperator.

`python -m benchmarks.provider_client <kind> '<json params>'` runs one task-like unit of work the way
an Airflow worker would (connection from AIRFLOW_CONN_NEPTUNE_DEFAULT, the operator's execute()) and
prints one result line. The clock excludes interpreter start-up and imports, like the plain baseline.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from benchmarks import harness

if TYPE_CHECKING:
    from airflow.sdk import Context


class _TaskInstance:
    """The one TaskInstance method the operators call outside a scheduler: xcom_push."""

    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        """Keep the value as the real XCom would."""
        self.xcom[key] = value


def _context() -> Context:
    """The part of a task's context the operators use outside a scheduler."""
    return cast("Context", {"ti": _TaskInstance()})


def _pipeline_context() -> Context:
    """A context for the training pipeline's tasks: a task instance with its DAG and DAG run ids."""
    ti = _TaskInstance()
    ti.dag_id, ti.run_id, ti.map_index = "neptune_training_pipeline", "bench__1", 0  # type: ignore[attr-defined]
    return cast("Context", {"ti": ti, "params": {"epochs": 30, "learning_rate": 0.1}})


def pipeline_task(params: dict[str, Any]) -> dict[str, Any]:
    """One Neptune task of dags/neptune_training_pipeline.py, run the way its operator runs it.

    ``task``: ``create_run``, ``log_metrics`` (``part``/loss and ``part``/accuracy, or the first
    ``series`` of them, ``epochs`` points each, from ``first_epoch``),
    ``upload_checkpoint`` (a small file, gated on ``score``), ``sensor`` (one poke) or ``stop_run``.
    """
    import tempfile

    import neptune  # noqa: F401 - imported before the clock starts

    from airflow_provider_neptune.operators import (
        NeptuneCreateRunOperator,
        NeptuneLogMetricsOperator,
        NeptuneStopRunOperator,
        NeptuneUploadArtifactOperator,
    )
    from airflow_provider_neptune.sensors import NeptuneMetricSensor

    task, run_id = str(params["task"]), str(params.get("run_id", ""))
    context = _pipeline_context()
    start = time.perf_counter()
    out: Any = None
    if task == "create_run":
        out = NeptuneCreateRunOperator(
            task_id="create_run", custom_run_id=params["custom_run_id"], name=params["custom_run_id"]
        ).execute(context)
    elif task == "log_metrics":
        first, epochs, part = int(params.get("first_epoch", 0)), int(params["epochs"]), str(params["part"])
        steps = [float(e) for e in range(first, first + epochs)]
        metrics = {
            f"{part}/{name}": [harness.metric_value(i, int(s)) for s in steps]
            for i, name in enumerate(["loss", "accuracy"][: int(params.get("series", 2))])
        }
        out = NeptuneLogMetricsOperator(
            task_id="log_metrics", run_id=run_id, metrics=metrics, steps=steps
        ).execute(context)
    elif task == "upload_checkpoint":
        with tempfile.TemporaryDirectory(prefix="bench-upload-") as tmp:
            source = Path(tmp) / f"model_{params['step']}.npz"
            source.write_bytes(bytes(range(256)) * 16)
            out = NeptuneUploadArtifactOperator(
                task_id="upload_checkpoint",
                run_id=run_id,
                path=str(source),
                score=float(params["score"]),
                step=int(params["step"]),
                namespace="checkpoints",
                only_if_better=True,
                keep_top_k=2,
                direction="max",
            ).execute(context)
    elif task == "sensor":
        out = NeptuneMetricSensor(
            task_id="wait_for_val_accuracy",
            run_id=run_id,
            path="val/accuracy",
            condition=">=",
            threshold=-1e9,
        ).poke(context)
    elif task == "stop_run":
        out = NeptuneStopRunOperator(task_id="stop_run", run_id=run_id).execute(context)
    else:
        raise ValueError(f"unknown pipeline task {task!r}")
    return {
        "task": task,
        "out": out if isinstance(out, str) else None,
        "elapsed": time.perf_counter() - start,
    }


def record_permit_waits() -> list[tuple[float, float]]:
    """Record (from, to) wall-clock intervals in which a request of this process waited for a permit.

    Wraps the budget's acquire in this worker only, so the throttling benchmark can tell seconds in
    which requests queued for the budget (demand above the limit) from seconds without any request.
    """
    from airflow_provider_neptune.hooks.limiter import RequestBudget

    waits: list[tuple[float, float]] = []
    acquire = RequestBudget.acquire

    def recorded(self: RequestBudget, timeout: float = 300.0) -> float:
        began = time.time()
        waited = acquire(self, timeout)
        if waited > 0.001:
            waits.append((began, began + waited))
        return waited

    RequestBudget.acquire = recorded  # type: ignore[method-assign]
    return waits


def record_read_seconds() -> dict[str, float]:
    """Seconds this worker's log_metrics spends reading series before sending (resume) and after
    (the read-back that verifies every point): the part of the operator's time plain `extend` lacks."""
    from airflow_provider_neptune.hooks.metrics import MetricLogging

    spent = {"resume": 0.0, "read_back": 0.0}

    def timed(name: str, method: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                spent[name] += time.perf_counter() - began

        return wrapper

    MetricLogging._resume_plan = timed("resume", MetricLogging._resume_plan)  # type: ignore[method-assign]
    MetricLogging._read_back = timed("read_back", MetricLogging._read_back)  # type: ignore[method-assign]
    return spent


def log_task(params: dict[str, Any]) -> dict[str, Any]:
    """Create (or reopen, by custom run id) a run, then run NeptuneLogMetricsOperator.execute on it.

    With `run_id` given, only the operator runs. Series values are the harness' deterministic ones.
    """
    import neptune  # noqa: F401 - imported before the clock starts, as in the plain baseline

    from airflow_provider_neptune.hooks.neptune import NeptuneHook
    from airflow_provider_neptune.operators.metrics import NeptuneLogMetricsOperator

    series, steps = int(params["series"]), int(params["steps"])
    metrics = {
        harness.series_path(i): [harness.metric_value(i, s) for s in range(steps)] for i in range(series)
    }
    step_list = [float(s) for s in range(steps)]
    waits = record_permit_waits()
    reads = record_read_seconds()
    harness.ready_and_wait(params)
    start = time.perf_counter()
    cpu_start = time.process_time()
    hook = NeptuneHook()
    run_id = params.get("run_id")
    if not run_id:
        run_id = hook.create_run(custom_run_id=params.get("custom_run_id"))
    created = time.perf_counter()
    operator = NeptuneLogMetricsOperator(
        task_id="log_metrics", run_id=run_id, metrics=metrics, steps=step_list
    )
    summary = operator.execute(_context())
    hook.close()
    end = time.perf_counter()
    return {
        "run_id": run_id,
        "elapsed": end - start,
        "init": created - start,
        "log_calls": end - created,
        "finished_at": time.time(),
        "cpu": time.process_time() - cpu_start,
        "permit_waits": [(round(a, 4), round(b, 4)) for a, b in waits],
        "resume_seconds": reads["resume"],
        "read_back_seconds": reads["read_back"],
        "summary": summary,
        "counters": hook.counters,
    }


def seed_checkpoints(params: dict[str, Any]) -> dict[str, Any]:
    """Create runs `first`..`last-1`, each with `checkpoints` small checkpoint entries laid out as
    NeptuneUploadArtifactOperator writes them (file + score, step, size, sha256, ...), tagged for the
    retention benchmark's selections. Uses the provider's own entry writer, without the upload gate."""
    import hashlib
    import tempfile

    from airflow_provider_neptune.core.checkpoint_records import entry_key
    from airflow_provider_neptune.core.checkpoint_store import upload_entry
    from airflow_provider_neptune.hooks.neptune import NeptuneHook

    hook = NeptuneHook()
    size = int(params["size"])
    start = time.perf_counter()
    run_ids: dict[int, str] = {}
    with tempfile.TemporaryDirectory(prefix="bench-ckpt-") as tmp:
        for index in range(int(params["first"]), int(params["last"])):
            tags = [tag for tag, bound in params["tags"] if index < bound or bound < 0]
            tags += [tag for tag, low, high in params["range_tags"] if low <= index < high]
            run_id = hook.create_run(custom_run_id=f"bench-retention-{index}", tags=tags)
            run_ids[index] = run_id
            with hook.get_run(run_id) as run:
                for ck in range(int(params["checkpoints"])):
                    source = Path(tmp) / f"model_{index}_{ck}.pt"
                    source.write_bytes(bytes((index + ck + b) % 256 for b in range(size)))
                    upload_entry(
                        run, "checkpoints", entry_key(str(source), step=float(ck), single_file=True), source,
                        sha256=hashlib.sha256(source.read_bytes()).hexdigest(), size=size,
                        score=harness.checkpoint_score(index, ck), step=float(ck), keep=False, stash=True,
                        previous=None,
                    )  # fmt: skip
                hook.wait_for_delivery(run, timeout=300)
            hook.stop_run(run_id)
    return {"seconds": time.perf_counter() - start, "counters": hook.counters, "run_ids": run_ids}


def retention(params: dict[str, Any]) -> dict[str, Any]:
    """Run NeptuneArtifactRetentionOperator.execute once (dry run or apply) and measure it.

    Peak memory is the process's maximum resident set after the call minus the resident set before.
    """
    import resource

    import neptune  # noqa: F401 - imported before the clock starts
    import psutil

    from airflow_provider_neptune.operators.artifacts import NeptuneArtifactRetentionOperator

    operator = NeptuneArtifactRetentionOperator(
        task_id="retention",
        namespace="checkpoints",
        keep_top_k=int(params["keep_top_k"]),
        direction="max",
        keep_last=True,
        tags=params["tags"],
        dry_run=bool(params["dry_run"]),
        max_delete_fraction=1.0,
    )
    rss_before = psutil.Process().memory_info().rss
    start = time.perf_counter()
    summary = operator.execute(_context())
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    summary.pop("plan", None)
    return {
        "seconds": seconds,
        "summary": summary,
        "rss_before": rss_before,
        "peak_rss": peak,
        "peak_growth": max(0, peak - rss_before),
    }


KINDS = {
    "log_task": log_task,
    "seed_checkpoints": seed_checkpoints,
    "retention": retention,
    "pipeline_task": pipeline_task,
}

if __name__ == "__main__":
    harness.worker_main(KINDS)
