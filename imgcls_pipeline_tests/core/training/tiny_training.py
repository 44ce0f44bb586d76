"""A tiny photo set with split tables and a config small enough to train on a CPU in seconds."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from torchvision.transforms import v2

from imgcls_pipeline.core.data.transforms import eval_transform
from imgcls_pipeline.core.hardware import resolve_hardware
from imgcls_pipeline.core.settings import AugmentationConfig, PipelineConfig
from imgcls_pipeline.core.training import checkpoint as ckpt
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


# Two ranks with 2 P×K batches of 3 photos each per epoch, or one process with gradient
# accumulation 2 over 4: a warm-up epoch then a fine-tuning one, 2 optimizer steps each.
EQUIVALENCE_CONFIG = {"warmup_epochs": 1, "total_epochs": 2, "samples_per_class": 1}
# DDP averages the ranks' gradients in an all-reduce, accumulation sums them in place: the same
# sum in another order, carried through 4 AdamW steps.
WEIGHT_TOLERANCE = 1e-5


def same_images_every_run(
    aug: AugmentationConfig,
    image_size: int,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    interpolation: str = "bilinear",
) -> v2.Compose:
    """In place of ``train_transform``: no random augmentation, so runs that draw random numbers
    differently (each DDP rank seeds its own) still train on the same images."""
    return eval_transform(image_size, mean, std, interpolation)


def largest_weight_difference(checkpoint_a: Path, checkpoint_b: Path) -> float:
    """Largest absolute difference between two checkpoints' trained parameters (embedding model
    and ArcFace centres; BatchNorm running statistics are not parameters and are left out)."""
    a, b = ckpt.read_checkpoint(checkpoint_a), ckpt.read_checkpoint(checkpoint_b)
    differences = [0.0]
    for part in ("model", "arcface"):
        for name, value in a[part].items():
            if "running_" in name or "num_batches_tracked" in name:
                continue
            differences.append(float((value - b[part][name]).abs().max()))
    return max(differences)
