"""Split tables in, (image tensor, class index) pairs out."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from imgcls_pipeline.core.data.images import load_rgb


def class_list(train_frame: pd.DataFrame) -> list[str]:
    """The model's classes: sorted unique class names of the training split."""
    return sorted(train_frame["class_name"].unique().tolist())


class ImageDataset(Dataset):
    """Rows of a split table; the label is the class's index in ``classes`` (-1 if not in it)."""

    def __init__(
        self,
        frame: pd.DataFrame,
        data_dir: str | Path,
        classes: Sequence[str],
        transform: Callable[[object], torch.Tensor],
        target_size: int,
    ):
        index = {name: i for i, name in enumerate(classes)}
        self.paths = [Path(data_dir) / p for p in frame["image_path"]]
        self.labels = [index.get(name, -1) for name in frame["class_name"]]
        # Object ids are unique only within a class (the file-name ID in its class folder).
        self.object_ids = [
            f"{c}/{o}" for c, o in zip(frame["class_name"], frame["object_id"], strict=True)
        ]
        self.transform = transform
        self.target_size = target_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(load_rgb(self.paths[i], self.target_size)), self.labels[i]


def make_loader(
    dataset: Dataset,
    *,
    num_workers: int,
    pin_memory: bool,
    batch_sampler: Sampler[list[int]] | None = None,
    batch_size: int = 64,
) -> DataLoader:
    """A loader over ``dataset``: batches from ``batch_sampler`` if given, else in order."""
    if batch_sampler is not None:
        return DataLoader(
            dataset,
            batch_sampler=batch_sampler,
            num_workers=num_workers,
            pin_memory=pin_memory,
            persistent_workers=num_workers > 0,
        )
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=pin_memory,
    )
