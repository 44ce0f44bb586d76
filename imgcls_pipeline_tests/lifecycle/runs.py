"""Tiny finished training runs for the lifecycle tests: a good one, and the same model with its
weights zeroed (every photo embeds alike, so its Recall@1 is the share of the first class)."""

from __future__ import annotations

import shutil
from pathlib import Path

from imgcls_pipeline.core.training import checkpoint as ckpt
from imgcls_pipeline.core.training.loop import train
from imgcls_pipeline_tests.core.training.tiny_training import (
    cpu_hardware,
    make_tiny_splits,
    tiny_config,
)


def make_project(root: Path) -> tuple[Path, Path]:
    """root/data and root/splits: 3 colour classes, 4 IDs each (3 train, 1 val), 2 photos each."""
    return make_tiny_splits(root, n_classes=3, ids=4, photos=2)


def train_run(root: Path, data_dir: Path, splits_dir: Path) -> Path:
    """A finished tiny run in root/checkpoints: best_model.pt, metrics.csv."""
    checkpoints = root / "checkpoints"
    train(
        tiny_config(total_epochs=2),
        data_dir=data_dir,
        splits_dir=splits_dir,
        checkpoint_dir=checkpoints,
        hardware=cpu_hardware(),
        log=lambda _: None,
    )
    return checkpoints


def zeroed_run(good: Path, root: Path) -> Path:
    """``good``'s run with every weight set to zero: a deliberately worse model."""
    checkpoints = root / "zeroed_checkpoints"
    checkpoints.mkdir(parents=True)
    checkpoint = ckpt.read_checkpoint(good / ckpt.BEST)
    checkpoint["model"] = {k: v.zero_() for k, v in checkpoint["model"].items()}
    checkpoint["best_val_recall@1"] = 0.0
    ckpt.save_checkpoint(checkpoints / ckpt.BEST, checkpoint)
    shutil.copyfile(good / ckpt.METRICS, checkpoints / ckpt.METRICS)
    return checkpoints
