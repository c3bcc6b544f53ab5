"""A small, real model for the example pipeline: logistic regression in numpy on generated data.

Kept out of the DAG file so the DAG stays readable and this code is testable on its own. numpy is
imported inside the functions: the DAG processor parses the DAG file without paying for it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

METRIC_NAMES = ("train/loss", "train/accuracy", "val/loss", "val/accuracy")


@dataclass(frozen=True)
class TrainingConfig:
    """One hyper-parameter set plus the size of the generated data set."""

    name: str
    learning_rate: float
    l2: float = 0.0
    epochs: int = 8
    batch_size: int = 32
    samples: int = 400
    features: int = 6
    seed: int = 7

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> TrainingConfig:
        """Build a config from a plain dict (XCom, DAG params), rejecting unknown keys by name."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown training setting(s) {unknown}; known: {sorted(known)}")
        config = cls(**dict(values))
        if config.epochs < 1 or config.samples < 20 or config.batch_size < 1:
            raise ValueError(f"{config.name}: epochs >= 1, samples >= 20 and batch_size >= 1 are required")
        return config


def make_dataset(
    samples: int, features: int, seed: int
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Two overlapping Gaussian classes, split 75/25 into train and validation sets (deterministic)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=samples).astype(np.float64)
    direction = rng.normal(size=features)
    direction /= np.linalg.norm(direction)
    points = rng.normal(size=(samples, features)) + np.outer(2.0 * labels - 1.0, direction) * 0.45
    split = int(samples * 0.75)
    return points[:split], labels[:split], points[split:], labels[split:]


def _sigmoid(z: NDArray[np.float64]) -> NDArray[np.float64]:
    import numpy as np

    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(z, -30.0, 30.0))))


def _loss_and_accuracy(
    weights: NDArray[np.float64], bias: float, x: NDArray[np.float64], y: NDArray[np.float64]
) -> tuple[float, float]:
    import numpy as np

    p = _sigmoid(x @ weights + bias)
    eps = 1e-12
    loss = float(-np.mean(y * np.log(p + eps) + (1.0 - y) * np.log(1.0 - p + eps)))
    accuracy = float(np.mean((p >= 0.5) == (y >= 0.5)))
    return loss, accuracy


def checkpoint_epochs(epochs: int, slots: int) -> list[int]:
    """``slots`` evenly spaced epochs (the last one is always the final epoch) at which to checkpoint."""
    if slots < 1 or epochs < slots:
        raise ValueError(f"need 1 <= slots <= epochs, got slots={slots}, epochs={epochs}")
    return [math.ceil(k * epochs / slots) for k in range(1, slots + 1)]


def train(config: TrainingConfig, out_dir: Path, checkpoint_at: Sequence[int]) -> dict[str, Any]:
    """Train with mini-batch gradient descent; write per-epoch metrics (JSON) and checkpoint files.

    Steps are epoch numbers starting at 1. Returns the metrics files (``metrics_paths``: one JSON
    file for the ``train/`` series, one for the ``val/`` series), the epochs as steps, one checkpoint
    record (path, epoch, validation accuracy as score) per epoch in ``checkpoint_at``, and the best
    and final validation accuracy.
    """
    import numpy as np

    out_dir.mkdir(parents=True, exist_ok=True)
    x_train, y_train, x_val, y_val = make_dataset(config.samples, config.features, config.seed)
    rng = np.random.default_rng(config.seed + 1)
    weights = np.zeros(config.features)
    bias = 0.0
    history: dict[str, list[float]] = {name: [] for name in METRIC_NAMES}
    checkpoints: list[dict[str, Any]] = []
    for epoch in range(1, config.epochs + 1):
        order = rng.permutation(len(x_train))
        for start in range(0, len(order), config.batch_size):
            batch = order[start : start + config.batch_size]
            xb, yb = x_train[batch], y_train[batch]
            error = _sigmoid(xb @ weights + bias) - yb
            weights -= config.learning_rate * (xb.T @ error / len(batch) + config.l2 * weights)
            bias -= config.learning_rate * float(np.mean(error))
        train_loss, train_acc = _loss_and_accuracy(weights, bias, x_train, y_train)
        val_loss, val_acc = _loss_and_accuracy(weights, bias, x_val, y_val)
        for name, value in zip(METRIC_NAMES, (train_loss, train_acc, val_loss, val_acc), strict=True):
            if not math.isfinite(value):
                raise ArithmeticError(f"{config.name}: {name} is {value} at epoch {epoch}")
            history[name].append(round(value, 6))
        if epoch in checkpoint_at:
            path = out_dir / f"checkpoint-epoch{epoch:03d}.npz"
            np.savez(path, weights=weights, bias=np.array([bias]), epoch=np.array([epoch]))
            checkpoints.append({"path": str(path), "epoch": epoch, "score": round(val_acc, 6)})
    metrics_paths = {}
    for split in ("train", "val"):
        path = out_dir / f"metrics-{split}.json"
        path.write_text(json.dumps({k: v for k, v in history.items() if k.startswith(f"{split}/")}))
        metrics_paths[split] = str(path)
    return {
        "metrics_paths": metrics_paths,
        "steps": list(range(1, config.epochs + 1)),
        "checkpoints": checkpoints,
        "best_val_accuracy": max(history["val/accuracy"]),
        "final_val_accuracy": history["val/accuracy"][-1],
    }
