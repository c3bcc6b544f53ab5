"""Benchmark 4: what the provider adds to the time Airflow's DAG processor takes to parse a file.

Two DAG files are parsed exactly as the dag-processor child does it (BundleDagBag of one file, then
DagSerialization of its DAGs), each in a fresh process that already has the dag processor loaded:
one file uses only EmptyOperator, the other also imports and instantiates every operator and sensor
of the provider. The difference of the medians is the provider's parse cost; `neptune` must not
be imported by either.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

from benchmarks import harness

NAME = "parse_cost"
TARGET_MS = 50.0

BASELINE_DAG = '''
"""Baseline: the same DAG shape with EmptyOperator only."""
import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG

with DAG("bench_parse_baseline", schedule=None, start_date=pendulum.datetime(2026, 1, 1), catchup=False):
    for name in ("create", "log", "upload", "retain", "check", "stop", "sync", "wait_metric", "wait_run"):
        EmptyOperator(task_id=name)
'''

PROVIDER_DAG = '''
"""Every operator and sensor of the provider, instantiated as a pipeline would."""
import pendulum
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG

from airflow_provider_neptune.operators import (
    NeptuneArtifactRetentionOperator,
    NeptuneCreateRunOperator,
    NeptuneLogMetricsOperator,
    NeptuneStopRunOperator,
    NeptuneSyncOperator,
    NeptuneUploadArtifactOperator,
    NeptuneValidateEnvironmentOperator,
)
from airflow_provider_neptune.sensors import NeptuneMetricSensor, NeptuneRunSensor

RUN = "{{ ti.xcom_pull('create') }}"
with DAG("bench_parse_provider", schedule=None, start_date=pendulum.datetime(2026, 1, 1), catchup=False):
    EmptyOperator(task_id="begin")
    NeptuneCreateRunOperator(task_id="create", name="train", tags=["bench"])
    NeptuneLogMetricsOperator(task_id="log", run_id=RUN, metrics={"train/loss": [1.0, 0.5]})
    NeptuneUploadArtifactOperator(task_id="upload", run_id=RUN, path="/tmp/model.pt", score=0.5, step=1)
    NeptuneArtifactRetentionOperator(task_id="retain", keep_top_k=3, dry_run=True)
    NeptuneValidateEnvironmentOperator(task_id="check", requirements=["neptune>=1.14"])
    NeptuneStopRunOperator(task_id="stop", run_id=RUN)
    NeptuneSyncOperator(task_id="sync", data_directory="/tmp/neptune-data")
    NeptuneMetricSensor(task_id="wait_metric", run_id=RUN, path="train/loss", condition="<", threshold=1.0)
    NeptuneRunSensor(task_id="wait_run", run_id=RUN)
'''

# Runs in a fresh interpreter: load what the dag processor has loaded, then time one parse.
PROBE = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    import airflow.dag_processing.processor  # the dag-processor child has this loaded already
    from airflow.dag_processing.dagbag import BundleDagBag
    from airflow.serialization.serialized_objects import DagSerialization

    path = Path(sys.argv[1])
    before = set(sys.modules)
    t0 = time.perf_counter()
    bag = BundleDagBag(
        dag_folder=str(path), bundle_path=path.parent, bundle_name="bench", load_op_links=False
    )
    t1 = time.perf_counter()
    data = [DagSerialization.to_dict(dag) for dag in bag.dags.values()]
    t2 = time.perf_counter()
    added = sorted(set(sys.modules) - before)
    print(json.dumps({
        "parse": t1 - t0,
        "serialize": t2 - t1,
        "dags": len(bag.dags),
        "tasks": sum(len(d.tasks) for d in bag.dags.values()),
        "errors": {str(k): str(v)[-400:] for k, v in bag.import_errors.items()},
        "neptune": sorted(m for m in sys.modules if m == "neptune" or m.startswith("neptune.")),
        "new_modules": len(added),
        "provider_modules": [m for m in added if m.startswith("airflow_provider_neptune")],
        "serialized": len(json.dumps(data, default=str)),
    }))
    """
)


def _probe(path: Path, env: dict[str, str]) -> dict[str, Any]:
    """Parse one DAG file in a fresh process and return its timings."""
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"parse probe failed for {path.name}:\n{out.stderr[-3000:]}")
    result = dict(json.loads(out.stdout.strip().splitlines()[-1]))
    if result["errors"] or result["dags"] != 1:
        raise RuntimeError(f"{path.name} did not parse cleanly: {result['errors']}")
    return result


