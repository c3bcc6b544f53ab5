"""Checkpoint entry layout, parsing and the top-k upload gate, without a server."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from airflow_provider_neptune.core.checkpoint_records import (
    ENTRY_FIELDS_DELETE_ORDER,
    RECORD_MARKER,
    Checkpoint,
    checkpoints_from_fields,
    entry_key,
    flatten,
    gate_upload,
    recognise_record,
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


WHEN = datetime(2026, 1, 1, tzinfo=UTC)
SHA_A = "a" * 64
SHA_B = "0123456789abcdef" * 4


def _record(**changes: object) -> dict[str, object]:
    """A record as the upload operator writes it (fields only; the file is listed separately)."""
    record: dict[str, object] = {
        "sha256": SHA_A,
        "score": 0.5,
        "step": 1.0,
        "size": 12.0,
        "uploaded_at": WHEN,
        "name": "model.pt",
        "record": RECORD_MARKER,
    }
    record.update(changes)
    return {k: v for k, v in record.items() if v is not None}


def test_parse_only_complete_records_and_only_inside_namespace() -> None:
    legacy = {k: v for k, v in _record(sha256=SHA_B, score=float("nan"), keep=True).items() if k != "record"}
    values = flatten(
        {
            "checkpoints": {
                "step_1": _record(),
                "step_2": legacy,
                "notes": {"text": "not a checkpoint"},
                "deep": {"x": _record()},
            },
            "other": {"step_9": _record()},
        }
    )
    files = ["checkpoints/step_1/file", "checkpoints/notes/file", "other/step_9/file"]
    entries = checkpoints_from_fields(values, files, "checkpoints")
    assert entries == [
        Checkpoint(key="step_1", sha256=SHA_A, score=0.5, step=1.0, size=12, uploaded_at=WHEN),
        Checkpoint(
            key="step_2",
            sha256=SHA_B,
            score=None,
            step=1.0,
            size=12,
            uploaded_at=WHEN,
            keep=True,
            has_file=False,
        ),
    ]


def test_a_users_sha256_and_name_beside_a_comment_is_not_a_record() -> None:
    users = {"sha256": SHA_A, "name": "my notes", "comment": "keep this"}
    values = flatten({"checkpoints": {"mine": users, "theirs": {**users, "size": 3.0}}})
    assert checkpoints_from_fields(values, ["checkpoints/mine/file"], "checkpoints") == []
    assert checkpoints_from_fields(values, [], "checkpoints") == []


@pytest.mark.parametrize(
    "changes",
    [
        {"sha256": None},
        {"sha256": "aa"},
        {"sha256": "A" * 64},
        {"size": None},
        {"size": "12"},
        {"size": True},
        {"size": -1.0},
        {"size": float("inf")},
        {"uploaded_at": None},
        {"uploaded_at": "2026-01-01T00:00:00Z"},
        {"name": None},
        {"name": ""},
        {"score": "0.5"},
        {"step": False},
        {"keep": "yes"},
        {"keep": False},
        {"record": "someone else's marker"},
    ],
)
def test_missing_or_mistyped_fields_make_an_entry_foreign(changes: dict[str, object]) -> None:
    assert recognise_record(_record(), has_file=True)
    assert not recognise_record(_record(**changes), has_file=True)


def test_records_without_marker_and_remnants_of_a_deletion() -> None:
    legacy = {k: v for k, v in _record().items() if k != "record"}
    assert recognise_record(legacy, has_file=True)
    assert recognise_record(legacy, has_file=False)  # its deletion removed the file, then stopped
    remnant = {"name": "model.pt", "sha256": SHA_A, "record": RECORD_MARKER, "comment": "user's"}
    assert recognise_record(remnant, has_file=False)
    assert recognise_record({"record": RECORD_MARKER}, has_file=False)
    assert not recognise_record(remnant, has_file=True)  # a file we did not describe: not ours
    assert not recognise_record({k: v for k, v in legacy.items() if k != "size"}, has_file=False)
    # Deletion removes the file first and the marker last, so every prefix leaves a remnant.
    assert ENTRY_FIELDS_DELETE_ORDER[0] == "file"
    assert ENTRY_FIELDS_DELETE_ORDER[-1] == "record"
    record = _record(keep=True)
    for done in range(1, len(ENTRY_FIELDS_DELETE_ORDER)):
        left = {k: v for k, v in record.items() if k not in ENTRY_FIELDS_DELETE_ORDER[:done]}
        assert recognise_record(left, has_file=False), ENTRY_FIELDS_DELETE_ORDER[:done]


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
