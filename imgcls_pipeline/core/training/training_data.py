"""The training run's data: P×K batches of augmented train images, and the validation pass."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch.utils.data import DataLoader, Subset

from imgcls_pipeline.core.data.dataset import ImageDataset, make_loader
from imgcls_pipeline.core.data.transforms import eval_transform, train_transform
from imgcls_pipeline.core.hardware import HardwareSettings
from imgcls_pipeline.core.settings import PipelineConfig
from imgcls_pipeline.core.training import distributed
from imgcls_pipeline.core.training.model import EmbeddingModel
from imgcls_pipeline.core.training.sampler import PKBatchSampler


@dataclass
class TrainingData:
    train_set: ImageDataset
    sampler: PKBatchSampler
    train_loader: DataLoader
    eval_loader: DataLoader  # this rank's share of train (gallery) + val (queries), in order
    eval_labels: torch.Tensor
    n_eval: int


def make_training_data(
    config: PipelineConfig,
    model: EmbeddingModel,
    data_dir: str | Path,
    train_frame: pd.DataFrame,
    val_frame: pd.DataFrame,
    classes: list[str],
    hardware: HardwareSettings,
    info: distributed.DistInfo,
) -> TrainingData:
    size = config.data.image_size
    train_set = ImageDataset(
        train_frame,
        data_dir,
        classes,
        train_transform(config.augmentation, size, model.mean, model.std, model.interpolation),
        size,
    )
    sampler = PKBatchSampler(
        train_set.labels,
        train_set.object_ids,
        config.training.samples_per_class,
        config.training.num_classes_per_batch,
        seed=config.seed,
        rank=info.rank,
        world_size=info.world_size,
        multiple_of=hardware.accum_steps,
    )
    pin_memory = hardware.device == "cuda"
    train_loader = make_loader(
        train_set, num_workers=hardware.num_workers, pin_memory=pin_memory, batch_sampler=sampler
    )
    # One embedding pass per epoch over train (the gallery) then val (the queries).
    eval_set = ImageDataset(
        pd.concat([train_frame, val_frame], ignore_index=True),
        data_dir,
        classes,
        eval_transform(size, model.mean, model.std, model.interpolation),
        size,
    )
    eval_loader = make_loader(
        Subset(eval_set, distributed.shard_indices(len(eval_set), info)),
        num_workers=hardware.num_workers,
        pin_memory=pin_memory,
        batch_size=config.evaluation.embedding_batch_size,
    )
    return TrainingData(
        train_set, sampler, train_loader, eval_loader, torch.tensor(eval_set.labels), len(eval_set)
    )
