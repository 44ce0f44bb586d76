"""A tiny photo set with split tables and a config small enough to train on a CPU in seconds."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from imgcls_pipeline.core.hardware import resolve_hardware
from imgcls_pipeline.core.settings import PipelineConfig
from imgcls_pipeline_tests.imaging import make_photo_folder, uniform_layout

TINY_BACKBONE = "test_efficientnet"


def make_tiny_splits(root: Path, n_classes: int = 3, ids: int = 3, photos: int = 2) -> tuple:
    """root/data (photos) and root/splits/{train,val,test}.csv; the last ID of a class is val."""
    data_dir = make_photo_folder(root / "data", uniform_layout(n_classes, ids, photos), (72, 64))
    rows = [
        {
            "image_path": path.relative_to(data_dir).as_posix(),
            "class_name": path.parent.name,
            "object_id": path.stem.rsplit("_", 1)[0],
            "sequence": int(path.stem.rsplit("_", 1)[1]),
            "width": 72,
            "height": 64,
        }
        for path in sorted(data_dir.rglob("*.jpg"))
    ]
    frame = pd.DataFrame(rows)
    last_id = frame.groupby("class_name")["object_id"].transform("max")
    splits_dir = root / "splits"
    splits_dir.mkdir()
    frame[frame.object_id != last_id].to_csv(splits_dir / "train.csv", index=False)
    frame[frame.object_id == last_id].to_csv(splits_dir / "val.csv", index=False)
    frame.iloc[:0].to_csv(splits_dir / "test.csv", index=False)
    return data_dir, splits_dir


def tiny_config(**training: object) -> PipelineConfig:
    config = PipelineConfig()
    config.data.image_size = 64
    config.model.backbone = TINY_BACKBONE
    config.model.pretrained = False
    config.model.embedding_dim = 32
    config.model.arcface_s = 16.0
    config.training.warmup_epochs = 1
    config.training.total_epochs = 2
    config.training.samples_per_class = 2
    config.training.learning_rate = 1e-3
    for name, value in training.items():
        setattr(config.training, name, value)
    return config


def cpu_hardware(accum_steps: int | None = 1):
    return resolve_hardware(None, cpu_count=1, num_workers=0, accum_steps=accum_steps)
