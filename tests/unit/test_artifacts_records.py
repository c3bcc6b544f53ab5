"""Checkpoint entry layout, parsing and the top-k upload gate, without a server."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from airflow_provider_neptune.operators.checkpoint_records import (
    Checkpoint,
    checkpoints_from_fields,
    entry_key,
    flatten,
    gate_upload,
    validate_direction,
    validate_namespace,
)


def test_entry_keys() -> None:
    assert entry_key("/tmp/last.pt", step=3, single_file=True) == "step_3"
    assert entry_key("/tmp/last.pt", step=1.5, single_file=True) == "step_1_5"
    assert entry_key("/tmp/a b.pt", step=None, single_file=True) == "a_b_pt"
    assert entry_key("/tmp/m.pt", step=2, single_file=False) == "step_2_m_pt"
    assert entry_key("/tmp/m.pt", step=2, single_file=True, name="best") == "best"
    assert entry_key("/tmp/m.pt", step=2, single_file=False, name="best") == "best_m_pt"


def test_namespace_and_direction_validation() -> None:
    assert validate_namespace("/checkpoints/") == "checkpoints"
    assert validate_namespace("model/ckpt") == "model/ckpt"
    for bad in ("", "/", "a//b", "sys", "sys/x"):
        with pytest.raises(ValueError, match="namespace"):
            validate_namespace(bad)
    assert validate_direction("min") == "min"
    with pytest.raises(ValueError, match="'up'"):
        validate_direction("up")


def test_parse_only_entries_with_sha256_and_only_inside_namespace() -> None:
    when = datetime(2026, 1, 1, tzinfo=UTC)
    values = flatten(
        {
            "checkpoints": {
                "step_1": {"sha256": "aa", "score": 0.5, "step": 1.0, "size": 12.0, "uploaded_at": when},
                "step_2": {"sha256": "bb", "score": float("nan"), "keep": True},
                "notes": {"text": "not a checkpoint"},
                "deep": {"x": {"sha256": "cc"}},
            },
            "other": {"step_9": {"sha256": "dd"}},
        }
    )
    files = ["checkpoints/step_1/file", "checkpoints/notes/file", "other/step_9/file"]
    entries = checkpoints_from_fields(values, files, "checkpoints")
    assert entries == [
        Checkpoint(key="step_1", sha256="aa", score=0.5, step=1.0, size=12, uploaded_at=when),
        Checkpoint(key="step_2", sha256="bb", score=None, keep=True, has_file=False),
    ]


def _gate_sequence(scores: list[float], k: int, direction: str) -> list[int]:
    existing: list[Checkpoint] = []
    sent = []
    for i, score in enumerate(scores):
        ok, _ = gate_upload(existing, score, k, "max" if direction == "max" else "min", key=f"step_{i}")
        if ok:
            sent.append(i)
            existing.append(Checkpoint(key=f"step_{i}", sha256=str(i), score=score, step=float(i)))
    return sent


@pytest.mark.parametrize("direction", ["max", "min"])
def test_gate_sends_exactly_the_running_top_k(direction: str) -> None:
    rng = random.Random(7)
    scores = [round(rng.random(), 3) for _ in range(20)]
    sent = _gate_sequence(scores, 3, direction)
    sign = 1 if direction == "max" else -1
    expected = [
        i for i, s in enumerate(scores) if sum(1 for prev in scores[:i] if sign * prev >= sign * s) < 3
    ]
    assert sent == expected
    assert 3 <= len(sent) < 20


def test_gate_ignores_same_key_and_ties_are_not_better() -> None:
    existing = [Checkpoint(key="a", sha256="1", score=0.5), Checkpoint(key="b", sha256="2", score=0.7)]
    assert gate_upload(existing, 0.5, 2, "max", key="c")[0] is False
    assert gate_upload(existing, 0.6, 2, "max", key="c")[0] is True
    assert gate_upload(existing, 0.1, 2, "max", key="a")[0] is True
    gone = [Checkpoint(key="a", sha256="1", score=0.9, has_file=False)]
    assert gate_upload(gone, 0.1, 1, "max", key="c")[0] is True
