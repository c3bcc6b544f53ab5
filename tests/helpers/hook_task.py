"""One Neptune task in a fresh process, as an Airflow worker runs it: ``python -m tests.helpers.hook_task``.

Reads the connection from AIRFLOW_CONN_NEPTUNE_DEFAULT; argv[1] is JSON ``{"task": "log", "run_id",
"series": {path: [[step, value], ...]}}`` (a log task: the run's URL, then log_metrics, then close) or
``{"task": "stop", "run_id"}`` (the run's URL, a final field, stop_run). Prints the task's summary
as one JSON line.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def run_task(spec: dict[str, Any]) -> dict[str, Any]:
    """Do what the operator's task does through the hook; return its summary."""
    from airflow_provider_neptune.hooks.neptune import NeptuneHook

    hook = NeptuneHook()
    try:
        url = hook.run_url(spec["run_id"])
        if spec["task"] == "stop":
            with hook.get_run(spec["run_id"]) as run:
                run["airflow/state"] = "finished"
            hook.stop_run(spec["run_id"])
            return {"url": url}
        series = {path: [float(v) for _, v in points] for path, points in spec["series"].items()}
        steps = {path: [float(s) for s, _ in points] for path, points in spec["series"].items()}
        summary = hook.log_metrics(spec["run_id"], series, steps=steps)
        return {"url": url, **summary}
    finally:
        hook.close()


if __name__ == "__main__":
    print(json.dumps(run_task(json.loads(sys.argv[1]))), flush=True)
