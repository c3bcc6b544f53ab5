"""Argument handling of the checkpoint operators, the clean-up DAG's shape, and the sync helpers."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_neptune.core.checkpoint_files import resolve_files
from airflow_provider_neptune.core.checkpoint_store import HashingReader, file_digest, file_extension
from airflow_provider_neptune.core.rendered_values import (
    as_bool,
    as_optional_float,
    as_optional_int,
    as_optional_str,
)
from airflow_provider_neptune.operators.artifacts import (
    NeptuneArtifactRetentionOperator,
    NeptuneUploadArtifactOperator,
)
from airflow_provider_neptune.operators.sync import owner_pid, process_alive, resolve_data_directory

REPO = Path(__file__).resolve().parents[3]


def test_rendered_values_accept_native_and_string_forms() -> None:
    assert as_bool("x", "True") is True
    assert as_bool("x", " no ") is False
    assert as_bool("x", False) is False
    with pytest.raises(ValueError, match="x must be true or false"):
        as_bool("x", "maybe")
    assert as_optional_float("s", "0.25") == 0.25
    assert as_optional_float("s", "None") is None
    with pytest.raises(ValueError, match="finite"):
        as_optional_float("s", "nan")
    assert as_optional_int("k", "3") == 3
    assert as_optional_int("k", 4.0) == 4
    with pytest.raises(ValueError, match="whole number"):
        as_optional_int("k", "2.5")
    with pytest.raises(ValueError, match=">= 1"):
        as_optional_int("k", 0, minimum=1)
    assert as_optional_str("  ") is None
    assert as_optional_str(" ws/p ") == "ws/p"


def test_resolve_files_single_glob_and_missing(tmp_path: Path) -> None:
    for name in ("b.pt", "a.pt", "c.txt"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.pt").write_bytes(b"y")
    assert resolve_files(str(tmp_path / "a.pt")) == [tmp_path / "a.pt"]
    assert resolve_files(str(tmp_path / "*.pt")) == [tmp_path / "a.pt", tmp_path / "b.pt"]
    assert resolve_files(str(tmp_path / "**" / "*.pt"))[-1] == tmp_path / "sub" / "d.pt"
    with pytest.raises(FileNotFoundError, match="no file matches"):
        resolve_files(str(tmp_path / "*.bin"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_files(str(tmp_path / "sub"))


def test_digest_and_hashing_reader_agree(tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    path = tmp_path / "model.ckpt"
    path.write_bytes(data)
    assert file_digest(path) == (hashlib.sha256(data).hexdigest(), len(data))
    reader = HashingReader(path)
    copied = b"".join(iter(lambda: reader.read(8192), b""))
    reader.close()
    assert copied == data
    assert reader.hexdigest() == hashlib.sha256(data).hexdigest()
    assert file_extension(path) == "ckpt"
    assert file_extension(tmp_path / "noext") == "bin"


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


def test_sync_helpers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert owner_pid("run__4f1c__1234__ab12cd34") == 1234
    assert owner_pid("run__4f1c") is None
    assert process_alive(os.getpid())
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    assert not process_alive(dead.pid)

    (tmp_path / ".neptune" / "offline").mkdir(parents=True)
    assert resolve_data_directory(str(tmp_path)) == tmp_path / ".neptune"
    assert resolve_data_directory(str(tmp_path / ".neptune")) == tmp_path / ".neptune"
    monkeypatch.setenv("NEPTUNE_DATA_DIRECTORY", str(tmp_path / "data"))
    assert resolve_data_directory(None) == tmp_path / "data"
    assert resolve_data_directory("None") == tmp_path / "data"
