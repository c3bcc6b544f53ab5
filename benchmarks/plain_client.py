"""Worker processes that use the unmodified `neptune` client with no provider code loaded.

They are the baselines of the benchmarks and the independent read-back of what the emulator holds:
`python -m benchmarks.plain_client <kind> '<json params>'` prints one result line for the parent.
Nothing from `airflow_provider_neptune` (or Airflow) is imported here; each result says so.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from benchmarks import harness


def _clean() -> bool:
    """True when no provider or Airflow code is loaded in this process."""
    return not any(m.split(".")[0] in ("airflow_provider_neptune", "airflow") for m in sys.modules)


def log_points(params: dict[str, Any]) -> dict[str, Any]:
    """Create a run and log `series` x `steps` points, point by point (append) or per series (extend).

    The clock runs from init_run to the end of stop(), which waits until the queue is sent.
    """
    t0 = time.perf_counter()
    import neptune

    imported = time.perf_counter()
    series, steps, style = int(params["series"]), int(params["steps"]), str(params["style"])
    paths = [harness.series_path(i) for i in range(series)]
    errors: list[str] = []
    harness.ready_and_wait(params)
    start = time.perf_counter()
    cpu_start = time.process_time()
    try:
        run = neptune.init_run(
            mode=params["mode"],
            custom_run_id=params.get("custom_run_id"),
            capture_hardware_metrics=False,
            capture_stdout=False,
            capture_stderr=False,
            capture_traceback=False,
            git_ref=False,
            source_files=[],
        )
        run_id = str(run["sys/id"].fetch())
    except Exception as exc:  # a baseline that cannot even start has lost all its points
        return {
            "run_id": None,
            "elapsed": time.perf_counter() - start,
            "init": time.perf_counter() - start,
            "finished_at": time.time(),
            "errors": [f"init_run: {type(exc).__name__}: {exc}"[:300]],
            "clean": _clean(),
        }
    created = time.perf_counter()
    try:
        if style == "append":
            for step in range(steps):
                for i, path in enumerate(paths):
                    run[path].append(harness.metric_value(i, step), step=step)
        else:
            for i, path in enumerate(paths):
                run[path].extend([harness.metric_value(i, s) for s in range(steps)], steps=list(range(steps)))
        logged = time.perf_counter()
        run.stop(seconds=params.get("stop_timeout"))
    except Exception as exc:  # the baseline's own failures are a figure, not a crash
        errors.append(f"{type(exc).__name__}: {exc}"[:300])
        logged = time.perf_counter()
    end = time.perf_counter()
    return {
        "run_id": run_id,
        "elapsed": end - start,
        "init": created - start,
        "log_calls": logged - created,
        "import": imported - t0,
        "finished_at": time.time(),
        "cpu": time.process_time() - cpu_start,
        "errors": errors,
        "clean": _clean(),
    }


def read_back(params: dict[str, Any]) -> dict[str, Any]:
    """Read every expected series of some runs back and compare it point by point with what was meant.

    `runs` maps run id to its number of series; `steps` is the step count of every run, or
    `steps_by_run` gives it per run. Counts points held, duplicated steps, missing steps, steps
    that should not be there and wrong values, in total and per run.
    """
    import neptune

    names = ("points", "duplicates", "missing", "wrong_values", "unexpected")
    totals = dict.fromkeys(names, 0)
    per_run: dict[str, dict[str, int]] = {}
    for run_id, series in params["runs"].items():
        expected_steps = int(params.get("steps_by_run", {}).get(run_id, params.get("steps", 0)))
        counts = dict.fromkeys(names, 0)
        run = neptune.init_run(with_id=run_id, mode="read-only")
        try:
            for i in range(int(series)):
                path = harness.series_path(i)
                got: list[tuple[float, float]] = []
                if run.exists(path):
                    frame = run[path].fetch_values(include_timestamp=False)
                    got = [(float(s), float(v)) for s, v in zip(frame["step"], frame["value"], strict=True)]
                steps = [s for s, _ in got]
                wanted = set(range(expected_steps))
                counts["points"] += len(got)
                counts["duplicates"] += len(steps) - len(set(steps))
                counts["missing"] += len(wanted - {int(s) for s in steps})
                counts["unexpected"] += sum(1 for s in set(steps) if s not in wanted)
                counts["wrong_values"] += sum(
                    1 for s, v in got if s in wanted and v != harness.metric_value(i, int(s))
                )
        finally:
            run.stop()
        per_run[run_id] = counts
        for name in names:
            totals[name] += counts[name]
    return {**totals, "per_run": per_run, "clean": _clean()}


def fetch_series(params: dict[str, Any]) -> dict[str, Any]:
    """Every (step, value) of the given series of one run, for exact comparisons between runs."""
    import neptune

    run = neptune.init_run(with_id=params["run_id"], mode="read-only")
    out: dict[str, list[list[float]]] = {}
    try:
        for path in params["paths"]:
            if run.exists(path):
                frame = run[path].fetch_values(include_timestamp=False)
                out[path] = [[float(s), float(v)] for s, v in zip(frame["step"], frame["value"], strict=True)]
            else:
                out[path] = []
    finally:
        run.stop()
    return {"series": out, "clean": _clean()}


def hammer(params: dict[str, Any]) -> dict[str, Any]:
    """Send executeOperations as fast as one client can between the shared start and stop times.

    `via` "client": the real client in sync mode, one append per request. `via` "http": the same
    endpoint through one keep-alive `requests` session authenticated by the client's own OAuth
    handler, each request a logFloats of `points` points (the server's cost without the client's);
    "http-fresh": the same with a new connection for every request.
    """
    import neptune
    import requests

    via, points = str(params["via"]), int(params["points"])
    path = f"bench/capacity_{params['client']}"
    run = neptune.init_run(
        mode="sync", capture_hardware_metrics=False, capture_stdout=False, capture_stderr=False, git_ref=False
    )
    session = requests.Session()
    backend: Any = run._backend
    auth = backend._http_client.authenticator.auth  # the client's own bearer-token handler
    url = f"{params['url']}/api/leaderboard/v1/attributes/operations?experimentId={run._id}"
    _, stop_at = harness.ready_and_wait(params)
    step, sent, failed = 0, 0, 0
    latencies: list[float] = []
    while time.time() < stop_at:
        t0 = time.perf_counter()
        if via == "client":
            run[path].append(float(step), step=step)
            step += 1
        else:
            now_ms = int(time.time() * 1000)
            entries = [
                {"value": float(step + k), "step": step + k, "timestampMilliseconds": now_ms}
                for k in range(points)
            ]
            step += points
            body = [{"path": path, "logFloats": {"entries": entries}}]
            poster = requests.post if via == "http-fresh" else session.post
            resp = poster(url, json=body, auth=auth, timeout=30)
            if resp.status_code != 200 or resp.json():
                failed += 1
        latencies.append(time.perf_counter() - t0)
        sent += 1
    run.stop()
    latencies.sort()
    return {
        "sent": sent,
        "failed": failed,
        "p50": latencies[len(latencies) // 2] if latencies else 0.0,
        "p99": latencies[int(len(latencies) * 0.99)] if latencies else 0.0,
        "clean": _clean(),
    }


def checkpoint_steps(params: dict[str, Any]) -> dict[str, Any]:
    """For each run, the steps of the checkpoint entries it holds (entries with a file and a sha256)."""
    import neptune

    out: dict[str, list[int]] = {}
    for run_id in params["run_ids"]:
        run = neptune.init_run(with_id=run_id, mode="read-only")
        try:
            entries = run.get_structure().get(params["namespace"], {})
            out[run_id] = sorted(
                int(key.split("_", 1)[1])
                for key, fields in entries.items()
                if key.startswith("step_") and isinstance(fields, dict) and {"file", "sha256"} <= set(fields)
            )
        finally:
            run.stop()
    return {"steps": out, "clean": _clean()}


KINDS = {
    "log_points": log_points,
    "read_back": read_back,
    "fetch_series": fetch_series,
    "hammer": hammer,
    "checkpoint_steps": checkpoint_steps,
}

if __name__ == "__main__":
    harness.worker_main(KINDS)