def heaviest_imports(path: Path, env: dict[str, str], top: int = 8) -> list[tuple[str, float, float]]:
    """(module, self ms, cumulative ms) of the slowest imports while parsing `path` (python -X importtime)."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", PROBE, str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    # Only the imports made after the probe's own set-up, which ends with the dag processor's line
    # (importtime prints a module when its import finishes); the DAG file's imports come after it.
    lines = out.stderr.splitlines()
    marker = max(
        (i for i, line in enumerate(lines) if line.rstrip().endswith("airflow.dag_processing.processor")),
        default=-1,
    )
    found: list[tuple[str, float, float]] = []
    for line in lines[marker + 1 :]:
        if not line.startswith("import time:") or "|" not in line:
            continue
        parts = line.split("|")
        try:
            self_us, cumulative_us = float(parts[0].split(":")[1]), float(parts[1])
        except ValueError:
            continue
        found.append((parts[2].strip(), self_us / 1000, cumulative_us / 1000))
    return sorted(found, key=lambda item: -item[1])[:top]


def run(opts: harness.Options) -> harness.Section:
    """Parse both files `reps` times each, alternating, and compare the medians."""
    reps = opts.reps(10, 15)
    section = harness.Section(NAME, harness.TITLES[NAME], opts, scale=f"{reps} fresh processes per file")
    with tempfile.TemporaryDirectory(prefix="bench-parse-") as tmp:
        work = Path(tmp)
        files = {
            "EmptyOperator only": work / "baseline_dag.py",
            "every provider operator": work / "provider_dag.py",
        }
        files["EmptyOperator only"].write_text(BASELINE_DAG)
        files["every provider operator"].write_text(PROVIDER_DAG)
        env = harness.worker_env(None, work)
        heavy = heaviest_imports(files["every provider operator"], env)
        samples: dict[str, list[dict[str, Any]]] = {label: [] for label in files}
        for i in range(reps):
            labels = list(files) if i % 2 == 0 else list(reversed(files))
            for label in labels:
                samples[label].append(_probe(files[label], env))
    rows: list[list[str]] = []
    med: dict[str, dict[str, float]] = {}
    for label, runs in samples.items():
        parse = [r["parse"] for r in runs]
        total = [r["parse"] + r["serialize"] for r in runs]
        med[label] = {"parse": harness.median(parse), "total": harness.median(total)}
        rows.append(
            [
                label,
                str(runs[0]["tasks"]),
                f"{med[label]['parse'] * 1000:.1f} ms ({harness.spread([p * 1000 for p in parse])})",
                f"{med[label]['total'] * 1000:.1f} ms",
                str(runs[0]["new_modules"]),
                ", ".join(sorted({m for r in runs for m in r["neptune"]})) or "none",
            ]
        )
    base, prov = med["EmptyOperator only"], med["every provider operator"]
    added_parse = (prov["parse"] - base["parse"]) * 1000
    added_total = (prov["total"] - base["total"]) * 1000
    neptune_loaded = any(r["neptune"] for runs in samples.values() for r in runs)
    section.verdict(
        f"added parse time <= {TARGET_MS:.0f} ms (median of {reps})",
        f"{added_parse:.1f} ms ({harness.ratio(prov['parse'], base['parse']):.2f}x the baseline file)",
        added_parse <= TARGET_MS,
        ""
        if added_parse <= TARGET_MS
        else "import of the provider's operator/sensor modules (see modules column)",
    )
    section.verdict(
        "`neptune` not imported while parsing",
        "not imported" if not neptune_loaded else "IMPORTED",
        not neptune_loaded,
    )
    section.table(
        [
            "DAG file",
            "Tasks",
            "Parse: median (min..max)",
            "Parse + serialize: median",
            "Modules newly imported",
            "neptune modules loaded",
        ],
        rows,
    )
    section.table(
        ["Slowest imports while parsing the provider file (one `-X importtime` run)", "self", "cumulative"],
        [[f"`{name}`", f"{own:.1f} ms", f"{cum:.1f} ms"] for name, own, cum in heavy],
    )
    section.note(
        f"Added by the provider: {added_parse:.1f} ms to parse, {added_total:.1f} ms including DAG "
        "serialization. Each sample is a fresh interpreter that first imports "
        "`airflow.dag_processing.processor` (as the dag-processor's parsing child has), then times "
        "`BundleDagBag(<file>)` and `DagSerialization.to_dict` the way Airflow 3.3's processor does; "
        "the two files alternate order between repetitions. "
        + (
            "PYTHONDONTWRITEBYTECODE is set here, so every probe compiles the provider's source "
            "afresh; an installed package with .pyc files pays less (about 7 ms added, measured by "
            "running the probes with a PYTHONPYCACHEPREFIX)."
            if os.environ.get("PYTHONDONTWRITEBYTECODE")
            else "Probes may use .pyc files, as an installed package does."
        )
    )
    return section


if __name__ == "__main__":
    harness.standalone(NAME, __doc__ or NAME, run)
