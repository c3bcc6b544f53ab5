"""Argument handling of the checkpoint operators, the clean-up DAG's shape, and the sync helpers."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_neptune.operators.artifacts import (
    NeptuneArtifactRetentionOperator,
    NeptuneUploadArtifactOperator,
)

REPO = Path(__file__).resolve().parents[3]


def _context() -> Any:
    return {}


def test_upload_operator_validates_before_touching_neptune(tmp_path: Path) -> None:
    ckpt = tmp_path / "m.pt"
    ckpt.write_bytes(b"weights")
    gate_without_score = NeptuneUploadArtifactOperator(
        task_id="u", run_id="SAN-1", path=str(ckpt), only_if_better=True, keep_top_k=3
    )
    with pytest.raises(ValueError, match="only_if_better needs both score and keep_top_k"):
        gate_without_score.execute(_context())
    bad_direction = NeptuneUploadArtifactOperator(
        task_id="u2", run_id="SAN-1", path=str(ckpt), direction="up"
    )
    with pytest.raises(ValueError, match="direction"):
        bad_direction.execute(_context())
    no_run = NeptuneUploadArtifactOperator(task_id="u3", path=str(ckpt))
    with pytest.raises(ValueError, match="run_id or custom_run_id"):
        no_run.execute(_context())
    assert {"run_id", "path", "score", "step", "namespace"} <= set(
        NeptuneUploadArtifactOperator.template_fields
    )


def test_retention_operator_validates_and_builds_selection() -> None:
    op = NeptuneArtifactRetentionOperator(task_id="r", tags=["a", 'b"'], state="inactive")
    assert op._selection() == {
        "query": '((`sys/tags`:stringSet CONTAINS "a") AND (`sys/tags`:stringSet CONTAINS "b\\"") AND '
        '(`sys/state`:experimentState = "idle"))'
    }
    # A string is one tag (the meaning of ``tags`` in every operator): Neptune tags may hold commas.
    op = NeptuneArtifactRetentionOperator(task_id="r2", tags="a, b", query="`x`:float > 1", state="active")
    assert op._selection() == {
        "query": '((`x`:float > 1) AND (`sys/tags`:stringSet CONTAINS "a, b") AND '
        '(`sys/state`:experimentState = "running"))'
    }
    assert NeptuneArtifactRetentionOperator(task_id="r6")._selection() == {}
    with pytest.raises(ValueError, match=r"query '\(a\) OR \(b': 1 '\(' not closed"):
        NeptuneArtifactRetentionOperator(task_id="r7", query="(a) OR (b")._selection()
    with pytest.raises(ValueError, match="keep_best_runs needs run_metric"):
        NeptuneArtifactRetentionOperator(task_id="r3", keep_best_runs=2)._policy()
    with pytest.raises(ValueError, match="max_delete_fraction"):
        NeptuneArtifactRetentionOperator(task_id="r4", max_delete_fraction="1.5").execute(_context())
    policy = NeptuneArtifactRetentionOperator(
        task_id="r5", keep_top_k="2", direction="min", keep_best_runs="1", run_metric="eval/acc"
    )._policy()
    assert (policy.keep_top_k, policy.direction, policy.keep_best_runs) == (2, "min", 1)
    assert policy.run_metric_direction == "min"
    assert "is_dry_run" in NeptuneArtifactRetentionOperator.template_fields


def test_cleanup_dag_shape_without_importing_neptune() -> None:
    dag_file = str(REPO / "dags" / "neptune_retention_cleanup.py")
    probe = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('cleanup', {dag_file!r})\n"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        "print(sorted(n for n in sys.modules if n == 'neptune' or n.startswith('neptune.')))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"

    spec = importlib.util.spec_from_file_location(
        "cleanup_dag", REPO / "dags" / "neptune_retention_cleanup.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dag = module.neptune_retention_cleanup()
    assert dag.dag_id == "neptune_retention_cleanup"
    assert dag.max_active_runs == 1
    assert dag.doc_md
    assert "neptune_api" in dag.doc_md
    assert {"project", "keep_top_k", "older_than_days", "dry_run"} <= set(dag.params.keys())
    assert dag.params["dry_run"] == "auto"
    (task,) = dag.tasks
    assert isinstance(task, NeptuneArtifactRetentionOperator)
    assert task.pool == "neptune_api"
    assert task.retries == 3
    assert task.retry_exponential_backoff == 2.0
    assert task.owner == "ml-platform"
